"""Graph retrieval: link the question to entities, spread with personalised PageRank.

The walk runs over one sparse matrix of entity and chunk nodes:
- entity — chunk, one edge per mention (a chunk links the entities it mentions);
- entity — entity, one edge per parsed relation (co-occurrence is already carried
  by the shared chunk node).
The restart vector holds the question's entities (hubs damped by 1/log degree) and
the top dense passages, weighted by their scores, as HippoRAG 2 does; chunks are
ranked by the mass they collect. A chunk two or three hops away — sharing no word
with the question but an entity with a passage that does — gets mass this way.
An entity's mass flows to the passages of the document about it (whose title it is)
with `subject_weight` times the weight of a passage that merely mentions it: the
second hop's passage, about the bridge entity, is found before the hundred that name it.
The matrix is built from the tables once per graph generation and cached in memory
and on disk; a query is a local push from the restart nodes, whose cost does not
grow with the corpus.
"""
from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ..graph.knowledge import KnowledgeGraph
from ..graph.resolve import canonical_key
from ..memory.backup import MATRIX_NAME  # one name for the cache, which backups copy too
from ..memory.store import SQLiteStore

log = logging.getLogger("kgmem")

_WORD = re.compile(r"[\w'\u2019.-]+", re.UNICODE)


@dataclass
class GraphSettings:
    damping: float = 0.5  # probability of following an edge (HippoRAG uses 0.5)
    iterations: int = 30  # hops the walk may take from the restart nodes
    # A node spreads its mass only while it holds >= push_epsilon per edge (local PPR):
    # bounds a query's work by iterations / push_epsilon edge visits at any corpus size.
    push_epsilon: float = 1e-5
    dense_seeds: int = 5  # top dense passages that join the restart vector
    # Their restart mass next to the question entities' (which sum to 1): the walk starts
    # mostly from what the question names, a little from what dense search found.
    dense_seed_weight: float = 0.2
    relation_weight: float = 1.0
    # Weight of entity -> passage edges where the passage's document is about the entity
    # (measured flat from 2 to 30 on MuSiQue and HotpotQA; README@f5760d8 "Quality").
    subject_weight: float = 5.0
    max_ngram: int = 6
    entity_scores: int = 200  # how many of the walk's best entities a ranking reports


@dataclass
class LinkedEntity:
    entity_id: int
    key: str
    surface: str


@dataclass
class GraphRanking:
    chunks: list[tuple[int, float]]
    linked: list[LinkedEntity] = field(default_factory=list)
    # Mass the walk left on entities (entity id -> score), the top ones: the reader
    # that answers without an LLM uses it to find the second hop's entity.
    entities: dict[int, float] = field(default_factory=dict)


def _fetch_pairs(conn, sql: str, block: int = 50_000) -> Iterator[np.ndarray]:
    """Two integer columns as (n, 2) arrays, a block at a time: tens of millions of rows
    never exist as Python tuples, nor as one array, all at once."""
    cur = conn.cursor()
    cur.row_factory = None  # plain tuples: sqlite3.Row is slow at this count
    cur.execute(sql)
    while rows := cur.fetchmany(block):
        yield np.array(rows, dtype=np.int64).reshape(-1, 2)


def _ids(conn, table: str) -> np.ndarray:
    parts = [b[:, 0] for b in _fetch_pairs(conn, f"SELECT id, 0 FROM {table} ORDER BY id")]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


class _Matrix:
    """Column-stochastic transition matrix over [entities | chunks], with id maps.

    Held as CSC arrays (column j = where mass at node j flows) in float32/int32 so a
    1M-chunk store's graph stays a few hundred MB; saved next to the store keyed by the
    graph generation, so opening a large store does not rebuild it.
    """

    FIELDS = ("ent_ids", "chunk_ids", "indptr", "indices", "data", "chunks_per_entity")

    def __init__(self, arrays: dict[str, np.ndarray]):
        for name in self.FIELDS:
            setattr(self, name, arrays[name])
        self.n_e = len(self.ent_ids)
        self.n = self.n_e + len(self.chunk_ids)
        self.degree_out = np.diff(self.indptr)

    @classmethod
    def build(cls, sql: SQLiteStore, relation_weight: float, subject_weight: float = 1.0) -> "_Matrix":
        with sql.snapshot() as conn:  # ids, mentions and relations of one committed state
            return cls._build(conn, relation_weight, subject_weight)

    @staticmethod
    def _edges(conn, ent_ids: np.ndarray, chunk_ids: np.ndarray, relation_weight: float,
               subject_weight: float) -> Iterator[tuple[np.ndarray, np.ndarray, float]]:
        """(rows, cols, weight) blocks of the adjacency: entity <-> chunk per mention,
        entity <-> entity per parsed relation, and subject -> passage one way (mass
        reaching an entity prefers the passages about it; a passage's own mass is not
        pulled back to its subject), on top of the mention edge."""
        n_e = len(ent_ids)
        for m in _fetch_pairs(conn, "SELECT entity_id, chunk_id FROM mentions"):
            e, c = np.searchsorted(ent_ids, m[:, 0]), n_e + np.searchsorted(chunk_ids, m[:, 1])
            yield e, c, 1.0
            yield c, e, 1.0
        for r in _fetch_pairs(conn, "SELECT source_id, target_id FROM relations WHERE kind != 'cooc'"):
            rs, rt = np.searchsorted(ent_ids, r[:, 0]), np.searchsorted(ent_ids, r[:, 1])
            yield rs, rt, relation_weight
            yield rt, rs, relation_weight
        for sj in _fetch_pairs(conn, "SELECT g.subject_id, c.id FROM graph_documents g "
                                     "JOIN entities e ON e.id = g.subject_id JOIN chunks c ON c.doc_id = g.doc_id"):
            yield n_e + np.searchsorted(chunk_ids, sj[:, 1]), np.searchsorted(ent_ids, sj[:, 0]), subject_weight - 1.0

    @classmethod
    def _build(cls, conn, relation_weight: float, subject_weight: float = 1.0) -> "_Matrix":
        """Two passes over the edges, streamed from SQLite: count each column's entries,
        then put each entry in its place (a counting sort). Nothing but the result's own
        arrays (8 bytes an entry) is ever whole in memory: building the matrix of a
        15k-chunk store took 60 MB at its peak the COO way, this one ~1/5 of that."""
        ent_ids, chunk_ids = _ids(conn, "entities"), _ids(conn, "chunks")
        n_e, n = len(ent_ids), len(ent_ids) + len(chunk_ids)
        args = (conn, ent_ids, chunk_ids, relation_weight, subject_weight)
        counts = np.zeros(n, np.int64)
        for _, cols, _ in cls._edges(*args):
            counts += np.bincount(cols, minlength=n)
        total = int(counts.sum())
        index_type = np.int32 if total < 2**31 else np.int64  # scipy keeps int32 indices then
        indptr = np.zeros(n + 1, index_type)
        np.cumsum(counts, out=indptr[1:])
        del counts
        indices = np.empty(total, index_type)
        data = np.empty(total, np.float32)
        filled = indptr[:-1].astype(np.int64)
        for rows, cols, weight in cls._edges(*args):
            order = np.argsort(cols, kind="stable")
            cols = cols[order]
            first = np.searchsorted(cols, cols)  # where each entry's column starts in the block
            at = filled[cols] + (np.arange(len(cols)) - first)
            indices[at] = rows[order]
            data[at] = weight
            filled += np.bincount(cols, minlength=n)
        del filled
        adj = sp.csc_matrix((data, indices, indptr), shape=(n, n), copy=False)
        adj.sum_duplicates()  # sorts each column and adds repeated edges, in place
        indptr, indices, data = adj.indptr.astype(np.int64), adj.indices, adj.data
        del adj
        lens = np.diff(indptr)
        # P[i, j] = A[i, j] / deg(j): mass at j flows to its neighbours.
        degree = np.zeros(n)
        if len(data):
            degree = np.add.reduceat(data, np.minimum(indptr[:-1], len(data) - 1), dtype=np.float64)
            degree[lens == 0] = 0.0
        inv = np.divide(1.0, degree, out=np.zeros_like(degree), where=degree > 0).astype(np.float32)
        data *= np.repeat(inv, lens)
        # Distinct chunks per entity: the entity rows of the chunk columns (mentions only).
        chunks_per_entity = np.bincount(indices[indptr[n_e]:], minlength=n_e)[:n_e]
        return cls({
            "ent_ids": ent_ids, "chunk_ids": chunk_ids, "indptr": indptr,
            "indices": indices.astype(np.int32, copy=False), "data": data,
            "chunks_per_entity": chunks_per_entity.astype(np.int64),
        })

    @staticmethod
    def build_bytes(sql: SQLiteStore) -> int:
        """About the memory `build` takes at its peak (an upper bound, from the tables' last
        ids): two passes over the edges leave 8 bytes an edge twice, before and after the
        repeated ones are summed, and ~40 bytes a node (measured 30 MB for 29 estimated on
        a 15k-chunk store)."""
        last = {t: sql.conn.execute(f"SELECT coalesce(max(id), 0) FROM {t}").fetchone()[0]
                for t in ("mentions", "relations", "chunks", "entities")}
        edges = 2 * last["mentions"] + 2 * last["relations"] + last["chunks"]
        return 16 * edges + 40 * (last["chunks"] + last["entities"])

    def save(self, path: Path, generation: int) -> None:
        # Per-process name: two readers may build the same cache at once; the rename is atomic.
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp.npz")
        try:
            np.savez(tmp, generation=np.array(generation), **{f: getattr(self, f) for f in self.FIELDS})
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)  # a full disk: no half-written cache left taking its space
            raise

    @classmethod
    def load(cls, path: Path, generation: int | None) -> "tuple[_Matrix, int] | None":
        """The cached matrix of `generation` (None: of whatever generation it is), with its generation."""
        if not path.exists():
            return None
        try:
            with np.load(path) as z:
                saved = int(z["generation"])
                if generation is not None and saved != generation:
                    return None
                return cls({f: z[f] for f in cls.FIELDS}), saved
        except Exception as exc:  # a torn or foreign cache file (zip, npy or pickle errors)
            log.warning("%s is damaged (%s); rebuilding it from the graph tables", path, type(exc).__name__)
            return None

    def entity_index(self, entity_ids: Sequence[int]) -> np.ndarray:
        idx = np.searchsorted(self.ent_ids, np.asarray(entity_ids, dtype=np.int64))
        ok = (idx < len(self.ent_ids)) & (self.ent_ids[np.minimum(idx, len(self.ent_ids) - 1)] == entity_ids)
        return idx[ok]

    def chunk_index(self, chunk_ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        ids = np.asarray(chunk_ids, dtype=np.int64)
        idx = np.searchsorted(self.chunk_ids, ids)
        ok = (idx < len(self.chunk_ids)) & (self.chunk_ids[np.minimum(idx, len(self.chunk_ids) - 1)] == ids)
        return self.n_e + idx[ok], ok

    def personalized_pagerank(
        self, seeds: np.ndarray, mass: np.ndarray, damping: float, rounds: int, epsilon: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Local (push-style) personalised PageRank: (node indices, scores).

        p = (1 - d) * sum_t d^t P^t r, computed one hop at a time from the restart nodes
        outwards. A node passes its mass on only while it holds at least epsilon per
        edge (Andersen-Chung-Lang's push rule); below that it keeps its own score and
        stops spreading. The work is bounded by rounds/epsilon edge visits whatever the
        size of the graph, so a query costs the same on 4k chunks and on 1M.
        """
        nodes, res = seeds, mass
        out_nodes, out_mass = [], []
        for _ in range(rounds):
            if not len(nodes):
                break
            out_nodes.append(nodes)
            out_mass.append((1 - damping) * res)
            push = res >= epsilon * np.maximum(self.degree_out[nodes], 1)
            nodes, res = nodes[push], res[push]
            if not len(nodes):
                break
            starts, lens = self.indptr[nodes], self.degree_out[nodes]
            total = int(lens.sum())
            if total == 0:
                break
            # Flat positions of every edge of every pushing node, without a Python loop.
            offsets = np.repeat(starts - np.cumsum(lens) + lens, lens) + np.arange(total)
            targets = self.indices[offsets]
            flow = self.data[offsets] * np.repeat(damping * res, lens)
            nodes, inverse = np.unique(targets, return_inverse=True)
            res = np.bincount(inverse, weights=flow, minlength=len(nodes))
        if not out_nodes:
            return np.zeros(0, np.int64), np.zeros(0)
        all_nodes, inverse = np.unique(np.concatenate(out_nodes), return_inverse=True)
        return all_nodes, np.bincount(inverse, weights=np.concatenate(out_mass), minlength=len(all_nodes))




class GraphRetriever:
    """`writing` says whether a write to the store is under way (in any process): each of
    its batches bumps the graph generation, and rebuilding the matrix for each (68 s at
    1M chunks) would stall readers. While it writes, readers keep the matrix they have;
    the writer builds the new one once, when it finishes (`refresh_matrix`)."""

    def __init__(self, sql: SQLiteStore, graph: KnowledgeGraph, settings: GraphSettings | None = None,
                 writing: Callable[[], bool] = lambda: False):
        self.sql = sql
        self.graph = graph
        self.settings = settings or GraphSettings()
        self.writing = writing
        self._matrix: _Matrix | None = None
        self._generation = -1
        self._lock = threading.Lock()

    @property
    def cache_path(self) -> Path:
        return self.sql.directory / MATRIX_NAME

    def matrix(self) -> _Matrix:
        """The matrix to walk: of the current generation, except while a write is under
        way, when the one held (or the last one saved) serves until the writer's is saved."""
        return self._current(stale_ok=True)

    def refresh_matrix(self, budget: int | None = None) -> bool:
        """Build and save the matrix of the store as it is now (the writer, after a write),
        unless building it would take more than `budget` bytes: then the first query builds
        it (and saves it for the others). Returns whether it was built."""
        if budget is not None and (need := _Matrix.build_bytes(self.sql)) > budget:
            with self._lock:
                self._matrix, self._generation = None, -1  # an older generation's: memory back
            log.info("the graph walk's matrix (~%d MB to build) is left for the first query", need >> 20)
            return False
        self._current(stale_ok=False)
        return True

    def _current(self, stale_ok: bool) -> _Matrix:
        gen = self.graph.store.generation
        with self._lock:
            if self._matrix is not None and self._generation == gen:
                return self._matrix
            stale = stale_ok and self.writing()
            if stale and self._matrix is not None:
                return self._matrix  # a write is under way: its last batch is not the last word
            # Another process (the writer, when it finished) may have saved this generation's.
            found = _Matrix.load(self.cache_path, None if stale else gen)
            self._matrix, self._generation = found if found is not None else (self._build(gen), gen)
            return self._matrix

    def _build(self, gen: int) -> _Matrix:
        matrix = _Matrix.build(self.sql, self.settings.relation_weight, self.settings.subject_weight)
        try:
            matrix.save(self.cache_path, gen)
        except OSError:
            pass  # a read-only store: rebuilt in memory next time
        return matrix

    # ------------------------------------------------------------------ linking
    def link(self, question: str) -> list[LinkedEntity]:
        """Entities named in the question: every word n-gram looked up by canonical key
        (directly or through an alias); longest matches win, stop words alone never match."""
        from ..memory.passages import stopwords

        stop = stopwords()
        words = _WORD.findall(question)
        candidates: dict[str, tuple[int, int, str]] = {}
        for n in range(min(self.settings.max_ngram, len(words)), 0, -1):
            for i in range(len(words) - n + 1):
                gram = words[i : i + n]
                if all(w.lower().strip(".'\u2019") in stop for w in gram):
                    continue
                key = canonical_key(" ".join(gram))
                if key and len(key) > 1 and key not in candidates:
                    candidates[key] = (i, i + n, " ".join(gram))
        found = self.graph.store.lookup(list(candidates))
        # Keep the longest non-overlapping matches, left to right.
        spans = sorted(((candidates[k][0], candidates[k][1], k) for k in found), key=lambda s: (-(s[1] - s[0]), s[0]))
        taken: set[int] = set()
        linked = []
        for start, end, key in spans:
            if any(t in taken for t in range(start, end)):
                continue
            taken.update(range(start, end))
            linked.append(LinkedEntity(found[key], key, candidates[key][2]))
        return linked

    # ------------------------------------------------------------------ ranking
    def rank(
        self, question: str, k: int, dense: Sequence[tuple[int, float]] = (), linked: list[LinkedEntity] | None = None
    ) -> GraphRanking:
        s = self.settings
        mat = self.matrix()
        if mat.n == 0:
            return GraphRanking([], [])
        linked = self.link(question) if linked is None else linked
        seeds: list[np.ndarray] = []
        mass: list[np.ndarray] = []
        ent_idx = mat.entity_index([e.entity_id for e in linked])
        if len(ent_idx):
            # A hub ("United States") says less about the question than a rare name.
            w = 1.0 / np.log(np.e + mat.chunks_per_entity[ent_idx])
            seeds.append(ent_idx)
            mass.append(w / w.sum())
        top_dense = list(dense[: s.dense_seeds])
        if top_dense:
            idx, ok = mat.chunk_index([c for c, _ in top_dense])
            scores = np.array([max(sc, 0.0) for _, sc in top_dense])[ok]
            if len(idx) and scores.sum() > 0:
                seeds.append(idx)
                mass.append(s.dense_seed_weight * scores / scores.sum())
        if not seeds:
            return GraphRanking([], linked)
        nodes, inverse = np.unique(np.concatenate(seeds), return_inverse=True)
        restart = np.bincount(inverse, weights=np.concatenate(mass), minlength=len(nodes))
        restart /= restart.sum()
        nodes, scores = mat.personalized_pagerank(nodes, restart, s.damping, s.iterations, s.push_epsilon)
        is_ent = (nodes < mat.n_e) & (scores > 0)
        ent_nodes, ent_scores = nodes[is_ent], scores[is_ent]
        top_e = np.argsort(-ent_scores, kind="stable")[: self.settings.entity_scores]
        entities = {int(mat.ent_ids[ent_nodes[i]]): float(ent_scores[i]) for i in top_e}
        is_chunk = (nodes >= mat.n_e) & (scores > 0)
        nodes, scores = nodes[is_chunk], scores[is_chunk]
        top = np.argsort(-scores, kind="stable")[:k]
        ranked = [(int(mat.chunk_ids[nodes[i] - mat.n_e]), float(scores[i])) for i in top]
        return GraphRanking(ranked, linked, entities)
