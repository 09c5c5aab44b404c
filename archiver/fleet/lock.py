"""What every run lock shares: :class:`LockHeld`, the :class:`Fence`, and lock names.

Every command that writes (``run``, ``serve``, ``gc``) takes its lock through one seam,
:func:`archiver.archive.runlock.hold`. The locks themselves belong to the storage: a
``flock`` on this host (:mod:`archiver.storage.local.flock`, also what ``run.lock_file``
takes on any backend) or a lease object on S3 (:mod:`archiver.storage.s3.lease`), which
keeps out runs on every host. Each is named after what it guards (:func:`lock_name`:
``all`` or ``shard-2-of-4``) and refuses to run beside a live lock of another shard
count (:func:`shard_count`): their ids overlap.

A held lock yields a :class:`Fence` that work checks before each start. A ``flock``
cannot be lost while its process lives; a lease can.
"""

from __future__ import annotations

from typing import Protocol

from ..errors import ArchiverError

#: The lock name of a whole (unsharded) archive.
ALL = "all"


class LockHeld(ArchiverError):
    """Another run holds the lock (exit status 75, EX_TEMPFAIL: try again later)."""


class Fence(Protocol):
    """Whether the run still holds its lock: checked before each poll, download, commit
    and removal starts, not only by a background renewal."""

    #: False for a lock that cannot be lost while its process lives: work need not ask
    #: (a poll is not worth a coroutine that always answers yes).
    can_be_lost: bool

    async def confirm(self) -> None:
        """Return if the lock is still held; raise :class:`~archiver.errors.LeaseLost`
        if not (an S3 lease not confirmed within 3/4 of its TTL is renewed first)."""

    def confirm_sync(self) -> None:
        """:meth:`confirm` for code running in a worker thread."""


class _Unfenced:
    """The fence of a lock that cannot be lost while its process lives (``flock``), or
    of work that takes no lock (dry runs)."""

    can_be_lost = False

    async def confirm(self) -> None:
        return None

    def confirm_sync(self) -> None:
        return None


#: A fence that always lets work start.
NO_FENCE: Fence = _Unfenced()


# ------------------------------------------------------------------------- names

def lock_name(index: int | None = None, count: int = 1) -> str:
    """``all`` for a whole archive (no shard, or one of one), else ``shard-K-of-N``."""
    if index is None or count == 1:
        return ALL
    return f"shard-{index}-of-{count}"


def shard_count(name: str) -> int | None:
    """N of a lock name (``all``: 1, ``shard-2-of-4``: 4); None for other names."""
    if name == ALL:
        return 1
    parts = name.split("-")
    if len(parts) == 4 and parts[0] == "shard" and parts[2] == "of" and parts[3].isdigit() \
            and parts[1].isdigit():
        return int(parts[3])
    return None


def describe_name(name: str) -> str:
    """``an unsharded run`` / ``a run of shard 2/4``, for messages."""
    if name == ALL:
        return "an unsharded run"
    return f"a run of shard {name.removeprefix('shard-').replace('-of-', '/')}"
