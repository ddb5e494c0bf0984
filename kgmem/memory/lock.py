"""One writer at a time per store: an advisory lock on a file inside it.

Readers never take it (SQLite's WAL lets them read while a writer writes). A second
writer gets StoreLockedError at once, or waits up to `wait` seconds for its turn.
The lock dies with its process, so a killed writer never leaves a stale lock.
"""
from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from ..errors import StoreLockedError

LOCK_NAME = "write.lock"


class WriterLock:
    def __init__(self, directory: Path, wait: float = 0.0):
        self.path = Path(directory) / LOCK_NAME
        self.wait = wait
        self._fd: int | None = None
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
        self._fd, self._depth = fd, 1
        return True

    def acquire(self) -> None:
        deadline = time.monotonic() + self.wait
        while not self.try_acquire():
            if time.monotonic() >= deadline:
                holder = ""
                try:
                    holder = self.path.read_text().strip()
                except OSError:
                    pass
                who = f" (process {holder})" if holder else ""
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
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "WriterLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
