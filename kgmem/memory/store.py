"""The passage store: documents, chunks and a BM25 index over them, in one SQLite file.

A chunk's row id is also its id in the FAISS index, so one number ties a passage's
text, its vector and (in the graph layer) its mentions together.
"""
from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlite_utils

from ..errors import DiskFullError, ReadOnlyStoreError, disk_full, full_disk_line
from .lexical import PostingsBudget
from .migrations import Migration, apply_migrations, pending
from .schema import MEMORY_MIGRATIONS

DB_NAME = "kgmem.db"
log = logging.getLogger("kgmem")

@dataclass
class Document:
    id: str
    text: str
    title: str = ""
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    hash: str = ""


@dataclass
class Chunk:
    id: int
    doc_id: str
    ord: int
    start: int
    end: int
    text: str
    n_tokens: int
    title: str = ""
    source: str = ""


@dataclass
class NewChunk:
    """A chunk about to be written: offsets into its document's text."""

    ord: int
    start: int
    end: int
    text: str
    n_tokens: int
    heading: str = ""  # its section's heading path (Markdown and HTML), embedded with it


_WORD = re.compile(r"\w+", re.UNICODE)
# FTS5 treats these as operators; a question full of them is still just words to us.
_FTS_STOP = {"and", "or", "not", "near"}


def query_words(text: str, stopwords: frozenset[str] | set[str] = frozenset()) -> list[str]:
    """The distinct searchable words of raw user text, in order."""
    words: list[str] = []
    for word in _WORD.findall(text.lower()):
        if word not in stopwords and word not in _FTS_STOP and word not in words:
            words.append(word)
    return words


def fts_query(text: str | list[str], stopwords: frozenset[str] | set[str] = frozenset()) -> str:
    """Turn raw user text (or its words) into a safe FTS5 query: each word quoted, OR-ed."""
    words = query_words(text, stopwords) if isinstance(text, str) else text
    return " OR ".join('"' + w.replace('"', '""') + '"' for w in words)


def _unwritable(directory: Path, db: Path) -> bool:
    if not db.exists():
        return False
    return not (os.access(directory, os.W_OK) and os.access(db, os.W_OK))


def _holds(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except FileNotFoundError:
        return False


class SQLiteStore:
    """Documents and chunks in SQLite (WAL), with an FTS5 index for BM25 search."""

    def __init__(self, directory: Path, busy_timeout: float = 30.0, read_only: bool | None = None):
        self.directory = Path(directory)
        self.path = self.directory / DB_NAME
        # Read-only: asked for, or a store on media this process cannot write (a mounted
        # snapshot, a shared read-only folder). Searching then needs no write access at all.
        self.read_only = _unwritable(self.directory, self.path) if read_only is None else read_only
        # Asked for on media this process could write, beside a WAL (a live writer's, whose
        # shared-memory file is there too): read through it. With no WAL, nothing is created.
        wal = self.path.with_name(DB_NAME + "-wal")
        self._live = bool(read_only) and not _unwritable(self.directory, self.path) and wal.exists()
        if self.read_only and not self.path.exists():
            raise FileNotFoundError(f"no kgmem store at {self.directory} (read-only: cannot create one)")
        if not self.read_only:
            self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._busy_timeout = busy_timeout
        self._fts_conn: sqlite3.Connection | None = None
        self._fts_lock = threading.Lock()
        self.postings_budget = PostingsBudget()
        self._depth = 0
        self.full_disk: str | None = None  # why a writable store was opened read-only
        try:
            self._open()
        except sqlite3.Error as exc:
            # A full disk cannot hold even the WAL's index file that opening needs. A store
            # its last writer closed (no WAL) is read as it is: search and ask go on.
            if read_only is not None or self.read_only or not disk_full(exc, self.directory) or _holds(wal):
                raise
            if getattr(self, "conn", None) is not None:
                self.conn.close()
            self.full_disk, self.read_only = full_disk_line(exc, self.directory), True
            log.info("%s is opened read-only: its disk is full", self.directory)
            self._open()

    def _open(self) -> None:
        self.conn = self._connect()
        self.conn.row_factory = sqlite3.Row
        if not self.read_only:
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        self.conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout * 1000)}")
        self.db = sqlite_utils.Database(self.conn)
        self.migrate(MEMORY_MIGRATIONS)

    def connect(self) -> sqlite3.Connection:
        """A new connection to this database, opened the way this store's own is."""
        return self._connect()

    def _connect(self) -> sqlite3.Connection:
        if self.read_only:
            # On read-only media, immutable: no lock files, no WAL index to create; the store
            # must have been closed cleanly by its last writer (kgmem always does, or check
            # --repair). Read-only by choice beside a live writer: mode=ro reads its WAL.
            flags = "mode=ro" if self._live else "mode=ro&immutable=1"
            uri = f"file:{urllib.parse.quote(str(self.path.absolute()))}?{flags}"
            return sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        return sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False)

    def migrate(self, migrations: list[Migration]) -> list[str]:
        """Bring a layer's tables up to date; a write (BEGIN IMMEDIATE) only when needed."""
        if not pending(self.conn, migrations):
            return []
        if self.full_disk:
            raise DiskFullError(self.full_disk)
        if self.read_only:
            raise ReadOnlyStoreError(f"{self.directory} is read-only and needs a schema upgrade: "
                                     "open it once with write access")
        with self.transaction():
            return apply_migrations(self.conn, migrations)

    def require_writable(self) -> None:
        if self.full_disk:
            raise DiskFullError(self.full_disk)
        if self.read_only:
            raise ReadOnlyStoreError(f"{self.directory} is read-only: it can be searched and asked, not changed")

    # ------------------------------------------------------------------ plumbing
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE); nested calls join the outer one."""
        with self._lock:
            outer = self._depth == 0
            if outer:
                self.conn.execute("BEGIN IMMEDIATE")
            self._depth += 1
            try:
                yield self.conn
            except BaseException:
                self._depth -= 1
                if outer:
                    self.conn.execute("ROLLBACK")
                raise
            self._depth -= 1
            if outer:
                self.conn.execute("COMMIT")

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """Reads that must see one committed state (a view build, a check): one read
        transaction, so a writer committing meanwhile is not half seen."""
        with self._lock:
            if self.conn.in_transaction:  # inside this process's own write: read it as is
                yield self.conn
                return
            self.conn.execute("BEGIN")
            try:
                yield self.conn
            finally:
                self.conn.execute("COMMIT")

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction():
            self.conn.execute(
                "INSERT INTO meta(key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def bump_generation(self) -> int:
        """Count writes that change the chunk set; the vector file records the one it matches."""
        with self.transaction():
            gen = int(self.get_meta("generation", "0") or 0) + 1
            self.set_meta("generation", str(gen))
        return gen

    @property
    def generation(self) -> int:
        return int(self.get_meta("generation", "0") or 0)

    def close(self) -> None:
        with self._lock:
            if self._fts_conn is not None:
                self._fts_conn.close()
                self._fts_conn = None
            self.conn.close()

    def _fts(self) -> sqlite3.Connection:
        # BM25 gets its own connection: a search can then run in a thread beside queries on
        # the main connection (graph linking, chunk reads) instead of queueing behind them.
        if self._fts_conn is None:
            self._fts_conn = self._connect()
        return self._fts_conn

    # ------------------------------------------------------------------ documents
    def document_hashes(self, ids: Sequence[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            marks = ",".join("?" * len(part))
            for row in self.conn.execute(
                f"SELECT id, hash FROM documents WHERE id IN ({marks})", part
            ):
                out[row[0]] = row[1]
        return out

    def iter_document_hashes(self, block: int = 10_000) -> Iterator[tuple[str, str]]:
        """Every stored document's (id, content hash), in id order, read `block` rows at a time."""
        last = ""
        while True:
            rows = self.conn.execute("SELECT id, hash FROM documents WHERE id > ? ORDER BY id LIMIT ?",
                                     (last, block)).fetchall()
            if not rows:
                return
            yield from ((r[0], r[1]) for r in rows)
            last = rows[-1][0]

    def add_document(self, doc: Document, chunks: Sequence[NewChunk]) -> list[int]:
        """Insert a document and its chunks (caller holds the transaction); returns chunk ids."""
        self.conn.execute(
            "INSERT INTO documents(id, title, source, hash, meta, text, added_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (doc.id, doc.title, doc.source, doc.hash, json.dumps(doc.meta), doc.text, time.time()),
        )
        ids = []
        for ch in chunks:
            cur = self.conn.execute(
                "INSERT INTO chunks(doc_id, ord, start, end, text, n_tokens) VALUES (?, ?, ?, ?, ?, ?)",
                (doc.id, ch.ord, ch.start, ch.end, ch.text, ch.n_tokens),
            )
            cid = int(cur.lastrowid)
            ids.append(cid)
            self.conn.execute(
                "INSERT INTO chunks_fts(rowid, title, text) VALUES (?, ?, ?)",
                (cid, doc.title, ch.text),
            )
        return ids

    def delete_documents(self, doc_ids: Sequence[str]) -> list[int]:
        """Delete documents with their chunks and FTS rows; returns the removed chunk ids."""
        removed: list[int] = []
        with self.transaction():
            for doc_id in doc_ids:
                ids = [r[0] for r in self.conn.execute("SELECT id FROM chunks WHERE doc_id = ?", (doc_id,))]
                # External-content FTS5 needs the old values to delete a row: read them
                # through the content view before the chunk rows go.
                self.conn.execute(
                    "INSERT INTO chunks_fts(chunks_fts, rowid, title, text) "
                    "SELECT 'delete', id, title, text FROM chunks_fts_content "
                    "WHERE id IN (SELECT id FROM chunks WHERE doc_id = ?)",
                    (doc_id,),
                )
                self.conn.execute("DELETE FROM chunks WHERE doc_id = ?", (doc_id,))
                self.conn.execute("DELETE FROM documents WHERE id = ?", (doc_id,))
                removed.extend(ids)
        return removed

    # ------------------------------------------------------------------ parts of long documents
    _PART_OF = "json_extract(meta, '$.part_of')"

    def has_parts(self) -> bool:
        return self.conn.execute(f"SELECT 1 FROM documents WHERE {self._PART_OF} IS NOT NULL LIMIT 1").fetchone() \
            is not None

    def parts_of(self, doc_ids: Iterable[str]) -> dict[str, list[str]]:
        """The ids of the stored parts of each of these documents that has parts."""
        out: dict[str, list[str]] = {}
        for doc_id in doc_ids:
            ids = [r[0] for r in self.conn.execute(f"SELECT id FROM documents WHERE {self._PART_OF} = ?", (doc_id,))]
            if ids:
                out[doc_id] = ids
        return out

    def stale_parts(self, parted: dict[str, int], whole: Iterable[str]) -> list[str]:
        """What a write left behind: parts beyond a document's new count (and its old
        unparted version), and the parts of documents now stored whole."""
        stale: list[str] = []
        for doc_id, count in parted.items():
            stale += [r[0] for r in self.conn.execute(
                f"SELECT id FROM documents WHERE {self._PART_OF} = ? AND json_extract(meta, '$.part') > ?",
                (doc_id, count))]
            if self.conn.execute("SELECT 1 FROM documents WHERE id = ?", (doc_id,)).fetchone():
                stale.append(doc_id)
        stale += [part for ids in self.parts_of(whole).values() for part in ids]
        return stale

    def get_document(self, doc_id: str) -> Document | None:
        row = self.conn.execute(
            "SELECT id, title, source, hash, meta, text FROM documents WHERE id = ?", (doc_id,)
        ).fetchone()
        if row is None:
            return None
        return Document(
            id=row["id"], text=row["text"], title=row["title"], source=row["source"],
            meta=json.loads(row["meta"]), hash=row["hash"],
        )

    def list_documents(self, limit: int | None = 50, offset: int = 0, prefix: str = "") -> list[dict[str, Any]]:
        """Stored documents in id order, without their text: id, title, source, characters,
        chunks, when added, and for a part of a long document its whole's id and number."""
        top = (1 << 63) - 1  # SQLite's integers: an offset past them is past the end all the same
        offset, limit = min(offset, top), None if limit is None else min(limit, top)
        rows = self.db["documents"].rows_where(
            "id >= ? AND id < ?" if prefix else None, [prefix, prefix + "\U0010ffff"] if prefix else [],
            select="id, title, source, length(text) AS chars, added_at, "
                   "json_extract(meta, '$.part_of') AS part_of, json_extract(meta, '$.part') AS part, "
                   "(SELECT count(*) FROM chunks WHERE chunks.doc_id = documents.id) AS chunks",
            order_by="id", limit=limit, offset=offset or None,
        )
        return [{k: v for k, v in row.items() if v is not None or k not in ("part_of", "part")} for row in rows]

    def document_ids(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT id FROM documents ORDER BY id")]

    # ------------------------------------------------------------------ chunks
    def chunks(self, ids: Iterable[int]) -> dict[int, Chunk]:
        ids = list(ids)
        out: dict[int, Chunk] = {}
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            marks = ",".join("?" * len(part))
            for r in self.conn.execute(
                "SELECT c.id, c.doc_id, c.ord, c.start, c.end, c.text, c.n_tokens, d.title, d.source "
                f"FROM chunks c JOIN documents d ON d.id = c.doc_id WHERE c.id IN ({marks})",
                part,
            ):
                out[r[0]] = Chunk(*r)
        return out

    def chunks_of(self, doc_id: str) -> list[Chunk]:
        rows = self.conn.execute(
            "SELECT c.id, c.doc_id, c.ord, c.start, c.end, c.text, c.n_tokens, d.title, d.source "
            "FROM chunks c JOIN documents d ON d.id = c.doc_id WHERE c.doc_id = ? ORDER BY c.ord",
            (doc_id,),
        )
        return [Chunk(*r) for r in rows]

    def chunk_ids(self) -> list[int]:
        return [r[0] for r in self.conn.execute("SELECT id FROM chunks ORDER BY id")]

    def iter_chunks(self, ids: Sequence[int], batch: int = 256) -> Iterator[list[Chunk]]:
        for start in range(0, len(ids), batch):
            part = ids[start : start + batch]
            found = self.chunks(part)
            yield [found[i] for i in part if i in found]

    # ------------------------------------------------------------------ search
    def lexical_search(
        self, query: str, k: int, stopwords: frozenset[str] | set[str] = frozenset(),
        within: Sequence[int] | None = None,
    ) -> list[tuple[int, float]]:
        """BM25 over chunk text and title; returns (chunk id, score) best first (higher is
        better). `within`: only these chunk ids."""
        words = query_words(query, stopwords)
        if not words:
            return []
        with self._fts_lock:
            conn = self._fts()
            match = fts_query(self.postings_budget.select(conn, words))
            if within is None:
                rows = conn.execute(
                    "SELECT rowid, bm25(chunks_fts) AS s FROM chunks_fts WHERE chunks_fts MATCH ? "
                    "ORDER BY s LIMIT ?",
                    (match, k),
                ).fetchall()
            else:
                rows = conn.execute(
                    "SELECT rowid, bm25(chunks_fts) AS s FROM chunks_fts WHERE chunks_fts MATCH ? "
                    "AND rowid IN (SELECT value FROM json_each(?)) ORDER BY s LIMIT ?",
                    (match, json.dumps([int(i) for i in within]), k),
                ).fetchall()
        # SQLite's bm25() is lower-is-better (negative); flip it so every retriever agrees.
        return [(int(r[0]), -float(r[1])) for r in rows]

    # ------------------------------------------------------------------ stats & checks
    def counts(self) -> dict[str, int]:
        words = "SELECT coalesce(sum(length(text) - length(replace(text, ' ', '')) + 1), 0) FROM documents"
        return {
            "documents": self.db["documents"].count,
            "chunks": self.db["chunks"].count,
            "words": int(self.conn.execute(words).fetchone()[0]),
        }

    def check(self) -> list[str]:
        problems = []
        orphans = self.conn.execute(
            "SELECT count(*) FROM chunks WHERE doc_id NOT IN (SELECT id FROM documents)"
        ).fetchone()[0]
        if orphans:
            problems.append(f"{orphans} chunks belong to no document")
        bad = self.conn.execute(
            "SELECT count(*) FROM chunks c JOIN documents d ON d.id = c.doc_id "
            "WHERE substr(d.text, c.start + 1, c.end - c.start) != c.text"
        ).fetchone()[0]
        if bad:
            problems.append(f"{bad} chunks whose offsets do not match their document's text")
        return problems

    def save_word_stats(self) -> None:
        """The writer, after a write: BM25's word frequencies, counted once and kept."""
        with self._lock:
            self.postings_budget.save(self.conn)

    def warm_word_stats(self) -> None:
        """Load BM25's word frequencies now rather than at the first question."""
        with self._fts_lock:
            self.postings_budget.select(self._fts(), ["warm", "up"])

    def check_fts(self) -> list[str]:
        """FTS5's own integrity check. It is a write statement: run it on its own (it
        waits its turn behind a writer), never inside a read snapshot."""
        if self.read_only:
            return []  # it cannot run there, and nothing can have changed the index since it was written
        try:
            self.conn.execute("INSERT INTO chunks_fts(chunks_fts, rank) VALUES ('integrity-check', 1)")
        except sqlite3.OperationalError:
            raise  # busy or I/O: not a verdict on the index
        except sqlite3.DatabaseError as exc:
            return [f"full-text index disagrees with the chunks: {exc}"]
        return []

    def rebuild_fts(self) -> None:
        with self.transaction():
            self.conn.execute("INSERT INTO chunks_fts(chunks_fts) VALUES ('rebuild')")

