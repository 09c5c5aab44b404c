"""The library entry point: one config + one manifest in, one typed result out.

    from archiver.config import load_config
    from archiver.manifest import load_manifest
    from archiver.run import archive_sync

    result = archive_sync(load_config("archiver.yaml"), load_manifest("videos.yaml"))
    print(result.count(Outcome.ARCHIVED), result.exit_status)

Errors that stop the whole run (bad credentials, unusable storage, another run holding
the lock) are raised; per-id failures are in the result.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
import time
from pathlib import Path

from .api import AkoolClient
from .config import Config
from .download import Downloader
from .lock import RunLock
from .manifest import Manifest
from .models import RunResult
from .scheduler import Observer, Scheduler
from .storage import Storage, make_storage


async def archive(config: Config, manifest: Manifest, *, storage: Storage | None = None,
                  observer: Observer | None = None,
                  interrupt: asyncio.Event | None = None, dry_run: bool = False) -> RunResult:
    """Archive every job of *manifest* that is not archived yet.

    Setting *interrupt* stops the run gracefully (see :mod:`archiver.scheduler`).
    With *dry_run*, poll and report what would be downloaded; write nothing at all.
    """
    started = time.monotonic()
    started_at = time.time()
    storage = storage if storage is not None else make_storage(config.storage)
    # Fail before polling anything if the destination cannot take the results.
    await storage.open(readonly=dry_run)
    try:
        lock = contextlib.nullcontext() if dry_run else RunLock(lock_path(config, storage))
        with lock:
            async with (
                AkoolClient(config.api, limit=config.concurrency.polls) as client,
                Downloader(config.downloads, limit=config.concurrency.downloads,
                           bandwidth=config.limits.bandwidth_bytes) as downloader,
            ):
                scheduler = Scheduler(config, client, downloader, storage, observer,
                                      dry_run=dry_run)
                items = await scheduler.run(manifest.items, interrupt)
                api_requests, file_requests = client.requests, downloader.requests
    finally:
        await storage.close()
    result = RunResult(items=items, duration=time.monotonic() - started, started_at=started_at,
                       storage=storage.description, manifest=manifest.source,
                       api_requests=api_requests, file_requests=file_requests,
                       interrupted=interrupt is not None and interrupt.is_set())
    if observer is not None:
        observer.run_finished(result)
    return result


def archive_sync(config: Config, manifest: Manifest, **kwargs: object) -> RunResult:
    """:func:`archive` for code that has no event loop."""
    return asyncio.run(archive(config, manifest, **kwargs))  # type: ignore[arg-type]


def lock_path(config: Config, storage: Storage) -> Path:
    """``run.lock_file``, else the backend's own (``<root>/.archiver.lock`` for local),
    else a file in the runtime/temp directory named after the destination."""
    if config.run.lock_file is not None:
        return config.run.lock_file
    default = getattr(storage, "default_lock_file", None)
    if default is not None:
        return Path(default)
    digest = hashlib.sha256(storage.description.encode()).hexdigest()[:16]
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return Path(base) / f"archiver-{digest}.lock"
