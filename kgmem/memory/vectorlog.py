"""The append-only log of vector changes since the FAISS file was last written.

An ingest adds vectors batch after batch. Keeping them in the in-memory FAISS index
and rewriting the whole index at each checkpoint made a long ingest's memory (1.5 KB
a chunk) and save time grow with the store. Instead each change is appended here:
a fixed-size record per vector, the id (an id below zero removes chunk -id-1) and its
float32 values. The state file says how many bytes of the log are committed; readers
replay that much, a writer's later bytes are not theirs. A *fold* writes the index
with the log applied and starts a new, empty log (its epoch, in the header, goes up).
"""
from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .files import atomic_write

LOG_NAME = "vectors.log"
MAGIC = b"KGVL"
HEADER = struct.Struct("<4sIQ")  # magic, dimension, epoch
BLOCK = 4096  # records read at a time when replaying


class LogDamaged(Exception):
    """The log does not match what the state says of it (torn, foreign or missing)."""


class LogMoved(Exception):
    """The log file is of another epoch than asked for: a fold replaced it."""


class VectorLog:
    def __init__(self, directory: Path, dim: int):
        self.path = Path(directory) / LOG_NAME
        self.dim = dim
        self.dtype = np.dtype([("id", "<i8"), ("v", "<f4", (dim,))])
        self._fh = None  # open for appending while this process writes

    @property
    def record_size(self) -> int:
        return self.dtype.itemsize

    def epoch(self) -> int | None:
        """The epoch in the file's header; None when there is no log file."""
        try:
            with open(self.path, "rb") as fh:
                return self._header(fh)
        except FileNotFoundError:
            return None

    def _header(self, fh) -> int:
        head = fh.read(HEADER.size)
        if len(head) < HEADER.size:
            raise LogDamaged("shorter than its header")
        magic, dim, epoch = HEADER.unpack(head)
        if magic != MAGIC or dim != self.dim:
            raise LogDamaged("not a kgmem vector log of this dimension")
        return int(epoch)

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def read(self, epoch: int, start: int, end: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, vectors) of the records in bytes [start, end) of the log of `epoch`, in
        order, a block at a time (LogMoved: the file is another epoch's)."""
        start = max(start, HEADER.size)
        if end <= start:
            return
        if (end - HEADER.size) % self.record_size or (start - HEADER.size) % self.record_size:
            raise LogDamaged(f"{end - HEADER.size} bytes of records is not a whole number of records")
        try:
            fh = open(self.path, "rb")
        except FileNotFoundError:
            raise LogMoved() from None
        with fh:
            if self._header(fh) != epoch:
                raise LogMoved()
            fh.seek(start)
            left = end - start
            while left:
                data = fh.read(min(left, BLOCK * self.record_size))
                if not data:
                    raise LogDamaged(f"{left} bytes shorter than the state says")
                if len(data) % self.record_size:
                    raise LogDamaged("ends inside a record")
                rec = np.frombuffer(data, dtype=self.dtype)
                left -= len(data)
                yield rec["id"], rec["v"]

    # ------------------------------------------------------------------ writing
    def start(self, epoch: int) -> None:
        """Replace the log with an empty one of `epoch` (atomically: a temp file renamed)."""
        self.close()
        atomic_write(self.path, lambda tmp: tmp.write_bytes(HEADER.pack(MAGIC, self.dim, epoch)))

    def open_at(self, committed: int) -> None:
        """Append from `committed` bytes on: what a stopped writer left past it is dropped."""
        if self._fh is None:
            # Unbuffered: a write that fails (a full disk) is cut back to the last whole
            # record at once, never left in a buffer to be flushed torn at close.
            self._fh = open(self.path, "r+b", buffering=0)
            self._fh.truncate(committed)
            self._fh.seek(committed)

    @property
    def appending(self) -> bool:
        return self._fh is not None

    def append(self, ids: np.ndarray, vectors: np.ndarray | None) -> int:
        """Write records; `vectors` None writes removals. Returns the log's size after them."""
        assert self._fh is not None, "open_at first"
        rec = np.zeros(len(ids), dtype=self.dtype)
        if vectors is None:
            rec["id"] = -np.asarray(ids, dtype=np.int64) - 1
        else:
            rec["id"] = ids
            rec["v"] = vectors
        good = self._fh.tell()
        data = memoryview(rec.tobytes())
        try:
            while data:  # straight to the page cache: this process may replay it before a save
                data = data[self._fh.write(data):]
        except BaseException as exc:
            self._fh.truncate(good)  # no torn record: the log ends at the last whole batch
            self._fh.seek(good)
            if isinstance(exc, OSError) and not exc.filename:
                raise OSError(exc.errno, exc.strerror, str(self.path)) from exc  # name the file
            raise
        return self._fh.tell()

    def sync(self) -> int:
        """Make what was appended durable; returns the log's size."""
        if self._fh is None:
            return self.size()
        os.fsync(self._fh.fileno())
        return self._fh.tell()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
