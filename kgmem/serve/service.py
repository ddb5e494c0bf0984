"""The library behind `kgmem serve` (HTTP) and `kgmem mcp`: one writer, many readers.

Two `Memory` objects share one store, one embedder and one spaCy pipeline:
- the *reader* answers searches, questions and look-ups from many threads at once; it
  has its own SQLite connection, so it never sees a write half done, and it takes in
  each finished write (vectors, graph) before its next read, as any reader process does;
- the *writer* is used by one thread only, fed by a queue: ingests and deletes from
  every client run one after another, in the order they came.

Nothing a client sends is read as a server-side path: text is text, records are
records, and an uploaded file's bytes are written to a private temporary directory
under a cleaned name before they are read.
"""
from __future__ import annotations

import logging
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ..api import Memory
from ..config import Config
from ..conversations import Recalled
from ..errors import Cancelled, KgmemError, NotFoundError
from ..memory.store import Document
from ..overview import wants_global
from ..pipelines.ingest import IngestReport
from ..pipelines.query import Answer
from ..pipelines.readers import SUPPORTED, Failure, ReaderOptions, iter_documents, record_to_document
from ..retrieval.types import Hit

log = logging.getLogger("kgmem")
T = TypeVar("T")
_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")
# An upload whose name has no suffix kgmem reads is read by its content type.
_SUFFIX_BY_TYPE = {"text/plain": ".txt", "text/markdown": ".md", "text/html": ".html", "application/pdf": ".pdf",
                   "application/x-ndjson": ".jsonl", "application/jsonl": ".jsonl", "application/xhtml+xml": ".xhtml"}


class BusyError(KgmemError):
    """The writer queue is full; the client should try again later."""


class BadRequest(KgmemError, ValueError):
    """A request whose content is wrong; the message names the field."""


@dataclass
class ServiceStats:
    """What the service has done since it started (for /health and the bench)."""

    started: float = field(default_factory=time.time)
    writes_queued: int = 0
    writes_done: int = 0
    asks: int = 0
    asks_in_flight: int = 0
    asks_cancelled: int = 0

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["uptime_s"] = round(time.time() - out.pop("started"), 1)
        out["writes_waiting"] = self.writes_queued - self.writes_done
        return out


def safe_name(name: str | None, default: str = "upload.txt") -> str:
    """A client's file name reduced to a plain base name (no directories, no dots first)."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = _UNSAFE.sub("_", base).strip(" .")[:120]
    return base or default


class Service:
    """A store opened for serving. Thread-safe: call it from any number of threads."""

    def __init__(
        self, store: str | Path, config: Config | None = None, *, llm: str | None = None,
        embedder: Any = None, extractor: Any = None, read_only: bool | None = None, max_waiting_writes: int = 64,
        options: ReaderOptions | None = None,
    ):
        self.reader = Memory(store, config, embedder=embedder, extractor=extractor, read_only=read_only)
        self.config = self.reader.config
        self.read_only = self.reader.read_only
        self.llm = llm
        self.options = options or ReaderOptions()
        self.stats_ = ServiceStats()
        self._stats_lock = threading.Lock()
        self.max_waiting_writes = max_waiting_writes
        self._writer: Memory | None = None
        self._queue: ThreadPoolExecutor | None = None
        if not self.read_only:
            # The writer shares the reader's models (loaded once) but not its connection.
            self._writer = Memory(store, self.config, embedder=embedder or self.reader.passages.embedder,
                                  extractor=extractor or self.reader.graph.extractor)
            # Another process (a `kgmem ingest`) may hold the store for a while: a request
            # waits for its turn rather than failing at once.
            self._writer.lock.wait = max(self._writer.lock.wait, 120.0)
            self._queue = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kgmem-writer")

    # ------------------------------------------------------------------ lifecycle
    def warm(self) -> dict[str, float]:
        """Load the models and the graph walk now, not at the first request."""
        return self.reader.warm(background=False, llm=self.llm)  # type: ignore[return-value]

    def close(self) -> None:
        if self._queue is not None:
            self._queue.shutdown(wait=True)  # finish what clients were told is queued
        if self._writer is not None:
            self._writer.close()
        self.reader.close()

    def __enter__(self) -> "Service":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _count(self, name: str, delta: int = 1) -> None:
        with self._stats_lock:
            setattr(self.stats_, name, getattr(self.stats_, name) + delta)

    # ------------------------------------------------------------------ the writer queue
    def _write(self, job: Callable[[Memory], T]) -> T:
        """Run `job` on the writer thread, after every write queued before it."""
        if self._queue is None or self._writer is None:
            self.reader.passages.sql.require_writable()  # raises the one-line read-only error
            raise AssertionError("unreachable")
        with self._stats_lock:
            if self.stats_.writes_queued - self.stats_.writes_done >= self.max_waiting_writes:
                raise BusyError(f"{self.max_waiting_writes} writes are already waiting; try again shortly")
            self.stats_.writes_queued += 1
        writer = self._writer

        def run() -> T:
            try:
                return job(writer)
            finally:
                self._count("writes_done")

        future: Future[T] = self._queue.submit(run)
        return future.result()

    def ingest_records(self, records: list[dict[str, Any]]) -> IngestReport:
        """Records {"id"?, "title"?, "text"} (a missing id becomes a content hash)."""
        docs = [_record(r, i) for i, r in enumerate(records)]
        return self._write(lambda mem: mem.ingest(docs, options=self.options))

    def ingest_texts(self, texts: list[str], title: str = "") -> IngestReport:
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise BadRequest(f"texts[{i}]: a string is needed, not {type(t).__name__}")
        docs = [Document(id="", title=title, text=t) for t in texts]
        return self._write(lambda mem: mem.ingest(docs, options=self.options))

    def ingest_file(self, name: str | None, data: bytes, doc_id: str | None = None,
                    content_type: str | None = None) -> IngestReport:
        """An uploaded file (text, Markdown, HTML, PDF or JSONL), read from a private copy:
        the client's name (else its content type) only chooses the reader and the title;
        the id is `doc_id`, else the cleaned name (a JSONL file's records keep their own ids)."""
        name = safe_name(name)
        stored = name
        if Path(name).suffix.lower() not in SUPPORTED:
            stored += _SUFFIX_BY_TYPE.get((content_type or "").split(";")[0].strip().lower(), "")

        def job(mem: Memory) -> IngestReport:
            with tempfile.TemporaryDirectory(prefix="kgmem-upload-") as tmp:
                path = Path(tmp) / stored
                path.write_bytes(data)
                failed: list[tuple[str, str]] = []
                docs = _uploaded(iter_documents([path], self.options), path, name, doc_id, failed)
                report = mem.ingest(docs, options=self.options)  # read as it goes: parts never all held
            report.failed[:0] = failed
            return report

        return self._write(job)

    def delete(self, doc_id: str) -> int:
        if self.reader.get(doc_id) is None and not self.reader.passages.sql.parts_of([doc_id]):
            raise NotFoundError(f"no document with id {doc_id!r}")
        return self._write(lambda mem: mem.delete(doc_id))

    # ------------------------------------------------------------------ conversations
    def remember(self, messages: list[dict[str, Any]], conversation: str, user: str | None = None,
                 at: str | None = None, session: str | None = None) -> IngestReport:
        return self._write(lambda mem: mem.remember(messages, conversation=conversation, user=user, at=at,
                                                    session=session))

    def recall(self, query: str, conversation: str | None = None, user: str | None = None, k: int = 10,
               since: str | None = None, until: str | None = None) -> list[Recalled]:
        if not query or not query.strip():
            raise BadRequest("q: the query is empty")
        return self.reader.recall(query, conversation=conversation, user=user, k=k, since=since, until=until)

    def forget(self, conversation: str | None = None, user: str | None = None,
               turns: list[str] | None = None) -> int:
        return self._write(lambda mem: mem.forget(conversation=conversation, user=user, turns=turns))

    # ------------------------------------------------------------------ reading
    def search(self, query: str, k: int = 10, mode: str = "auto") -> list[Hit]:
        if not query or not query.strip():
            raise BadRequest("q: the query is empty")
        return self.reader.search(query, k=k, mode=mode)

    def ask(self, question: str, *, k: int | None = None, budget: int | None = None, mode: str = "auto",
            on_token: Callable[[str], None] | None = None, cancelled: threading.Event | None = None,
            conversation: str | None = None, user: str | None = None, asker: str | None = None) -> Answer:
        """Answer a question (from documents; or from remembered turns, with `conversation`
        or `user`); with `cancelled`, the model stops at its next token once it is set (a
        client that left), and `Cancelled` is raised."""
        if not question or not question.strip():
            raise BadRequest("question: the question is empty")
        self._count("asks")
        self._count("asks_in_flight")
        try:
            if cancelled is not None and cancelled.is_set():
                raise Cancelled("the client left")
            if self._writer is not None and conversation is None and user is None and wants_global(question, mode):
                self._write(lambda mem: mem.overview.update())  # communities: reclustered by the writer
            return self.reader.ask(question, k=k, budget=budget, llm=self.llm, mode=mode, on_token=on_token,
                                   cancel=cancelled, conversation=conversation, user=user, asker=asker)
        except Cancelled:
            self._count("asks_cancelled")
            raise
        finally:
            self._count("asks_in_flight", -1)

    def get(self, doc_id: str) -> Document:
        doc = self.reader.get(doc_id)
        if doc is None:
            raise NotFoundError(f"no document with id {doc_id!r}")
        return doc

    def documents(self, offset: int = 0, limit: int = 50, prefix: str = "") -> dict[str, Any]:
        docs = self.reader.documents(limit=limit, offset=offset, prefix=prefix)
        total = self.reader.passages.sql.db["documents"].count
        return {"documents": docs, "offset": offset, "limit": limit, "total": total}

    def entity(self, name: str) -> dict[str, Any]:
        found = self.reader.graph.entity(name)
        if found is None:
            raise NotFoundError(f"no entity {name!r} in the graph")
        return found.as_dict()

    def neighbors(self, entity: str, hops: int = 1, limit: int = 100) -> dict[str, Any]:
        found = self.reader.graph.entity(entity)
        if found is None:
            raise NotFoundError(f"no entity {entity!r} in the graph")
        facts = self.reader.graph.neighbors(entity, hops=hops, limit=limit)
        names = {found.name} | {f.subject for f in facts} | {f.object for f in facts}
        return {"entity": found.name, "label": found.label, "hops": hops, "facts": [f.as_dict() for f in facts],
                "labels": self.reader.graph.labels(sorted(names))}

    def path(self, source: str, target: str) -> dict[str, Any]:
        for name in (source, target):
            if self.reader.graph.entity(name) is None:
                raise NotFoundError(f"no entity {name!r} in the graph")
        facts = self.reader.graph.path(source, target)
        return {"source": source, "target": target, "found": bool(facts), "facts": [f.as_dict() for f in facts]}

    def stats(self) -> dict[str, Any]:
        out = self.reader.stats()
        out.pop("path", None)  # where the store lives is the server's business
        out["read_only"] = self.read_only
        return out

    def health(self) -> dict[str, Any]:
        sql = self.reader.passages.sql
        return {"ok": True, "generation": sql.generation, "read_only": self.read_only, **self.stats_.as_dict()}


def _record(record: Any, i: int) -> Document:
    """A client's record, checked field by field (the error names the field), then read
    as any JSONL record is."""
    if not isinstance(record, dict):
        raise BadRequest(f"records[{i}]: an object {{id, title, text}} is needed")
    given = {"text": record.get("text"), "title": record.get("title") or "", "id": record.get("id")}
    for name, kinds in (("text", (str,)), ("title", (str,)), ("id", (str, int, type(None)))):
        if not isinstance(given[name], kinds):
            raise BadRequest(f"records[{i}].{name}: a string is needed")
    return record_to_document(record)


def _uploaded(items: Iterable[Any], path: Path, name: str, doc_id: str | None,
              failed: list[tuple[str, str]]) -> Iterable[Document]:
    """The documents read from an uploaded copy, named after the client's file, never
    after the temporary path."""
    here, new = str(path), doc_id or name
    for item in items:
        if isinstance(item, Document):
            if item.meta.get("part_of") == here:  # a part of a long upload
                item.meta["part_of"] = new
                item.id = f"{new}#{item.meta.get('part')}"
            elif item.id == here:
                item.id = new
            if item.source == here or not item.source:
                item.source = name
            yield item
        elif isinstance(item, Failure):
            failed.append((item.item.replace(here, name), item.reason.replace(here, name)))
