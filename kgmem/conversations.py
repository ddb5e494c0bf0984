"""Conversation memory: what was said, by whom and when, remembered with no LLM call.

Turns live in a store of their own inside the store directory (`conversations/`, the
same layout, settings and models), so document searches never return a turn and a
recall never returns a document. Each turn is one document:
- id `<conversation>/<turn id>` (the turn id given, else derived from the session's
  time or content and the turn's position: re-sending a session adds nothing);
- text `Speaker: what was said [image: caption]`, title when it was said ("1:56 pm on
  8 May, 2023"); the relative dates it holds, resolved, are in its meta ("yesterday":
  7 May 2023);
- meta: kind "turn", conversation, user, speaker, turn, at (ISO), session, index, dates.
A recall searches only the turns of one conversation (or one user's) in a time window:
dense (FAISS, an exact id selector) and BM25 (FTS5, the same ids), their scores added,
then spread to the turns around (an answer is often the reply).
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import NotFoundError
from .memory.store import Document
from .pipelines.dates import parse_when, resolve_dates
from .pipelines.ingest import IngestReport
from .pipelines.llm.base import NOT_FOUND
from .pipelines.query import Answer, Prepared, answer
from .retrieval.packer import Packer
from .retrieval.types import Hit

if TYPE_CHECKING:
    from .api import Memory

CHILD = "conversations"
# BM25 leads in dialogue (exact words: names, places, things); dense adds paraphrase.
# Scores, min-max normalised per query, are added with these weights (rank fusion threw
# away how far ahead BM25's best turns are: measured in README "Conversations").
RECALL_DENSE = 0.5
# A turn passes this share of its score to the turns just before and after it: an
# answer is often in the reply to the turn that matches the question's words.
RECALL_NEIGHBOUR = 0.5


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



def _span(conversation: str) -> tuple[str, str]:
    """The range of its turns' document ids ('0' sorts right after '/')."""
    return f"{conversation}/", f"{conversation}0"


def _owner(conversation: str | None, user: str | None, table: str = "") -> tuple[list[str], list[Any]]:
    """SQL conditions (on documents, aliased `table`) for a conversation's or a user's turns."""
    where: list[str] = []
    args: list[Any] = []
    if conversation is not None:
        where.append(f"{table}id >= ? AND {table}id < ?")
        args += _span(conversation)
    if user is not None:
        where.append(f"json_extract({table}meta, '$.user') = ?")
        args.append(user)
    return where, args


def _absolute(ans: Answer, turns: list[Recalled]) -> Answer:
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


def _when(spoken_at: str, dates: list[dict[str, Any]]) -> str:
    """'1:56 pm on 8 May, 2023; yesterday = 7 May 2023'."""
    return "; ".join([spoken_at] * bool(spoken_at) + [f"{d['text']} = {d['value']}" for d in dates])


def _normalised(ranking: list[tuple[int, float]]) -> dict[int, float]:
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
    speaker = message.get("speaker") or message.get("role")
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
    for i, (message, (speaker, text)) in enumerate(zip(messages, turns)):
        turn_id = str(message.get("id") or f"{conversation}:{key}:{i + 1}")
        caption = message.get("image_caption")
        dates = resolve_dates(text, at)
        said = f"{speaker}: {text}" + (f" [image: {caption}]" if isinstance(caption, str) and caption else "")
        meta = {"kind": "turn", "conversation": conversation, "user": user, "speaker": speaker, "turn": turn_id,
                "at": at.isoformat() if at else None, "session": key, "index": i,
                "dates": [d.as_dict() for d in dates], "offset": len(speaker) + 2}
        # The title (embedded before the text, and searched) is when it was said, as people write it.
        docs.append(Document(id=f"{conversation}/{turn_id}", title=spoken(at), text=said, source=conversation,
                             meta=meta))
    return docs


class Conversations:
    """The conversation side of a `Memory` (its `remember`, `recall`, `forget`)."""

    def __init__(self, parent: "Memory"):
        self.parent = parent
        self._memory: Memory | None = None
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        return self.parent.path / CHILD

    def memory(self, create: bool = True) -> "Memory | None":
        """The turns' own store (None when it does not exist and `create` is False)."""
        from .api import Memory

        with self._lock:
            if self._memory is None:
                if not create and not (self.path / "kgmem.db").exists():
                    return None
                self._memory = Memory(self.path, self.parent.config, embedder=self.parent.passages.embedder,
                                      read_only=self.parent.read_only or None)
            return self._memory

    def close(self) -> None:
        if self._memory is not None:
            self._memory.close()
            self._memory = None

    # ------------------------------------------------------------------ writing
    def remember(self, messages: Sequence[dict[str, Any]], conversation: str, user: str | None = None,
                 at: str | datetime | date | None = None, session: str | None = None) -> IngestReport:
        docs = turn_documents(messages, conversation, user, parse_when(at), session)
        mem = self.memory()
        assert mem is not None
        report = mem.ingest(docs)
        report.ids = [d.meta["turn"] for d in docs]
        return report

    def forget(self, conversation: str | None = None, user: str | None = None,
               turns: Sequence[str] | None = None) -> int:
        """Delete the turns of a conversation, of a user, or with these ids; returns how many."""
        if conversation is None and user is None and not turns:
            raise ValueError("forget needs a conversation, a user or turn ids")
        mem = self.memory(create=False)
        if mem is None:
            return 0
        ids = self._doc_ids(mem, conversation, user, turns)
        if not ids:
            if turns:
                raise NotFoundError(f"no remembered turn with id {list(turns)[0]!r}")
            return 0
        mem.delete(ids)
        return len(ids)

    # ------------------------------------------------------------------ reading
    def recall(self, query: str, conversation: str | None = None, user: str | None = None, k: int = 10,
               since: str | datetime | date | None = None, until: str | datetime | date | None = None,
               context: int = 1) -> list[Recalled]:
        if not query or not query.strip():
            raise ValueError("recall needs a query")
        mem = self.memory(create=False)
        if mem is None:
            return []
        within = self._candidates(mem, conversation, user, parse_when(since), parse_when(until))
        if not within:
            return []
        depth = max(100, 5 * k)
        passages = mem.passages
        dense = passages.dense_search_vectors(passages.embedder.embed([query]), depth, within=within)[0]
        lexical = passages.lexical_search(query, depth, within=within)
        scores: dict[int, float] = defaultdict(float)
        for ranking, weight in ((lexical, 1.0), (dense, RECALL_DENSE)):
            for cid, value in _normalised(ranking).items():
                scores[cid] += weight * value
        ranked = sorted(self._spread(mem, scores).items(), key=lambda kv: (-kv[1], kv[0]))[:k]
        return self._turns(mem, ranked, context)

    def _spread(self, mem: "Memory", scores: dict[int, float]) -> dict[int, float]:
        """Each scored turn gives RECALL_NEIGHBOUR of its score to its session neighbours."""
        conn = mem.passages.sql.conn
        where = {}
        rows = conn.execute(
            "SELECT c.id, json_extract(d.meta, '$.conversation'), json_extract(d.meta, '$.session'), "
            "json_extract(d.meta, '$.index') FROM chunks c JOIN documents d ON d.id = c.doc_id "
            "WHERE c.id IN (SELECT value FROM json_each(?))", (json.dumps(list(scores)),)).fetchall()
        for cid, conv, session, index in rows:
            where[cid] = (conv, session, index)
        at: dict[tuple[str, str, int], int] = {}
        for conv in {w[0] for w in where.values()}:
            sessions = sorted({w[1] for w in where.values() if w[0] == conv})
            for cid, session, index in conn.execute(
                "SELECT c.id, json_extract(d.meta, '$.session'), json_extract(d.meta, '$.index') FROM chunks c "
                "JOIN documents d ON d.id = c.doc_id WHERE d.id >= ? AND d.id < ? "
                "AND json_extract(d.meta, '$.session') IN (SELECT value FROM json_each(?))",
                (*_span(conv), json.dumps(sessions)),
            ):
                at[(conv, session, index)] = cid
        spread = dict(scores)
        for cid, value in scores.items():
            if cid not in where:
                continue
            conv, session, index = where[cid]
            for j in (index - 1, index + 1):
                other = at.get((conv, session, j))
                if other is not None:
                    spread[other] = spread.get(other, 0.0) + RECALL_NEIGHBOUR * value
        return spread

    def ask(self, question: str, conversation: str | None = None, user: str | None = None, k: int = 10,
            llm: Any = None, budget: int | None = None, on_token: Any = None, cancel: Any = None) -> Answer:
        """Answer from what was said: the recalled turns, dated (relative times resolved),
        packed for the model. Citations point at turns (doc_id `<conversation>/<turn id>`)."""
        backend = self.parent.backend(llm)
        t0 = time.perf_counter()
        turns = self.recall(question, conversation=conversation, user=user, k=k, context=0)
        retrieved = time.perf_counter() - t0
        packer = Packer(backend.count_tokens, budget or backend.context_window, self.parent.config.answer_tokens,
                        render=backend.render, fact_share=0.0, instructions=getattr(backend, "instructions", None))
        hits = [t.hit() for t in turns]
        context = packer.pack(question, hits)
        prep = Prepared(hits, [], context,
                        {"retrieve": retrieved, "pack": time.perf_counter() - t0 - retrieved}, [], question)
        if not turns:  # nothing was said about it: say so, never let the model guess
            return Answer(question, NOT_FOUND, [], [], [], context.report, prep.timings, backend=backend.name,
                          context=context, short=NOT_FOUND, found=False)
        ans = answer(prep, backend, question, answer_tokens=self.parent.config.answer_tokens, on_token=on_token,
                     cancel=cancel)
        return _absolute(ans, turns)

    def _candidates(self, mem: "Memory", conversation: str | None, user: str | None,
                    since: datetime | None, until: datetime | None) -> list[int]:
        where, args = _owner(conversation, user, "d.")
        if since is not None:
            where.append("json_extract(d.meta, '$.at') >= ?")
            args.append(since.isoformat())
        if until is not None:
            where.append("json_extract(d.meta, '$.at') <= ?")
            args.append(until.isoformat())
        sql = "SELECT c.id FROM chunks c JOIN documents d ON d.id = c.doc_id"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [r[0] for r in mem.passages.sql.conn.execute(sql, args)]

    def _doc_ids(self, mem: "Memory", conversation: str | None, user: str | None,
                 turns: Sequence[str] | None) -> list[str]:
        where, args = _owner(conversation, user)
        if turns:
            where.append("json_extract(meta, '$.turn') IN (SELECT value FROM json_each(?))")
            args.append(json.dumps(list(turns)))
        sql = "SELECT id FROM documents WHERE " + " AND ".join(where)
        return [r[0] for r in mem.passages.sql.conn.execute(sql, args)]

    def _turns(self, mem: "Memory", ranked: list[tuple[int, float]], context: int) -> list[Recalled]:
        sql = mem.passages.sql
        chunks = mem.passages.chunks([cid for cid, _ in ranked])
        out = []
        for cid, score in ranked:
            c = chunks.get(cid)
            doc = sql.get_document(c.doc_id) if c is not None else None
            if doc is None:
                continue
            m = doc.meta
            out.append(Recalled(
                id=m["turn"], conversation=m["conversation"], speaker=m["speaker"], text=doc.text[m["offset"]:],
                at=m.get("at"), score=round(float(score), 6), user=m.get("user"), session=m.get("session"),
                dates=m.get("dates", []), context=self._around(mem, m, context) if context else [], doc_id=doc.id,
                chunk_id=cid, said=doc.text, when=_when(doc.title, m.get("dates", [])),
            ))
        return out

    def _around(self, mem: "Memory", meta: dict[str, Any], n: int) -> list[dict[str, Any]]:
        """The turns within `n` of this one in its session, in order (this one left out)."""
        rows = mem.passages.sql.conn.execute(
            "SELECT meta, text FROM documents WHERE id >= ? AND id < ? AND json_extract(meta, '$.session') = ? "
            "AND json_extract(meta, '$.index') BETWEEN ? AND ? AND json_extract(meta, '$.index') != ? "
            "ORDER BY json_extract(meta, '$.index')",
            (*_span(meta["conversation"]), meta["session"], meta["index"] - n,
             meta["index"] + n, meta["index"]),
        ).fetchall()
        out = []
        for raw, text in rows:
            m = json.loads(raw)
            out.append({"id": m["turn"], "speaker": m["speaker"], "text": text[m["offset"]:]})
        return out
