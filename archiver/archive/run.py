"""The library entry points: one config + one manifest in, one typed result out
(:func:`archive`); and the garbage collection of ``archiver gc`` (:func:`collect`).

    from archiver.config import load_config
    from archiver.manifest import load_manifest
    from archiver.run import archive_sync

    result = archive_sync(load_config("archiver.yaml"), load_manifest("videos.yaml"))
    print(result.count(Outcome.ARCHIVED), result.exit_status)

Errors that stop the whole run (bad credentials, unusable storage, another run holding
the lock) are raised; per-id failures are in the result. :mod:`archiver.run` re-exports
:func:`archive` and :func:`archive_sync` under the names the README shows.

The run opens the :class:`~.layer.Archive` (the configured storage's, unless one is
given), takes the run lock through the one seam (:func:`.runlock.hold`; a dry run takes
none) and hands both to one :class:`~.scheduler.Scheduler` pass.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from ..akool.client import AkoolClient
from ..config import Config
from ..download import Downloader
from ..events import Observer
from ..fleet.shard import Shard, api_share
from ..manifest import Manifest
from ..models import RunResult
from .gc import GcResult, check_min_age
from .layer import Archive
from .runlock import hold, unlocked
from .scheduler import Scheduler

log = logging.getLogger(__name__)


async def archive(config: Config, manifest: Manifest, *, storage: Archive | None = None,
                  observer: Observer | None = None,
                  interrupt: asyncio.Event | None = None, dry_run: bool = False,
                  shard: Shard | None = None) -> RunResult:
    """Archive every job of *manifest* that is not archived yet.

    Setting *interrupt* stops the run gracefully (see :mod:`.scheduler`).
    With *dry_run*, poll and report what would be downloaded; write nothing at all.
    With *shard*, only that shard's ids of *manifest* are archived (:meth:`Shard.select`)
    and the run lock is that shard's, so the other shards' runs go on in parallel.
    """
    if shard is not None:
        manifest = shard.select(manifest)  # idempotent: callers may have selected already
    api_rate = api_share(config.api.requests_per_second, shard)  # the account's, split N ways
    started = time.monotonic()
    started_at = time.time()
    storage = storage if storage is not None else Archive.from_config(config.storage)
    # Fail before polling anything if the destination cannot take the results.
    await storage.open(readonly=dry_run)
    # The scheduler stops on this: the caller's interrupt, or the lease lost to another run.
    stop = asyncio.Event()
    lost: list[str] = []
    loop = asyncio.get_running_loop()

    def on_lost(reason: str) -> None:  # called from the lease's renewal thread
        lost.append(reason)
        loop.call_soon_threadsafe(stop.set)

    forward = asyncio.create_task(_forward(interrupt, stop)) if interrupt is not None else None
    try:
        async with (
            unlocked() if dry_run else hold(config, storage, command="run", shard=shard,
                                            on_lost=on_lost) as fence,
            AkoolClient.for_run(config,
                                shares=shard.count if shard is not None else 1) as client,
            Downloader(config.downloads, limit=config.concurrency.downloads,
                       bandwidth=config.limits.bandwidth_bytes) as downloader,
        ):
            scheduler = Scheduler(config, client, downloader, storage, observer,
                                  dry_run=dry_run, fence=fence)
            items = await scheduler.run(manifest.items, stop)
            api_requests, file_requests = client.requests, downloader.requests
    finally:
        if forward is not None:
            forward.cancel()
        await storage.close()
    result = RunResult(items=items, duration=time.monotonic() - started, started_at=started_at,
                       storage=storage.description, manifest=manifest.source,
                       api_requests=api_requests, file_requests=file_requests,
                       interrupted=interrupt is not None and interrupt.is_set(),
                       shard=str(shard) if shard is not None else None,
                       api_requests_per_second=api_rate,
                       lease_lost=bool(lost))
    if observer is not None:
        observer.run_finished(result)
    return result


def archive_sync(config: Config, manifest: Manifest, *, storage: Archive | None = None,
                 observer: Observer | None = None, interrupt: asyncio.Event | None = None,
                 dry_run: bool = False, shard: Shard | None = None) -> RunResult:
    """:func:`archive` for code that has no event loop (the same arguments)."""
    return asyncio.run(archive(config, manifest, storage=storage, observer=observer,
                               interrupt=interrupt, dry_run=dry_run, shard=shard))


async def _forward(source: asyncio.Event, target: asyncio.Event) -> None:
    await source.wait()
    target.set()


async def collect(config: Config, ids: Sequence[str] | None, *, min_age: float,
                  dry_run: bool = False) -> GcResult:
    """Collect the garbage of the configured storage (see :mod:`.gc`).

    Raises :class:`~archiver.fleet.lock.LockHeld` if a run (or ``serve``) holds the lock,
    :class:`~archiver.errors.LeaseLost` if gc loses its S3 lease midway, and
    :class:`~archiver.errors.StorageUnavailable` if the storage cannot be listed.
    """
    check_min_age(min_age, config)
    archive = Archive.from_config(config.storage)
    # A dry run only lists; a real one writes its lease (S3) before removing anything.
    await archive.open(readonly=dry_run)
    try:
        if dry_run:  # removes nothing: no need to keep runs out (as run --dry-run)
            return await archive.collect_garbage(ids, min_age, dry_run)
        async with hold(config, archive, command="gc") as fence:
            return await archive.collect_garbage(ids, min_age, dry_run, fence)
    finally:
        await archive.close()
