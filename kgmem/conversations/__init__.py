"""Conversation memory: what was said, by whom and when, remembered with no LLM call.

Turns live in a store of their own inside the store directory (`conversations/`, the
same layout, settings and models), so document searches never return a turn and a
recall never returns a document. Each turn is one document:
- id `<conversation>/<turn id>` (the turn id given, else derived from the session's
  time or content and the turn's position: re-sending a session adds nothing);
- text `Speaker: what was said [image: caption]`, title when it was said ("1:56 pm on
  8 May, 2023"); the relative dates it holds, resolved, are in its meta ("yesterday":
  7 May 2023);
- meta: kind "turn", conversation, user, speaker, turn, at (ISO), session, index, dates,
  voice (who "I" and "you" are: the graph attaches "I ran a race" to the speaker).
A recall searches only the turns of one conversation (or one user's) in a time window:
dense (FAISS, an exact id selector) and BM25 (FTS5, the same ids), their scores added,
then spread to the turns around (an answer is often the reply).
"""
from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import NotFoundError
from ..graph.resolve import canonical_key
from ..pipelines.dates import Window, parse_when, question_window
from ..pipelines.ingest import IngestReport
from ..pipelines.llm.base import NOT_FOUND
from ..pipelines.query import Answer, Prepared, answer
from ..retrieval.packer import Packer
from .people import DatedFact, asked_about, changed, owned, supersede
from .turns import Recalled, absolute, dated, normalised, owner, span, turn_documents, when

if TYPE_CHECKING:
    from ..api import Memory

__all__ = ["CHILD", "Conversations", "DatedFact", "Recalled", "asked_about", "turn_documents"]

CHILD = "conversations"
# BM25 leads in dialogue (exact words: names, places, things); dense adds paraphrase.
# Scores, min-max normalised per query, are added with these weights (rank fusion threw
# away how far ahead BM25's best turns are: measured in README@f5760d8 "Conversations").
RECALL_DENSE = 0.5
# A turn passes this share of its score to the turns just before and after it: an
# answer is often in the reply to the turn that matches the question's words.
RECALL_NEIGHBOUR = 0.5
# A question constrained in time ("in June", "on 13 October, 2023") adds this to the turns
# said in that time or speaking of it; the others stay (what was said in July can be
# about June).
RECALL_TIME = 0.5


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
        from ..api import Memory

        with self._lock:
            if self._memory is None:
                if not create and not (self.path / "kgmem.db").exists():
                    return None
                # recall fuses its own way (below): the turn store never measures `auto`'s votes
                self._memory = Memory(self.path, self.parent.config.replace(fusion="fixed"),
                                      embedder=self.parent.passages.embedder, read_only=self.parent.read_only or None)
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
        if not (conversation or "").strip() and not (user or "").strip() and not turns:
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
        dense = passages.dense_search_vectors(passages.query_embedder.embed([query]), depth, within=within)[0]
        lexical = passages.lexical_search(query, depth, within=within)
        scores: dict[int, float] = defaultdict(float)
        for ranking, weight in ((lexical, 1.0), (dense, RECALL_DENSE)):
            for cid, value in normalised(ranking).items():
                scores[cid] += weight * value
        scores = self._spread(mem, scores)
        window = question_window(query)
        if window is not None:
            for cid in self._in_window(mem, list(scores), window):
                scores[cid] += RECALL_TIME
        ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
        return self._turns(mem, ranked, context)

    def _in_window(self, mem: "Memory", chunk_ids: list[int], window: Window) -> list[int]:
        rows = mem.passages.sql.conn.execute(
            "SELECT c.id, json_extract(d.meta, '$.at'), json_extract(d.meta, '$.dates') FROM chunks c "
            "JOIN documents d ON d.id = c.doc_id WHERE c.id IN (SELECT value FROM json_each(?))",
            (json.dumps(chunk_ids),))
        return [cid for cid, at, dates in rows if window.meets(at, json.loads(dates or "[]"))]

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
                (*span(conv), json.dumps(sessions)),
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
            llm: Any = None, budget: int | None = None, on_token: Any = None, cancel: Any = None,
            asker: str | None = None) -> Answer:
        """Answer from what was said: the recalled turns, dated (relative times resolved),
        packed for the model. Citations point at turns (doc_id `<conversation>/<turn id>`).
        A question about one speaker is answered only from that speaker's own words
        (`asker`: who "I" is in the question)."""
        backend = self.parent.backend(llm)
        t0 = time.perf_counter()
        turns = self.recall(question, conversation=conversation, user=user, k=k, context=0)
        retrieved = time.perf_counter() - t0
        packer = Packer(backend.count_tokens, budget or backend.context_window, self.parent.config.answer_tokens,
                        render=backend.render, fact_share=0.0, instructions=getattr(backend, "instructions", None))
        hits = [t.hit() for t in turns]
        context = packer.pack(question, hits)
        mem = self.memory(create=False) if getattr(backend, "needs_graph", False) else None
        if mem is not None:  # the no-LLM reader's candidates: what spaCy found in the turns,
            context.mentions = mem.graph.mentions_in(context.report.included)
            context.dated = {t.chunk_id: dated(t) for t in turns}  # and when each was said
        prep = Prepared(hits, [], context,
                        {"retrieve": retrieved, "pack": time.perf_counter() - t0 - retrieved}, [], question)
        if not turns:  # nothing was said about it: say so, never let the model guess
            return Answer(question, NOT_FOUND, [], [], [], context.report, prep.timings, backend=backend.name,
                          context=context, short=NOT_FOUND, found=False)
        ans = answer(prep, backend, question, answer_tokens=self.parent.config.answer_tokens, on_token=on_token,
                     cancel=cancel)
        speakers = self.speakers(conversation, user)
        person = asked_about(question, speakers, asker)
        ans = owned(absolute(ans, turns), question, turns, speakers, person)
        return changed(ans, self.facts(person, conversation, user)) if person else ans

    def facts(self, about: str, conversation: str | None = None, user: str | None = None,
              limit: int = 500) -> list[DatedFact]:
        """What was said about someone ("I", "you" resolved to speaker and listener), as
        dated facts in time order; facts a later turn replaced are kept, not `current`."""
        mem = self.memory(create=False)
        if mem is None:
            return []
        where, args = owner(conversation, user, "d.")
        rows = mem.passages.sql.conn.execute(
            "SELECT s.name, r.predicate, o.name, d.meta, d.text, r.start, r.end "
            "FROM relations r JOIN entities s ON s.id = r.source_id JOIN entities o ON o.id = r.target_id "
            "JOIN chunks c ON c.id = r.chunk_id JOIN documents d ON d.id = c.doc_id "
            "WHERE s.key = ? AND r.kind != 'cooc'" + "".join(f" AND {w}" for w in where)
            + " ORDER BY json_extract(d.meta, '$.at'), c.id LIMIT ?",
            (canonical_key(about), *args, limit)).fetchall()
        out = []
        for subject, predicate, obj, raw, text, start, end in rows:
            m = json.loads(raw)
            out.append(DatedFact(subject, predicate, obj, m["turn"], m["speaker"], m.get("at"),
                                 text[start:end].strip(), conversation=m["conversation"]))
        return supersede(out)

    def sessions(self, conversation: str | None = None, user: str | None = None) -> list[str]:
        """The sessions remembered of a conversation (or of a user's), oldest first."""
        return self._distinct("session", "min(json_extract(meta, '$.at')), g", conversation, user)

    def speakers(self, conversation: str | None = None, user: str | None = None) -> list[str]:
        """Who spoke in a conversation (or in a user's), most turns first."""
        return self._distinct("speaker", "count(*) DESC, g", conversation, user)

    def _distinct(self, field: str, order: str, conversation: str | None, user: str | None) -> list[str]:
        mem = self.memory(create=False)
        if mem is None:
            return []
        where, args = owner(conversation, user)
        sql = (f"SELECT json_extract(meta, '$.{field}') AS g FROM documents"
               + (" WHERE " + " AND ".join(where) if where else "") + f" GROUP BY g ORDER BY {order}")
        return [r[0] for r in mem.passages.sql.conn.execute(sql, args) if r[0]]

    def _candidates(self, mem: "Memory", conversation: str | None, user: str | None,
                    since: datetime | None, until: datetime | None) -> list[int]:
        where, args = owner(conversation, user, "d.")
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
        where, args = owner(conversation, user)
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
                chunk_id=cid, said=doc.text, when=when(doc.title, m.get("dates", [])),
            ))
        return out

    def _around(self, mem: "Memory", meta: dict[str, Any], n: int) -> list[dict[str, Any]]:
        """The turns within `n` of this one in its session, in order (this one left out)."""
        rows = mem.passages.sql.conn.execute(
            "SELECT meta, text FROM documents WHERE id >= ? AND id < ? AND json_extract(meta, '$.session') = ? "
            "AND json_extract(meta, '$.index') BETWEEN ? AND ? AND json_extract(meta, '$.index') != ? "
            "ORDER BY json_extract(meta, '$.index')",
            (*span(meta["conversation"]), meta["session"], meta["index"] - n,
             meta["index"] + n, meta["index"]),
        ).fetchall()
        out = []
        for raw, text in rows:
            m = json.loads(raw)
            out.append({"id": m["turn"], "speaker": m["speaker"], "text": text[m["offset"]:]})
        return out
