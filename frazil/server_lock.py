"""One server per data dir: an exclusive lock on `<data-dir>/server.lock`, held for the life of
the process.

Two servers on one data dir would share its database, blobs and sandbox scope, and the second
one's start-up removes the "stale" instances it finds there, which are the first one's warm
instances. So `frazil server` takes this lock before anything else touches the dir (after the
sandbox probe, which looks only at the machine) and refuses to start when it is held.

Why flock: the kernel drops the lock when its holder exits, however it exits (a SIGKILL or a
crash included), so a lock file left behind never blocks a restart. The file also holds the
holder's pid, written once the lock is ours, so the refusal can name who holds it. The
descriptor is close-on-exec: processes the server starts never hold the lock after it dies.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

from frazil.store.datadir import DIR_MODE, FILE_MODE, not_ours

LOCK_FILE = "server.lock"


class DataDirInUse(Exception):
    """Another live process holds the data dir's lock; `pid` is its pid when the file says."""

    def __init__(self, data_dir: Path, pid: int | None):
        self.data_dir = data_dir
        self.pid = pid
        holder = f"another frazil server (pid {pid})" if pid else "another frazil server"
        super().__init__(f"the data dir {data_dir} is in use by {holder}; stop it first, or give this "
                         f"server another --data-dir")


class DataDirLock:
    """The held lock. Keep the object as long as the server runs; `release()` (or the
    process's exit) lets the next server have the dir."""

    def __init__(self, data_dir: Path, fd: int):
        self.data_dir = data_dir
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, data_dir: Path) -> "DataDirLock":
        """The lock of `data_dir` (created if missing), or DataDirInUse at once: never waits."""
        data_dir = Path(os.path.abspath(data_dir))
        try:
            data_dir.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        except PermissionError as exc:  # another user's data dir: say so as the tightening would
            raise not_ours(data_dir, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise DataDirInUse(data_dir, pid) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(data_dir, fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor of the open file drops the flock
            self._fd = None


def _read_pid(fd: int) -> int | None:
    """The holder's pid as it wrote it; None while it has not yet (or the file is not ours)."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
