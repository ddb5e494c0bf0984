"""Entities and relations from spaCy's parse — no LLM.

Nodes are named entities and salient noun phrases. Edges are
- subject–verb–object relations read off the dependency parse: active and passive
  voice, prepositional objects ("born in X" → born_in), copulas ("X is a Y" → be),
  and appositions ("X, the founder of Y" → founder_of);
- co-occurrence of named entities in one sentence.
A text may come with its voice: who "I" and "you" are (a conversation's speaker and
listener). Then first- and second-person pronouns are mentions of those people, so
"I ran a charity race" is a fact about the speaker and "my kids" (speaker, have, kids).
A text may also come with its subject: the title of the document it belongs to ("Ohio
River", "The Prestige" for "The Prestige (film)"). The subject is then an entity of every
chunk of the document, even one that never names it, and a sentence that opens with
"He", "She", "It" or "They" as its subject is about it: "He was born in Leeds" gives
(subject, born_in, Leeds).
Every mention and relation keeps its character span within the chunk text.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from .nlp import load_spacy
from .resolve import canonical_key

# Numeric entity types make hubs, not facts.
ENTITY_LABELS = {
    "PERSON", "NORP", "FAC", "ORG", "GPE", "LOC", "PRODUCT", "EVENT", "WORK_OF_ART", "LAW", "LANGUAGE", "DATE",
}
NOUN_PHRASE = "NP"
# Identifiers in technical text are what a user types ("functools.cmp_to_key", "__repr__",
# "dictConfig"): a dotted name, a name with an underscore, or a camelCase name, each an
# entity of its own (the last part of a dotted name too), so a question naming one links
# to the passages that do. Code blocks never reach the parser (pipelines/prepare.py).
CODE = "CODE"
_IDENTIFIER = re.compile(
    r"(?<![\w.])(?:[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+|_*[A-Za-z][A-Za-z0-9]*_\w*|[a-z]+[A-Z]\w*)(?:\(\))?(?![\w])"
)
PLACES = {"GPE", "LOC", "FAC"}
# Pronouns a voice resolves: "first" is the speaker, "second" the one spoken to.
PERSONS = {
    "first": {"i", "me", "my", "mine", "myself"},
    "second": {"you", "your", "yours", "yourself", "ya"},
}
Voice = Mapping[str, str]  # {"first": "Melanie", "second": "Caroline"}
SUBJ_DEPS = {"nsubj", "nsubjpass", "csubj"}
OBJ_DEPS = {"dobj", "attr", "oprd", "dative", "obj"}

# Sentence-opening subject pronouns that stand for the document's subject, and the
# subject labels each may refer to (None: the subject's kind is unknown in the chunk).
SUBJECT_PRONOUNS = {
    "he": {"PERSON", None}, "she": {"PERSON", None},
    "it": {"ORG", "GPE", "LOC", "FAC", "PRODUCT", "EVENT", "WORK_OF_ART", "LAW", "NP", None},
    "they": {"ORG", "NORP", "GPE", "NP", None},
}
# Marks of code in a would-be name: brackets, operators, quotes, a dotted identifier, a URL.
_CODE = re.compile(r"[()\[\]{}=<>\"\\|;`]|\w\.[A-Za-z_]\w|://")
_DISAMBIGUATION = re.compile(r"\s*\([^()]*\)\s*$")
MAX_SUBJECT_WORDS = 8


def document_subject(title: str, source: str = "", voice: Voice | None = None) -> str | None:
    """The entity a document is about: its title without a trailing "(film)"-style
    disambiguation. None for a conversation (its turns have speakers, not a subject),
    a title that is only the file's name, or a title too long to be a name."""
    if voice or not title:
        return None
    if source and PurePath(source).stem == title:
        return None  # the reader fell back to the file name: says nothing about the text
    name = _DISAMBIGUATION.sub("", title).strip() or title.strip()
    key = canonical_key(name)
    if len(key) < 2 or len(key.split()) > MAX_SUBJECT_WORDS or key.isdigit():
        return None
    return name


@dataclass
class Mention:
    key: str
    text: str
    label: str
    start: int  # character offsets in the chunk text
    end: int


@dataclass
class Relation:
    source: int  # index into ChunkFacts.mentions
    target: int
    predicate: str
    kind: str  # "svo" | "passive" | "prep" | "copula" | "appos" | "poss" | "cooc"
    start: int  # the sentence's span in the chunk text
    end: int


@dataclass
class ChunkFacts:
    mentions: list[Mention] = field(default_factory=list)
    relations: list[Relation] = field(default_factory=list)
    subject: str | None = None  # the key of the document's subject, one of the mentions' keys


def make_extractor(name: str, mode: str = "full") -> "Extractor":
    return Extractor(load_spacy(name, mode), noun_phrases=mode == "full")


# The rule lemmatizer caches every (word, tag, morphology) it has lemmatised, for the life
# of the model: ~1.5 KB a document on a long ingest. Emptied when it passes this size.
LEMMA_CACHE_LIMIT = 20_000


class Extractor:
    # Texts spaCy parses together. A batch of 64 long passages held +324 MB while it
    # was parsed, 16 held +107 MB, at the same speed (bench_memory).
    def __init__(self, nlp: Any, batch_size: int = 16, n_process: int = 1, noun_phrases: bool = True):
        self.nlp = nlp
        self.batch_size = batch_size
        self.n_process = n_process
        self.noun_phrases = noun_phrases

    def extract(self, texts: Sequence[str], voices: Sequence[Voice | None] | None = None,
                subjects: Sequence[str | None] | None = None) -> list[ChunkFacts]:
        """Facts of each text; `voices[i]` says who "I" and "you" are in text i, and
        `subjects[i]` what its document is about (`document_subject`)."""
        # spaCy keeps every new string and lexeme it meets for the life of the model: a
        # long ingest grew ~15 KB per document that way. A memory zone (spaCy 3.8)
        # forgets what was added inside it; the facts are plain Python values.
        with self.nlp.memory_zone():
            docs = self.nlp.pipe(texts, batch_size=self.batch_size, n_process=self.n_process)
            facts = [facts_of(doc, self.noun_phrases, voices[i] if voices else None, subjects[i] if subjects else None)
                     for i, doc in enumerate(docs)]
        self._bound_caches()
        return facts

    def _bound_caches(self) -> None:
        for _, pipe in self.nlp.pipeline:
            cache = getattr(pipe, "cache", None)
            if isinstance(cache, dict) and len(cache) > LEMMA_CACHE_LIMIT:
                cache.clear()


def _trim_noun_chunk(span: Any) -> tuple[int, int] | None:
    """Token range of a noun chunk without leading determiners, pronouns, numbers or punctuation."""
    start, end = span.start, span.end
    doc = span.doc
    while start < end and (doc[start].pos_ in ("DET", "PRON", "PUNCT", "NUM", "CCONJ") or doc[start].is_stop):
        start += 1
    while end > start and doc[end - 1].pos_ == "PUNCT":
        end -= 1
    if start >= end:
        return None
    if doc[end - 1].pos_ == "PRON":
        return None
    return start, end


def _entity_parts(doc: Any, start: int, end: int) -> list[tuple[int, int]]:
    """Split an entity span at line breaks and parentheses: "World Health Organization (WHO)"
    is two mentions, the expansion and the acronym; a title line is not part of the next line."""
    parts, cur = [], start
    for i in range(start, end):
        t = doc[i]
        if t.is_space or "\n" in t.text or t.text in "()[]":
            if i > cur:
                parts.append((cur, i))
            cur = i + 1
    if end > cur:
        parts.append((cur, end))
    out = []
    for s, e in parts:
        while s < e and (doc[s].lower_ == "the" or doc[s].is_punct):
            s += 1
        while e > s and (doc[e - 1].is_punct or doc[e - 1].tag_ == "POS"):
            e -= 1
        if e > s:
            out.append((s, e))
    return out


def _predicate(tok: Any) -> str:
    # Participles read better than lemmas here: "born_in", not "bear_in".
    return tok.lower_ if tok.tag_ == "VBN" and tok.lower_ not in _BE else _lemma(tok)


# The rule lemmatizer leaves auxiliaries alone without the morphology the packaged
# attribute_ruler sets; "be" is the one auxiliary extraction cares about.
_BE = {"be", "is", "was", "are", "were", "been", "being", "am", "'s", "'re", "'m", "’s"}


_POSSESSIVE = {"my", "your"}


def _lemma(tok: Any) -> str:
    return "be" if tok.lower_ in _BE else tok.lemma_.lower()


def _identifier(name: str) -> bool:
    """A dotted name of real parts (not "e.g" or "U.S"), or an underscore or camelCase name,
    with a lower-case letter and 3 characters or more."""
    if len(name) < 3 or not any(c.islower() for c in name):
        return False
    if "." in name:
        return max(len(p) for p in name.split(".")) >= 3 and not name.endswith(".")
    return True


def identifiers(text: str) -> list[tuple[int, int, str]]:
    """(start, end, name) of each identifier in `text`, and of a dotted name's last part."""
    out = []
    for m in _IDENTIFIER.finditer(text):
        name = m.group(0).removesuffix("()")
        if not _identifier(name):
            continue
        out.append((m.start(), m.start() + len(name), name))
        if "." in name:
            last = name.rsplit(".", 1)[1]
            if _identifier(last) and ("_" in last or any(c.isupper() for c in last[1:])):
                start = m.start() + name.rindex(".") + 1
                out.append((start, start + len(last), last))
    return out


def facts_of(doc: Any, noun_phrases: bool = True, voice: Voice | None = None, subject: str | None = None) -> ChunkFacts:
    facts = ChunkFacts()
    token_mention: dict[int, int] = {}

    def add(start_tok: int, end_tok: int, label: str, name: str | None = None) -> None:
        while start_tok < end_tok and doc[start_tok].is_space:
            start_tok += 1
        while end_tok > start_tok and doc[end_tok - 1].is_space:
            end_tok -= 1
        span = doc[start_tok:end_tok]
        if not span.text or "\n" in span.text or not any(c.isalpha() or label == "DATE" and c.isdigit()
                                                           for c in span.text):
            return  # a name never runs over a line break, nor is it bare punctuation or a number
        if name is None and _CODE.search(span.text):
            return  # `json.dump(x)`, `x.ljust(n)[:n`, a URL: code, not a name
        key = canonical_key(name or span.text)
        if not key or len(key) < 2 or (key.isdigit() and label != "DATE"):
            return
        idx = len(facts.mentions)
        facts.mentions.append(Mention(key, name or span.text, label, span.start_char, span.end_char))
        for t in range(start_tok, end_tok):
            token_mention.setdefault(t, idx)

    for ent in doc.ents:
        if ent.label_ not in ENTITY_LABELS:
            continue
        if ent.label_ == "DATE" and not any(c.isdigit() for c in ent.text):
            continue  # "monthly", "today": not a node worth having
        for s, e in _entity_parts(doc, ent.start, ent.end):
            add(s, e, ent.label_)
    for start, end, name in identifiers(doc.text):
        span = doc.char_span(start, end, alignment_mode="expand")
        if span is not None:
            add(span.start, span.end, CODE, name)
    if noun_phrases:
        for nc in doc.noun_chunks:
            trimmed = _trim_noun_chunk(nc)
            if trimmed is None:
                continue
            s, e = trimmed
            if any(t in token_mention for t in range(s, e)):
                continue  # the named entity inside it is the node
            if all(doc[t].is_stop for t in range(s, e)):
                continue
            add(s, e, NOUN_PHRASE)

    if voice:
        for tok in doc:
            for person, words in PERSONS.items():
                if voice.get(person) and tok.lower_ in words and tok.pos_ == "PRON":
                    add(tok.i, tok.i + 1, "PERSON", voice[person])

    if subject:
        _add_subject(doc, facts, subject, add)

    def mention_of(tok: Any) -> int | None:
        return token_mention.get(tok.i)

    seen: set[tuple[int, int, str]] = set()

    def relate(a: int | None, b: int | None, predicate: str, kind: str, sent: Any) -> None:
        if a is None or b is None or a == b:
            return
        if facts.mentions[a].key == facts.mentions[b].key:
            return
        sig = (a, b, predicate)
        if sig in seen:
            return
        seen.add(sig)
        facts.relations.append(Relation(a, b, predicate, kind, sent.start_char, sent.end_char))

    def with_conjuncts(tok: Any) -> list[Any]:
        return [tok, *tok.conjuncts]

    def antecedent(tok: Any) -> Any:
        # "Hall, who was the first president of …": the relative pronoun stands for Hall.
        if tok.tag_ in ("WP", "WDT") or tok.lower_ in ("who", "which", "that"):
            verb = tok.head
            while verb.dep_ == "conj" and verb.head is not verb:
                verb = verb.head
            if verb.dep_ == "relcl":
                return verb.head
        return tok

    for sent in doc.sents:
        for tok in sent:
            # --- clauses headed by a verb (or an auxiliary acting as copula)
            if tok.pos_ in ("VERB", "AUX"):
                subjects = [c for c in tok.children if c.dep_ in SUBJ_DEPS]
                if not subjects and tok.dep_ == "conj" and tok.head.pos_ in ("VERB", "AUX"):
                    subjects = [c for c in tok.head.children if c.dep_ in SUBJ_DEPS]
                lemma = _predicate(tok)
                for subj in subjects:
                    passive = subj.dep_ == "nsubjpass"
                    for s in with_conjuncts(antecedent(subj)):
                        sm = mention_of(s)
                        for child in tok.children:
                            if child.dep_ in OBJ_DEPS:
                                kind = "copula" if lemma == "be" else "svo"
                                for o in with_conjuncts(child):
                                    relate(sm, mention_of(o), lemma, kind, sent)
                            elif child.dep_ == "agent" and passive:
                                # "X was founded by Y" → (Y, found, X)
                                for pobj in (g for g in child.children if g.dep_ == "pobj"):
                                    for o in with_conjuncts(pobj):
                                        relate(mention_of(o), sm, lemma, "passive", sent)
                            elif child.dep_ == "prep":
                                for pobj in (g for g in child.children if g.dep_ == "pobj"):
                                    for o in with_conjuncts(pobj):
                                        relate(sm, mention_of(o), f"{lemma}_{child.lower_}", "prep", sent)
            # --- "a journal published by Y": a participle modifying its noun
            if tok.dep_ == "acl" and tok.tag_ == "VBN":
                head = tok.head
                if head.dep_ == "attr":
                    # "X is a play written by Y": the fact is about X, not about "play".
                    subj = next((c for c in head.head.children if c.dep_ in SUBJ_DEPS), None)
                    head = antecedent(subj) if subj is not None else head
                noun = mention_of(head)
                for child in tok.children:
                    for pobj in (g for g in child.children if g.dep_ == "pobj"):
                        if child.dep_ == "agent":
                            relate(mention_of(pobj), noun, _predicate(tok), "passive", sent)
                        elif child.dep_ == "prep":
                            relate(noun, mention_of(pobj), f"{_predicate(tok)}_{child.lower_}", "prep", sent)
            # --- "my kids": what a resolved pronoun's person has
            if voice and tok.dep_ == "poss" and tok.lower_ in _POSSESSIVE:
                relate(mention_of(tok), mention_of(tok.head), "have", "poss", sent)
            # --- "X, the founder of Y": apposition with a prepositional object
            if tok.dep_ == "appos":
                head_m, app_m = mention_of(tok.head), mention_of(tok)
                if head_m is not None and app_m is not None:
                    head_label, app_label = facts.mentions[head_m].label, facts.mentions[app_m].label
                    bracketed = tok.left_edge.i > 0 and doc[tok.left_edge.i - 1].text == "("
                    if head_label in PLACES and app_label in PLACES and not bracketed:
                        # "Branson, Missouri": a place and the larger place it lies in.
                        relate(head_m, app_m, "located_in", "appos", sent)
                    elif head_label == app_label or NOUN_PHRASE in (head_label, app_label):
                        # "Hall, the founder", "GDR (East Germany)": an identity. Two names of
                        # different kinds side by side ("Powell (WA)", "Melgueiro (Porto, …)",
                        # a lifespan in brackets) are something else, so no fact is made.
                        relate(head_m, app_m, "be", "appos", sent)
                for prep in (c for c in tok.children if c.dep_ == "prep" and tok.pos_ == "NOUN"):
                    for pobj in (g for g in prep.children if g.dep_ == "pobj"):
                        relate(head_m, mention_of(pobj), f"{_lemma(tok)}_{prep.lower_}", "appos", sent)
            # --- noun + prepositional object inside an attribute: "X is the capital of Y"
            if tok.dep_ == "attr" and _lemma(tok.head) == "be" and tok.pos_ == "NOUN":
                subj = next((c for c in tok.head.children if c.dep_ in SUBJ_DEPS), None)
                if subj is not None:
                    subj = antecedent(subj)
                    for prep in (c for c in tok.children if c.dep_ == "prep"):
                        for pobj in (g for g in prep.children if g.dep_ == "pobj"):
                            relate(mention_of(subj), mention_of(pobj), f"{_lemma(tok)}_{prep.lower_}", "copula", sent)
        # --- co-occurrence of named entities in the sentence
        ents = sorted(
            {i for t in range(sent.start, sent.end) if (i := token_mention.get(t)) is not None
             and facts.mentions[i].label != NOUN_PHRASE}
        )
        for x in range(len(ents)):
            for y in range(x + 1, len(ents)):
                a, b = ents[x], ents[y]
                if facts.mentions[a].key != facts.mentions[b].key:
                    facts.relations.append(Relation(a, b, "co_occurs", "cooc", sent.start_char, sent.end_char))
    return facts


def _add_subject(doc: Any, facts: ChunkFacts, subject: str, add: Any) -> None:
    """The document's subject as a mention of this chunk: where a sentence opens with a
    pronoun standing for it, and otherwise (when no mention names it) as a zero-width
    mention at the chunk's start, which ties the chunk to it in the graph."""
    key = canonical_key(subject)
    if not key or len(key) < 2:
        return
    named = [m for m in facts.mentions if m.key == key]
    label = next((m.label for m in named if m.label != NOUN_PHRASE), NOUN_PHRASE if named else None)
    resolved = False
    for sent in doc.sents:
        tok = next((t for t in sent if not (t.is_punct or t.is_space)), None)
        if tok is None or tok.dep_ not in ("nsubj", "nsubjpass"):
            continue
        fits = SUBJECT_PRONOUNS.get(tok.lower_)
        if fits is None or label not in fits:
            continue
        # "He" when nothing says what the subject is: read as a person.
        add(tok.i, tok.i + 1, label or ("PERSON" if tok.lower_ in ("he", "she") else NOUN_PHRASE), subject)
        resolved = True
    if not named and not resolved:
        facts.mentions.append(Mention(key, subject, NOUN_PHRASE, 0, 0))
    facts.subject = key


_LOADED: dict[tuple[str, str], Extractor] = {}


def shared_extractor(name: str, mode: str = "full") -> Extractor:
    """One loaded spaCy pipeline per process, name and mode."""
    if (name, mode) not in _LOADED:
        _LOADED[(name, mode)] = make_extractor(name, mode)
    return _LOADED[(name, mode)]
