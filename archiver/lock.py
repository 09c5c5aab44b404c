"""One run at a time: an advisory ``flock`` on a lock file.

The kernel releases a ``flock`` when its process dies, however it dies, so a lock left
by a crashed or killed run never blocks the next one. The file itself stays (removing
it would race with a run that just opened it); it holds the owner's pid for messages.
Note: ``flock`` is not reliable on some network filesystems; put ``run.lock_file`` on a
local disk when the archive root is an NFS mount.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path

from .config import os_reason
from .errors import ArchiverError, StorageUnavailable


class LockHeld(ArchiverError):
    """Another run holds the lock (exit status 75, EX_TEMPFAIL: try again later)."""


class RunLock:
    """``with RunLock(path):`` holds the lock for the block, or raises :class:`LockHeld`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StorageUnavailable(
                f"cannot create lock file {self.path}: {os_reason(exc)}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            owner = _read_owner(fd)
            os.close(fd)
            raise LockHeld(f"another archiver run holds {self.path}{owner}; "
                           "not starting a second one") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n"
                 .encode())
        self._fd = fd
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing releases the flock
            self._fd = None


def _read_owner(fd: int) -> str:
    try:
        text = os.pread(fd, 100, 0).decode("ascii", "replace").split()
    except OSError:
        return ""
    if len(text) >= 2:
        return f" (pid {text[0]}, since {text[1]})"
    return f" (pid {text[0]})" if text else ""
