"""Graph retrieval: link the question to entities, spread with personalised PageRank.

The walk runs over one sparse matrix of entity and chunk nodes:
- entity — chunk, one edge per mention (a chunk links the entities it mentions);
- entity — entity, one edge per parsed relation (co-occurrence is already carried
  by the shared chunk node).
The restart vector holds the question's entities (hubs damped by 1/log degree) and
the top dense passages, weighted by their scores, as HippoRAG 2 does; chunks are
ranked by the mass they collect. A chunk two or three hops away — sharing no word
with the question but an entity with a passage that does — gets mass this way.
The matrix is built from the tables once per store generation and cached; a query
is a few sparse mat-vecs, not a Python loop over the graph.
"""
from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from ..graph.knowledge import KnowledgeGraph
from ..graph.resolve import canonical_key
from ..memory.store import SQLiteStore

_WORD = re.compile(r"[\w'\u2019.-]+", re.UNICODE)


@dataclass
class GraphSettings:
    damping: float = 0.5  # probability of following an edge (HippoRAG uses 0.5)
    iterations: int = 30
    dense_seeds: int = 5  # top dense passages that join the restart vector
    # Their restart mass next to the question entities' (which sum to 1): the walk starts
    # mostly from what the question names, a little from what dense search found.
    dense_seed_weight: float = 0.2
    relation_weight: float = 1.0
    max_ngram: int = 6


@dataclass
class LinkedEntity:
    entity_id: int
    key: str
    surface: str


@dataclass
class GraphRanking:
    chunks: list[tuple[int, float]]
    linked: list[LinkedEntity] = field(default_factory=list)


class _Matrix:
    """Column-stochastic transition matrix over [entities | chunks], with id maps."""

    def __init__(self, sql: SQLiteStore, relation_weight: float):
        conn = sql.conn
        ent_ids = np.array([r[0] for r in conn.execute("SELECT id FROM entities ORDER BY id")], dtype=np.int64)
        chunk_ids = np.array([r[0] for r in conn.execute("SELECT id FROM chunks ORDER BY id")], dtype=np.int64)
        self.ent_ids, self.chunk_ids = ent_ids, chunk_ids
        n_e, n_c = len(ent_ids), len(chunk_ids)
        self.n_e, self.n = n_e, n_e + n_c
        m = np.array(conn.execute("SELECT entity_id, chunk_id FROM mentions").fetchall(), dtype=np.int64).reshape(-1, 2)
        r = np.array(
            conn.execute("SELECT source_id, target_id FROM relations WHERE kind != 'cooc'").fetchall(), dtype=np.int64
        ).reshape(-1, 2)
        e_row = np.searchsorted(ent_ids, m[:, 0])
        c_row = n_e + np.searchsorted(chunk_ids, m[:, 1])
        rs, rt = np.searchsorted(ent_ids, r[:, 0]), np.searchsorted(ent_ids, r[:, 1])
        rows = np.concatenate([e_row, c_row, rs, rt])
        cols = np.concatenate([c_row, e_row, rt, rs])
        vals = np.concatenate([np.ones(2 * len(m)), np.full(2 * len(r), relation_weight)])
        adj = sp.csr_matrix((vals, (rows, cols)), shape=(self.n, self.n))
        adj.sum_duplicates()
        degree = np.asarray(adj.sum(axis=0)).ravel()
        self.degree = degree
        inv = np.divide(1.0, degree, out=np.zeros_like(degree), where=degree > 0)
        # P[i, j] = A[i, j] / deg(j): mass at j flows to its neighbours.
        self.P = (adj @ sp.diags(inv)).tocsr()
        self.chunks_per_entity = np.diff(adj[:n_e, n_e:].tocsr().indptr) if n_e else np.zeros(0)

    def entity_index(self, entity_ids: Sequence[int]) -> np.ndarray:
        idx = np.searchsorted(self.ent_ids, np.asarray(entity_ids, dtype=np.int64))
        ok = (idx < len(self.ent_ids)) & (self.ent_ids[np.minimum(idx, len(self.ent_ids) - 1)] == entity_ids)
        return idx[ok]

    def chunk_index(self, chunk_ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        ids = np.asarray(chunk_ids, dtype=np.int64)
        idx = np.searchsorted(self.chunk_ids, ids)
        ok = (idx < len(self.chunk_ids)) & (self.chunk_ids[np.minimum(idx, len(self.chunk_ids) - 1)] == ids)
        return self.n_e + idx[ok], ok


class GraphRetriever:
    def __init__(self, sql: SQLiteStore, graph: KnowledgeGraph, settings: GraphSettings | None = None):
        self.sql = sql
        self.graph = graph
        self.settings = settings or GraphSettings()
        self._matrix: _Matrix | None = None
        self._generation = -1
        self._lock = threading.Lock()

    def matrix(self) -> _Matrix:
        gen = self.graph.store.generation
        with self._lock:
            if self._matrix is None or self._generation != gen:
                self._matrix = _Matrix(self.sql, self.settings.relation_weight)
                self._generation = gen
            return self._matrix

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
        restart = np.zeros(mat.n)
        ent_idx = mat.entity_index([e.entity_id for e in linked])
        if len(ent_idx):
            # A hub ("United States") says less about the question than a rare name.
            w = 1.0 / np.log(np.e + mat.chunks_per_entity[ent_idx])
            restart[ent_idx] += w / w.sum()
        seeds = list(dense[: s.dense_seeds])
        if seeds:
            idx, ok = mat.chunk_index([c for c, _ in seeds])
            scores = np.array([max(sc, 0.0) for _, sc in seeds])[ok]
            if len(idx) and scores.sum() > 0:
                restart[idx] += s.dense_seed_weight * scores / scores.sum()
        if restart.sum() == 0:
            return GraphRanking([], linked)
        restart /= restart.sum()
        p = restart.copy()
        for _ in range(s.iterations):
            p = (1 - s.damping) * restart + s.damping * (mat.P @ p)
        chunk_scores = p[mat.n_e :]
        top = np.argsort(-chunk_scores)[:k]
        ranked = [(int(mat.chunk_ids[i]), float(chunk_scores[i])) for i in top if chunk_scores[i] > 0]
        return GraphRanking(ranked, linked)
