"""Turns as documents, and as recalled: ids, speakers, times, the text shown to the model."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..memory.store import Document
from ..pipelines.dates import human, resolve_dates
from ..pipelines.query import Answer
from ..retrieval.types import Hit


@dataclass
class Recalled:
    """A remembered turn, ranked for a query."""

    id: str  # the turn's id
    conversation: str
    speaker: str
    text: str  # what was said
    at: str | None  # when (ISO 8601), if known
    score: float
    user: str | None = None
    session: str | None = None
    dates: list[dict[str, Any]] = field(default_factory=list)  # relative times in it, resolved
    context: list[dict[str, Any]] = field(default_factory=list)  # the turns just before and after
    doc_id: str = ""
    chunk_id: int = 0
    said: str = ""  # as stored: "Speaker: text [image: caption]"
    when: str = ""  # as shown to the model: "1:56 pm on 8 May, 2023; yesterday = 7 May 2023"

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        for internal in ("chunk_id", "said", "when"):
            out.pop(internal)
        return out

    def hit(self) -> Hit:
        """The turn as a passage for the packer: dated, with its resolved times."""
        return Hit(doc_id=self.doc_id, chunk_id=self.chunk_id, score=self.score, text=self.said, title=self.when,
                   source=self.conversation, start=0, end=len(self.said))




def span(conversation: str) -> tuple[str, str]:
    """The range of its turns' document ids ('0' sorts right after '/')."""
    return f"{conversation}/", f"{conversation}0"


def owner(conversation: str | None, user: str | None, table: str = "") -> tuple[list[str], list[Any]]:
    """SQL conditions (on documents, aliased `table`) for a conversation's or a user's turns."""
    where: list[str] = []
    args: list[Any] = []
    if conversation is not None:
        where.append(f"{table}id >= ? AND {table}id < ?")
        args += span(conversation)
    if user is not None:
        where.append(f"json_extract({table}meta, '$.user') = ?")
        args.append(user)
    return where, args



def absolute(ans: Answer, turns: list[Recalled]) -> Answer:
    """An answer that is a relative time the cited turn holds ("yesterday") becomes the
    time it means ("7 May 2023"): the reader was not there when it was said."""
    cited = {c.doc_id for c in ans.citations}
    said = (ans.short or "").strip(" .").lower()
    for turn in turns:
        if turn.doc_id not in cited:
            continue
        for d in turn.dates:
            if said and said == d["text"].lower():
                ans.text = ans.text.replace(ans.short, d["value"], 1)
                ans.short = d["value"]
                return ans
    return ans



def dated(turn: Recalled) -> list[tuple[int, int, str]]:
    """The times a turn holds that its words do not spell out, for the no-LLM reader: each
    relative time where it stands, as what it means ("yesterday" → "7 May 2023"), or, when
    it states none, the day it was said (start -1: the turn as a whole)."""
    offset = len(turn.said) - len(turn.text)  # "Speaker: " (the dates' spans are in the text)
    out = [(offset + d["start"], offset + d["end"], d["value"]) for d in turn.dates]
    if turn.at and not out:
        out.append((-1, -1, human(datetime.fromisoformat(turn.at).date())))
    return out


def when(spoken_at: str, dates: list[dict[str, Any]]) -> str:
    """'1:56 pm on 8 May, 2023; yesterday = 7 May 2023'."""
    return "; ".join([spoken_at] * bool(spoken_at) + [f"{d['text']} = {d['value']}" for d in dates])


def normalised(ranking: list[tuple[int, float]]) -> dict[int, float]:
    """Scores mapped to [0, 1] within one ranking (best 1)."""
    if not ranking:
        return {}
    values = [v for _, v in ranking]
    lo, hi = min(values), max(values)
    return {cid: (v - lo) / (hi - lo) if hi > lo else 1.0 for cid, v in ranking}


def spoken(at: datetime | None) -> str:
    """'1:56 pm on 8 May, 2023'."""
    if at is None:
        return ""
    hour = at.hour % 12 or 12
    return f"{hour}:{at.minute:02d} {'am' if at.hour < 12 else 'pm'} on {at.day} {at:%B}, {at.year}"


def _turn_text(message: dict[str, Any], i: int) -> tuple[str, str]:
    if not isinstance(message, dict):
        raise ValueError(f"messages[{i}]: a dict {{speaker, text}} is needed")
    text = message.get("text", message.get("content"))
    # the first of speaker and role that names someone (a blank speaker does not hide the role)
    speaker = next((s for s in (message.get("speaker"), message.get("role")) if isinstance(s, str) and s.strip()),
                   None)
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"messages[{i}].text: a non-empty string is needed")
    if not isinstance(speaker, str) or not speaker.strip():
        raise ValueError(f"messages[{i}].speaker: a name (or role) is needed")
    return speaker.strip(), text


def turn_documents(messages: Sequence[dict[str, Any]], conversation: str, user: str | None,
                   at: datetime | None, session: str | None) -> list[Document]:
    """One document per turn (see the module's docstring)."""
    if not isinstance(conversation, str) or not conversation.strip() or "/" in conversation:
        raise ValueError("conversation: a non-empty id without '/' is needed")
    turns = [_turn_text(m, i) for i, m in enumerate(messages)]
    key = session or (at.strftime("%Y%m%dT%H%M") if at else
                      hashlib.sha1(json.dumps(turns).encode()).hexdigest()[:10])
    docs = []
    speakers = list(dict.fromkeys(speaker for speaker, _ in turns))
    for i, (message, (speaker, text)) in enumerate(zip(messages, turns)):
        others = [s for s in speakers if s != speaker]
        # Who "I" and "you" are: the speaker, and the listener when the session has one.
        voice = {"first": speaker} | ({"second": others[0]} if len(others) == 1 else {})
        turn_id = str(message.get("id") or f"{conversation}:{key}:{i + 1}")
        caption = message.get("image_caption")
        dates = resolve_dates(text, at)
        said = f"{speaker}: {text}" + (f" [image: {caption}]" if isinstance(caption, str) and caption else "")
        meta = {"kind": "turn", "conversation": conversation, "user": user, "speaker": speaker, "turn": turn_id,
                "at": at.isoformat() if at else None, "session": key, "index": i,
                "dates": [d.as_dict() for d in dates], "offset": len(speaker) + 2, "voice": voice}
        # The title (embedded before the text, and searched) is when it was said, as people write it.
        docs.append(Document(id=f"{conversation}/{turn_id}", title=spoken(at), text=said, source=conversation,
                             meta=meta))
    return docs


