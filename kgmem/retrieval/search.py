"""Rank chunks for a question: dense (FAISS), lexical (FTS5 BM25) and their fusion."""
from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from ..graph.knowledge import KnowledgeGraph
from ..memory.passages import PassageStore
from .fusion import ranks_of, reciprocal_rank_fusion
from . import tuning
from .graph import GraphRanking, GraphRetriever, LinkedEntity
from .tuning import FIXED_K, RANKERS, FusionTuning, parse_fusion
from .types import Hit

MODES = ("auto", "dense", "lexical", "hybrid", "graph")
# The per-question guard: when BM25's best passage scores GUARD_RATIO times its second (or is
# the only passage holding the question's words: a rare identifier, a name), it leads the
# fused ranking whatever the other rankers say. On a store whose own measurement found BM25
# the leading ranker (retrieval/tuning.py) the bar is lower and its second passage may lead
# too, while it stands as far above the next. Measured on MuSiQue, HotpotQA, Python's docs
# and QMSum (benchmarks/eval_fusion.py): on the Wikipedia sets a lower bar or a second
# leader cost R@2; where BM25 leads they gained it.
GUARD_RATIO = 1.2
GUARD_LEAD = 1
GUARD_RATIO_BM25_LEADS = 1.05
GUARD_LEAD_BM25_LEADS = 2


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
        self._tuning: tuple[str | None, FusionTuning] = (None, FusionTuning())

    def fusion(self) -> FusionTuning:
        """How `auto` fuses: the votes given in `Config.fusion`, else the store's own
        measurement (`retrieval/tuning.py`), else the fixed votes."""
        given = parse_fusion(self.passages.config.fusion)
        if given is not None:
            return given
        raw = self.passages.sql.get_meta(tuning.META_KEY)
        if raw != self._tuning[0]:
            self._tuning = (raw, tuning.load(self.passages.sql) or FusionTuning())
        return self._tuning[1]

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
        if mode == "hybrid":
            rankings, graph = self.rankings(query, self.candidate_depth(k), ("dense", "lexical"))
            fused = reciprocal_rank_fusion(rankings, None, k=self.passages.config.rrf_k)[:k]
        elif mode == "auto":
            fusion = self.fusion()
            # the walk always runs: its linked entities and mass feed hops, facts and packing
            parts = tuple(r for r in RANKERS if fusion.weights[r] > 0 or r == "graph")
            rankings, graph = self.rankings(query, self.candidate_depth(k), parts)
            rrf_k = self.passages.config.rrf_k
            k_of = {r: (rrf_k if kk == FIXED_K[r] and r != "graph" else kk) for r, kk in fusion.k.items()}
            leads = fusion.k["lexical"] < FIXED_K["lexical"]  # this store's measurement: BM25 leads
            fused = guard(reciprocal_rank_fusion(rankings, fusion.weights, k=rrf_k, k_of=k_of),
                          rankings.get("lexical", []) if fusion.weights["lexical"] > 0 else [],
                          GUARD_RATIO_BM25_LEADS if leads else GUARD_RATIO,
                          GUARD_LEAD_BM25_LEADS if leads else GUARD_LEAD)[:k]
        else:
            rankings, graph = self.rankings(query, k, (mode,))
            fused = rankings[mode][:k]
        hits = self.to_hits(fused, ranks_of(rankings))
        if graph is not None:
            return Retrieval(hits, graph.linked, graph.entities)
        return Retrieval(hits, self.graph.link(query) if self.graph is not None else [])

    def tune(self, stopwords: frozenset[str] = frozenset()) -> FusionTuning:
        """Measure this store's rankers on its own pseudo-questions and save the fusion they
        give in the store (the writer calls it after an ingest that grew the store)."""
        measured = tuning.tune(self, stopwords=stopwords)
        tuning.save(self.passages.sql, measured)
        return measured

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


def guard(fused: list[tuple[int, float]], lexical: Sequence[tuple[int, float]], ratio: float = GUARD_RATIO,
          most: int = GUARD_LEAD) -> list[tuple[int, float]]:
    """BM25's first passage leads the fused ranking when it scores `ratio` times its second
    (or is the only one); so do the next ones, up to `most`, while each stands as far above
    its successor."""
    if not lexical or not fused:
        return fused
    scores = [s for _, s in lexical[: most + 1]]
    if len(scores) > 1 and not (scores[1] > 0 and scores[0] >= ratio * scores[1]):
        return fused
    lead = [lexical[0][0]]
    for i in range(1, min(most, len(scores) - 1)):
        if not (scores[i + 1] > 0 and scores[i] >= ratio * scores[i + 1]):
            break
        lead.append(lexical[i][0])
    if [c for c, _ in fused[: len(lead)]] == lead:
        return fused
    top = fused[0][1]
    led = [(c, top + 1e-9 * (len(lead) - i)) for i, c in enumerate(lead)]  # scores stay in order
    return led + [(c, s) for c, s in fused if c not in lead]
