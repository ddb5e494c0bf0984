"""Ask: retrieve → facts around the question's entities → pack → answer → resolve citations."""
from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..graph.knowledge import Fact, KnowledgeGraph
from ..retrieval.graph import LinkedEntity
from ..retrieval.packer import ContextReport, PackedContext, Packer
from ..retrieval.search import Searcher
from ..retrieval.types import Hit
from .llm import CITATION, Backend

OnToken = Callable[[str], None]


@dataclass
class AnswerCitation:
    n: int
    doc_id: str
    chunk_id: int
    title: str
    start: int  # character span in the document that supports the answer
    end: int
    quote: str

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Answer:
    question: str
    text: str
    citations: list[AnswerCitation]
    passages: list[Hit]
    facts: list[Fact]
    context_report: ContextReport
    timings: dict[str, float]
    backend: str = ""
    context: PackedContext | None = field(default=None, repr=False)
    entities: list[LinkedEntity] = field(default_factory=list)  # the question's entities, as linked

    def as_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "answer": self.text,
            "citations": [c.as_dict() for c in self.citations],
            "passages": [h.as_dict() for h in self.passages],
            "facts": [f.as_dict() for f in self.facts],
            "context": self.context_report.as_dict(),
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
            "backend": self.backend,
            "entities": [e.surface for e in self.entities],
        }


def facts_for(graph: KnowledgeGraph, entity_ids: list[int], limit: int = 40, scan: int = 500) -> list[Fact]:
    """Parsed relations touching the question's entities, best supported first.

    At most `scan` relation rows are read: a hub entity in a large store has tens of
    thousands, and the packer keeps only a few facts anyway."""
    if not entity_ids:
        return []
    marks = ",".join("?" * len(entity_ids))
    rows = graph.sql.conn.execute(
        f"SELECT id FROM relations WHERE kind != 'cooc' AND (source_id IN ({marks}) OR target_id IN ({marks})) "
        "LIMIT ?", [*entity_ids, *entity_ids, scan],
    ).fetchall()
    return graph.facts([r[0] for r in rows])[:limit]


def resolve_citations(text: str, context: PackedContext) -> list[AnswerCitation]:
    """Each [n] in the answer → its document span. Where the words just before the
    marker stand verbatim in the source, the span narrows to them."""
    out: dict[int, AnswerCitation] = {}
    last = 0
    for m in CITATION.finditer(text):
        n = int(m.group(1))
        claim = re.sub(r"(\[\d+\]\s*)+$", "", text[last : m.start()]).strip()
        last = m.end()
        src = context.source(n)
        if src is None:
            continue  # the model cited a number it was not given
        start, end, quote = src.start, src.end, src.text
        if claim and src.text:
            pos = src.text.find(claim)
            if pos >= 0:
                start, end, quote = src.start + pos, src.start + pos + len(claim), claim
        if n not in out or (end - start) < (out[n].end - out[n].start):
            out[n] = AnswerCitation(n, src.doc_id, src.chunk_id, src.title, start, end, quote)
    return [out[n] for n in sorted(out)]


def attribute(text: str, context: PackedContext, min_overlap: float = 0.5) -> str:
    """Add [n] after answer sentences that cite nothing, where one packed passage holds
    most of the sentence's content words. Small models often forget to cite."""
    from ..memory.chunker import sentence_spans
    from ..memory.passages import stopwords

    stop = stopwords()
    packed = [s for s in context.sources if s.packed]
    if not packed:
        return text
    words_of = {s.n: set(re.findall(r"\w+", s.text.lower())) for s in packed}
    out, last = [], 0
    for start, end in sentence_spans(text):
        sentence = text[start:end]
        out.append(text[last:end])
        last = end
        if CITATION.search(sentence):
            continue
        content = {w for w in re.findall(r"\w+", sentence.lower()) if w not in stop}
        if not content:
            continue
        best = max(packed, key=lambda s: len(content & words_of[s.n]))
        if len(content & words_of[best.n]) / len(content) >= min_overlap:
            out.append(f" [{best.n}]")
    out.append(text[last:])
    return "".join(out)


@dataclass
class Prepared:
    hits: list[Hit]
    linked: list[LinkedEntity]
    context: PackedContext
    timings: dict[str, float]


def prepare(
    searcher: Searcher,
    graph: KnowledgeGraph,
    backend: Backend,
    question: str,
    *,
    k: int = 8,
    mode: str = "auto",
    window: int | None = None,
    answer_tokens: int = 256,
) -> Prepared:
    """Retrieve and pack, without generating: everything up to the LLM call."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    hits = searcher.search(question, k=k, mode=mode)
    timings["retrieve"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    if mode in ("auto", "graph"):
        linked = searcher.last_linked
    else:
        linked = searcher.graph.link(question) if searcher.graph is not None else []
    facts = facts_for(graph, [e.entity_id for e in linked])
    packer = Packer(backend.count_tokens, window or backend.context_window, answer_tokens, render=backend.render)
    context = packer.pack(question, hits, facts)
    untitled = [s for s in context.sources if not s.title]
    if untitled:  # sources cited only through a fact: name them for the reader
        found = searcher.passages.chunks([s.chunk_id for s in untitled])
        for src in untitled:
            if src.chunk_id in found:
                src.title, src.source = found[src.chunk_id].title, found[src.chunk_id].source
    timings["pack"] = time.perf_counter() - t1
    return Prepared(hits, list(linked), context, timings)


def answer(prep: Prepared, backend: Backend, question: str, *, answer_tokens: int = 256,
           on_token: OnToken | None = None) -> Answer:
    """Generate from a prepared context and resolve the [n] citations."""
    context, timings = prep.context, prep.timings
    t0 = time.perf_counter()
    text = backend.answer(question, context, answer_tokens, on_token)
    timings["generate"] = time.perf_counter() - t0
    if not CITATION.search(text):
        text = attribute(text, context)
    timings["total"] = timings["retrieve"] + timings["pack"] + timings["generate"]
    included = set(context.report.included)
    return Answer(
        question=question,
        text=text,
        citations=resolve_citations(text, context),
        passages=[h for h in prep.hits if h.chunk_id in included],
        facts=context.facts,
        context_report=context.report,
        timings=timings,
        backend=getattr(backend, "name", type(backend).__name__),
        context=context,
        entities=prep.linked,
    )
