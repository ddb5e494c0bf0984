"""`extractive`: short answers with no LLM — a reader over the packed passages.

Candidates are the named entities and noun phrases that spaCy found in the packed
passages at ingest (the graph's mentions: nothing is parsed at question time), plus
numbers; pronouns are not answers. Each is scored by
- how similar its sentence is to the question (the embedder, one batch per question),
  and to the question without its names ("Who was the first president of the
  association which published …": the relation the answer's sentence states),
- how many of the question's other words its sentence holds (by their first five
  letters, rare words counting more),
- the mass the graph walk left on its entity (the second hop of a multi-hop question
  collects mass from the first without sharing its words),
- the rank of its passage, and whether that passage is the second hop: about something
  (its title) that a passage naming the question's names names ("… with the performer
  of *Country Man*?": the answer is in Luke Bryan's passage, not in the song's),
- how its type fits the question (who → PERSON/ORG, where → GPE/LOC/FAC, when → DATE,
  how many → numbers), and whether its name holds the kind asked for ("What county …?":
  "DuPage County"), and
- not being named in the question already.
Yes/no questions answer yes or no; "X or Y" questions choose between X and Y. The
answer is the best span, cited with the sentence it stands in.
"""
from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ...errors import Cancelled
from ...memory.chunker import sentence_spans
from ...retrieval.packer import PackedContext
from .base import NOT_FOUND, OnToken, Reply
from .questions import is_yes_no

NAMED = {"PERSON", "NORP", "FAC", "ORG", "GPE", "LOC", "PRODUCT", "EVENT", "WORK_OF_ART", "LAW", "LANGUAGE", "DATE"}
NUMBER = "NUMBER"
_WORD = re.compile(r"\w+", re.UNICODE)
_NUMERIC = re.compile(r"(?<![\w.])\$?\d[\d,]*(?:\.\d+)?(?:\s?(?:%|percent|million|billion|thousand|km|miles|m|kg|feet))?(?!\w)")
_YEAR = re.compile(r"\b(1\d{3}|20\d{2})\b")
_PRONOUNS = {"he", "she", "it", "they", "him", "her", "them", "his", "its", "their", "i", "we", "you", "this",
             "that", "these", "those", "who", "which"}
# Runs of capitalised words or numbers after the question's first word: its names.
_NAMES = re.compile(r'(?<=[\s"“‘(])' r"(?:[A-Z][\w'’.-]*|\d[\w,.]*)(?:\s+(?:of|the|de|and|for|la|von|van|in|&)?\s*"
                    r"(?:[A-Z][\w'’.-]*|\d[\w,.]*))*")
_STOP = {"the", "a", "an", "of", "in", "on", "at", "to", "for", "by", "and", "or", "is", "was", "were", "are", "be",
         "who", "what", "which", "where", "when", "how", "whose", "whom", "did", "does", "do", "that", "this", "it",
         "its", "his", "her", "their", "with", "from", "as", "name", "called"}

# "what/which" and up to two words before the kind asked for: "which Canadian actress"
# asks for a person as "which actress" does.
_WHICH = r"\b(what|which)(?:\s+[\w-]+){0,2}\s+"
# (pattern on the lower-cased question, labels that fit its answer, with how well)
_TYPES: list[tuple[re.Pattern[str], dict[str, float]]] = [
    (re.compile(r"\bhow (many|much)\b|\bwhat (number|percentage|amount)\b|\bhow (old|long|tall|far|high|large|big)\b"),
     {NUMBER: 1.0}),
    (re.compile(r"\bwhen\b|" + _WHICH + r"(year|date|day|month|century|decade|time|period)\b"
                r"|\bin what year\b"), {"DATE": 1.0}),
    (re.compile(r"\bwhere\b|" + _WHICH + r"(city|country|state|county|place|region|continent|town|province|"
                r"location|island|river|nation|capital|village|district|area|mountain|lake|sea|ocean)\b"),
     {"GPE": 1.0, "LOC": 1.0, "FAC": 0.8}),
    (re.compile(_WHICH + r"(company|organi[sz]ation|band|team|university|school|college|party|group|agency|"
                r"label|network|league|club|corporation|firm|institution|publisher|airline|station|studio|channel)\b"),
     {"ORG": 1.0, "FAC": 0.6}),
    (re.compile(_WHICH + r"(film|movie|song|album|book|novel|piece|opera|play|painting|poem|series|show|single)\b"
                r"(?!\s+(?:actor|actress|director|producer|star|writer|host|singer))"),
     {"WORK_OF_ART": 1.0, "PRODUCT": 0.6, "EVENT": 0.4, "ORG": 0.4, "PERSON": 0.3}),
    (re.compile(_WHICH + r"(treaty|act|law|constitution|agreement|bill)\b"),
     {"LAW": 1.0, "EVENT": 0.6, "WORK_OF_ART": 0.4}),
    (re.compile(_WHICH + r"(language)\b"), {"LANGUAGE": 1.0, "NORP": 0.8}),
    (re.compile(_WHICH + r"(nationality|ethnicity|religion)\b"), {"NORP": 1.0, "GPE": 0.7}),
    (re.compile(r"\bwho\b|\bwhom\b|\bwhose\b|" + _WHICH + r"(person|actor|actress|singer|author|writer|director|"
                r"player|artist|musician|composer|politician|president|king|queen|founder|man|woman|producer)\b"),
     {"PERSON": 1.0, "ORG": 0.7, "NORP": 0.3}),
]


def expected_labels(question: str) -> dict[str, float] | None:
    q = question.lower()
    for pattern, labels in _TYPES:
        if pattern.search(q):
            return labels
    return None


# The words that may stand between "what/which" and the kind of thing asked for.
_KIND_SKIP = {"is", "was", "are", "were", "the", "a", "an", "name", "names", "of", "kind", "type", "sort", "one",
              "did", "does", "do", "has", "had", "have"}
# A candidate whose name holds the kind asked for ("What county …?": "DuPage County") fits
# this much better, in the answer (not in the hops' bridges). MuSiQue 14.8 -> 16.9,
# HotpotQA 30.2 -> 32.2; 15.4 / 31.2 at 1.5, 15.7 / 31.5 at 3 (README@f5760d8, "The no-LLM reader").
KIND = 2.0
# Kinds whose members' names do not hold the word: "Today's Country" (a radio format) is
# no country, "Ohio State University" no state.
_UNNAMED_KINDS = {"country", "nation", "state"}


def asked_kind(question: str) -> set[str]:
    """The kind of thing a "what/which" question asks for, as words: "What county shares a
    border with …" → {"county", "share"}, "What is the name of the waterfall …" →
    {"waterfall"}, "Which mountain range …" → {"mountain", "range"}: up to two words among
    the first six after "what / which", past capitalised words (names) and "is the name
    of"-like words. Singular forms; kinds no name holds ("country") are left out."""
    m = re.search(r"\b(?:what|which)\b((?:\s+[\w'-]+){1,6})", question, re.I)
    out: list[str] = []
    for w in (m.group(1).split() if m else []):
        if w[:1].isupper() or w.lower() in _KIND_SKIP:
            if out:
                break
            continue
        out.append(w.lower())
        if len(out) == 2:
            break
    return {_singular(w) for w in out if w not in _STOP} - _UNNAMED_KINDS


def _singular(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def options(question: str) -> list[str]:
    """The two options of "…, X or Y?" questions ([] when there are none): the run of
    capitalised words (or numbers) just before "or", and what follows it."""
    m = re.search(r"((?:[A-Z0-9][\w'’.&-]*\s+)*[A-Z0-9][\w'’.&-]*)\s+or\s+(?:the\s+)?([A-Z0-9][^?,]*?)\s*\??\s*$",
                  question.strip())
    if not m:
        return []
    first = re.sub(r"^(?:The|A|An)\s+", "", m.group(1).strip())
    return [first, m.group(2).strip()]


def _content(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP}


def _stems(text: str) -> set[str]:
    return {w[:5] for w in _content(text)}


def relation_part(question: str) -> str:
    """The question without its names: "Who was the first president of the association
    which published Journal of Psychotherapy Integration?" → "Who was the first president
    of the association which published ?"."""
    return " ".join(_NAMES.sub(" ", question).split())


def _about(name: str, packed: list) -> object | None:
    """The packed passage about `name`: the first whose title holds all its words, else
    the first whose text does."""
    words = _content(name)
    if not words:
        return None
    return next((s for s in packed if words <= _content(s.title)), None) or next(
        (s for s in packed if words <= _content(s.text)), None)


# A candidate in a second-hop passage counts this much more (MuSiQue 11.1 -> 12.1,
# HotpotQA 24.6 -> 30.2 at 2.0; flat on MuSiQue from 1.75 to 3; README@f5760d8, "The no-LLM reader").
SECOND_HOP = 2.0


def second_hop(question: str, packed: list) -> set[int]:
    """The packed passages one step from the question: not naming its names themselves,
    but about something (their title, "(film)"-style parts left out) that a passage
    naming them names."""
    names = [m.group(0).lower() for m in _NAMES.finditer(question)]
    texts = {p.n: p.text.lower() for p in packed}
    first = {p.n for p in packed if any(n in texts[p.n] or n in p.title.lower() for n in names)}
    out = set()
    for p in packed:
        subject = p.title.split(" (")[0].strip().lower()
        if p.n not in first and len(subject) > 2 and any(subject in texts[n] for n in first):
            out.add(p.n)
    return out


EXPLAIN_WORDS = 60  # an explanation's length, at most
_FULL_STOP = re.compile(r"[.!?:](?=\s|$)|\n\s*\n")


def _sentence_start(text: str, start: int) -> int:
    """Where the sentence running through `start` begins: after the last full stop or blank
    line before it (a heading line above it is left out)."""
    begin = 0
    for m in _FULL_STOP.finditer(text, 0, start + 1):
        if m.end() <= start + 1:
            begin = m.end()
    return begin + len(text[begin:]) - len(text[begin:].lstrip())


def _sentence_end(text: str, end: int) -> int:
    """Where the sentence running through `end` stops: its full stop (or colon), or a blank line."""
    m = _FULL_STOP.search(text, max(end - 1, 0))
    return m.end() if m else len(text)


@dataclass
class Candidate:
    text: str
    label: str
    n: int  # the source it stands in
    sentence: tuple[int, int]  # span in the source's text
    score: float


class ExtractiveBackend:
    """The no-LLM reader. `embed` embeds a batch of texts (normalised vectors)."""

    name = "extractive"
    instructions = ""  # the packer's default instructions; nobody reads them
    needs_graph = True  # prepare() attaches mentions and the walk's entity mass

    def __init__(self, embed: Callable[[list[str]], np.ndarray], count_tokens: Callable[[str], int],
                 context_window: int = 2048):
        self.embed = embed
        self._count = count_tokens
        self.context_window = context_window

    def count_tokens(self, text: str) -> int:
        return self._count(text)

    def render(self, system: str, user: str) -> str:
        return f"{system}\n\n{user}"

    # ------------------------------------------------------------------ answer
    def answer(self, question: str, context: PackedContext, max_tokens: int,
               on_token: OnToken | None = None, cancel: threading.Event | None = None) -> Reply:
        if cancel is not None and cancel.is_set():
            raise Cancelled("the answer was stopped before it began")
        reply = self.read(question, context)
        if on_token:
            on_token(reply.answer)
        return reply

    def read(self, question: str, context: PackedContext, *, kinds: bool = True) -> Reply:
        """The best-scored candidate answer in the packed passages. `kinds=False`: a name
        holding the kind asked for counts no more (the hops' bridges: README@f5760d8, "The no-LLM
        reader")."""
        packed = [s for s in context.sources if s.packed and s.text]
        if not packed:
            return Reply(NOT_FOUND, [], found=False)
        sentences: list[tuple[int, int, int]] = []  # (n, start, end)
        for src in packed:
            sentences += [(src.n, s, e) for s, e in sentence_spans(src.text) if e - s > 2]
        if not sentences:
            return Reply(NOT_FOUND, [], found=False)
        by_n = {s.n: s for s in packed}
        if context.form == "explain":
            return self._explain(question, sentences, by_n)
        yes_no = is_yes_no(question)
        opts = [] if yes_no else options(question)
        # The question as followed hop by hop ("… the country where Johann Strauss II was a
        # citizen" → "Who was in charge of Austria ?") is read too, and the better-scored
        # answer of the two wins (README@f5760d8, "Hops"). Yes/no and "X or Y" questions: as asked only.
        asked = [question] + (context.rewritten[-1:] if not opts and not yes_no else [])
        texts = [t for q in asked for t in (q, relation_part(q))]
        vecs = self.embed(texts + [by_n[n].text[s:e] for n, s, e in sentences])
        best: Candidate | None = None
        for i, q in enumerate(asked):
            sim_of = {sent: float(v) for sent, v in zip(sentences, vecs[len(texts):] @ vecs[2 * i])}
            relation = vecs[len(texts):] @ vecs[2 * i + 1]
            lo, hi = float(relation.min()), float(relation.max())
            relation_of = {sent: (float(v) - lo) / ((hi - lo) or 1.0) for sent, v in zip(sentences, relation)}
            if yes_no:  # (then `asked` is the question alone)
                return self._yes_no(q, max(sim_of, key=sim_of.get), packed)
            cands = self._candidates(q, packed, sentences, sim_of, relation_of, context, kinds)
            if opts:
                chosen = self._choose(q, opts, packed, cands)
                if chosen is not None:
                    return chosen
            top = max(cands.values(), key=lambda c: c.score, default=None)
            if top is not None and (best is None or top.score > best.score):
                best = top
        if best is None:
            return Reply(NOT_FOUND, [], found=False)
        return Reply(best.text, [best.n], found=True, support=[(best.n, *best.sentence)])

    def _explain(self, question: str, sentences: list[tuple[int, int, int]], by_n: dict) -> Reply:
        """A how-to, why or what-does question: the packed sentence closest to it, run on to
        its full stop (pages wrap lines mid-sentence), and the next one when it is short or
        ends in a colon (an example follows); at most 60 words."""
        vecs = self.embed([question] + [by_n[n].text[s:e] for n, s, e in sentences])
        n, s, e = sentences[int((vecs[1:] @ vecs[0]).argmax())]
        text = by_n[n].text
        s, e = _sentence_start(text, s), _sentence_end(text, e)
        if len(text[s:e].split()) < 12 or text[s:e].rstrip().endswith(":"):
            e = _sentence_end(text, e + 1)
        words = text[s:e].split()
        answer = " ".join(words[:EXPLAIN_WORDS]) + (" …" if len(words) > EXPLAIN_WORDS else "")
        return Reply(answer, [n], found=True, support=[(n, s, e)])

    def _yes_no(self, question: str, best: tuple[int, int, int], packed: list) -> Reply:
        """"Are A and B both C?": yes when the passage about each of A and B says C (a
        words of C, by their first five letters), else no. Other yes/no questions: yes, the
        better prior without a model that reads."""
        n, s, e = best
        m = re.match(r"^\s*\w+\s+(.+?)\s+and\s+(.+?)\s+both\s+(.+?)\?*\s*$", question, re.I) or re.match(
            r"^\s*\w+\s+both\s+(?:[\w\s]+,\s*)?(.+?)\s+and\s+(.+?),\s*(.+?)\?*\s*$", question, re.I)
        if m:
            claim = {w[:5] for w in _content(m.group(3)) if len(w) > 2}
            verdicts, where = [], []
            for name in (m.group(1), m.group(2)):
                src = _about(name, packed)
                if src is None or not claim:
                    verdicts = []
                    break
                stems = {w[:5] for w in _content(src.text)}
                verdicts.append(claim <= stems)
                where.append(src)
            if len(verdicts) == 2:
                src = where[0] if not verdicts[0] or verdicts[1] else where[1]
                span = (sentence_spans(src.text) or [(0, len(src.text))])[0]
                return Reply("yes" if all(verdicts) else "no", [src.n], found=True, support=[(src.n, *span)])
        return Reply("yes", [n], found=True, support=[(n, s, e)])

    def _candidates(self, question: str, packed: list, sentences: list[tuple[int, int, int]], sim_of: dict,
                    relation_of: dict, context: PackedContext, kinds: bool = True) -> dict[str, Candidate]:
        want = expected_labels(question)
        kind = asked_kind(question) if kinds else set()
        q_words = _content(question)
        q_stems = _stems(question)
        by_n = {s.n: s for s in packed}
        stems_of = {sent: _stems(by_n[sent[0]].text[sent[1]:sent[2]]) & q_stems for sent in sentences}
        # The question's words weighted by rarity among the packed sentences.
        df = {w: sum(1 for st in stems_of.values() if w in st) for w in q_stems}
        idf = {w: math.log(1 + len(sentences) / (1 + df[w])) for w in q_stems}
        idf_total = sum(idf.values()) or 1.0
        hop2 = second_hop(question, packed)
        mass = context.entity_mass or {}
        top_mass = max(mass.values(), default=0.0) or 1.0
        sims = np.array(list(sim_of.values()))
        lo, hi = float(sims.min()), float(sims.max())
        spread = (hi - lo) or 1.0
        out: dict[str, Candidate] = {}
        for rank, src in enumerate(packed):
            spans = [(s, e) for n, s, e in sentences if n == src.n]
            # (start, end, label, entity, the text it stands for when not its own words)
            found: list[tuple[int, int, str, int | None, str | None]] = []
            for m in (context.mentions or {}).get(src.chunk_id, []):
                start, end = m[0] - src.start, m[1] - src.start
                if 0 <= start < end <= len(src.text):
                    found.append((start, end, m[2], m[3], None))
            if want and NUMBER in want:
                found += [(m.start(), m.end(), NUMBER, None, None) for m in _NUMERIC.finditer(src.text)]
            times = context.dated.get(src.chunk_id, []) if want and "DATE" in want and spans else []
            if times:  # a turn's times, as the dates they mean (`context.dated`)
                best = max(spans, key=lambda se: sim_of.get((src.n, *se), lo))  # "said on …": its likeliest sentence
                found += [(*((s, e) if s >= 0 else best), "DATE", None, day) for s, e, day in times]
            for start, end, label, entity, meant in found:
                text = meant or src.text[start:end].strip(" ,.;:'\"()")
                words = _content(text)
                if not words or len(text) > 80 or text.lower() in _PRONOUNS:
                    continue
                if label in NAMED and label != "DATE" and not text[:1].isupper() and not text[:1].isdigit():
                    continue  # a lower-case "name" is a tagging slip ("drang" as a PERSON)
                if label == NUMBER and _YEAR.fullmatch(text) and NUMBER in want:
                    continue  # a year is not a count
                inside = len(words & q_words) / len(words)
                if inside >= 1.0:
                    continue  # already named in the question
                if want:
                    fit = want.get(label) or (0.12 if label in NAMED else 0.08)
                else:
                    fit = 1.0 if label in NAMED else 0.55
                if kind and text[:1].isupper():
                    named = {_singular(w) for w in _WORD.findall(text.lower())}
                    if named & kind and named - kind - _STOP:  # "What county …?": "Avery County"
                        fit = max(fit, 1.0) * KIND
                sent = next(((s, e) for s, e in spans if s <= start < e), spans[0] if spans else (0, len(src.text)))
                where = (src.n, *sent)
                sim = (sim_of.get(where, lo) - lo) / spread
                shared = stems_of.get(where, set()) - {w[:5] for w in words}
                overlap = sum(idf[w] for w in shared) / idf_total
                walk = mass.get(entity, 0.0) / top_mass if entity is not None else 0.0
                hop = SECOND_HOP if src.n in hop2 else 1.0
                score = hop * fit * (1.0 - 0.6 * inside) * (sim + 0.5 * relation_of.get(where, 0.0) + overlap
                                                            + 0.45 * math.sqrt(walk) + 0.35 / (1 + rank))
                key = " ".join(text.lower().split())
                prev = out.get(key)
                if prev is None:
                    out[key] = Candidate(text, label, src.n, sent, score)
                else:  # seen again: a little more credible, keep the best place it stands
                    bonus = 0.08 * min(prev.score, score)
                    if score > prev.score:
                        out[key] = Candidate(text, label, src.n, sent, score + bonus)
                    else:
                        prev.score += bonus
        return out

    def _choose(self, question: str, opts: list[str], packed: list, cands: dict[str, Candidate]) -> Reply | None:
        q = question.lower()
        earliest = re.search(r"\b(first|earlier|earliest|older|oldest|before|sooner|longer ago)\b", q)
        latest = re.search(r"\b(last|later|latest|younger|youngest|after|more recent|most recent|newer)\b", q)
        located: list[tuple[str, object, int | None]] = []
        for opt in opts:
            if not _content(opt):
                continue
            src = _about(opt, packed)
            year = None
            if src is not None:
                m = _YEAR.search(src.text)
                year = int(m.group(1)) if m else None
            located.append((opt, src, year))
        if len(located) == 2 and (earliest or latest) and all(y is not None for _, _, y in located):
            pick = (min if earliest else max)(located, key=lambda item: item[2])
        else:
            scored = []
            for opt, src, _ in located:
                key = " ".join(opt.lower().split())
                scored.append((cands[key].score if key in cands else 0.0, opt, src))
            if not scored:
                return None
            _, opt, src = max(scored, key=lambda t: t[0])
            pick = (opt, src, None)
        opt, src = pick[0], pick[1]
        if src is None:
            return Reply(opt, [], found=True)
        pos = src.text.lower().find(opt.lower())
        span = next(((s, e) for s, e in sentence_spans(src.text) if s <= max(pos, 0) < e), (0, len(src.text)))
        return Reply(opt, [src.n], found=True, support=[(src.n, *span)])
