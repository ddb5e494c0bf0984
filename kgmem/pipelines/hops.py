"""Following a multi-hop question one hop at a time, with no LLM.

"Who was in charge of the country where the composer of Aschenbrodel was a citizen?"
names one thing; the passage that answers it is about something the question never
names (Austria), two steps away. One search for the whole question finds the first hop
and seldom the last (README@f5760d8, "Where it still misses"). So the question's innermost
phrase around a name ("the composer of Aschenbrodel": a noun whose relative clause,
"of" phrase or possessive holds the name) is asked on its own, the no-LLM reader
answers it ("Johann Strauss II"), the phrase is replaced by that answer ("… the country
where Johann Strauss II was a citizen?") and the new question is searched; then again,
for as many hops as allowed. The passages each rewritten question finds first join the
whole question's best ones (`merge`). The phrase comes from spaCy's dependency parse of
the question: no model call, a fraction of a second a hop.
"""
from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..retrieval.types import Hit

_WH = {"who", "whom", "whose", "what", "which", "where", "when", "why", "how"}
# How a phrase's head noun holds the name below it: "the country [where X is]" (relcl),
# "the author [of X]" (prep), "[X's] director" (poss), "the company [X is part of]" (acl).
_LINKS = {"relcl", "prep", "poss", "acl"}
# The whole question's best passages kept ahead of each hop's (the first hop is usually
# among them), and the passages each hop's rewritten question adds: MuSiQue's 200, recall
# of the supporting documents at 5 / 10 passages 64.6 / 72.1 → 68.0 / 77.6 (README@f5760d8, "Hops").
KEEP = 3
PER_HOP = 2
_PARSE_LOCK = threading.Lock()


@dataclass
class Hop:
    phrase: str  # the part of the question asked on its own: "the composer of Aschenbrodel"
    asked: str  # as asked: "Which composer is the composer of Aschenbrodel?"
    bridge: str  # the reader's answer: "Johann Strauss II"
    question: str  # the question with the phrase replaced by the bridge, as searched

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _relative(token: Any) -> bool:
    """A wh-word that opens a relative clause ("the city *where* …", "the county in *which* …"),
    not one that asks ("formed in *what* year")."""
    for above in token.ancestors:
        if above.dep_ in ("relcl", "acl"):
            first = next(iter(above.subtree))
            return token.i == first.i or (token.i == first.i + 1 and first.dep_ == "prep")
    return False


def inner_phrase(doc: Any) -> tuple[int, int, str] | None:
    """(start, end, head noun) of the smallest noun phrase of a parsed question that holds a
    name below its head — the question's innermost hop — or None: no name, the phrase is
    the whole question ("Who is the wife of Kim Jong-chul?" is one hop), or it holds the
    question's unknown ("the Adelaide team that was formed in what year")."""
    names = {i for e in doc.ents if e.label_ != "ORDINAL" for i in range(e.start, e.end)}
    names |= {t.i for t in doc if t.pos_ == "PROPN" and t.i > 0}
    best: tuple[int, int, str] | None = None
    for i in sorted(names):
        cur = doc[i]
        while cur.head.i != cur.i:  # up the tree to the first noun that holds the name
            head = cur.head
            if head.pos_ == "NOUN" and head.i not in names and head.lower_ not in _WH and cur.dep_ in _LINKS:
                span = list(head.subtree)
                start, end = span[0].i, span[-1].i + 1
                asks = any(t.lower_ in _WH and not _relative(t) for t in span)  # the unknown: not a hop
                if not asks and (best is None or end - start < best[1] - best[0]):
                    best = (start, end, head.text)
                break
            cur = head
    if best is None:
        return None
    rest = [t for t in doc if not best[0] <= t.i < best[1] and not t.is_punct and t.lower_ not in _WH
            and t.pos_ not in ("AUX", "DET", "ADP", "PRON")]
    return best if rest else None  # "Who was [the first president of X]?": the question itself


def follow(question: str, parse: Callable[[str], Any], read: Callable[[str], str | None],
           max_hops: int = 2) -> list[Hop]:
    """The hops of `question`: each innermost phrase asked on its own (`read` answers it, or
    None), replaced by its answer, until no phrase is left, the reader has no answer or
    `max_hops` are taken."""
    hops: list[Hop] = []
    current = question
    for _ in range(max_hops):
        with _PARSE_LOCK:  # one spaCy pipeline per process, shared by every thread
            doc = parse(current)
        found = inner_phrase(doc)
        if found is None:
            break
        start, end, head = found
        phrase = doc[start:end].text
        asked = f"Which {head} is {phrase}?"
        bridge = (read(asked) or "").strip()
        if not bridge or bridge.lower() in phrase.lower():
            break
        current = re.sub(r" ([?.,!;:])", r"\1", " ".join(p for p in (doc[:start].text, bridge, doc[end:].text) if p))
        hops.append(Hop(phrase, asked, bridge, current))
    return hops


def _key(text: str) -> str:
    return re.sub(r"^(?:the|a|an) ", "", " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split()))


def answered_a_step(answer: str, hops: list[Hop]) -> Hop | None:
    """The hop whose bridge `answer` is, or None. A hop's bridge answers a phrase inside the
    question ("the association which published Journal of Psychotherapy Integration" →
    "American Psychological Association"), not the question: a model that answers with it
    stopped a step short (README@f5760d8, "Hops")."""
    key = _key(answer)
    return next((h for h in hops if key and _key(h.bridge) == key), None)


_CHOICE = re.compile(r"\b(?:or|between|both|either)\b", re.IGNORECASE)
_PLAIN = {"the", "a", "an", "of", "in", "and"}


def echoes(answer: str, question: str) -> bool:
    """Whether every word of `answer` is already in a question that offers no choice ("or",
    "between", "both", "either"): "Liang Ji" for "Who is the child of the person who ruled the
    country where Liang Ji is …?" names what the question starts from, not its answer."""
    words = {w for w in re.findall(r"\w+", answer.lower()) if w not in _PLAIN}
    asked = {w for w in re.findall(r"\w+", question.lower()) if w not in _PLAIN}
    return bool(words) and words <= asked and not _CHOICE.search(question)


def merge(base: list[Hit], found: list[list[Hit]], k: int, keep: int = KEEP, per_hop: int = PER_HOP) -> list[Hit]:
    """The whole question's first `keep` passages, then up to `per_hop` new ones from each
    hop's ranking (in hop order), then the rest of the whole question's; `k` in all."""
    out = list(base[:keep])
    seen = {h.chunk_id for h in out}
    for hits in found:
        new = [h for h in hits if h.chunk_id not in seen][:per_hop]
        out += new
        seen.update(h.chunk_id for h in new)
    out += [h for h in base[keep:] if h.chunk_id not in seen]
    return out[:k]


# The graph's facts about the last hop's bridge, for what the question still asks of it:
# "G. Stanley Hall | president of | American Psychological Association" once the hops have
# resolved "the association which published Journal of Psychotherapy Integration". They
# join the prompt's facts (pipelines/query.hop_facts). Measured on MuSiQue's first 60
# questions (49 rewritten by the hops), same run, F1 of those 49: 38.9 without, 42.0 with;
# telling the 1.5B model the bridges and the rewritten question in words instead cost
# 2 to 6 points (a wrong bridge misleads it: results/findings_trials.json).
BRIDGE_FACTS = 3
_PREFIX = 5  # words compared by their first letters: "president" ~ "presidency"


def relation_words(question: str, bridge: str, stop: set[str]) -> set[str]:
    """The rewritten question's words that ask something of the bridge ("president" in "Who
    was the first president of American Psychological Association?"), by prefix."""
    named = {w.lower() for w in re.findall(r"\w+", bridge)}
    return {w[:_PREFIX] for w in re.findall(r"\w+", question.lower())
            if len(w) > 2 and w not in stop and w not in named and w not in _WH and not w.isdigit()}


def bridge_facts(facts: list[Any], want: set[str], limit: int = BRIDGE_FACTS) -> list[Any]:
    """The parsed facts whose words share most with `want` (none that share nothing)."""
    def shared(fact: Any) -> int:
        words = {w[:_PREFIX] for w in re.findall(r"\w+", f"{fact.predicate} {fact.subject} {fact.object}".lower())}
        return len(words & want)

    scored = [(shared(f), i, f) for i, f in enumerate(facts) if getattr(f, "kind", "svo") != "cooc"]
    return [f for s, _, f in sorted((t for t in scored if t[0] > 0), key=lambda t: (-t[0], t[1]))[:limit]]
