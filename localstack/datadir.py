"""The local stack's data folder: where its Redis keeps jobs, and the lock that allows one stack.

Two stacks on one folder would run two Redis servers appending to the same files, so a
stack holds an exclusive ``flock`` on ``<folder>/stack.lock`` for as long as it runs.
The kernel drops the lock when the process dies, however it dies: no stale lock files.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

LOCK_NAME = "stack.lock"


class DataDirBusy(RuntimeError):
    """Another local stack holds the data folder."""


class DataLock:
    """An exclusive lock on a data folder, held from :meth:`acquire` to :meth:`release`."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._fd: int | None = None

    @property
    def path(self) -> Path:
        """The lock file."""
        return self.folder / LOCK_NAME

    def acquire(self) -> DataLock:
        """Take the lock, creating the folder if needed; :class:`DataDirBusy` if it is held."""
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DataDirBusy(
                f"another local stack (pid {holder}) is using the data folder {self.folder}; "
                "stop it first, or set EMCOINS_DATA_DIR to another folder"
            ) from None
        # The holder's pid, for the message a second stack prints.
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        """Give the lock up (closing the file releases it); the file stays for the next stack."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DataLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def empty_data_dir(folder: Path) -> list[Path]:
    """Empty ``folder`` but for the lock file, refusing while a stack runs; returns what went."""
    folder = Path(folder)
    if not folder.exists():
        return []
    removed = []
    with DataLock(folder):
        for entry in sorted(folder.iterdir()):
            if entry.name == LOCK_NAME:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry)
    return removed
