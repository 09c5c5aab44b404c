"""The scheduler: polls jobs and archives the finished ones, within fixed bounds.

However long the manifest, the run has ``concurrency.polls`` poll workers
(:mod:`.polling`) and ``concurrency.downloads`` download workers - a fixed number of
tasks - fed from queues; the job ready to download that is closest to expiry goes first.
Every job ends exactly once, with its outcome (:mod:`.outcomes`).

Stopping (SIGINT/SIGTERM, via the ``interrupt`` event): no new poll or download starts,
polls in flight are dropped, transfers in flight get ``run.shutdown_grace`` seconds to
finish and are then cancelled - keeping their bytes for the next run to resume.

The API down (:class:`~archiver.errors.ApiUnavailable`): no new poll starts (see
:mod:`.polling`), but the jobs already known to be done are archived: the file host may
well be up.

Archiving one finished job is its transaction (:mod:`.transaction`); the scheduler
decides when it starts, how long it may take and what its outcome is.

Fencing: no poll or download starts (and no transaction commits) unless the run still
holds its lock - the :class:`~archiver.fleet.lock.Fence` it was given says so at each start.
An id turned away by it stays pending for the run that holds the lock now.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..akool.client import AkoolClient
from ..akool.families import FAMILIES
from ..config import Config
from ..download import Downloader
from ..errors import (
    ApiUnavailable,
    FatalRunError,
    Interrupted,
    ItemError,
    ItemTimeout,
    LeaseLost,
    UrlGone,
)
from ..events import Observer
from ..fleet.lock import NO_FENCE, Fence
from ..manifest import ManifestItem
from ..models import FileRecord, ItemResult, JobInfo, Outcome, redact_url
from .layer import Archive
from .outcomes import Job, Outcomes, admitted, internal_error
from .polling import Poller
from .record import iso
from .transaction import Transactions, end_unstarted

log = logging.getLogger(__name__)


@dataclass(order=True, slots=True)
class _Ready:
    """A finished job waiting for a download worker; the soonest to expire goes first."""

    expires_at: float
    seq: int
    job: Job = field(compare=False)
    info: JobInfo = field(compare=False)


class Scheduler:
    """Runs one pass over a manifest. Create one per run."""

    def __init__(self, config: Config, client: AkoolClient, downloader: Downloader,
                 archive: Archive, observer: Observer | None = None,
                 clock: Callable[[], float] = time.time, dry_run: bool = False,
                 monotonic: Callable[[], float] = time.monotonic,
                 fence: Fence = NO_FENCE) -> None:
        """*clock* is wall-clock time (epoch seconds): expiry warnings, what counts as
        expired, the record's ``archived_at``; tests pass a fixed one. *monotonic* times
        the items' durations. *fence* is the run lock's: asked before each start."""
        self._config = config
        self._dry_run = dry_run
        self._downloader = downloader
        self._archive = archive
        self._observer = observer or Observer()
        self._clock = clock
        self._fence = fence
        self._transactions = Transactions(
            archive=archive, client=client, downloader=downloader, observer=self._observer,
            file_slots=asyncio.Semaphore(config.concurrency.downloads),
            url_refreshes=config.downloads.url_refreshes, clock=clock, fence=fence)
        self._outcomes = Outcomes(self._observer, monotonic)
        self._polls = Poller(config, client, self._outcomes, fence, ready=self._ready,
                             end=self._end, stop=self._stop, clock=clock, monotonic=monotonic)
        self._download_queue: asyncio.PriorityQueue[_Ready] = asyncio.PriorityQueue()
        self._fatal: FatalRunError | None = None
        self._seq = itertools.count()
        #: Ids that held something (not a record) when the pass began: only they can
        #: have stored bytes to discard when they fail while polling (see :meth:`_end`).
        self._partial: frozenset[str] = frozenset()

    async def run(self, items: Sequence[ManifestItem],
                  interrupt: asyncio.Event | None = None) -> list[ItemResult]:
        """Archive *items*; returns one result per item, in order.

        Setting *interrupt* stops the run gracefully; unfinished ids come back pending.
        """
        check = await self._archive.skip_check(i.id for i in items)
        archived, self._partial = check.archived, check.partial
        results = self._outcomes.results
        for item in items:
            if item.id in archived:
                results[item.id] = ItemResult(item.id, item.label, Outcome.ALREADY_ARCHIVED,
                                              family=item.family)
        todo = [i for i in items if i.id not in archived]
        self._observer.run_started(len(items), len(items) - len(todo))
        if archived:
            log.info("%d of %d ids already archived, skipped", len(archived), len(items))
        if todo:
            await self._process(todo, interrupt or asyncio.Event())
        return [results[i.id] for i in items]

    def _poll_workers(self, todo: Sequence[ManifestItem]) -> int:
        """``concurrency.polls`` workers, each one request at a time - times the batch
        size when batched families are polled: their workers wait on shared requests,
        ``concurrency.polls`` of which at most are in flight (the client's bound)."""
        polls, size = self._config.concurrency.polls, self._config.polling.batch_size
        if size > 1 and any(FAMILIES[i.family].batched for i in todo):
            return polls * size
        return polls

    async def _process(self, todo: list[ManifestItem], interrupt: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        self._polls.deadline = loop.time() + self._config.polling.deadline
        self._outcomes.remaining = len(todo)
        jobs = [Job(item) for item in todo]
        for job in jobs:
            self._polls.queue.put_nowait(job)
        concurrency = self._config.concurrency
        pollers = [asyncio.create_task(self._polls.worker(), name=f"poll-{n}")
                   for n in range(min(self._poll_workers(todo), len(todo)))]
        downloaders = [asyncio.create_task(self._download_worker(), name=f"download-{n}")
                       for n in range(min(concurrency.downloads, len(todo)))]
        interrupted = asyncio.create_task(interrupt.wait())
        done = asyncio.create_task(self._outcomes.done.wait())
        try:
            await asyncio.wait({done, interrupted}, return_when=asyncio.FIRST_COMPLETED)
            if not done.done() and self._fatal is None:
                await self._stop_gracefully(pollers, downloaders, done)
        finally:
            interrupted.cancel()
            done.cancel()
            self._polls.cancel_timers()
            workers = pollers + downloaders
            for task in workers:
                task.cancel()
            # Let cancelled transfers tidy their temporary files before returning.
            await asyncio.gather(*workers, return_exceptions=True)
        if self._fatal is not None:
            raise self._fatal
        self._polls.answered()
        # Whatever was cut off mid-way (a dry-run probe at shutdown...) is pending, never lost.
        for job in jobs:
            if not job.done:
                self._outcomes.finish(job, Outcome.PENDING,
                                      error=Interrupted("the run ended before this id was done"))

    async def _stop_gracefully(self, pollers: list[asyncio.Task[None]],
                               downloaders: list[asyncio.Task[None]],
                               done: asyncio.Task[bool]) -> None:
        grace = self._config.run.shutdown_grace
        try:
            await self._fence.confirm()
        except LeaseLost:
            grace = 0.0  # nothing in flight may commit any more: stop it now
        log.warning("stopping: no new work; transfers in progress get %gs to finish", grace)
        self._polls.stopping = True
        interrupted = Interrupted("the run was interrupted before this id was done")
        self._polls.drain(interrupted)
        while not self._download_queue.empty():
            self._outcomes.finish(self._download_queue.get_nowait().job, Outcome.PENDING,
                                  error=interrupted)
        for task in pollers:
            task.cancel()  # a poll in flight is cheap to repeat next run
        await asyncio.gather(*pollers, return_exceptions=True)
        if not done.done():
            await asyncio.wait({done}, timeout=grace)
        for task in downloaders:
            task.cancel()
        await asyncio.gather(*downloaders, return_exceptions=True)

    def _ready(self, job: Job, info: JobInfo) -> None:
        """A finished job: queued for a download worker, closest to expiry first."""
        expires = info.expires_at if info.expires_at is not None else float("inf")
        self._download_queue.put_nowait(_Ready(expires, next(self._seq), job, info))

    # ---------------------------------------------------------------- archiving

    async def _download_worker(self) -> None:
        item_timeout = self._config.downloads.item_timeout
        while True:
            ready = await self._download_queue.get()
            job, info = ready.job, ready.info
            if self._dry_run:
                await self._probe(job, info)
                continue
            if self._fence.can_be_lost and \
                    not await admitted(self._fence, self._outcomes, job):
                continue
            transaction = self._transactions.begin(job.item)
            try:
                async with asyncio.timeout(item_timeout):
                    files = await transaction.commit(info)
            except FatalRunError as exc:
                await transaction.end(None, exc)
                self._stop(exc)
                return
            except asyncio.CancelledError:
                interrupted = Interrupted(
                    "interrupted during download; partial files kept for the next run")
                await transaction.end(Outcome.PENDING, interrupted)
                if self._polls.stopping:
                    self._outcomes.finish(job, Outcome.PENDING, error=interrupted)
                raise
            except Exception as exc:
                outcome, error = self._failure(job, exc)
                # Before finishing: the last item's clean-up must be over when the run returns.
                await transaction.end(outcome, error)
                self._outcomes.finish(job, outcome, error=error)
                if isinstance(error, ApiUnavailable):  # asking for a fresh URL
                    self._polls.api_down(error)
            else:
                if files is None:
                    log.info("%s: committed by another run meanwhile; its record stands",
                             job.item.id)
                    self._outcomes.finish(job, Outcome.ALREADY_ARCHIVED)
                else:
                    self._outcomes.finish(job, Outcome.ARCHIVED, files=files)

    def _failure(self, job: Job, exc: Exception) -> tuple[Outcome, ItemError]:
        """The outcome and error of an item whose archiving raised *exc*."""
        if isinstance(exc, LeaseLost):
            return Outcome.PENDING, exc  # turned away at the commit: not a failure
        if isinstance(exc, TimeoutError):
            return Outcome.FAILED, ItemTimeout(
                f"gave up after downloads.item_timeout ({self._config.downloads.item_timeout:g}s)")
        if isinstance(exc, ApiUnavailable):
            return Outcome.PENDING, exc
        if isinstance(exc, UrlGone):
            if job.expires_at is not None and job.expires_at < self._clock():
                return Outcome.EXPIRED, UrlGone(
                    f"results expired on {iso(job.expires_at)} "
                    f"(Akool keeps them 7 days): {exc}", exc.code)
            return Outcome.FAILED, exc
        if isinstance(exc, ItemError):
            return Outcome.FAILED, exc
        # A bug must fail one id, not hang the run with a worker gone.
        return Outcome.FAILED, internal_error(job, exc)

    async def _end(self, job: Job, outcome: Outcome, error: ItemError, quiet: bool) -> None:
        """End an item that failed while polling: discard what earlier runs kept for it
        if it failed for good (:func:`.transaction.end_unstarted`), then record its
        outcome (*quiet*: its log line waits, see :meth:`.polling.Poller.answered`).

        Only an id that held something when the pass began can have anything to discard:
        this pass has not written to it (no transfer started), and the run lock keeps
        other runs off it. The others skip the writer and its thread hop."""
        if not self._dry_run and job.item.id in self._partial:
            # Not in a dry run either: it writes nothing, not even a removal.
            # Before finishing: the last item's clean-up must be over when the run returns.
            await end_unstarted(self._archive, job.item.id, outcome, error)
        self._outcomes.finish(job, outcome, error=error, quiet=quiet)

    async def _probe(self, job: Job, info: JobInfo) -> None:
        """Dry run: what would be downloaded, with sizes where the file host says."""
        sizes = await asyncio.gather(*(self._downloader.probe(f) for f in info.files))
        files = [FileRecord(f.name, size, "", redact_url(f.url))
                 for f, size in zip(info.files, sizes, strict=True)]
        self._outcomes.finish(job, Outcome.READY, files=files)

    def _stop(self, exc: FatalRunError) -> None:
        if self._fatal is None:
            self._fatal = exc
        self._outcomes.done.set()
