"""Specific exceptions: the library raises these; the CLI turns them into one-line messages."""
from __future__ import annotations

import errno


class KgmemError(Exception):
    """Base class of every error kgmem raises on purpose."""


class StoreMismatchError(KgmemError):
    """The store was built with settings (embedder, chunking) that differ from the ones asked for."""


class SchemaVersionError(KgmemError):
    """The store's schema is newer than this kgmem understands."""


class ReadError(KgmemError):
    """An input could not be read; the message names the input and the reason."""


class StoreLockedError(KgmemError):
    """Another process is writing to the store."""


class NotFoundError(KgmemError):
    """A document or entity that was asked for does not exist."""


class CorruptStoreError(KgmemError):
    """A store file cannot be read; the message names it and how to rebuild it."""


class ReadOnlyStoreError(KgmemError):
    """A change was asked of a store opened read-only (or on read-only media)."""


class Cancelled(KgmemError):
    """The caller stopped waiting (a client that disconnected mid-answer); raised from a
    streaming callback, it stops the model at its next token."""


class DiskFullError(KgmemError):
    """The disk holding the store ran out of space (or the file size limit was hit);
    what was committed before is kept, and the same command completes once there is room."""


class BackupError(KgmemError):
    """A backup could not be made (the destination exists, or lies inside the store)."""


class ClusterError(KgmemError):
    """The Ray engine could not run: Ray is not installed, the cluster cannot be reached,
    or its workers failed (e.g. a node without kgmem's models). What was committed is kept."""


_FULL_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


FULL_BELOW = 1 << 20  # an I/O error with less free space than this is taken for a full disk


def disk_full(exc: BaseException, where: object = None) -> bool:
    """Whether `exc` says the disk (or a size limit) is full: an OSError of ENOSPC, EFBIG or
    EDQUOT, SQLite's SQLITE_FULL ("database or disk is full"), or an I/O error of SQLite's
    (its shared-memory file cannot grow) while the disk holding `where` has no room left."""
    import sqlite3

    if isinstance(exc, OSError):
        return exc.errno in _FULL_ERRNOS
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        if code == 13 or "disk is full" in str(exc):
            return True
        return where is not None and code is not None and code & 0xFF == 10 and _no_room(where)  # SQLITE_IOERR
    return False


def _no_room(where: object) -> bool:
    import shutil
    from pathlib import Path

    path = Path(str(where))
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free < FULL_BELOW
    except OSError:
        return False


def full_disk_line(exc: BaseException, store: object = None) -> str:
    """One line for a full disk: which store's disk, which file, and that a re-run completes."""
    import sqlite3

    where = f"the disk holding {store}" if store else "the disk"
    what = getattr(exc, "filename", None) or ("the database" if isinstance(exc, sqlite3.Error) else None)
    writing = f" (writing {what})" if what else ""
    return (f"no space left on {where}{writing}; what was committed is kept: free some space "
            "and run the same command again")
