"""Small file helpers the stores share: which file is at a path, and atomic replacement."""
from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path


def file_stamp(path: Path) -> tuple[int, int, int] | None:
    """Which file is at `path` now (size, mtime, inode): each save writes a new file (a new
    inode) and renames it over the old one. None when there is none."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino)


def fsync_dir(directory: Path) -> None:
    """Make a rename in `directory` durable (where the platform allows opening a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Have `write` fill a temp file, fsync it, rename it over the target: a crash never
    leaves a torn file."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk: give its space back, leave the old file as it was
        raise
    fsync_dir(path.parent)


_NATIVE_ERRORS = (("No space left on device", errno.ENOSPC), ("File too large", errno.EFBIG),
                  ("Disk quota exceeded", errno.EDQUOT))


def native_os_error(exc: RuntimeError, path: Path) -> BaseException:
    """A native library's write error (FAISS reports them as RuntimeError with strerror in
    the text) as the OSError it was, so that a full disk is recognised; else exc itself."""
    for text, code in _NATIVE_ERRORS:
        if text in str(exc):
            return OSError(code, text, str(path))
    return exc
