"""One run at a time: an advisory ``flock`` on a lock file.

The kernel releases a ``flock`` when its process dies, however it dies, so a lock left
by a crashed or killed run never blocks the next one. The file itself stays (removing
it would race with a run that just opened it); it holds the owner's pid for messages.
Note: ``flock`` is not reliable on some network filesystems; put ``run.lock_file`` on a
local disk when the archive root is an NFS mount.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import time
from pathlib import Path

from ._os import os_reason
from .errors import ArchiverError, StorageUnavailable


class LockHeld(ArchiverError):
    """Another run holds the lock (exit status 75, EX_TEMPFAIL: try again later)."""


class RunLock:
    """``with RunLock(path):`` holds the lock for the block, or raises :class:`LockHeld`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        fd = self._open()
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

    def _open(self) -> int:
        """The lock file, created if need be; never through a symbolic link.

        The lock is truncated and written: a link planted at its name (in a shared
        temp directory, or in the archive root) would make the run truncate its target.
        """
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
                         | os.O_NONBLOCK, 0o644)  # O_NONBLOCK: a FIFO must not hang us
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise StorageUnavailable(f"lock file {self.path} is a symbolic link: "
                                         "refusing to follow it; remove it") from None
            raise StorageUnavailable(
                f"cannot create lock file {self.path}: {os_reason(exc)}") from None
        info = os.fstat(fd)
        problem = ("is not a regular file" if not stat.S_ISREG(info.st_mode)
                   else "has other hard links" if info.st_nlink != 1 else None)
        if problem is not None:
            os.close(fd)
            raise StorageUnavailable(f"lock file {self.path} {problem}: refusing to "
                                     "truncate it; remove it")
        return fd

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
