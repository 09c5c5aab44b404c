"""``archiver serve``: receive Akool's webhooks and archive each job as it finishes.

Three parts, one process:

- the **intake** (aiohttp, on its own thread and event loop, owning the journal; see
  :class:`IntakeThread`): ``POST webhook.path`` checks size and shape, the signature
  (constant time), the timestamp, decrypts (:mod:`archiver.akool.webhook`) and records the
  callback in the :class:`~archiver.service.journal.Journal` - committed to disk - before
  answering 200 (a body accepted before is answered 200 and changes nothing). Nothing
  is recorded for a callback that is refused;
- the **worker**: takes due rows from the journal in small batches and hands each batch
  to the same :class:`~archiver.archive.scheduler.Scheduler` ``archiver run`` uses, sharing one
  API client, one downloader and one storage (so ``concurrency.*``,
  ``api.requests_per_second`` and ``limits.bandwidth`` bound the whole server). The
  scheduler polls the result API once per id for the full answer (the callback carries
  only the main URL), archives, and the worker marks the row done with its outcome.
  Rows not final yet (status 2, a lost callback, a failure a later attempt may get
  past) come due again every ``webhook.repoll_interval``;
- **operations**: ``GET /healthz``, ``GET /metrics`` (Prometheus text), and a graceful
  SIGTERM: stop accepting, let transfers finish within ``run.shutdown_grace``, exit 0.
  Whatever is not finished stays pending in the journal and is resumed on start.

The server holds the run lock for its lifetime (:func:`archiver.archive.runlock.hold`, the one
``run`` and ``gc`` take: a flock in a local root, the lease on S3): it is *the* archiver
of that storage (``archiver run``, sharded or not, and ``archiver gc`` on the same
archive meanwhile exit 75). If it loses an S3 lease, it stops as on SIGTERM and exits 75.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

from .._http import url_host
from ..akool.client import AkoolClient
from ..archive import Archive
from ..archive.runlock import hold
from ..config import Config, WebhookConfig, parse_listen
from ..download import Downloader
from ..errors import UsageError
from .counters import Counters
from .intake import IntakeThread, JournalProxy
from .worker import Worker

log = logging.getLogger(__name__)

#: Journal file name at the root of a local archive (a dot: never a job id).
JOURNAL_NAME = ".archiver-journal.sqlite3"


def journal_path(config: Config, storage: Archive) -> Path:
    """``webhook.journal``, else next to a local archive, else a file in the user's
    state directory named after the destination (the lock's default folder for S3,
    ``$XDG_RUNTIME_DIR`` or /tmp, may be wiped at reboot: no place for a journal)."""
    webhook = config.webhook
    if webhook is not None and webhook.journal is not None:
        return webhook.journal
    if config.storage.backend == "local":
        return config.storage.local.root / JOURNAL_NAME
    digest = hashlib.sha256(storage.description.encode()).hexdigest()[:16]
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "archiver" / f"journal-{digest}.sqlite3"


class Server:
    """The whole of ``archiver serve``: ``async with Server(config).running() as url``."""

    def __init__(self, config: Config, listen: str | None = None) -> None:
        if config.webhook is None:
            raise UsageError("archiver serve needs a webhook: section in the configuration "
                             "(client_id, client_secret)")
        self.config = config
        self.webhook: WebhookConfig = config.webhook
        self.listen = listen or self.webhook.listen
        try:
            self._host, self._port = parse_listen(self.listen)
        except ValueError as exc:
            raise UsageError(f"--listen: {exc}") from None
        self.counters = Counters()
        self.stop = asyncio.Event()
        self.journal_path: Path | None = None
        #: Why the server stopped on its own: it lost its S3 lease (exit 75), or None.
        self.lease_lost: str | None = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[str]:
        """Serve until the block exits (or :attr:`stop` is set); yields the webhook URL."""
        config = self.config
        storage = Archive.from_config(config.storage)
        await storage.open()
        loop = asyncio.get_running_loop()

        def on_lost(reason: str) -> None:  # from the lease's renewal thread
            self.lease_lost = reason
            loop.call_soon_threadsafe(self.stop.set)

        try:
            async with hold(config, storage, command="serve", on_lost=on_lost) as fence:
                self.journal_path = journal_path(config, storage)
                async with (
                    AkoolClient.for_run(config) as client,
                    Downloader(config.downloads, limit=config.concurrency.downloads,
                               bandwidth=config.limits.bandwidth_bytes) as downloader,
                ):
                    wake = asyncio.Event()
                    intake = IntakeThread(self.webhook, self.journal_path, storage,
                                          self.counters, wake, self._host, self._port)
                    port = await intake.start()
                    worker = Worker(config, JournalProxy(intake), storage, client,
                                    downloader, self.counters, wake, self.stop, fence)
                    worker_task = asyncio.create_task(worker.run(), name="webhook-worker")
                    url = f"http://{url_host(self._host)}:{port}{self.webhook.path}"
                    log.info("serving %s; journal %s; storage %s", url,
                             self.journal_path, storage.description)
                    try:
                        yield url
                    finally:
                        log.info("stopping: no new callbacks; finishing work in flight")
                        # Stop accepting first: callbacks already in a handler are
                        # committed and answered, later ones get a refused connection.
                        # The journal stays open until the worker has recorded its last.
                        await intake.stop_accepting()
                        self.stop.set()
                        await worker_task
                        await intake.stop()
        finally:
            await storage.close()

    async def serve_until_stopped(self, ready: asyncio.Event | None = None) -> None:
        """Run until :attr:`stop` is set (by a signal handler)."""
        async with self.running() as url:
            print(f"archiver serve: listening on {url}", flush=True)
            if ready is not None:
                ready.set()
            await self.stop.wait()
