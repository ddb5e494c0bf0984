"""Citations: an answer's sources narrowed to the sentence that says it (`cite`)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..memory.chunker import sentence_spans
from ..memory.passages import stopwords
from ..retrieval.packer import PackedContext
from .llm import Reply

_WORDS = re.compile(r"\w+", re.UNICODE)


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


def _holds(text: str, answer: str) -> bool:
    """Whether `text` says `answer` (lower case): the phrase itself, or every one of its
    content words, each by its first five letters ("love, faith, strength" in "… stands
    for love, faith and strength"; "LGBT+ folks" in "… help LGBTQ+ folks")."""
    low = text.lower()
    if answer in low:
        return True
    stop = stopwords()
    want = {w[:5] for w in _WORDS.findall(answer) if w not in stop}
    have = set(_WORDS.findall(low))
    return bool(want) and all(any(h.startswith(w) for h in have) for w in want)


def _support(text: str, answer: str, question: str) -> tuple[int, int]:
    """The sentence of `text` the answer stands in: of those naming it (the whole answer,
    or a name's last word: "Hall, who was the first president of …" for "G. Stanley Hall",
    with the sentence before when that one names it in full), the one sharing most words
    with the question; else the one that shares most words with the answer and the question."""
    spans = sentence_spans(text) or [(0, len(text))]
    stop = stopwords()
    asked = {w for w in _WORDS.findall(question.lower()) if w not in stop}
    low, ans = text.lower(), answer.lower()

    def overlap(se: tuple[int, int], want: set[str]) -> int:
        return len(want & set(_WORDS.findall(low[se[0]:se[1]])))

    if ans and ans not in ("yes", "no"):
        found = [(m.start(), m.end()) for m in re.finditer(re.escape(ans), low)]
        naming = [se for se in spans if any(a < se[1] and se[0] < b for a, b in found)]  # (across a cut too)
        last = answer.split()[-1] if len(answer.split()) > 1 else ""
        if naming and last[:1].isupper() and len(last) > 3:
            naming += [se for se in spans if se not in naming and re.search(rf"\b{re.escape(last.lower())}\b",
                                                                               low[se[0]:se[1]])]
        if naming:
            best = max(naming, key=lambda se: (overlap(se, asked), -se[0]))
            i = spans.index(best)
            inside = [a for a, b in found if a < best[1] and best[0] < b]
            before = [a for a, b in found if spans[max(i - 2, 0)][0] <= a < best[0]]
            start = min(inside) if inside else before[-1] if before else best[0]
            # the name in full, begun before a cut ("G. | Stanley Hall") or just before the sentence
            return next(s for s, e in spans if s <= start < e), best[1]
    want = {w for w in _WORDS.findall(f"{answer} {answer} {question}".lower()) if w not in stop}
    return max(spans, key=lambda se: len(want & set(_WORDS.findall(text[se[0]:se[1]].lower()))))


def _cover(text: str, answer: str, start: int, end: int) -> int:
    """Extend a sentence span so that it holds the whole answer when the answer begins in
    it but runs past its end (a splitter that cut after an initial: "G. | Stanley Hall")."""
    low = answer.lower()
    if not low or low in ("yes", "no"):
        return end
    pos = text.lower().find(low, start)
    if not 0 <= pos < end or pos + len(low) <= end:
        return end
    last = pos + len(low)
    return next((e for s, e in sentence_spans(text) if s <= last - 1 < e), last)


def cite(reply: Reply, context: PackedContext, question: str) -> list[AnswerCitation]:
    """The reply's sources as citations, each narrowed to its supporting sentence. A
    reply that names no valid source is attributed to the packed passage holding it."""
    if not reply.found:
        return []
    valid = [n for n in reply.sources if context.source(n) is not None and context.source(n).text]
    low = reply.answer.lower()
    if low and low not in ("yes", "no") and not any(_holds(context.source(n).text, low) for n in valid):
        # The model cited the passage that led to the answer (a multi-hop bridge) or one
        # near it, but not the one that says it: add the first packed passage that does.
        # The 1.5B model answered "love, faith, strength" citing the turn that asked about
        # the necklace, not the one that says "it stands for love, faith and strength";
        # whose fact an answer is (conversations.people) is read from what it cites.
        holding = [s for s in context.sources if s.packed and _holds(s.text, low)]
        valid += [holding[0].n] if holding else []
    given = {n: (s, e) for n, s, e in reply.support}
    out = []
    for n in valid:
        src = context.source(n)
        s, e = given.get(n) or _support(src.text, reply.answer, question)
        e = _cover(src.text, reply.answer, s, e)
        quote = src.text[s:e].strip()
        lead = len(src.text[s:e]) - len(src.text[s:e].lstrip())
        out.append(AnswerCitation(n, src.doc_id, src.chunk_id, src.title, src.start + s + lead,
                                  src.start + s + lead + len(quote), quote))
    return out
