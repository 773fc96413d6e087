"""One run per run folder: an exclusive lock held for the life of a run.

The lock is ``flock`` on ``<out>/.fastpgan-run.lock``, which holds the PID of the process
that took it. The operating system releases it when that process ends, however it ends,
so a run killed with ``kill -9`` leaves no stale lock; a second run into the same folder
is refused at once, naming the first one's PID.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_FILE = ".fastpgan-run.lock"


class RunFolderBusyError(ValueError):
    """Another process holds the run folder."""


class RunLock:
    """The lock on one run folder (see the module docstring); :meth:`acquire` once,
    :meth:`release` when the run ends (or let the process end)."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.path = Path(folder) / LOCK_FILE
        self._file = None

    def acquire(self) -> RunLock:
        """Takes the lock; RunFolderBusyError naming the holder's PID if another process
        holds it. Returns self."""
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise RunFolderBusyError(
                f"--out {self.path.parent} is in use by another run (PID {holder}); wait "
                "for it to end, stop it, or choose another --out") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._file = handle
        return self

    @property
    def held(self) -> bool:
        """Whether this process holds the lock through this object."""
        return self._file is not None

    def release(self) -> None:
        """Releases the lock (a no-op when not held)."""
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None
