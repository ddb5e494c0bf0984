"""One writer at a time per store: an advisory lock on a file inside it.

Readers never take it (SQLite's WAL lets them read while a writer writes). A second
writer gets StoreLockedError at once, or waits up to `wait` seconds for its turn.
The lock dies with its process, so a killed writer never leaves a stale lock.
"""
from __future__ import annotations

import fcntl
import logging
import os
import time
from pathlib import Path

from ..errors import StoreLockedError

log = logging.getLogger("kgmem")

LOCK_NAME = "write.lock"
# Held (exclusively) beside write.lock while a writer works, so that readers can ask
# "is a write under way?" with a shared probe that never makes a writer fail its turn.
BUSY_NAME = "write.busy"


class WriterLock:
    def __init__(self, directory: Path, wait: float = 0.0):
        self.path = Path(directory) / LOCK_NAME
        self.wait = wait
        self._fd: int | None = None
        self._busy: int | None = None
        self._depth = 0

    def try_acquire(self) -> bool:
        if self._fd is not None:
            self._depth += 1
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        busy = os.open(self.path.with_name(BUSY_NAME), os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(busy, fcntl.LOCK_EX)  # blocks only for a reader's instant probe
        self._fd, self._busy, self._depth = fd, busy, 1
        return True

    def _holder(self) -> str:
        try:
            holder = self.path.read_text().strip()
        except OSError:
            return ""
        return f" (process {holder})" if holder else ""

    def acquire(self) -> None:
        deadline = time.monotonic() + self.wait
        told = False
        while not self.try_acquire():
            if self.wait > 0 and not told:
                log.warning("waiting for another process writing to %s%s (up to %gs)",
                            self.path.parent, self._holder(), self.wait)
                told = True
            if time.monotonic() >= deadline:
                who = self._holder()
                raise StoreLockedError(
                    f"another process is writing to {self.path.parent}{who}; wait for it to finish, "
                    "or set KGMEM_WRITER_WAIT=SECONDS to queue behind it"
                )
            time.sleep(0.2)

    def release(self) -> None:
        if self._fd is None:
            return
        self._depth -= 1
        if self._depth == 0:
            for fd in (self._busy, self._fd):
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
            self._fd = self._busy = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._fd is not None

    def writing(self) -> bool:
        """Whether a write is under way, here or in another process."""
        return self.held or self.busy_elsewhere()

    def busy_elsewhere(self) -> bool:
        """Whether another process (or another Memory) is writing right now."""
        if self._fd is not None:
            return False
        try:
            fd = os.open(self.path.with_name(BUSY_NAME), os.O_RDONLY)
        except FileNotFoundError:
            return False
        except OSError:
            return False  # unreadable (read-only media): no writer can be there either
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # closing drops the probe's shared lock
        return False

    def __enter__(self) -> "WriterLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
