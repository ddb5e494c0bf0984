"""Rank chunks for a question: dense (FAISS), lexical (FTS5 BM25) and their fusion."""
from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from ..graph.knowledge import KnowledgeGraph
from ..memory.passages import PassageStore
from .fusion import ranks_of, reciprocal_rank_fusion
from .graph import GraphRanking, GraphRetriever, LinkedEntity
from .types import Hit

MODES = ("auto", "dense", "lexical", "hybrid", "graph")
# The default ("auto") fusion: each retriever's vote, and the RRF constant of the graph
# walk's ranking (the others use the config's rrf_k, 60). The walk's first passages are
# its best (it ranks by the mass the question's entities send them, which falls off
# fast); a smaller constant lets them count more. See README@f5760d8 "Quality".
AUTO_WEIGHTS = {"dense": 1.0, "lexical": 1.0, "graph": 1.0}
AUTO_RRF_K = {"graph": 25}


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _background() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="kgmem-lexical")
        return _POOL


@dataclass
class Retrieval:
    """One question's ranking, with what the graph retriever linked and walked to: returned
    together, so no state is left on the searcher for another thread to read."""

    hits: list[Hit]
    linked: list[LinkedEntity] = field(default_factory=list)  # the question's entities
    entity_mass: dict[int, float] = field(default_factory=dict)  # entity id -> the walk's mass on it


class Searcher:
    def __init__(self, passages: PassageStore, graph: KnowledgeGraph | None = None,
                 writing: Callable[[], bool] = lambda: False):
        self.passages = passages
        self.graph = GraphRetriever(passages.sql, graph, writing=writing) if graph is not None else None
        self.weights = dict(AUTO_WEIGHTS)

    def candidate_depth(self, k: int) -> int:
        # Fusion needs more than k from each retriever: an item ranked 30th by both
        # can beat one ranked 1st by only one of them.
        return max(50, 5 * k)

    def rankings(
        self, query: str, k: int, modes: Sequence[str]
    ) -> tuple[dict[str, list[tuple[int, float]]], GraphRanking | None]:
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
        ranking = None
        if "graph" in modes:
            if self.graph is None:
                raise ValueError("graph search needs the knowledge graph")
            dense = out.get("dense") or self.passages.dense_search([query], self.graph.settings.dense_seeds)[0]
            ranking = self.graph.rank(query, k, dense=dense)
            out["graph"] = ranking.chunks
        return out, ranking

    def search(self, query: str, k: int = 10, mode: str = "auto") -> list[Hit]:
        return self.retrieve(query, k, mode).hits

    def retrieve(self, query: str, k: int = 10, mode: str = "auto") -> Retrieval:
        """`search`, with the question's linked entities and the graph walk's entity mass
        (modes without the graph walk link the entities only)."""
        if mode not in MODES:
            raise ValueError(f"unknown search mode {mode!r}; use one of {', '.join(MODES)}")
        if not query.strip():
            return Retrieval([])
        if mode == "auto" and self.graph is None:
            mode = "hybrid"
        if mode in ("hybrid", "auto"):
            parts = ("dense", "lexical") if mode == "hybrid" else tuple(self.weights)
            rankings, graph = self.rankings(query, self.candidate_depth(k), parts)
            weights, k_of = (None, None) if mode == "hybrid" else (self.weights, AUTO_RRF_K)
            fused = reciprocal_rank_fusion(rankings, weights, k=self.passages.config.rrf_k, k_of=k_of)[:k]
        else:
            rankings, graph = self.rankings(query, k, (mode,))
            fused = rankings[mode][:k]
        hits = self.to_hits(fused, ranks_of(rankings))
        if graph is not None:
            return Retrieval(hits, graph.linked, graph.entities)
        return Retrieval(hits, self.graph.link(query) if self.graph is not None else [])

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
