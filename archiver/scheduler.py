"""The scheduler: polls jobs and archives the finished ones, within fixed bounds.

However long the manifest, the run has ``concurrency.polls`` poll workers and
``concurrency.downloads`` download workers - a fixed number of tasks - fed from queues.
A job that is not done yet waits for its next poll as a timer on the event loop, not as
a sleeping task, so 10,000 pending jobs cost 10,000 small timer handles and nothing more.
"""

from __future__ import annotations

import asyncio
import datetime as dt
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
from .errors import DownloadError, FatalRunError, ItemError, JobFailed
from .manifest import ManifestItem
from .models import FileRecord, ItemResult, JobInfo, JobStatus, Outcome, RemoteFile
from .storage.base import INFO_NAME, SUMS_NAME, ItemWriter, Storage

log = logging.getLogger(__name__)


class Observer:
    """Receives run events; the CLI turns them into logs or progress. Methods are no-ops."""

    def run_started(self, total: int, already_archived: int) -> None:
        """The run knows how many ids it has and how many were archived before."""

    def bytes_received(self, count: int) -> None:
        """*count* more bytes of result files arrived."""

    def item_finished(self, result: ItemResult) -> None:
        """One id reached its outcome for this run."""


@dataclass(slots=True, eq=False)
class _State:
    item: ManifestItem
    started: float = 0.0
    polls: int = 0
    last_status: int | None = None
    timer: asyncio.TimerHandle | None = None


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
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._config = config
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
        self._seq = itertools.count()
        self._deadline = 0.0

    async def run(self, items: Sequence[ManifestItem]) -> list[ItemResult]:
        """Archive *items*; returns one result per item, in order."""
        archived = await self._storage.archived(i.id for i in items)
        for item in items:
            if item.id in archived:
                self._results[item.id] = ItemResult(item.id, item.label, Outcome.ALREADY_ARCHIVED)
        todo = [i for i in items if i.id not in archived]
        self._observer.run_started(len(items), len(items) - len(todo))
        if archived:
            log.info("%d of %d ids already archived, skipped", len(archived), len(items))
        if todo:
            await self._process(todo)
        return [self._results[i.id] for i in items]

    async def _process(self, todo: list[ManifestItem]) -> None:
        loop = asyncio.get_running_loop()
        self._deadline = loop.time() + self._config.polling.deadline
        self._remaining = len(todo)
        for item in todo:
            self._poll_queue.put_nowait(_State(item))
        concurrency = self._config.concurrency
        workers = [
            *(asyncio.create_task(self._poll_worker(), name=f"poll-{n}")
              for n in range(min(concurrency.polls, len(todo)))),
            *(asyncio.create_task(self._download_worker(), name=f"download-{n}")
              for n in range(min(concurrency.downloads, len(todo)))),
        ]
        try:
            await self._done.wait()
        finally:
            for state in self._waiting:
                if state.timer is not None:
                    state.timer.cancel()
            for task in workers:
                task.cancel()
            # Let cancelled downloads remove their temporary files before returning.
            await asyncio.gather(*workers, return_exceptions=True)
        if self._fatal is not None:
            raise self._fatal

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
                self._finish(state, Outcome.FAILED, error=exc)
                continue
            state.last_status = info.status
            self._route(loop, state, info)

    def _route(self, loop: asyncio.AbstractEventLoop, state: _State, info: JobInfo) -> None:
        item_id = state.item.id
        if info.status == JobStatus.SUCCESS:
            if not any(f.name == "video.mp4" for f in info.files):
                self._finish(state, Outcome.FAILED,
                             error=DownloadError("job succeeded but data.video is empty"))
                return
            expires = info.expires_at if info.expires_at is not None else float("inf")
            self._download_queue.put_nowait(_Ready(expires, next(self._seq), state, info))
        elif info.status == JobStatus.FAILED:
            self._finish(state, Outcome.FAILED,
                         error=JobFailed(info.error_code, info.error_reason))
        else:
            if info.status not in (JobStatus.QUEUED, JobStatus.PROCESSING):
                log.warning("%s: unknown video_status %r, polling again later",
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

    # ---------------------------------------------------------------- archiving

    async def _download_worker(self) -> None:
        while True:
            ready = await self._download_queue.get()
            state, info = ready.state, ready.info
            try:
                files = await self._archive(state.item, info)
            except ItemError as exc:
                self._finish(state, Outcome.FAILED, error=exc)
            else:
                self._finish(state, Outcome.ARCHIVED, files=files)

    async def _archive(self, item: ManifestItem, info: JobInfo) -> list[FileRecord]:
        writer = self._storage.item(item.id)
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self._fetch(remote, writer)) for remote in info.files]
            records = [t.result() for t in tasks]
            await writer.put_small(INFO_NAME, _json_bytes(info.raw))
            await writer.put_small(SUMS_NAME, _sha256sums(records))
            await writer.commit(_json_bytes(_record(item, info, records)))
        except BaseException as exc:
            await writer.abort()
            if isinstance(exc, BaseExceptionGroup):
                # One file failed and the TaskGroup cancelled the others: report the cause.
                first = _first_item_error(exc)
                if first is not None:
                    raise first from None
            raise
        return records

    async def _fetch(self, remote: RemoteFile, writer: ItemWriter) -> FileRecord:
        async with self._file_slots:
            return await self._downloader.fetch(remote, writer, self._observer.bytes_received)

    # ------------------------------------------------------------------ outcome

    def _finish(self, state: _State, outcome: Outcome, *, error: ItemError | None = None,
                files: list[FileRecord] | None = None) -> None:
        item = state.item
        result = ItemResult(
            id=item.id, label=item.label, outcome=outcome, status=state.last_status,
            files=files or [], polls=state.polls,
            duration=(self._clock() - state.started) if state.started else 0.0,
        )
        if error is not None:
            result.error = str(error)
            result.error_kind = error.kind
            result.error_code = getattr(error, "code", None) or getattr(error, "error_code", None)
            log.warning("%s: %s", item.id, error)
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


def _first_item_error(group: BaseExceptionGroup) -> ItemError | None:
    for exc in group.exceptions:
        if isinstance(exc, ItemError):
            return exc
        if isinstance(exc, BaseExceptionGroup) and (found := _first_item_error(exc)):
            return found
    return None


def _json_bytes(value: object) -> bytes:
    return (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _sha256sums(records: list[FileRecord]) -> bytes:
    # Two spaces: text mode, the format `sha256sum -c` reads back.
    return "".join(f"{r.sha256}  {r.name}\n" for r in records).encode("utf-8")


def _record(item: ManifestItem, info: JobInfo, records: list[FileRecord]) -> dict[str, object]:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    expires = info.expires_at
    return {
        "format": 1,
        "id": item.id,
        "label": item.label,
        "archived_at": now.isoformat().replace("+00:00", "Z"),
        "archiver_version": __version__,
        "video_status": info.status,
        "create_time": info.create_time_ms,
        "expires_at": (dt.datetime.fromtimestamp(expires, dt.UTC).isoformat()
                       .replace("+00:00", "Z") if expires is not None else None),
        "files": [r.to_json() for r in records],
    }
