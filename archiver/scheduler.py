"""The scheduler: polls jobs and archives the finished ones, within fixed bounds.

However long the manifest, the run has ``concurrency.polls`` poll workers and
``concurrency.downloads`` download workers - a fixed number of tasks - fed from queues.
A job that is not done yet waits for its next poll as a timer on the event loop, not as
a sleeping task, so 10,000 pending jobs cost 10,000 small timer handles and nothing more.

Stopping (SIGINT/SIGTERM, via the ``interrupt`` event): no new poll or download starts,
polls in flight are dropped, transfers in flight get ``run.shutdown_grace`` seconds to
finish and are then cancelled - keeping their bytes for the next run to resume.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from . import __version__
from .api import AkoolClient
from .config import Config
from .download import Downloader
from .errors import (
    DownloadError,
    FatalRunError,
    Interrupted,
    ItemError,
    ItemTimeout,
    JobFailed,
    TransientAPIError,
    TransientDownloadError,
    UrlGone,
)
from .manifest import ManifestItem
from .models import (
    FileRecord,
    ItemResult,
    JobInfo,
    JobStatus,
    Outcome,
    RemoteFile,
    RunResult,
    iso_utc,
    redact_url,
)
from .storage.base import INFO_NAME, SUMS_NAME, ItemWriter, Storage

log = logging.getLogger(__name__)

#: Warn about items this close to Akool deleting them.
EXPIRY_WARNING_SECONDS = 24 * 3600


class Observer:
    """Receives run events; the CLI turns them into logs or progress. Methods are no-ops."""

    def run_started(self, total: int, already_archived: int) -> None:
        """The run knows how many ids it has and how many were archived before."""

    def item_started(self, item_id: str, files: int) -> None:
        """Downloading of one finished job begins (*files* result files)."""

    def file_started(self, item_id: str, name: str, total: int | None, offset: int) -> None:
        """A transfer began: *total* bytes expected if known, *offset* already stored."""

    def file_progress(self, item_id: str, name: str, count: int) -> None:
        """*count* more bytes of a result file arrived."""

    def file_ended(self, item_id: str, name: str) -> None:
        """A transfer attempt ended (stored, failed or to be retried)."""

    def item_finished(self, result: ItemResult) -> None:
        """One id reached its outcome for this run."""

    def run_finished(self, result: RunResult) -> None:
        """The run is over (called by :func:`archiver.run.archive`)."""


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
                 storage: Storage, observer: Observer | None = None,
                 clock: Callable[[], float] = time.monotonic, dry_run: bool = False) -> None:
        self._config = config
        self._dry_run = dry_run
        self._client = client
        self._downloader = downloader
        self._storage = storage
        self._observer = observer or Observer()
        self._clock = clock
        self._results: dict[str, ItemResult] = {}
        self._poll_queue: asyncio.Queue[_State] = asyncio.Queue()
        self._download_queue: asyncio.PriorityQueue[_Ready] = asyncio.PriorityQueue()
        self._file_slots = asyncio.Semaphore(config.concurrency.downloads)
        self._waiting: set[_State] = set()  # jobs with a re-poll timer armed
        self._remaining = 0
        self._done = asyncio.Event()
        self._fatal: FatalRunError | None = None
        self._stopping = False
        self._seq = itertools.count()
        self._deadline = 0.0

    async def run(self, items: Sequence[ManifestItem],
                  interrupt: asyncio.Event | None = None) -> list[ItemResult]:
        """Archive *items*; returns one result per item, in order.

        Setting *interrupt* stops the run gracefully; unfinished ids come back pending.
        """
        archived = await self._storage.archived(i.id for i in items)
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
        # Whatever was cut off mid-way (a dry-run probe at shutdown...) is pending, never lost.
        for state in states:
            if not state.done:
                self._finish(state, Outcome.PENDING,
                             error=Interrupted("the run ended before this id was done"))

    async def _stop_gracefully(self, pollers: list[asyncio.Task[None]],
                               downloaders: list[asyncio.Task[None]],
                               done: asyncio.Task[bool]) -> None:
        grace = self._config.run.shutdown_grace
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
            if not state.started:
                state.started = self._clock()
            state.polls += 1
            try:
                info = await self._client.video_info(state.item.id)
            except FatalRunError as exc:
                self._stop(exc)
                return
            except ItemError as exc:
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
            now = loop.time()
            if now >= self._deadline:
                log.info("%s: not done by the deadline (status %s), left pending",
                         item_id, info.status)
                self._finish(state, Outcome.PENDING)
                return
            delay = min(self._backoff(state.polls), self._deadline - now)
            state.timer = loop.call_later(delay, self._repoll, state)
            self._waiting.add(state)

    def _repoll(self, state: _State) -> None:
        self._waiting.discard(state)
        state.timer = None
        self._poll_queue.put_nowait(state)

    def _backoff(self, polls: int) -> float:
        polling = self._config.polling
        base = min(polling.max_interval, polling.interval * 2 ** min(polls - 1, 30))
        # +-10% jitter so thousands of jobs created together do not poll in lockstep.
        return min(polling.max_interval, base * random.uniform(0.9, 1.1))

    def _warn_if_expiring(self, item_id: str, info: JobInfo) -> None:
        if info.expires_at is None:
            return
        left = info.expires_at - time.time()
        if left <= 0:
            log.warning("%s: past Akool's 7-day retention (expired %s); trying anyway",
                        item_id, _iso(info.expires_at))
        elif left < EXPIRY_WARNING_SECONDS:
            log.warning("%s: expires in %.1f hours (%s)", item_id, left / 3600,
                        _iso(info.expires_at))

    # ---------------------------------------------------------------- archiving

    async def _download_worker(self) -> None:
        item_timeout = self._config.downloads.item_timeout
        while True:
            ready = await self._download_queue.get()
            state, info = ready.state, ready.info
            if self._dry_run:
                await self._probe(state, info)
                continue
            writer = self._storage.item(state.item.id)
            try:
                async with asyncio.timeout(item_timeout):
                    files = await self._archive(state.item, info, writer)
            except FatalRunError as exc:
                await _end_writer(writer, keep=keeps_partials(None, exc))
                self._stop(exc)
                return
            except asyncio.CancelledError:
                interrupted = Interrupted(
                    "interrupted during download; partial files kept for the next run")
                await _end_writer(writer, keep=keeps_partials(Outcome.PENDING, interrupted))
                if self._stopping:
                    self._finish(state, Outcome.PENDING, error=interrupted)
                raise
            except Exception as exc:
                outcome, error = self._failure(state, exc)
                await self._end(state, outcome, error, writer)
            else:
                self._finish(state, Outcome.ARCHIVED, files=files)

    def _failure(self, state: _State, exc: Exception) -> tuple[Outcome, ItemError]:
        """The outcome and error of an item whose archiving raised *exc*."""
        if isinstance(exc, TimeoutError):
            return Outcome.FAILED, ItemTimeout(
                f"gave up after downloads.item_timeout ({self._config.downloads.item_timeout:g}s)")
        if isinstance(exc, UrlGone):
            if state.expires_at is not None and state.expires_at < time.time():
                return Outcome.EXPIRED, UrlGone(
                    f"results expired on {_iso(state.expires_at)} "
                    f"(Akool keeps them 7 days): {exc}", exc.code)
            return Outcome.FAILED, exc
        if isinstance(exc, ItemError):
            return Outcome.FAILED, exc
        # A bug must fail one id, not hang the run with a worker gone.
        return Outcome.FAILED, _internal(state, exc)

    async def _end(self, state: _State, outcome: Outcome, error: ItemError,
                   writer: ItemWriter | None = None) -> None:
        """End an item that was not archived: keep or discard the bytes it has stored
        (see :func:`keeps_partials`), then record its outcome.

        Without *writer* (a failure while polling) only a discard touches storage: bytes
        an earlier run kept for this id are of no use once it failed for good.
        """
        keep = keeps_partials(outcome, error)
        if writer is None and not keep and not self._dry_run:
            writer = self._storage.item(state.item.id)
        if writer is not None:
            # Before _finish: the last item's clean-up must be over when the run returns.
            await _end_writer(writer, keep=keep)
        self._finish(state, outcome, error=error)

    async def _probe(self, state: _State, info: JobInfo) -> None:
        """Dry run: what would be downloaded, with sizes where the file host says."""
        sizes = await asyncio.gather(*(self._downloader.probe(f) for f in info.files))
        files = [FileRecord(f.name, size, "", redact_url(f.url))
                 for f, size in zip(info.files, sizes, strict=True)]
        self._finish(state, Outcome.READY, files=files)

    async def _archive(self, item: ManifestItem, info: JobInfo,
                       writer: ItemWriter) -> list[FileRecord]:
        """Fetch and commit one item. On failure the caller ends *writer*, knowing the
        outcome (an UrlGone may yet turn out to be an expiry)."""
        self._observer.item_started(item.id, len(info.files))
        records: dict[str, FileRecord] = {}
        refreshes = 0
        while True:
            try:
                await self._fetch_all(item.id, info.files, records, writer)
                break
            except UrlGone:
                if refreshes >= self._config.downloads.url_refreshes:
                    raise
                refreshes += 1
                # The URL expired or was revoked: Akool may hand out a fresh one.
                log.info("%s: result URL refused, asking the API again", item.id)
                info = await self._fresh_info(item.id)
        ordered = [records[f.name] for f in info.files]
        await writer.put_small(INFO_NAME, _json_bytes(info.raw))
        await writer.put_small(SUMS_NAME, _sha256sums(ordered))
        await writer.commit(_json_bytes(_record(item, info, ordered)))
        return ordered

    async def _fetch_all(self, item_id: str, files: Sequence[RemoteFile],
                         records: dict[str, FileRecord], writer: ItemWriter) -> None:
        """Fetch the files not in *records* yet, all at once; the first error wins."""
        todo = [f for f in files if f.name not in records]
        tasks: dict[str, asyncio.Task[FileRecord]] = {}
        try:
            async with asyncio.TaskGroup() as group:
                for remote in todo:
                    tasks[remote.name] = group.create_task(
                        self._fetch(remote, writer, item_id))
        except BaseExceptionGroup as group_error:
            _collect(tasks, records)
            first = _first_item_error(group_error)
            if first is not None:
                raise first from None
            raise
        _collect(tasks, records)

    async def _fresh_info(self, item_id: str) -> JobInfo:
        info = await self._client.video_info(item_id)
        if info.status != JobStatus.SUCCESS or not info.files:
            raise DownloadError(f"result URL refused and the job now has status {info.status}")
        return info

    async def _fetch(self, remote: RemoteFile, writer: ItemWriter, item_id: str) -> FileRecord:
        async with self._file_slots:
            listener = _FileEvents(self._observer, item_id, remote.name)
            return await self._downloader.fetch(remote, writer, listener)

    # ------------------------------------------------------------------ outcome

    def _finish(self, state: _State, outcome: Outcome, *, error: ItemError | None = None,
                files: list[FileRecord] | None = None) -> None:
        if state.done:
            return
        state.done = True
        item = state.item
        result = ItemResult(
            id=item.id, label=item.label, outcome=outcome, status=state.last_status,
            files=files or [], polls=state.polls,
            duration=(self._clock() - state.started) if state.started else 0.0,
            expires_at=state.expires_at,
        )
        if error is not None:
            result.error = str(error)
            result.error_kind = error.kind
            result.error_code = getattr(error, "code", None)
            level = logging.INFO if outcome is Outcome.PENDING else logging.WARNING
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


#: Failures a later run may get past, using the bytes already stored: interruption, the
#: item's time limit, network or API trouble, a refused URL Akool may renew.
_RESUMABLE = (TransientDownloadError, TransientAPIError, UrlGone, ItemTimeout, Interrupted,
              FatalRunError)


def keeps_partials(outcome: Outcome | None, error: BaseException) -> bool:
    """Whether an item that ended with *outcome* and *error* keeps its downloaded bytes.

    The one place this is decided, once the outcome is known. An expired item, and
    one that failed for good (rejected content, a permanent HTTP or API error, a failed
    job), keeps nothing: no later run could finish it, so its bytes would stay forever.
    """
    if outcome is Outcome.EXPIRED:
        return False
    return isinstance(error, _RESUMABLE)


async def _end_writer(writer: ItemWriter, *, keep: bool) -> None:
    # Shielded: a second Ctrl-C must not cut a clean-up short half-way.
    try:
        await asyncio.shield(writer.abort(keep=keep))
    except Exception as exc:
        # The item's own outcome stands; a clean-up that failed is worth a line.
        log.warning("clean-up of an unfinished item failed: %s", exc)


def _internal(state: _State, exc: Exception) -> ItemError:
    log.error("%s: internal error: %s", state.item.id, type(exc).__name__)
    log.debug("%s: internal error", state.item.id, exc_info=exc)  # traceback with --debug
    return ItemError(f"internal error: {type(exc).__name__} (run with --debug for details)")


class _FileEvents:
    """Turns one transfer's events into observer calls naming the item and file."""

    __slots__ = ("_item_id", "_name", "_observer")

    def __init__(self, observer: Observer, item_id: str, name: str) -> None:
        self._observer, self._item_id, self._name = observer, item_id, name

    def started(self, total: int | None, offset: int) -> None:
        self._observer.file_started(self._item_id, self._name, total, offset)

    def advanced(self, count: int) -> None:
        self._observer.file_progress(self._item_id, self._name, count)

    def ended(self) -> None:
        self._observer.file_ended(self._item_id, self._name)


def _collect(tasks: dict[str, asyncio.Task[FileRecord]], records: dict[str, FileRecord]) -> None:
    for name, task in tasks.items():
        if task.done() and not task.cancelled() and task.exception() is None:
            records[name] = task.result()


def _first_item_error(group: BaseExceptionGroup) -> BaseException | None:
    # An error that stops the run outranks a per-item one.
    flat = list(_flatten(group))
    for kind in (FatalRunError, UrlGone, ItemError):
        for exc in flat:
            if isinstance(exc, kind):
                return exc
    return None


def _flatten(group: BaseExceptionGroup):  # type: ignore[no-untyped-def]
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _flatten(exc)
        else:
            yield exc


def _iso(epoch: float) -> str:
    # Never raises: a log line about an absurd time must not cost the item.
    return iso_utc(epoch) or "an unknown time"


def _json_bytes(value: object) -> bytes:
    return (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _sha256sums(records: list[FileRecord]) -> bytes:
    # Two spaces: text mode, the format `sha256sum -c` reads back.
    return "".join(f"{r.sha256}  {r.name}\n" for r in records).encode("utf-8")


def _record(item: ManifestItem, info: JobInfo, records: list[FileRecord]) -> dict[str, object]:
    return {
        "format": 1,
        "id": item.id,
        "label": item.label,
        "archived_at": _iso(time.time()),
        "archiver_version": __version__,
        "video_status": info.status,
        "create_time": info.create_time_ms,
        "expires_at": _iso(info.expires_at) if info.expires_at is not None else None,
        "files": [r.to_json() for r in records],
    }
