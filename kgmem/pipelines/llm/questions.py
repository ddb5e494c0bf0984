"""What a question asks for, read from its words alone (no model): yes/no questions,
yes/no questions that compare two things by one property ("… in the same province?"), and
questions whose useful answer is an explanation rather than a phrase ("How do I …?",
"Why …?", "What does X do?", "What is a generator?")."""
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


_NAME = re.compile(r"\b[A-Z0-9][\w'&.-]*(?:\s+(?:of|the|de|von|van|[A-Z0-9][\w'&.-]*))*")


def named_in_passages(question: str, texts: list[str]) -> bool:
    """Whether every name the question gives (its capitalised words after the first: "Fortune",
    "Christopher Nolan") is in one of `texts`, each name by all its words; a question that
    names nothing: whether most of its content words (four letters or more) are."""
    body = question.strip().split(" ", 1)[1] if " " in question.strip() else ""
    names = [m.group(0) for m in _NAME.finditer(body)]
    low = [t.lower() for t in texts]
    if names:
        return all(any(all(w in t for w in _WORD.findall(n.lower()) if w not in _IGNORED) for t in low)
                   for n in names)
    words = [w for w in _WORD.findall(body.lower()) if len(w) > 3 and w not in _AUX]
    seen = set(_WORD.findall(" ".join(low)))
    return bool(words) and sum(w in seen for w in words) >= 0.6 * len(words)


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


# How-to, why, what-does and what-is-a questions: a phrase ("positional-only [2]") does not
# answer them; one to three sentences do. "How many/much/old/…" asks for a phrase.
_EXPLAIN = re.compile(
    r"^\s*(?:how\s+(?:do|does|did|can|could|should|would|to|is|are)\b"
    r"|why\b|explain\b|describe\b|when\s+should\b"
    r"|what\s+(?:does|do|did)\b.*\bdo\s*\??\s*$"
    r"|what\s+(?:is|are)\s+the\s+(?:difference|differences|purpose|point|use|advantage|benefit)s?\b"
    r"|what\s+happens\b"
    r"|what\s+(?:is|are)\b.*\b(?:for|used\s+for)\s*\??\s*$)",
    re.IGNORECASE,
)
# "What is a generator?", "What are keyword-only arguments?": a definition; not "What is the
# capital of …" (a relation), nor a question that names what kind of answer it wants.
_DEFINE = re.compile(r"^\s*what\s+(?:is|are)\s+(?:an?\s+)?([\w'./-]+(?:\s+[\w'./-]+){0,6})\s*\?\s*$", re.I)
# A second question word asks for a phrase: "How to Eat, released in which year, …".
_ASKS_PHRASE = re.compile(r"\b(?:which|who|whom|whose|what\s+year|how\s+many|how\s+much)\b", re.I)
_NOT_DEFINED = {"the", "this", "that", "these", "those", "his", "her", "its", "their", "your", "my", "it", "there",
                "he", "she", "they", "you", "i", "we"}


def explains(question: str) -> bool:
    """Whether the question's useful answer is a short explanation (1-3 sentences), not a phrase."""
    first, _, rest = question.strip().partition(" ")
    if _ASKS_PHRASE.search(rest):
        return False
    if _EXPLAIN.search(question):
        return True
    m = _DEFINE.match(question)
    # not about someone ("What is Caroline's identity?"): a term's definition
    return bool(m) and m.group(1).split()[0].lower() not in _NOT_DEFINED and "'" not in m.group(1) \
        and "\u2019" not in m.group(1)
