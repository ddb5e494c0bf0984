"""One writer at a time per store: an advisory lock on a file inside it.

Readers never take it (SQLite's WAL lets them read while a writer writes). A second
writer gets StoreLockedError at once, or waits up to `wait` seconds for its turn;
a writer that comes back while others wait lets them go first (write.queue).
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
# Writers waiting for their turn hold a shared lock here (see WriterLock._acquire).
QUEUE_NAME = "write.queue"
_POLL = 0.05  # seconds between a waiting writer's tries


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


class WriterLock:
    def __init__(self, directory: Path, wait: float = 0.0):
        self.path = Path(directory) / LOCK_NAME
        self.wait = wait
        self._fd: int | None = None
        self._busy: int | None = None
        self._depth = 0

    def _take(self) -> bool:
        """write.lock itself, without waiting."""
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

    def try_acquire(self) -> bool:
        """The lock now, or False (someone writes, or waits in the queue for it)."""
        return self._acquire(wait=None)

    def acquire(self) -> None:
        """The lock, waiting up to `wait` seconds in turn; StoreLockedError after that."""
        if not self._acquire(wait=self.wait):
            raise StoreLockedError(
                f"another process is writing to {self.path.parent}{self._holder()}; wait for it to finish, "
                "or set KGMEM_WRITER_WAIT=SECONDS to queue behind it"
            )

    def _acquire(self, wait: float | None) -> bool:
        # Turns: a writer that waits holds a shared lock on write.queue while it does. One
        # that arrives (or comes back for more) while others wait lets them go first: it
        # pauses longer than a waiter's poll before it tries. Without this, a writer
        # writing in a loop took the lock again before a waiter's next poll, for minutes
        # (measured in benchmarks/soak.py).
        if self._fd is not None:
            self._depth += 1
            return True
        deadline = time.monotonic() + (wait or 0.0)
        queue = os.open(self.path.with_name(QUEUE_NAME), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            others = not _try_flock(queue)  # an exclusive probe fails while anyone waits
            if not others and self._take():
                return True
            if not wait:
                return False
            fcntl.flock(queue, fcntl.LOCK_UN)  # (the probe may have succeeded)
            fcntl.flock(queue, fcntl.LOCK_SH)  # now one of the waiters
            log.warning("waiting for another process writing to %s%s (up to %gs)",
                        self.path.parent, self._holder(), wait)
            if others:
                time.sleep(2 * _POLL)
            while not self._take():
                if time.monotonic() >= deadline:
                    return False
                time.sleep(_POLL)
            return True
        finally:
            os.close(queue)  # no longer waiting

    def _holder(self) -> str:
        try:
            holder = self.path.read_text().strip()
        except OSError:
            return ""
        return f" (process {holder})" if holder else ""

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
