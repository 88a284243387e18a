"""One job per checkpoint: a lock file in a local checkpoint folder, held while the job runs.

Two jobs on one checkpoint both start, and the second fails only when a new file arrives,
with Spark's `Multiple streaming queries are concurrently using ...` and a long Java trace
(or the first job fails, whichever lost the race). The lock makes the second one refuse to
start, in one line. It is an flock: the kernel releases it when the holder dies, even by
kill -9, so a crash never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.errors import JobError

LOCK_FILE = "_pipeline_lock"


class CheckpointLock:
    """Held from `acquire` until the process ends (or `release`)."""

    def __init__(self, root: Path):
        self.path = root / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise JobError saying which job holds it and what to do."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise JobError(f"checkpoint {self.path.parent} is in use by another job (pid"
                           f" {holder}): stop that job first, or give this one a --checkpoint"
                           " of its own") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@contextmanager
def checkpoint_lock(root: Path | None) -> Iterator[None]:
    """Hold the lock of a local checkpoint folder for the block (nothing for hdfs://, s3a://:
    there Spark's own check is all there is)."""
    lock = CheckpointLock(root) if root is not None else None
    if lock is not None:
        lock.acquire()
    try:
        yield
    finally:
        if lock is not None:
            lock.release()
