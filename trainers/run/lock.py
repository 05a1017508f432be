"""One writer per run directory and per paper-trading ledger: an OS file lock held while a process
works in it (RUN_DIR/.lock, LEDGER.lock).

A second process that opens the same directory or ledger is refused with the holder's process id
and what it is doing. The lock is the kernel's (flock), so it disappears with its process: a
process killed with kill -9 leaves no stale lock behind. Where flock does not exist (Windows)
nothing is locked.
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
"""the lock file of a run directory"""


class ProcessLock:
    """An exclusive lock on `path` for one process doing `activity` ("training", "paper trading");
    `release()` (or the process ending) frees it. `owner` names what is locked in messages."""

    def __init__(self, path: Path, owner: str, activity: str) -> None:
        self.path, self.owner, self.activity = Path(path), owner, activity
        self._fd: int | None = None

    def acquire(self) -> ProcessLock:
        """Take the lock or raise ConfigError naming the process that holds it and what it does."""
        if fcntl is None or self._fd is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid, _, activity = os.read(fd, 256).decode(errors="replace").strip().partition(" ")
            os.close(fd)
            raise ConfigError(f"{self.owner}: in use by process {pid or 'unknown'}, which is "
                              f"{activity or 'working'} in it; wait for it to finish or stop it (Ctrl-C "
                              "keeps what it wrote), or choose another one") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {self.activity}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def run_lock(run_dir: Path, activity: str = "training") -> ProcessLock:
    """The lock of one run directory (RUN_DIR/.lock)."""
    return ProcessLock(Path(run_dir) / LOCK_FILE, str(run_dir), activity)
