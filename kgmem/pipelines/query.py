"""Ask: retrieve → facts around the question's entities → pack → answer → resolve citations."""
from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..graph.knowledge import Fact, KnowledgeGraph
from ..retrieval.graph import LinkedEntity
from ..retrieval.packer import ContextReport, PackedContext, Packer, asking
from ..retrieval.search import Searcher
from ..retrieval.types import Hit
from ..memory.passages import stopwords
from .citations import AnswerCitation, cite
from .hops import Hop, answered_a_step, bridge_facts, echoes, follow, merge, relation_words
from .llm import Backend, Reply
from .llm.questions import explains


OnToken = Callable[[str], None]


@dataclass
class Answer:
    """What `Memory.ask` returns: a short answer, the passages and facts it was given, and
    where each of its `[n]` markers points.

    Attributes:
        question: The question as asked.
        text: The answer with the markers it rests on, e.g. `"G. Stanley Hall [2]"`.
        citations: One `AnswerCitation` per marker: its number, document id, the span
            `start:end` of the supporting sentence and the quoted text.
        passages: The passages packed for the model, in the order it read them (`Hit`s).
        facts: The graph facts packed beside them.
        context_report: Tokens per section of the packed prompt, and what did not fit.
        timings: Seconds per step (`retrieve`, `pack`, `answer`, …).
        backend: The backend that answered (`llama:qwen2.5-1.5b`, `extractive`, `openai:…`).
        context: The packed prompt itself (`PackedContext`; `source(n)` maps a marker to its chunk).
        entities: The question's entities as linked to the graph.
        short: The answer alone, without markers (`"G. Stanley Hall"`).
        found: False when memory does not hold the answer (`text` is then "not in memory").
        support: The sentence(s) of the cited passages the answer stands in.
        usage: Prompt, cached and completion tokens, and seconds to the first token.
        notices: Things the user should know (the question was trimmed, an answer changed …).
        hops: The question followed one hop at a time (`Hop(phrase, asked, bridge, question)`).
    """

    question: str
    text: str  # the short answer with the [n] it rests on: "G. Stanley Hall [2]"
    citations: list[AnswerCitation]
    passages: list[Hit]
    facts: list[Fact]
    context_report: ContextReport
    timings: dict[str, float]
    backend: str = ""
    context: PackedContext | None = field(default=None, repr=False)
    entities: list[LinkedEntity] = field(default_factory=list)  # the question's entities, as linked
    short: str = ""  # the answer alone, without markers ("G. Stanley Hall")
    found: bool = True  # False: memory does not hold the answer ("not in memory")
    support: str = ""  # the sentence(s) of the cited passages the answer stands in
    usage: dict[str, Any] = field(default_factory=dict)  # prompt/cached/completion tokens, first token (s)
    notices: list[str] = field(default_factory=list)  # e.g. the question was trimmed to fit
    hops: list[Hop] = field(default_factory=list)  # the question followed one hop at a time

    def as_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "answer": self.text,
            "short": self.short,
            "found": self.found,
            "support": self.support,
            "citations": [c.as_dict() for c in self.citations],
            "passages": [h.as_dict() for h in self.passages],
            "facts": [f.as_dict() for f in self.facts],
            "context": self.context_report.as_dict(),
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
            "usage": self.usage,
            "backend": self.backend,
            "entities": [e.surface for e in self.entities],
            "notices": self.notices,
            "hops": [h.as_dict() for h in self.hops],
        }


_ARTICLE = re.compile(r"^(?:the|a|an)\s+", re.IGNORECASE)


def named_in(question: str, linked: list[LinkedEntity]) -> list[LinkedEntity]:
    """The linked entities the question names (a proper name, a title, a year), not the
    common nouns it uses ("president", "the country", "a state"): spaCy's labels cannot
    tell them apart ("the state" comes back as ORG, "the Tekeze River" as a noun phrase),
    the question's capitals can. A question typed all in lower case keeps them all."""
    if not any(ch.isupper() for ch in question[1:]):
        return list(linked)
    heads = [_ARTICLE.sub("", e.surface.strip())[:1] for e in linked]
    return [e for e, head in zip(linked, heads) if head.isupper() or head.isdigit()]


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


@dataclass
class Prepared:
    hits: list[Hit]
    linked: list[LinkedEntity]
    context: PackedContext
    timings: dict[str, float]
    notices: list[str] = field(default_factory=list)
    question: str = ""  # as packed (trimmed when it was longer than the window allows)
    hops: list[Hop] = field(default_factory=list)


def _fit_question(question: str, count: Callable[[str], int], limit: int) -> tuple[str, str | None]:
    """A question longer than `limit` tokens is cut (at a word) to fit, with a notice."""
    n = count(question)
    if n <= limit:
        return question, None
    cut = question
    while count(cut) > limit and len(cut) > 1:
        cut = cut[: int(len(cut) * limit / max(count(cut), 1) * 0.95)].rsplit(" ", 1)[0] or cut[: len(cut) // 2]
    return cut, f"the question ({n} tokens) was trimmed to {count(cut)} tokens to fit the context window"


# Room for an explanation's reply (at most 60 words, its JSON and sources) and its longer
# instructions, where a phrase needs `answer_tokens` (64).
EXPLAIN_TOKENS = 192


def answer_room(question: str, answer_tokens: int) -> int:
    """Tokens kept for the reply: more for a question answered by an explanation."""
    return max(answer_tokens, EXPLAIN_TOKENS) if explains(question) else answer_tokens


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
    fact_share: float = 0.0,
    hops: int = 0,
    reader: Backend | None = None,
    bridge: bool = True,
) -> Prepared:
    """Retrieve and pack, without generating: everything up to the LLM call. With `hops`
    and a `reader` (the no-LLM reader), the question is also followed hop by hop and each
    rewritten question's best passages join the packed ones (pipelines/hops.py); with
    `bridge`, a chat model's prompt also gets the graph's facts about the last hop's
    bridge (`hop_facts`), room kept for them."""
    if not question or not question.strip():
        raise ValueError("the question is empty")
    window = window or backend.context_window
    answer_tokens = answer_room(question, answer_tokens)
    question, notice = _fit_question(question.strip(), backend.count_tokens, max(16, (window - answer_tokens) // 3))
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    retrieved = searcher.retrieve(question, k=k, mode=mode)
    hits, linked, mass = retrieved.hits, retrieved.linked, retrieved.entity_mass
    timings["retrieve"] = time.perf_counter() - t0
    followed: list[Hop] = []
    if hops and reader is not None:
        t = time.perf_counter()
        followed = follow(question, graph.parser(), lambda asked: _read(searcher, graph, reader, asked, k, mode), hops)
        if followed:
            hits = merge(hits, [searcher.search(h.question, k=k, mode=mode) for h in followed], k)
        timings["hops"] = time.perf_counter() - t
    t1 = time.perf_counter()
    # Facts only about what the question names: facts a common noun brought in ("Hymans |
    # become | president", "Thailand | be | country") were what the 1.5B model answered with
    # (README@f5760d8, "Graph facts").
    facts = facts_for(graph, [e.entity_id for e in named_in(question, linked)])
    first: list[Fact] = []
    if bridge and followed and getattr(backend, "follows_hops", False) and not explains(question):
        first = hop_facts(graph, followed[-1])
        facts = first + [f for f in facts if (f.subject, f.predicate, f.object) not in
                         {(b.subject, b.predicate, b.object) for b in first}]
    packer = Packer(backend.count_tokens, window, answer_tokens, render=backend.render, fact_share=fact_share,
                    instructions=getattr(backend, "instructions", None) or None)
    context = packer.pack(question, hits, facts, fact_floor=FACT_TOKENS * len(first))
    context.form = "explain" if explains(question) else "phrase"
    untitled = [s for s in context.sources if not s.title]
    if untitled:  # sources cited only through a fact: name them (and quote the fact's sentence)
        found = searcher.passages.chunks([s.chunk_id for s in untitled])
        for src in untitled:
            if src.chunk_id in found:
                c = found[src.chunk_id]
                src.title, src.source = c.title, c.source
                src.text = c.text[max(src.start - c.start, 0) : max(src.end - c.start, 0)]
    if getattr(backend, "needs_graph", False):
        context.mentions = graph.mentions_in(context.report.included)
        context.entity_mass = dict(mass)
        context.rewritten = [h.question for h in followed]
    timings["pack"] = time.perf_counter() - t1
    return Prepared(hits, list(linked), context, timings, [notice] if notice else [], question, followed)


# Tokens a bridge fact's line takes, about ("- G. Stanley Hall | president of | American
# Psychological Association [4]"): the room the packer keeps for them.
FACT_TOKENS = 24


def hop_facts(graph: KnowledgeGraph, last: Hop) -> list[Fact]:
    """The graph's facts about the last hop's bridge that share a word with what the
    rewritten question still asks of it (pipelines/hops.bridge_facts)."""
    eid = graph.resolve(last.bridge)
    facts = facts_for(graph, [eid]) if eid is not None else []
    return bridge_facts(facts, relation_words(last.question, last.bridge, stopwords()))


# The window a hop's phrase is read in (the no-LLM reader's measured setting, README@f5760d8).
HOP_WINDOW = 2048


def _read(searcher: Searcher, graph: KnowledgeGraph, reader: Backend, asked: str, k: int, mode: str) -> str | None:
    """The no-LLM reader's answer to one hop's phrase, or None."""
    prep = prepare(searcher, graph, reader, asked, k=k, mode=mode, window=HOP_WINDOW)
    reply = reader.read(asked, prep.context, kinds=False)
    return reply.answer if reply.found else None


def _generate(backend: Backend, question: str, context: PackedContext, answer_tokens: int,
              on_token: OnToken | None, cancel: threading.Event | None) -> Reply:
    if cancel is None:  # (backends written before `cancel` existed still work)
        return backend.answer(question, context, answer_tokens, on_token)
    return backend.answer(question, context, answer_tokens, on_token, cancel=cancel)


def _instead(first: Reply, second: Reply, on_token: OnToken | None) -> Reply:
    """A second reply taken in place of the first: streamed as " → …", the two calls' tokens
    counted together, the first token the first call's."""
    if on_token:
        on_token(f" → {second.answer}")
    second.prompt_tokens += first.prompt_tokens
    second.cached_tokens += first.cached_tokens
    second.completion_tokens += first.completion_tokens
    second.first_token = first.first_token
    return second


def answer(prep: Prepared, backend: Backend, question: str, *, answer_tokens: int = 256,
           on_token: OnToken | None = None, cancel: threading.Event | None = None) -> Answer:
    """Generate from a prepared context: a short answer, cited to its supporting sentence.
    `cancel`, once set, stops the model at its next token (`Cancelled` is raised)."""
    context, timings = prep.context, prep.timings
    notices = list(prep.notices)
    if context.form == "explain":
        answer_tokens = max(answer_tokens, EXPLAIN_TOKENS)
    t0 = time.perf_counter()
    reply = _generate(backend, question, context, answer_tokens, on_token, cancel)
    if not reply.found and hasattr(backend, "yes_or_no"):
        verdict = backend.yes_or_no(question, context, answer_tokens, cancel)
        if verdict is not None:
            notices.append("declined at first, though the passages name all the question does: asked for yes or no")
            reply = _instead(reply, verdict, on_token)
    step, why = None, ""
    if reply.found and prep.hops and getattr(backend, "follows_hops", False) and context.form != "explain":
        step, why = answered_a_step(reply.answer, prep.hops), "answers a step of the question"
        if step is None and echoes(reply.answer, question):
            step, why = prep.hops[-1], "is named in the question"
    if step is not None:
        # The model answered one of the question's steps ("American Psychological Association"
        # for its first president), or with a name the question starts from: ask again past
        # the step, over the same passages, so only the question line is new to the prompt
        # cache (README@f5760d8, "Hops").
        again = _generate(backend, step.question, asking(context, step.question), answer_tokens, None, cancel)
        if again.found and answered_a_step(again.answer, [step]) is None and not echoes(again.answer, question):
            notices.append(f'"{reply.answer}" {why}; asked past it: {step.question}')
            reply = _instead(reply, again, on_token)
    timings["generate"] = time.perf_counter() - t0
    citations = cite(reply, context, question)
    text = reply.answer + (" " + "".join(f"[{c.n}]" for c in citations) if citations else "")
    timings["total"] = timings["retrieve"] + timings.get("hops", 0.0) + timings["pack"] + timings["generate"]
    included = set(context.report.included)
    usage = {"prompt_tokens": reply.prompt_tokens or context.prompt_tokens, "cached_tokens": reply.cached_tokens,
             "completion_tokens": reply.completion_tokens,
             "first_token_s": round(reply.first_token if reply.first_token is not None else timings["generate"], 4)}
    return Answer(
        question=question,
        text=text,
        citations=citations,
        passages=[h for h in prep.hits if h.chunk_id in included],
        facts=context.facts,
        context_report=context.report,
        timings=timings,
        backend=getattr(backend, "name", type(backend).__name__),
        context=context,
        entities=prep.linked,
        short=reply.answer,
        found=reply.found,
        support=" ".join(c.quote for c in citations),
        usage=usage,
        notices=notices,
        hops=list(prep.hops),
    )
