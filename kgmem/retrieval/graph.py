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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ..graph.knowledge import KnowledgeGraph
from ..graph.resolve import canonical_key
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
    # (measured flat from 2 to 30 on MuSiQue and HotpotQA; README "Quality").
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


def _fetch_pairs(conn, sql: str, block: int = 1_000_000) -> np.ndarray:
    """Two integer columns as an (n, 2) array, read in blocks: tens of millions of rows
    never exist as Python tuples all at once."""
    cur = conn.cursor()
    cur.row_factory = None  # plain tuples: sqlite3.Row is slow at this count
    cur.execute(sql)
    parts = []
    while rows := cur.fetchmany(block):
        parts.append(np.array(rows, dtype=np.int64).reshape(-1, 2))
    return np.concatenate(parts) if parts else np.zeros((0, 2), np.int64)


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

    @classmethod
    def _build(cls, conn, relation_weight: float, subject_weight: float = 1.0) -> "_Matrix":
        ent_ids = _fetch_pairs(conn, "SELECT id, 0 FROM entities ORDER BY id")[:, 0].copy()
        chunk_ids = _fetch_pairs(conn, "SELECT id, 0 FROM chunks ORDER BY id")[:, 0].copy()
        n_e, n = len(ent_ids), len(ent_ids) + len(chunk_ids)
        m = _fetch_pairs(conn, "SELECT entity_id, chunk_id FROM mentions")
        r = _fetch_pairs(conn, "SELECT source_id, target_id FROM relations WHERE kind != 'cooc'")
        e_row = np.searchsorted(ent_ids, m[:, 0])
        c_row = n_e + np.searchsorted(chunk_ids, m[:, 1])
        rs, rt = np.searchsorted(ent_ids, r[:, 0]), np.searchsorted(ent_ids, r[:, 1])
        # Subject -> passage edges, one way: mass reaching an entity prefers the passages
        # about it; a passage's own mass is not pulled back to its subject.
        subj = _fetch_pairs(conn, "SELECT g.subject_id, c.id FROM graph_documents g "
                                  "JOIN entities e ON e.id = g.subject_id JOIN chunks c ON c.doc_id = g.doc_id")
        s_ent = np.searchsorted(ent_ids, subj[:, 0])
        s_chunk = n_e + np.searchsorted(chunk_ids, subj[:, 1])
        rows = np.concatenate([e_row, c_row, rs, rt, s_chunk])
        cols = np.concatenate([c_row, e_row, rt, rs, s_ent])
        vals = np.ones(len(rows), dtype=np.float32)
        vals[2 * len(m) : 2 * len(m) + 2 * len(r)] = relation_weight
        vals[2 * len(m) + 2 * len(r) :] = subject_weight - 1.0  # on top of the mention edge
        # Distinct chunks per entity: how much of a hub a question entity is.
        pairs = np.unique(e_row * n + c_row)
        chunks_per_entity = np.bincount(pairs // n, minlength=n_e)
        del m, r, e_row, c_row, rs, rt, pairs, subj, s_ent, s_chunk
        adj = sp.csc_matrix((vals, (rows, cols)), shape=(n, n), dtype=np.float32)
        del rows, cols, vals
        adj.sum_duplicates()
        degree = np.asarray(adj.sum(axis=0)).ravel()
        inv = np.divide(1.0, degree, out=np.zeros_like(degree), where=degree > 0)
        # P[i, j] = A[i, j] / deg(j): mass at j flows to its neighbours.
        adj.data *= np.repeat(inv, np.diff(adj.indptr)).astype(np.float32)
        return cls({
            "ent_ids": ent_ids, "chunk_ids": chunk_ids, "indptr": adj.indptr.astype(np.int64),
            "indices": adj.indices.astype(np.int32), "data": adj.data.astype(np.float32),
            "chunks_per_entity": chunks_per_entity.astype(np.int64),
        })

    def save(self, path: Path, generation: int) -> None:
        # Per-process name: two readers may build the same cache at once; the rename is atomic.
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp.npz")
        np.savez(tmp, generation=np.array(generation), **{f: getattr(self, f) for f in self.FIELDS})
        os.replace(tmp, path)

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


MATRIX_NAME = "graph-matrix.npz"


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

    def refresh_matrix(self) -> None:
        """Build and save the matrix of the store as it is now (the writer, after a write)."""
        self._current(stale_ok=False)

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
