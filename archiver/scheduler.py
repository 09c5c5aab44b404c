"""The scheduler: polls jobs and archives the finished ones, within fixed bounds.

However long the manifest, the run has ``concurrency.polls`` poll workers and
``concurrency.downloads`` download workers - a fixed number of tasks - fed from queues.
A job that is not done yet waits for its next poll as a timer on the event loop, not as
a sleeping task, so 10,000 pending jobs cost 10,000 small timer handles and nothing more.

Stopping (SIGINT/SIGTERM, via the ``interrupt`` event): no new poll or download starts,
polls in flight are dropped, transfers in flight get ``run.shutdown_grace`` seconds to
finish and are then cancelled - keeping their bytes for the next run to resume.

The API down (:class:`~archiver.errors.ApiUnavailable`, from the client's breaker): no
new poll starts, polls in flight end, the jobs already known to be done are archived
(the file host may well be up), and every id not finished is pending - including those
whose polls got no answer just before, which were the first signs of the outage.

Archiving one finished job is its transaction (:mod:`archiver.transaction`); the
scheduler decides when it starts, how long it may take and what its outcome is.

Fencing: no poll or download starts (and no transaction commits) unless the run still
holds its lock - the :class:`~archiver.lock.Fence` it was given says so at each start.
An id turned away by it stays pending for the run that holds the lock now.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .api import AkoolClient
from .archive import Archive
from .config import Config
from .download import Downloader
from .errors import (
    ApiUnavailable,
    DownloadError,
    FatalRunError,
    Interrupted,
    ItemError,
    ItemTimeout,
    JobFailed,
    LeaseLost,
    TransientAPIError,
    UrlGone,
)
from .events import Observer
from .lock import NO_FENCE, Fence
from .manifest import ManifestItem
from .models import FileRecord, ItemResult, JobInfo, JobStatus, Outcome, redact_url
from .record import iso
from .transaction import Transactions, end_unstarted

log = logging.getLogger(__name__)

#: Warn about items this close to Akool deleting them.
EXPIRY_WARNING_SECONDS = 24 * 3600


@dataclass(slots=True, eq=False)
class _State:
    item: ManifestItem
    started: float = 0.0
    polls: int = 0
    last_status: int | None = None
    expires_at: float | None = None
    timer: asyncio.TimerHandle | None = None
    done: bool = False
    #: An unknown video_status was already logged for this id (once is news, each poll noise).
    warned_status: bool = False


@dataclass(order=True, slots=True)
class _Ready:
    """A finished job waiting for a download worker; the soonest to expire goes first."""

    expires_at: float
    seq: int
    state: _State = field(compare=False)
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
        self._client = client
        self._downloader = downloader
        self._archive = archive
        self._observer = observer or Observer()
        self._clock = clock
        self._monotonic = monotonic
        self._fence = fence
        self._transactions = Transactions(
            archive=archive, client=client, downloader=downloader, observer=self._observer,
            file_slots=asyncio.Semaphore(config.concurrency.downloads),
            url_refreshes=config.downloads.url_refreshes, clock=clock, fence=fence)
        self._results: dict[str, ItemResult] = {}
        self._poll_queue: asyncio.Queue[_State] = asyncio.Queue()
        self._download_queue: asyncio.PriorityQueue[_Ready] = asyncio.PriorityQueue()
        self._waiting: set[_State] = set()  # jobs with a re-poll timer armed
        self._remaining = 0
        self._done = asyncio.Event()
        self._fatal: FatalRunError | None = None
        #: Set once the API is known to be down: no poll starts after that.
        self._unavailable: ApiUnavailable | None = None
        #: Ids whose poll got no answer (retries exhausted) since the API last answered
        #: one: failed, unless the API turns out to be down - then they are pending.
        #: Their log lines wait for that verdict.
        self._unanswered: list[_State] = []
        self._stopping = False
        self._seq = itertools.count()
        self._deadline = 0.0

    async def run(self, items: Sequence[ManifestItem],
                  interrupt: asyncio.Event | None = None) -> list[ItemResult]:
        """Archive *items*; returns one result per item, in order.

        Setting *interrupt* stops the run gracefully; unfinished ids come back pending.
        """
        archived = await self._archive.archived(i.id for i in items)
        for item in items:
            if item.id in archived:
                self._results[item.id] = ItemResult(item.id, item.label, Outcome.ALREADY_ARCHIVED)
        todo = [i for i in items if i.id not in archived]
        self._observer.run_started(len(items), len(items) - len(todo))
        if archived:
            log.info("%d of %d ids already archived, skipped", len(archived), len(items))
        if todo:
            await self._process(todo, interrupt or asyncio.Event())
        return [self._results[i.id] for i in items]

    async def _process(self, todo: list[ManifestItem], interrupt: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        self._deadline = loop.time() + self._config.polling.deadline
        self._remaining = len(todo)
        states = [_State(item) for item in todo]
        for state in states:
            self._poll_queue.put_nowait(state)
        concurrency = self._config.concurrency
        pollers = [asyncio.create_task(self._poll_worker(), name=f"poll-{n}")
                   for n in range(min(concurrency.polls, len(todo)))]
        downloaders = [asyncio.create_task(self._download_worker(), name=f"download-{n}")
                       for n in range(min(concurrency.downloads, len(todo)))]
        interrupted = asyncio.create_task(interrupt.wait())
        done = asyncio.create_task(self._done.wait())
        try:
            await asyncio.wait({done, interrupted}, return_when=asyncio.FIRST_COMPLETED)
            if not done.done() and self._fatal is None:
                await self._stop_gracefully(pollers, downloaders, done)
        finally:
            interrupted.cancel()
            done.cancel()
            for state in self._waiting:
                if state.timer is not None:
                    state.timer.cancel()
            workers = pollers + downloaders
            for task in workers:
                task.cancel()
            # Let cancelled transfers tidy their temporary files before returning.
            await asyncio.gather(*workers, return_exceptions=True)
        if self._fatal is not None:
            raise self._fatal
        self._answered()
        # Whatever was cut off mid-way (a dry-run probe at shutdown...) is pending, never lost.
        for state in states:
            if not state.done:
                self._finish(state, Outcome.PENDING,
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
        self._stopping = True
        interrupted = Interrupted("the run was interrupted before this id was done")
        for state in list(self._waiting):
            if state.timer is not None:
                state.timer.cancel()
            self._finish(state, Outcome.PENDING, error=interrupted)
        self._waiting.clear()
        for queue in (self._poll_queue, self._download_queue):
            while not queue.empty():
                entry = queue.get_nowait()
                self._finish(entry if isinstance(entry, _State) else entry.state,
                             Outcome.PENDING, error=interrupted)
        for task in pollers:
            task.cancel()  # a poll in flight is cheap to repeat next run
        await asyncio.gather(*pollers, return_exceptions=True)
        if not done.done():
            await asyncio.wait({done}, timeout=grace)
        for task in downloaders:
            task.cancel()
        await asyncio.gather(*downloaders, return_exceptions=True)

    # ------------------------------------------------------------------ polling

    async def _poll_worker(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            state = await self._poll_queue.get()
            if self._unavailable is not None:
                self._finish(state, Outcome.PENDING, error=self._unavailable)
                continue
            if not await self._admitted(state):
                continue
            if not state.started:
                state.started = self._monotonic()
            state.polls += 1
            try:
                info = await self._client.video_info(state.item.id)
            except FatalRunError as exc:
                self._stop(exc)
                return
            except ApiUnavailable as exc:
                self._api_down(exc, state)
                continue
            except TransientAPIError as exc:
                if exc.no_answer:  # failed - or the first sign of an outage
                    self._unanswered.append(state)
                    await self._end(state, Outcome.FAILED, exc, quiet=True)
                else:
                    self._answered()
                    await self._end(state, Outcome.FAILED, exc)
                continue
            except ItemError as exc:
                self._answered()
                await self._end(state, Outcome.FAILED, exc)
                continue
            except asyncio.CancelledError:
                if self._stopping:
                    self._finish(state, Outcome.PENDING,
                                 error=Interrupted("interrupted while polling"))
                raise
            except Exception as exc:
                await self._end(state, Outcome.FAILED, _internal(state, exc))
                continue
            self._answered()
            state.last_status = info.status
            state.expires_at = info.expires_at
            await self._route(loop, state, info)

    async def _route(self, loop: asyncio.AbstractEventLoop, state: _State,
                     info: JobInfo) -> None:
        item_id = state.item.id
        if info.status == JobStatus.SUCCESS:
            if not any(f.name == "video.mp4" for f in info.files):
                await self._end(state, Outcome.FAILED,
                                DownloadError("job succeeded but data.video is empty"))
                return
            self._warn_if_expiring(item_id, info)
            expires = info.expires_at if info.expires_at is not None else float("inf")
            self._download_queue.put_nowait(_Ready(expires, next(self._seq), state, info))
        elif info.status == JobStatus.FAILED:
            await self._end(state, Outcome.FAILED, JobFailed(info.error_code, info.error_reason))
        else:
            if info.status not in (JobStatus.QUEUED, JobStatus.PROCESSING) \
                    and not state.warned_status:
                state.warned_status = True
                log.warning("%s: unknown video_status %r, polling again until the deadline",
                            item_id, info.status)
            if self._unavailable is not None:  # no more polls in this run
                self._finish(state, Outcome.PENDING, error=self._unavailable)
                return
            now = loop.time()
            if now >= self._deadline:
                log.info("%s: not done by the deadline (status %s), left pending",
                         item_id, info.status)
                self._finish(state, Outcome.PENDING)
                return
            delay = min(self._backoff(state.polls), self._deadline - now)
            state.timer = loop.call_later(delay, self._repoll, state)
            self._waiting.add(state)

    def _api_down(self, exc: ApiUnavailable, state: _State | None = None) -> None:
        """The API is down: no new polls. *state* (its poll refused), the ids waiting for
        a poll and those whose polls just got no answer are left pending."""
        if state is not None:
            self._finish(state, Outcome.PENDING, error=exc)
        if self._unavailable is not None:
            return
        self._unavailable = exc
        for earlier in self._unanswered:
            # Already finished as failed (the observer was told so); the outage is the
            # better explanation, and the next run polls them again.
            result = self._results[earlier.item.id]
            result.outcome = Outcome.PENDING
            result.error, result.error_kind, result.error_code = str(exc), exc.kind, None
        self._unanswered.clear()
        for waiting in list(self._waiting):
            if waiting.timer is not None:
                waiting.timer.cancel()
            self._finish(waiting, Outcome.PENDING, error=exc)
        self._waiting.clear()
        while not self._poll_queue.empty():
            self._finish(self._poll_queue.get_nowait(), Outcome.PENDING, error=exc)

    def _answered(self) -> None:
        """The API answered a poll (or the run is over): the polls that got no answer
        before it failed on their own, and their log lines are due."""
        for state in self._unanswered:
            result = self._results[state.item.id]
            log.warning("%s: %s: %s", state.item.id, result.outcome.value, result.error)
        self._unanswered.clear()

    def _repoll(self, state: _State) -> None:
        self._waiting.discard(state)
        state.timer = None
        self._poll_queue.put_nowait(state)

    def _backoff(self, polls: int) -> float:
        polling = self._config.polling
        base = min(polling.max_interval, polling.interval * 2.0 ** min(polls - 1, 30))
        # +-10% jitter so thousands of jobs created together do not poll in lockstep.
        return min(polling.max_interval, base * random.uniform(0.9, 1.1))

    def _warn_if_expiring(self, item_id: str, info: JobInfo) -> None:
        if info.expires_at is None:
            return
        left = info.expires_at - self._clock()
        if left <= 0:
            log.warning("%s: past Akool's 7-day retention (expired %s); trying anyway",
                        item_id, iso(info.expires_at))
        elif left < EXPIRY_WARNING_SECONDS:
            log.warning("%s: expires in %.1f hours (%s)", item_id, left / 3600,
                        iso(info.expires_at))

    # ---------------------------------------------------------------- archiving

    async def _download_worker(self) -> None:
        item_timeout = self._config.downloads.item_timeout
        while True:
            ready = await self._download_queue.get()
            state, info = ready.state, ready.info
            if self._dry_run:
                await self._probe(state, info)
                continue
            if not await self._admitted(state):
                continue
            transaction = self._transactions.begin(state.item)
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
                if self._stopping:
                    self._finish(state, Outcome.PENDING, error=interrupted)
                raise
            except Exception as exc:
                outcome, error = self._failure(state, exc)
                # Before _finish: the last item's clean-up must be over when the run returns.
                await transaction.end(outcome, error)
                self._finish(state, outcome, error=error)
                if isinstance(error, ApiUnavailable):  # asking for a fresh URL
                    self._api_down(error)
            else:
                if files is None:
                    log.info("%s: committed by another run meanwhile; its record stands",
                             state.item.id)
                    self._finish(state, Outcome.ALREADY_ARCHIVED)
                else:
                    self._finish(state, Outcome.ARCHIVED, files=files)

    async def _admitted(self, state: _State) -> bool:
        """Whether work on *state* may start: the run still holds its lock. If not, the
        id stays pending (the run holding the lock now will do it)."""
        try:
            await self._fence.confirm()
        except LeaseLost as exc:
            self._finish(state, Outcome.PENDING, error=exc)
            return False
        return True

    def _failure(self, state: _State, exc: Exception) -> tuple[Outcome, ItemError]:
        """The outcome and error of an item whose archiving raised *exc*."""
        if isinstance(exc, LeaseLost):
            return Outcome.PENDING, exc  # turned away at the commit: not a failure
        if isinstance(exc, TimeoutError):
            return Outcome.FAILED, ItemTimeout(
                f"gave up after downloads.item_timeout ({self._config.downloads.item_timeout:g}s)")
        if isinstance(exc, ApiUnavailable):
            return Outcome.PENDING, exc
        if isinstance(exc, UrlGone):
            if state.expires_at is not None and state.expires_at < self._clock():
                return Outcome.EXPIRED, UrlGone(
                    f"results expired on {iso(state.expires_at)} "
                    f"(Akool keeps them 7 days): {exc}", exc.code)
            return Outcome.FAILED, exc
        if isinstance(exc, ItemError):
            return Outcome.FAILED, exc
        # A bug must fail one id, not hang the run with a worker gone.
        return Outcome.FAILED, _internal(state, exc)

    async def _end(self, state: _State, outcome: Outcome, error: ItemError, *,
                   quiet: bool = False) -> None:
        """End an item that failed while polling: discard what earlier runs kept for it
        if it failed for good (:func:`archiver.transaction.end_unstarted`), then record
        its outcome."""
        if not self._dry_run:  # a dry run writes nothing, not even a removal
            # Before _finish: the last item's clean-up must be over when the run returns.
            await end_unstarted(self._archive, state.item.id, outcome, error)
        self._finish(state, outcome, error=error, quiet=quiet)

    async def _probe(self, state: _State, info: JobInfo) -> None:
        """Dry run: what would be downloaded, with sizes where the file host says."""
        sizes = await asyncio.gather(*(self._downloader.probe(f) for f in info.files))
        files = [FileRecord(f.name, size, "", redact_url(f.url))
                 for f, size in zip(info.files, sizes, strict=True)]
        self._finish(state, Outcome.READY, files=files)

    # ------------------------------------------------------------------ outcome

    def _finish(self, state: _State, outcome: Outcome, *, error: ItemError | None = None,
                files: list[FileRecord] | None = None, quiet: bool = False) -> None:
        """Record *state*'s outcome; *quiet*: its log line is the caller's to write."""
        if state.done:
            return
        state.done = True
        item = state.item
        result = ItemResult(
            id=item.id, label=item.label, outcome=outcome, status=state.last_status,
            files=files or [], polls=state.polls,
            duration=(self._monotonic() - state.started) if state.started else 0.0,
            expires_at=state.expires_at,
        )
        if error is not None:
            result.error = str(error)
            result.error_kind = error.kind
            result.error_code = getattr(error, "code", None)
            # A down API is said once (by the client), not once per id.
            level = logging.DEBUG if quiet or isinstance(error, ApiUnavailable) else \
                logging.INFO if outcome is Outcome.PENDING else logging.WARNING
            log.log(level, "%s: %s: %s", item.id, outcome.value, error)
        elif outcome is Outcome.ARCHIVED:
            log.info("%s: archived %d file(s), %d bytes", item.id, len(result.files), result.bytes)
        self._results[item.id] = result
        self._observer.item_finished(result)
        self._remaining -= 1
        if self._remaining <= 0:
            self._done.set()

    def _stop(self, exc: FatalRunError) -> None:
        if self._fatal is None:
            self._fatal = exc
        self._done.set()


def _internal(state: _State, exc: Exception) -> ItemError:
    log.error("%s: internal error: %s", state.item.id, type(exc).__name__)
    log.debug("%s: internal error", state.item.id, exc_info=exc)  # traceback with --debug
    return ItemError(f"internal error: {type(exc).__name__} (run with --debug for details)")
