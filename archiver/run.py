"""The library entry point: one config + one manifest in, one typed result out.

    from archiver.config import load_config
    from archiver.manifest import load_manifest
    from archiver.run import archive_sync

    result = archive_sync(load_config("archiver.yaml"), load_manifest("videos.yaml"))
    print(result.count(Outcome.ARCHIVED), result.exit_status)

Errors that stop the whole run (bad credentials, unusable storage) are raised as
:class:`~archiver.errors.FatalRunError`; per-id failures are in the result.
"""

from __future__ import annotations

import asyncio
import time

from .api import AkoolClient
from .config import Config
from .download import Downloader
from .manifest import Manifest
from .models import RunResult
from .scheduler import Observer, Scheduler
from .storage import Storage, make_storage


async def archive(config: Config, manifest: Manifest, *, storage: Storage | None = None,
                  observer: Observer | None = None) -> RunResult:
    """Archive every job of *manifest* that is not archived yet."""
    started = time.monotonic()
    storage = storage if storage is not None else make_storage(config.storage)
    # Fail before polling anything if the destination cannot take the results.
    await storage.open()
    try:
        async with (
            AkoolClient(config.api, limit=config.concurrency.polls) as client,
            Downloader(config.downloads, limit=config.concurrency.downloads) as downloader,
        ):
            scheduler = Scheduler(config, client, downloader, storage, observer)
            items = await scheduler.run(manifest.items)
    finally:
        await storage.close()
    return RunResult(items=items, duration=time.monotonic() - started)


def archive_sync(config: Config, manifest: Manifest, **kwargs: object) -> RunResult:
    """:func:`archive` for code that has no event loop."""
    return asyncio.run(archive(config, manifest, **kwargs))  # type: ignore[arg-type]
