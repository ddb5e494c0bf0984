"""A consistent copy of a store that is in use: `kgmem backup DEST`, `Memory.backup(dest)`.

The database (documents, chunks, full-text index, graph) is copied with SQLite's online
backup API in one step: the copy is the store as of one committed transaction, while
writers go on committing (WAL) and readers go on reading. Its generation says which write
that was. The vector files (index, log, state) are then copied as a set the state names,
of a generation at least as new: a writer saves its vectors right after each commit, so
the backup waits for that save if it came between the two. Vectors of chunks committed
after the database's copy are dropped from the copy (chunk ids are never reused, so no
vector can stand for another chunk), leaving exactly one vector per chunk.

Everything is written to a temporary folder beside DEST and renamed to DEST at the end:
a backup that fails (a full disk) or is killed never leaves something that looks like a
store. Lock files are not copied; the graph walk's matrix is (it is a cache, read only
when its generation matches).
"""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from pathlib import Path

from ..errors import BackupError
from .files import atomic_write, file_stamp, fsync_dir
from .lock import WriterLock
from .store import DB_NAME, SQLiteStore
from .vectorlog import HEADER, LOG_NAME
from .vectors import INDEX_NAME, STATE_NAME

MATRIX_NAME = "graph-matrix.npz"  # the graph walk's matrix cache (retrieval/graph.py saves it)
COPY_TRIES = 20  # vector sets a busy writer replaced while they were being copied
_POLL = 0.05


def temp_destination(dest: Path) -> Path:
    """Where a backup is assembled before it becomes DEST; refuses a DEST that holds files."""
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise BackupError(f"{dest} already exists and is not empty: name a new folder for the backup")
    tmp = dest.with_name(f".{dest.name}.backup-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def refuse_inside(source: Path, dest: Path) -> None:
    src, dst = source.resolve(), dest.resolve()
    if dst == src or src in dst.parents:
        raise BackupError(f"{dest} is inside the store {source}: back up to a folder outside it")


def copy_database(store: SQLiteStore, dest: Path) -> int:
    """SQLite's online backup of the store's database into dest, in one step (one read
    transaction: a consistent snapshot). Returns the copy's generation."""
    src = store.connect()  # opened as the store's own connection is (read-only media included)
    dst = sqlite3.connect(dest / DB_NAME)
    try:
        src.execute("PRAGMA busy_timeout=30000")
        src.backup(dst, pages=-1)
        row = dst.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        dst.execute("PRAGMA journal_mode=WAL")  # as kgmem opens it
    finally:
        src.close()
        dst.close()
    return int(row[0]) if row else 0


def _read_state(path: Path) -> dict | None:
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError):
        return {}  # damaged: copied as it is, for `check --repair` on the copy to report
    return state if isinstance(state, dict) else {}


def _generation(state: dict) -> int:
    try:
        return int(state.get("generation", -1))
    except (TypeError, ValueError):
        return -1


def _copy_prefix(src: Path, dst: Path, size: int) -> bool:
    """The first `size` bytes of src into dst; False when src is shorter (replaced meanwhile)."""
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        left = size
        while left:
            block = fin.read(min(left, 1 << 20))
            if not block:
                return False
            fout.write(block)
            left -= len(block)
    return True  # (made durable with the rest by finish)


def _copy_set(source: Path, dest: Path, state: dict) -> bool:
    """The index file and log prefix `state` names, into dest; False when either is not the
    one it names any more (a writer folded meanwhile)."""
    index = source / INDEX_NAME
    named = state.get("index")
    before = file_stamp(index)
    if before is not None:
        shutil.copyfile(index, dest / INDEX_NAME)
        if file_stamp(index) != before or (named and list(named) != list(before)):
            return False
    log = state.get("log") or {}
    committed = int(log.get("bytes", 0))
    (dest / LOG_NAME).unlink(missing_ok=True)
    if committed > HEADER.size:
        try:
            with open(source / LOG_NAME, "rb") as fh:
                head = fh.read(HEADER.size)
        except FileNotFoundError:
            return False
        if len(head) < HEADER.size or HEADER.unpack(head)[2] != int(log.get("epoch", 0)):
            return False
        if not _copy_prefix(source / LOG_NAME, dest / LOG_NAME, committed):
            return False
    return True


def copy_vectors(source: Path, dest: Path, generation: int, wait: float) -> int | None:
    """The vector set of a saved state of at least `generation` (waiting up to `wait` s for
    a live writer's save); returns the generation copied, None when the store has no
    vectors yet. The copy's state names the copied index file."""
    state_path = source / STATE_NAME
    deadline = time.monotonic() + wait
    writer = WriterLock(source)
    for _ in range(COPY_TRIES):
        while True:
            stamp = file_stamp(state_path)
            state = _read_state(state_path)
            if state is None:
                return None
            saved = _generation(state)
            if saved >= generation or time.monotonic() >= deadline or not writer.busy_elsewhere():
                break  # (no live writer: a stopped one's unsaved vectors are re-embedded)
            time.sleep(_POLL)
        if _copy_set(source, dest, state) and file_stamp(state_path) == stamp:
            index = file_stamp(dest / INDEX_NAME)
            state = {**state, "index": list(index) if index else None}
            atomic_write(dest / STATE_NAME, lambda tmp: tmp.write_text(json.dumps(state)))
            return saved
        time.sleep(_POLL)
    raise BackupError(f"the vectors of {source} kept changing while being copied; try again")


def copy_matrix(source: Path, dest: Path) -> None:
    try:
        shutil.copyfile(source / MATRIX_NAME, dest / MATRIX_NAME)
    except FileNotFoundError:
        pass


def finish(tmp: Path, dest: Path) -> None:
    """Make the assembled copy durable and give it its name."""
    for path in tmp.rglob("*"):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
    if dest.exists():
        dest.rmdir()  # an empty folder named for it
    os.replace(tmp, dest)
    fsync_dir(dest.parent)


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
