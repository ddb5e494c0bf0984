"""Rank chunks for a question: dense (FAISS), lexical (FTS5 BM25) and their fusion."""
from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from ..graph.knowledge import KnowledgeGraph
from ..memory.passages import PassageStore
from .fusion import ranks_of, reciprocal_rank_fusion
from .graph import GraphRetriever, LinkedEntity
from .types import Hit

MODES = ("auto", "dense", "lexical", "hybrid", "graph")
# Weights of each retriever in the default ("auto") fusion; see README "Quality".
AUTO_WEIGHTS = {"dense": 1.0, "lexical": 0.5, "graph": 1.0}


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _background() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="kgmem-lexical")
        return _POOL


class Searcher:
    def __init__(self, passages: PassageStore, graph: KnowledgeGraph | None = None):
        self.passages = passages
        self.graph = GraphRetriever(passages.sql, graph) if graph is not None else None
        self.weights = dict(AUTO_WEIGHTS)
        # Per thread: two threads asking through one Memory must not swap their entities.
        self._local = threading.local()

    @property
    def last_linked(self) -> list[LinkedEntity]:
        """Question entities the last graph ranking on this thread linked."""
        return getattr(self._local, "linked", [])

    @property
    def last_entity_mass(self) -> dict[int, float]:
        """Entity id -> the mass the last graph walk on this thread left on it."""
        return getattr(self._local, "entities", {})

    def candidate_depth(self, k: int) -> int:
        # Fusion needs more than k from each retriever: an item ranked 30th by both
        # can beat one ranked 1st by only one of them.
        return max(50, 5 * k)

    def rankings(self, query: str, k: int, modes: Sequence[str]) -> dict[str, list[tuple[int, float]]]:
        out: dict[str, list[tuple[int, float]]] = {}
        lexical: Future | None = None
        if "lexical" in modes and len(modes) > 1:
            # BM25 runs in SQLite and the query embedding in torch, both without the GIL:
            # overlapping them saves the shorter of the two on every fused query.
            lexical = _background().submit(self.passages.lexical_search, query, k)
        if "dense" in modes:
            out["dense"] = self.passages.dense_search([query], k)[0]
        if lexical is not None:
            out["lexical"] = lexical.result()
        elif "lexical" in modes:
            out["lexical"] = self.passages.lexical_search(query, k)
        if "graph" in modes:
            if self.graph is None:
                raise ValueError("graph search needs the knowledge graph")
            dense = out.get("dense") or self.passages.dense_search([query], self.graph.settings.dense_seeds)[0]
            ranking = self.graph.rank(query, k, dense=dense)
            self._local.linked = ranking.linked
            self._local.entities = ranking.entities
            out["graph"] = ranking.chunks
        return out

    def search(self, query: str, k: int = 10, mode: str = "auto") -> list[Hit]:
        if mode not in MODES:
            raise ValueError(f"unknown search mode {mode!r}; use one of {', '.join(MODES)}")
        if not query.strip():
            return []
        if mode == "auto" and self.graph is None:
            mode = "hybrid"
        if mode in ("hybrid", "auto"):
            parts = ("dense", "lexical") if mode == "hybrid" else tuple(self.weights)
            rankings = self.rankings(query, self.candidate_depth(k), parts)
            weights = None if mode == "hybrid" else self.weights
            fused = reciprocal_rank_fusion(rankings, weights, k=self.passages.config.rrf_k)[:k]
        else:
            rankings = self.rankings(query, k, (mode,))
            fused = rankings[mode][:k]
        return self.to_hits(fused, ranks_of(rankings))

    def to_hits(self, ranked: Sequence[tuple[int, float]], ranks: dict[int, dict[str, int]] | None = None) -> list[Hit]:
        chunks = self.passages.chunks([cid for cid, _ in ranked])
        hits = []
        for cid, score in ranked:
            c = chunks.get(cid)
            if c is None:  # deleted between ranking and reading
                continue
            hits.append(
                Hit(
                    doc_id=c.doc_id, chunk_id=cid, score=float(score), text=c.text, title=c.title,
                    source=c.source, start=c.start, end=c.end, ranks=(ranks or {}).get(cid, {}),
                )
            )
        return hits
