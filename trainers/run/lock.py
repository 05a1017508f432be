"""One writer per run directory: an OS file lock on RUN_DIR/.lock, held while a process trains in it.

A second process that opens the same directory to train or resume is refused with the holder's
process id. The lock is the kernel's (flock), so it disappears with its process: a run killed
with kill -9 leaves no stale lock behind. Where flock does not exist (Windows) nothing is locked.
"""
from __future__ import annotations

import os
from pathlib import Path

from configs.loader import ConfigError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".lock"


class RunLock:
    """The lock of one run directory; `release()` (or the process ending) frees it."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        """Take the lock or raise ConfigError naming the process that holds it."""
        if fcntl is None or self._fd is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise ConfigError(f"{self.path.parent}: in use by process {holder}, which is training in it; "
                              "wait for it to finish or stop it (Ctrl-C saves a checkpoint), or choose "
                              "another --run-dir") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
