"""Run locks on this host: ``flock`` files (:class:`RunLock`, :class:`LocalLock`).

The kernel releases a ``flock`` when its process dies, however it dies, so a lock left
by a crashed or killed run never blocks the next one. The file itself stays (removing
it would race with a run that just opened it); it holds the owner's pid and command for
messages. Note: ``flock`` is not reliable on some network filesystems; put
``run.lock_file`` on a local disk when the archive root is an NFS mount.

- :class:`RunLock`: one ``flock`` on one file;
- :class:`LocalLock`: the run lock of a local archive (or of ``run.lock_file``, whatever
  the backend): the ``flock`` of its name (``all``, ``shard-2-of-4``), then the *layout
  check*: a live lock of another shard count beside it (``shard-1-of-2`` while
  ``shard-2-of-4`` or ``all`` runs) means overlapping ids, and the run gives its lock
  back (:class:`~archiver.fleet.lock.LockHeld`). A ``flock`` cannot be lost while its process
  lives: its fence never stops work.

Commands take it through the one seam, :func:`archiver.archive.runlock.hold`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import time
from pathlib import Path

from ..._os import os_reason
from ...errors import StorageUnavailable
from ...fleet.lock import ALL, LockHeld, describe_name, shard_count

#: How long a contender waits for a lock whose file names no holder yet: a run between
#: its ``flock`` and writing its pid, or another run's layout check probing it.
_SETTLE_TRIES = 25
_SETTLE_WAIT = 0.02


def lock_file_for(base: Path, name: str) -> Path:
    """The file of lock *name* next to *base* (``.archiver.lock`` ->
    ``.archiver.shard-2-of-4.lock``); *base* itself for ``all``."""
    if name == ALL:
        return base
    return base.with_name(f"{base.stem}.{name}{base.suffix}")


# ------------------------------------------------------------------------- flock

class RunLock:
    """``with RunLock(path):`` holds the lock for the block, or raises :class:`LockHeld`."""

    def __init__(self, path: Path, command: str = "run") -> None:
        self.path = path
        self.command = command
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        fd = self._open()
        for attempt in range(_SETTLE_TRIES):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                owner = _read_owner(fd)
            if owner or attempt == _SETTLE_TRIES - 1:
                os.close(fd)
                raise LockHeld(f"another archiver run holds {self.path}{owner}; "
                               "not starting a second one")
            # Held, but by nobody who says so yet: a run that is writing its pid, or
            # a layout check probing this file for an instant. Look again shortly.
            time.sleep(_SETTLE_WAIT)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} "
                     f"{self.command}\n".encode())
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
        _check_regular(fd, self.path, "truncate")
        return fd

    def __exit__(self, *exc_info: object) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing releases the flock
            self._fd = None


def _check_regular(fd: int, path: Path, action: str) -> None:
    info = os.fstat(fd)
    problem = ("is not a regular file" if not stat.S_ISREG(info.st_mode)
               else "has other hard links" if info.st_nlink != 1 else None)
    if problem is not None:
        os.close(fd)
        raise StorageUnavailable(f"lock file {path} {problem}: refusing to {action} it; "
                                 "remove it")


def _read_owner(fd: int) -> str:
    """`` (pid 123, archiver serve, since ...)`` from a lock file's text; "" if empty."""
    try:
        text = os.pread(fd, 200, 0).decode("ascii", "replace").split()
    except OSError:
        return ""
    if not text:
        return ""
    parts = [f"pid {text[0]}"]
    if len(text) >= 3:
        parts.append(f"archiver {text[2]}")
    if len(text) >= 2:
        parts.append(f"since {text[1]}")
    return f" ({', '.join(parts)})"


class LocalLock:
    """The run lock of a local archive: ``async with LocalLock(base, name, what):``.

    *base* is the ``all`` lock file (``<root>/.archiver.lock`` or ``run.lock_file``);
    lock *name* is the flock of :func:`lock_file_for`. Once held, the lock files of
    other shard counts beside it are probed: one that is held means a run whose ids
    overlap ours, and we give ours back (:class:`LockHeld`). Each run locks before it
    looks, so of two such runs starting together at least one sees the other (both may,
    and both stop: exit 75, try again) - the rule the S3 lease follows.
    """

    def __init__(self, base: Path, name: str, what: str, command: str = "run") -> None:
        self.base = base
        self.name = name
        self.what = what
        self._lock = RunLock(lock_file_for(base, name), command)

    @property
    def path(self) -> Path:
        return self._lock.path

    async def __aenter__(self) -> LocalLock:
        self._lock.__enter__()
        try:
            self._check_layout()
        except BaseException:
            self._lock.__exit__()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._lock.__exit__()

    # A flock is not lost while its process lives: the fence never stops work.
    can_be_lost = False

    async def confirm(self) -> None:
        return None

    def confirm_sync(self) -> None:
        return None

    def _check_layout(self) -> None:
        mine = shard_count(self.name)
        for path in self._siblings():
            other = path.name[len(self.base.stem) + 1:-len(self.base.suffix) or None] \
                if path != self.base else ALL
            count = shard_count(other)
            if count is None or count == mine:
                continue
            owner = _probe(path)
            if owner is not None:
                raise LockHeld(
                    f"{describe_name(other)} holds {path}{owner}; {self.what} would "
                    "archive some of its ids too: use one shard count per archive at a "
                    "time; not starting")

    def _siblings(self) -> list[Path]:
        pattern = f"{self.base.stem}.shard-*-of-*{self.base.suffix}"
        try:
            found = sorted(self.base.parent.glob(pattern))
        except OSError:
            found = []
        return [self.base, *found]


def _probe(path: Path) -> str | None:
    """The owner text of *path* if a run holds its flock now, else None.

    A shared flock, taken and dropped at once: it never blocks a holder, and a run that
    tries to take the file in that instant waits for it (:data:`_SETTLE_TRIES`).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None  # gone, or a link: not a lock any run of ours holds
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return _read_owner(fd) or " (pid unknown)"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
