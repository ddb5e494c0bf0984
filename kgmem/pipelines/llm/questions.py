"""What a question asks for, read from its words alone (no model): yes/no questions, and
yes/no questions that compare two things by one property ("… in the same province?")."""
from __future__ import annotations

import re

_AUX = {"is", "are", "was", "were", "do", "does", "did", "can", "could", "has", "have", "had", "will", "would",
        "should", "shall", "may", "might", "must"}
_WORD = re.compile(r"\w+", re.UNICODE)
_WH = {"who", "whom", "whose", "what", "which", "where", "when", "why", "how"}
# Words that end the property after "the same": "the same band as", "the same city in 2005".
_ENDS = {"as", "in", "of", "for", "at", "on", "by", "and", "or", "that", "which", "with", "from", "to", "during"}
_SAME = re.compile(r"\bthe same\s+((?:[\w'-]+\s*){1,3})", re.IGNORECASE)
_IGNORED = {"the", "a", "an", "of", "in", "and", "its", "their", "his", "her"}


def is_yes_no(question: str) -> bool:
    """Starts with an auxiliary and asks for nothing else ("Do X, …, remake a film of what
    year?" asks for a year)."""
    words = _WORD.findall(question.lower())
    return bool(words) and words[0] in _AUX and " or " not in question.lower() and not _WH & set(words)


def compared_by(question: str) -> str | None:
    """The property a yes/no question compares two things by, or None: "Are Nantong and
    Jingdezhen situated in the same province?" → "province"; "Are Marian Gold and Jung
    Eun-ji members of the same band?" → "band"."""
    if not is_yes_no(question):
        return None
    m = _SAME.search(question)
    if not m:
        return None
    words = []
    for w in m.group(1).split():
        if w.lower() in _ENDS:
            break
        words.append(w)
    return " ".join(words[:2]) or None


def _words(value: str) -> set[str]:
    return {w for w in _WORD.findall(value.lower()) if w not in _IGNORED}


def same_value(first: str, second: str) -> bool | None:
    """Whether two values of one property name the same thing: equal words, or one's words
    all within the other's ("New York" and "New York City"); None when either is empty."""
    a, b = _words(first), _words(second)
    if not a or not b:
        return None
    return a <= b or b <= a
