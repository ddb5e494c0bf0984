"""Rank chunks for a question: dense (FAISS), lexical (FTS5 BM25) and their fusion."""
from __future__ import annotations

from collections.abc import Sequence

from ..memory.passages import PassageStore
from .fusion import ranks_of, reciprocal_rank_fusion
from .types import Hit

MODES = ("dense", "lexical", "hybrid")


class Searcher:
    def __init__(self, passages: PassageStore):
        self.passages = passages

    def candidate_depth(self, k: int) -> int:
        # Fusion needs more than k from each retriever: an item ranked 30th by both
        # can beat one ranked 1st by only one of them.
        return max(50, 5 * k)

    def rankings(self, query: str, k: int, modes: Sequence[str]) -> dict[str, list[tuple[int, float]]]:
        out: dict[str, list[tuple[int, float]]] = {}
        if "dense" in modes:
            out["dense"] = self.passages.dense_search([query], k)[0]
        if "lexical" in modes:
            out["lexical"] = self.passages.lexical_search(query, k)
        return out

    def search(self, query: str, k: int = 10, mode: str = "hybrid") -> list[Hit]:
        if mode not in MODES:
            raise ValueError(f"unknown search mode {mode!r}; use one of {', '.join(MODES)}")
        if not query.strip():
            return []
        if mode == "hybrid":
            depth = self.candidate_depth(k)
            rankings = self.rankings(query, depth, ("dense", "lexical"))
            fused = reciprocal_rank_fusion(rankings, k=self.passages.config.rrf_k)[:k]
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
