"""The one run lock of every command that writes: ``run``, ``serve`` and ``gc``.

Each of them calls :func:`hold`, and nothing else takes a run lock, so whatever keeps
two runs apart keeps every pair of these commands apart too, on either backend:

- the lock is the storage's own (:meth:`~archiver.storage.backend.Backend.run_lock`): a
  ``flock`` in a local root, a lease object under an S3 prefix (which keeps out runs on
  every host), unless ``run.lock_file`` names a local file for it;
- ``serve`` and ``gc`` take the whole archive's lock (``all``), as an unsharded run does;
  a run with ``--shard K/N`` takes its shard's. A live lock of another shard count
  makes the later one give its own back (the layout check), so a sharded run, an
  unsharded one, ``serve`` and ``gc`` never work on one archive at once;
- holding it yields a :class:`~archiver.fleet.lock.Fence` that work checks before it starts.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from ..config import Config
from ..fleet.lock import ALL, NO_FENCE, Fence, lock_name
from ..fleet.shard import Shard
from ..storage.local.flock import LocalLock

if TYPE_CHECKING:
    from .layer import Archive


@contextlib.asynccontextmanager
async def hold(config: Config, archive: Archive, *, command: str,
               shard: Shard | None = None,
               on_lost: Callable[[str], None] | None = None) -> AsyncIterator[Fence]:
    """Hold the run lock of *archive* (or of *shard* of it) for the block.

    *command* (``run``, ``serve``, ``gc``) is written into the lock for other runs'
    messages. Raises :class:`~archiver.fleet.lock.LockHeld` on entry if another run holds it
    (or a lock of another shard count is live); *on_lost* is called, from another
    thread, if an S3 lease is lost while held. Call after ``archive.open()``.
    """
    name = lock_name(None, 1) if shard is None else lock_name(shard.index, shard.count)
    what = archive.description if name == ALL else f"shard {shard} of {archive.description}"
    if config.run.lock_file is not None:
        lock: contextlib.AbstractAsyncContextManager[Fence] = LocalLock(
            config.run.lock_file, name, what, command)
    else:
        lock = archive.backend.run_lock(name, ttl=config.run.lease_ttl, what=what,
                                        on_lost=on_lost, command=command)
    async with lock as fence:
        yield fence


@contextlib.asynccontextmanager
async def unlocked() -> AsyncIterator[Fence]:
    """For work that writes nothing (dry runs): no lock, and a fence that never stops it."""
    yield NO_FENCE
