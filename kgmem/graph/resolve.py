"""Entity resolution without an LLM: canonical keys and document-local aliases.

- `canonical_key` folds case, whitespace, punctuation, possessives, leading
  articles and diacritics, so "The Beatles'", "the beatles" and "Beatles" meet.
- `document_aliases` links, inside one document, a surname to the full name met
  there ("Hall" → "G. Stanley Hall") and an acronym to its expansion
  ("WHO" ↔ "World Health Organization"). Each link is returned, not applied, so the
  store can record it and undo it.
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

_ARTICLES = ("the ", "a ", "an ")
_POSSESSIVE = re.compile(r"['\u2019]s?\b", re.UNICODE)
_NON_WORD = re.compile(r"[^\w]+", re.UNICODE)
_PERSON_TITLES = {"mr", "mrs", "ms", "dr", "sir", "lord", "lady", "saint", "st", "prof", "king", "queen", "president"}


def strip_diacritics(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def canonical_key(name: str) -> str:
    """The form two mentions must share to be the same node."""
    text = strip_diacritics(name).lower().strip()
    text = _POSSESSIVE.sub("", text)
    text = _NON_WORD.sub(" ", text).strip()
    for article in _ARTICLES:
        if text.startswith(article) and len(text) > len(article):
            text = text[len(article) :]
            break
    return " ".join(text.split())


def initials(key: str) -> str:
    words = [w for w in key.split() if w not in {"of", "the", "and", "for", "in", "on", "de", "la", "&"}]
    return "".join(w[0] for w in words if w)


@dataclass(frozen=True)
class AliasLink:
    alias_key: str  # the key that is redirected
    target_key: str  # the key it now belongs to
    kind: str  # "surname" | "variant" | "acronym"


def document_aliases(mentions: Iterable[tuple[str, str, str]]) -> list[AliasLink]:
    """Links among one document's mentions, given as (key, surface text, label)."""
    people: dict[str, str] = {}  # full-name key -> surface
    orgs: dict[str, str] = {}
    short: dict[str, str] = {}  # single-token key -> label
    acronyms: set[str] = set()
    for key, surface, label in mentions:
        if not key:
            continue
        words = key.split()
        if label == "PERSON" and len(words) >= 2:
            people[key] = surface
        if label in ("ORG", "GPE", "NORP", "FAC", "EVENT", "LAW", "WORK_OF_ART", "PRODUCT") and len(words) >= 2:
            orgs[key] = surface
        if len(words) == 1:
            short[key] = label
            if surface.isupper() and 2 <= len(surface) <= 8:
                acronyms.add(key)
    links: list[AliasLink] = []
    taken: set[str] = set()
    # Surname → full name, only when exactly one full name in the document ends with it.
    by_last: dict[str, list[str]] = {}
    for full in people:
        words = [w for w in full.split() if w not in _PERSON_TITLES]
        if words:
            by_last.setdefault(words[-1], []).append(full)
    for key, label in short.items():
        if label in ("PERSON", "ORG", "GPE", "NP", "") and key in by_last and len(by_last[key]) == 1:
            links.append(AliasLink(key, by_last[key][0], "surname"))
            taken.add(key)
    # "G. Stanley Hall" is also met as "Stanley Hall": the name without its initials.
    for full in people:
        words = full.split()
        bare = " ".join(w for w in words if len(w) > 1)
        if bare != full and len(bare.split()) >= 2 and bare not in people and bare not in taken:
            links.append(AliasLink(bare, full, "variant"))
            taken.add(bare)
    # Acronym → expansion whose initials it spells.
    by_initials: dict[str, list[str]] = {}
    for full in orgs:
        by_initials.setdefault(initials(full), []).append(full)
    for key in acronyms - taken:
        targets = by_initials.get(key.replace(" ", ""), [])
        if len(targets) == 1:
            links.append(AliasLink(key, targets[0], "acronym"))
    return links
