"""People in a conversation: who a question is about, whose words an answer rests on,
and the dated facts each person stated, with what later turns changed.

Facts come from the conversation store's graph, where "I" and "you" were resolved to the
speaker and the listener at remember time (no LLM).
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..pipelines.dates import human
from ..pipelines.llm.base import NOT_FOUND
from ..pipelines.query import Answer
from .turns import Recalled


def asked_about(question: str, speakers: Sequence[str], asker: str | None = None) -> str | None:
    """The one speaker a question is about: named in it ("What did Caroline realize?"), or
    the asker when the question speaks of itself ("what did I tell you?"); else None."""
    named = [s for s in speakers if re.search(rf"(?<!\w){re.escape(s)}(?!\w)", question, re.I)]
    if len(named) == 1:
        return named[0]
    if not named and asker and _FIRST_PERSON.search(question):
        return asker
    return None


_FIRST_PERSON = re.compile(r"\b(i|me|my|mine|myself)\b", re.I)
_SECOND_PERSON = re.compile(r"\b(you|your|yours|yourself)\b", re.I)
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"\w+(?:[-']\w+)*")
_NAME = re.compile(r"\b[A-Z][a-z]+\b")
_CALENDAR = {"January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
             "November", "December", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"}


def _stems(text: str, letters: int = 6) -> set[str]:
    """Content words, cut to their first `letters` letters (six: "realizing" meets "realize")."""
    from spacy.lang.en.stop_words import STOP_WORDS

    return {w[:letters] for w in _WORD.findall(text.lower()) if w not in STOP_WORDS}


def _yes_or_no(answer: str) -> bool:
    return answer.strip(" .").lower() in ("yes", "no")


def _owners(answer: str, cited: list[Recalled], speakers: Sequence[str]) -> set[str]:
    """Whose fact the answer is: the owners of the cited sentences that hold most of its
    words. A sentence is its speaker's ("I ran a race"), or the listener's when it speaks
    to them and not of the speaker ("your son is okay", "Wow, Mel, family love is the
    best!": the listener by name, or its first three letters); questions assert nothing. An
    answer whose words are in no cited sentence ("yes", a date) is every cited speaker's."""
    words = _stems(answer)
    best, owners = 0, set()
    for turn in cited:
        listeners = {s for s in speakers if s != turn.speaker}
        for sentence in _SENTENCE.split(turn.text):
            if sentence.rstrip().endswith("?"):
                continue
            to_listener = _SECOND_PERSON.search(sentence) or _addresses(sentence, listeners)
            if to_listener and not _FIRST_PERSON.search(sentence):
                who = listeners
            else:
                who = {turn.speaker}
            n = len(words & _stems(sentence))
            if n > best:
                best, owners = n, set(who)
            elif n == best and n > 0:
                owners |= who
    return owners if best else {t.speaker for t in cited}


def _addresses(sentence: str, listeners: set[str]) -> bool:
    """Whether the sentence calls a listener by name ("Melanie", or "Mel")."""
    return any(re.search(rf"\b{re.escape(name)}\b", sentence) for s in listeners for name in {s, s[:3]}
               if len(name) >= 3)


def echoes(answer: str, question: str) -> bool:
    """An answer made only of the question's own words ("What precautionary sign did
    Caroline see?" → "a precautionary sign"; "What temporary job did Jon take?" → "temp
    job") says nothing the question did not. Words are compared by their first four
    letters; yes/no answers and "X or Y?" questions are left alone."""
    if _yes_or_no(answer) or " or " in question.lower():
        return False
    said = _stems(answer, 4)
    return bool(said) and said <= _stems(question, 4)


def _unmentioned(question: str, cited: list[Recalled], speakers: Sequence[str]) -> list[str]:
    """Names in the question ("a trip to Barcelona") that the cited turns never mention:
    an answer from them is about something else. Speakers (and their short names), months
    and weekdays are left out: the turn's time and speaker are not in its words."""
    text = " ".join(f"{t.text} {t.when}" for t in cited).lower()
    names = [m.group(0) for m in _NAME.finditer(question) if m.start() > 0 and m.group(0) not in _CALENDAR
             and not any(s.lower().startswith(m.group(0).lower()) for s in speakers)]
    return [n for n in names if not re.search(rf"\b{re.escape(n.lower())}\b", text)]


def owned(ans: Answer, question: str, turns: list[Recalled], speakers: Sequence[str],
          person: str | None) -> Answer:
    """An answer must rest on turns that are about what the question asks. Declined (the
    citations stay, a notice says why) when it only repeats the question's words, when
    the cited turns never mention a name the question asks about, or when the question
    is about one speaker and the answer is a fact of someone else's: people tell their
    own news in the first person, so Melanie's "I ran a charity race" does not answer
    what Caroline did after hers. Whose fact a yes or no is, the question's words say
    ("Is Oscar Melanie's pet?" rests on Caroline's "Oscar, my guinea pig": declined)."""
    if not ans.found or not ans.citations:
        return ans
    cited_ids = {c.doc_id for c in ans.citations}
    cited = [t for t in turns if t.doc_id in cited_ids]
    if not cited:
        return ans
    if echoes(ans.short, question):
        return _decline(ans, "the answer only repeats the question's words")
    missing = _unmentioned(question, cited, speakers)
    if missing:
        return _decline(ans, f"the turns it rests on never mention {', '.join(missing)}")
    if person is not None:
        said = ans.short
        if _yes_or_no(said):  # a yes or no asserts the question's own words
            said = re.sub(rf"\b{re.escape(person)}(?:'s)?\b", " ", question, flags=re.I)
        owners = _owners(said, cited, speakers)
        if person not in owners:
            return _decline(ans, f"the turns it rests on tell of {', '.join(sorted(owners))}, not of {person}")
    return ans


def _decline(ans: Answer, why: str) -> Answer:
    ans.notices.append(why)
    ans.text, ans.short, ans.found = NOT_FOUND, NOT_FOUND, False
    return ans


# Predicates of a state that holds one value at a time, by the state they set: a later
# "I live in Denver" (or "I moved to Denver") replaces "I live in Boston". Other facts
# accumulate ("I have kids", then "I have a dog": both hold) and are never superseded.
STATES = {
    "live_in": "home", "move_to": "home", "relocate_to": "home",
    "work_at": "job", "work_for": "job", "work_as": "job",
    "study_at": "school", "marry": "partner",
}


@dataclass
class DatedFact:
    """A fact a turn states about someone, with when it was said. A later turn that sets
    the same state to another value ("I live in Denver" after "I live in Boston")
    supersedes it: both are kept; the earlier one is not `current`."""

    subject: str
    predicate: str
    object: str
    turn: str  # the turn's id
    speaker: str
    at: str | None
    quote: str  # the sentence it was read from
    current: bool = True
    conversation: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def state(self) -> tuple[str, str, str] | None:
        """(conversation, subject, state) for a one-value state, else None."""
        kind = STATES.get(self.predicate)
        return (self.conversation, self.subject.lower(), kind) if kind else None


def supersede(facts: list[DatedFact]) -> list[DatedFact]:
    """Mark each state fact that a later one replaces (same state, another value)."""
    for f in facts:
        key = f.state()
        if key is not None:
            f.current = not _later(f, facts)
    return facts


def _later(old: DatedFact, facts: list[DatedFact]) -> list[DatedFact]:
    """Facts said after `old` that set its state to another value, oldest first."""
    key = old.state()
    return sorted((f for f in facts if f.state() == key and (f.at or "") > (old.at or "")
                   and f.object.lower() != old.object.lower()), key=lambda f: f.at or "")


def changed(ans: Answer, facts: list[DatedFact]) -> Answer:
    """An answer that is a state the person has since changed ("Boston", then "I moved to
    Denver") becomes the latest value, and the answer says what changed."""
    said = (ans.short or "").strip(" .").lower()
    if not ans.found or not said:
        return ans
    for old in facts:
        if old.current or old.object.lower() != said:
            continue
        latest = _later(old, facts)[-1]
        ans.notices.append(f"changed: {old.object} ({_day(old.at)}), then {latest.object} ({_day(latest.at)})")
        ans.text = ans.text.replace(ans.short, latest.object, 1)
        ans.short = latest.object
        return ans
    return ans


def _day(at: str | None) -> str:
    return human(datetime.fromisoformat(at)) if at else "undated"
