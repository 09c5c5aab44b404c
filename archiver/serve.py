"""``archiver serve``: receive Akool's webhooks and archive each job as it finishes.

Three parts, one process:

- the **intake** (aiohttp, on its own thread and event loop, owning the journal; see
  :class:`IntakeThread`): ``POST webhook.path`` checks size and shape, the signature
  (constant time), the timestamp, decrypts (:mod:`archiver.webhook`) and records the
  callback in the :class:`~archiver.journal.Journal` - committed to disk - before
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
import concurrent.futures
import contextlib
import hashlib
import logging
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from .api import AkoolClient
from .archive import Archive
from .archive.runlock import hold
from .archive.scheduler import Scheduler
from .archive.transaction import RESUMABLE_KINDS, end_unstarted
from .config import Config, WebhookConfig, parse_listen
from .download import Downloader
from .errors import ArchiverError, JobFailed, LeaseLost, UsageError
from .journal import JobRow, Journal, JournalError, Recorded
from .lock import NO_FENCE, Fence
from .manifest import ManifestItem
from .models import ItemResult, JobStatus, Outcome
from .webhook import CallbackRejected, open_callback

log = logging.getLogger(__name__)

_T = TypeVar("_T")

#: Journal file name at the root of a local archive (a dot: never a job id).
JOURNAL_NAME = ".archiver-journal.sqlite3"
#: Error kinds a later attempt may get past: the row stays pending.
_RETRYABLE_KINDS = RESUMABLE_KINDS
#: Jobs handed to one scheduler at most, and batches running at once. Two, not more:
#: each batch's scheduler starts its own poll and download workers, and more tasks ready
#: at once mean a longer turn of the event loop before a callback is answered (measured
#: with bench/bench_serve.py: 8 batches doubled the accept p99 without archiving faster).
_BATCH = 64
_BATCHES = 2
#: Back-pressure: while callbacks wait long for their commit, the worker runs one small
#: batch at a time. Accepting is the durable path (a 200 late enough makes Akool retry);
#: archiving may lag. What a callback waits on at 500/s is not the fsync (a journal on
#: tmpfs measured the same) but the journal thread and the intake loop getting the CPU
#: and the GIL from the worker: 2 x 64 jobs in flight gave an accept p99 of 50-120 ms,
#: 1 x 4 of ~22 ms, archiving no slower (bench/bench_serve.py, 2 cores).
_BUSY_BATCH = 4
#: A commit wait this much above what the disk takes (twice the journal's commit floor:
#: a slow disk alone must not throttle archiving) counts as "busy" ...
_SLOW_ACCEPT = 0.010
#: ... for this many seconds after.
_BUSY_HOLD = 2.0
#: Seconds a job the callback called final may wait for the API to say so too.
_FINAL_DEADLINE = 60.0
#: Results are gone after 7 days; a row still not final a day after that never will be.
_GIVE_UP_AFTER = 8 * 24 * 3600.0


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


class Counters:
    """What /metrics reports besides the journal's own counts."""

    def __init__(self) -> None:
        self.received = 0
        self.rejected: Counter[str] = Counter()
        self.recorded: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()
        self.started = time.time()
        #: time.monotonic() of the last callback whose commit waited over _SLOW_ACCEPT
        #: (set by the intake thread, read by the worker: one float, no lock needed).
        self.slow_accept_at = float("-inf")


def batch_limits(counters: Counters, now: float) -> tuple[int, int]:
    """(batches at once, jobs per batch) the worker may take now: fewer while the
    intake is busy (back-pressure, see _BUSY_BATCH)."""
    if now - counters.slow_accept_at < _BUSY_HOLD:
        return 1, _BUSY_BATCH
    return _BATCHES, _BATCH


# ---------------------------------------------------------------------- intake

class Intake:
    """The aiohttp handlers: the webhook, /healthz, /metrics."""

    def __init__(self, webhook: WebhookConfig, journal: Journal,
                 check_storage: Callable[[], Awaitable[None]], counters: Counters,
                 wake: Callable[[], None]) -> None:
        self._webhook = webhook
        self._journal = journal
        self._check_storage = check_storage
        self._counters = counters
        self._wake = wake

    def app(self) -> web.Application:
        # client_max_size bounds any body aiohttp reads for us; ours are read by hand below.
        app = web.Application(client_max_size=self._webhook.max_body)
        app.router.add_post(self._webhook.path, self.handle_callback)
        app.router.add_get("/healthz", self.handle_health)
        app.router.add_get("/metrics", self.handle_metrics)
        return app

    async def handle_callback(self, request: web.Request) -> web.Response:
        self._counters.received += 1
        try:
            return await self._callback(request)
        except Exception as exc:
            # Last resort: every refusal a sender can cause is a CallbackRejected (4xx)
            # raised by checks that cannot fail otherwise; reaching here is a bug. One
            # line, no traceback (unless --debug), counted, and no 200: Akool retries.
            self._counters.rejected["internal_error"] += 1
            log.error("callback from %s failed (500 internal_error): %s", request.remote,
                      type(exc).__name__)
            log.debug("callback: internal error", exc_info=exc)
            return web.Response(status=500, text="internal_error\n")

    async def _callback(self, request: web.Request) -> web.Response:
        webhook = self._webhook
        try:
            body = await _read_body(request, webhook.max_body)
            note = open_callback(body, client_id=webhook.client_id.get_secret_value(),
                                 client_secret=webhook.client_secret.get_secret_value(),
                                 now=time.time(), max_age=webhook.max_age)
        except CallbackRejected as exc:
            return self._reject(request, exc)
        started = time.monotonic()
        try:
            recorded = await self._journal.record(note)
        except JournalError as exc:
            # Not recorded: no 200, so Akool sends it again later.
            log.error("callback for %s not recorded: %s", note.job_id, exc)
            self._counters.rejected["journal_error"] += 1
            return web.Response(status=503, text="journal unavailable, try again\n")
        if time.monotonic() - started > _SLOW_ACCEPT + 2 * self._journal.commit_floor:
            self._counters.slow_accept_at = time.monotonic()
        # A re-delivery (the very body accepted before: Akool did not see our 200) is a
        # duplicate like any other: 200, so that Akool stops sending it; nothing changes.
        counted = Recorded.DUPLICATE if recorded is Recorded.REDELIVERY else recorded
        self._counters.recorded[counted.value] += 1
        log.info("callback: %s status %d (%s)", note.job_id, note.status, recorded.value)
        if recorded is Recorded.NEW:
            self._wake()
        return web.Response(text="ok\n")

    def _reject(self, request: web.Request, exc: CallbackRejected) -> web.Response:
        self._counters.rejected[exc.reason] += 1
        # The reason and the peer only: never the body, which may be an attacker's text.
        log.warning("callback from %s refused (%d %s): %s", request.remote, exc.status,
                    exc.reason, exc)
        return web.Response(status=exc.status, text=f"{exc.reason}: {exc}\n")

    async def handle_health(self, request: web.Request) -> web.Response:
        problem = await self._check_health()
        if problem is None:
            return web.Response(text="ok\n")
        return web.Response(status=503, text=problem + "\n")

    async def _check_health(self) -> str | None:
        # Not cached: a probe writes one journal row and checks the storage as `run`
        # does at start (S3: a small write probe), cheap at any sane probe interval.
        try:
            await self._journal.check_writable()
        except JournalError as exc:
            return f"journal: {exc}"
        try:
            await self._check_storage()
        except ArchiverError as exc:
            return f"storage: {exc}"
        return None

    async def handle_metrics(self, request: web.Request) -> web.Response:
        stats = await self._journal.stats()
        return web.Response(text=render_metrics(self._counters, stats.pending,
                                                stats.oldest_pending_received_at, stats.done),
                            content_type="text/plain", charset="utf-8")


class _ProtocolLog(logging.LoggerAdapter[logging.Logger]):
    """aiohttp's own log of requests it refuses before any handler runs (malformed HTTP:
    bad chunked framing, control characters in a header, two Content-Lengths): one
    warning line under ``archiver.serve``, naming the peer and the parser's verdict,
    never the request's bytes (the error's text quotes them) nor a traceback, which
    only ``--debug`` shows."""

    def exception(self, msg: object, *args: object, exc_info: Any = True,
                  **kwargs: Any) -> None:
        error = exc_info if isinstance(exc_info, BaseException) else sys.exc_info()[1]
        text = str(msg) % args if args else str(msg)
        self.logger.warning("%s: %s", text, type(error).__name__)
        self.logger.debug("aiohttp: %s", text, exc_info=exc_info)


#: Passed to aiohttp's request handler as its logger.
_PROTOCOL_LOG = _ProtocolLog(log, {})


async def _read_body(request: web.Request, limit: int) -> bytes:
    """The body, refused as soon as it is known to exceed *limit*: from Content-Length
    before reading a byte, else while streaming (chunked bodies)."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise CallbackRejected("too_large", f"body of {declared} bytes exceeds "
                                            f"webhook.max_body ({limit})", 413)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.content.iter_chunked(16384):
            size += len(chunk)
            if size > limit:
                raise CallbackRejected("too_large", f"body exceeds webhook.max_body ({limit})",
                                       413)
            chunks.append(chunk)
    except (ConnectionError, HttpProcessingError):
        # The sender hung up mid-body, or broke the chunked framing: it will not read
        # the answer, but the refusal is counted and logged like any other.
        raise CallbackRejected("incomplete", f"the body ended after {size} bytes, before "
                                             "its end (the sender hung up?)") from None
    return b"".join(chunks)


def render_metrics(counters: Counters, pending: int, oldest: float | None,
                   done: dict[str, int], now: float | None = None) -> str:
    """Prometheus text exposition of the server's counters and the journal's state."""
    now = time.time() if now is None else now
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str,
               samples: Sequence[tuple[str, float]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(f"{name}{labels} {value:g}" for labels, value in samples)

    metric("archiver_webhook_received_total", "counter",
           "Callback POSTs received since start.", [("", counters.received)])
    metric("archiver_webhook_rejected_total", "counter",
           "Callbacks refused since start, by reason.",
           [(f'{{reason="{r}"}}', n) for r, n in sorted(counters.rejected.items())]
           or [('{reason="bad_signature"}', 0)])
    metric("archiver_webhook_accepted_total", "counter",
           "Callbacks recorded since start (new, or a harmless duplicate).",
           [(f'{{result="{r}"}}', counters.recorded[r]) for r in ("new", "duplicate")])
    metric("archiver_webhook_items_total", "counter",
           "Jobs finished by this process since start, by outcome.",
           [(f'{{outcome="{o}"}}', counters.outcomes[o])
            for o in ("archived", "already_archived", "failed", "expired")])
    metric("archiver_journal_jobs", "gauge", "Jobs in the journal, by state and outcome.",
           [('{state="pending"}', pending)]
           + [(f'{{state="done",outcome="{o}"}}', n) for o, n in sorted(done.items())])
    metric("archiver_webhook_queue_depth", "gauge",
           "Jobs accepted and not finished yet.", [("", pending)])
    metric("archiver_webhook_oldest_pending_age_seconds", "gauge",
           "Age of the oldest unfinished job (0 when none).",
           [("", max(0.0, now - oldest) if oldest is not None else 0.0)])
    metric("archiver_webhook_start_time_seconds", "gauge",
           "When this server started.", [("", counters.started)])
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------- worker

class WorkerJournal(Protocol):
    """What the worker needs of the journal (a :class:`Journal`, or the intake's proxy)."""

    async def due(self, now: float, limit: int, skip: Iterable[str] = ()) -> list[JobRow]: ...

    async def finish(self, job_id: str, outcome: str, error: str | None = None) -> None: ...

    async def retry_later(self, job_id: str, delay: float, error: str | None = None,
                          seen_status: int | None = None) -> None: ...

    async def prune(self, before_ms: int) -> int: ...


class Worker:
    """Takes due journal rows and archives them with the run's scheduler, batch by batch."""

    def __init__(self, config: Config, journal: WorkerJournal, storage: Archive,
                 client: AkoolClient, downloader: Downloader, counters: Counters,
                 wake: asyncio.Event, stop: asyncio.Event, fence: Fence = NO_FENCE) -> None:
        webhook = config.webhook
        assert webhook is not None
        self._repoll = webhook.repoll_interval
        self._max_age = webhook.max_age
        # A batch holds one of few slots until its last job ends, so no job may keep it
        # for polling.deadline: a job the callback called final gets a minute for the API
        # to agree, a re-poll (status 2, maybe a lost callback) one look; either is then
        # left pending for the next re-poll.
        self._final_config = _with_deadline(config, min(config.polling.deadline,
                                                        _FINAL_DEADLINE, self._repoll))
        self._repoll_config = _with_deadline(config, 0.0)
        self._journal = journal
        self._storage = storage
        self._client = client
        self._downloader = downloader
        self._counters = counters
        self._wake = wake
        self._stop = stop
        self._fence = fence
        self._in_flight: set[str] = set()
        self._batches: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Work until *stop* is set, then let the batches in flight stop gracefully."""
        last_prune = 0.0
        while not self._stop.is_set():
            self._wake.clear()
            try:
                if time.monotonic() - last_prune > 60:
                    last_prune = time.monotonic()
                    await self._journal.prune(int((time.time() - 2 * self._max_age) * 1000))
                await self._dispatch()
            except JournalError as exc:
                # /healthz says so too; the rows are safe on disk, try again shortly.
                log.error("worker: %s", exc)
            await self._sleep()
        # The scheduler saw the same stop event: each batch ends its transfers within
        # run.shutdown_grace and reports the rest pending, which stays so in the journal.
        await asyncio.gather(*self._batches, return_exceptions=True)

    async def _sleep(self) -> None:
        # Futures of different results, only ever waited on: their values are unused.
        waits: set[asyncio.Future[Any]] = {asyncio.ensure_future(self._wake.wait()),
                                           asyncio.ensure_future(self._stop.wait())}
        waits |= set(self._batches)  # a freed batch slot may take more work
        try:
            await asyncio.wait(waits, timeout=min(self._repoll, 5.0),
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits - set(self._batches):
                waiter.cancel()

    async def _dispatch(self) -> None:
        while not self._stop.is_set():
            batches, size = batch_limits(self._counters, time.monotonic())
            if len(self._batches) >= batches:
                return
            rows = await self._journal.due(time.time(), size, self._in_flight)
            if not rows:
                return
            for row in rows:
                self._in_flight.add(row.id)
            task = asyncio.create_task(self._batch(rows))
            self._batches.add(task)
            task.add_done_callback(self._batches.discard)

    async def _batch(self, rows: list[JobRow]) -> None:
        try:
            failed = [r for r in rows if r.status == JobStatus.FAILED]
            for row in failed:
                await self._job_failed(row)
            final = [r for r in rows if r.status == JobStatus.SUCCESS]
            processing = [r for r in rows if r.status not in (JobStatus.SUCCESS, JobStatus.FAILED)]
            await asyncio.gather(self._archive(final, self._final_config),
                                 self._archive(processing, self._repoll_config))
        except LeaseLost:
            return  # the server is stopping; the rows stay due for whoever holds the lock
        except Exception as exc:
            # The rows stay pending and come due again: a bug must not lose a job.
            log.error("worker: batch of %d job(s) failed: %s (kept pending)", len(rows),
                      type(exc).__name__)
            log.debug("worker: batch failed", exc_info=exc)
            for row in rows:
                with contextlib.suppress(JournalError):
                    await self._journal.retry_later(row.id, self._repoll,
                                                    f"internal error: {type(exc).__name__}")
        finally:
            for row in rows:
                self._in_flight.discard(row.id)

    async def _job_failed(self, row: JobRow) -> None:
        """A status 4 callback: Akool says the job failed; no API call needed."""
        reason = row.payload.get("error_reason") or row.payload.get("msg") or \
            "Akool reported the job failed (callback status 4)"
        code = row.payload.get("error_code")
        error = f"Akool job failed: {reason}" + (f" (error_code {code})" if code else "")
        # Bytes an earlier attempt kept for this id are of no use now (as in `run`).
        await self._fence.confirm()  # LeaseLost: the batch keeps the row pending
        await end_unstarted(self._storage, row.id, Outcome.FAILED, JobFailed(None, str(reason)))
        await self._done(row.id, "failed", error)
        log.warning("%s: failed: %s", row.id, error)

    async def _archive(self, rows: list[JobRow], config: Config) -> None:
        if not rows:
            return
        scheduler = Scheduler(config, self._client, self._downloader, self._storage,
                              fence=self._fence)
        items = [ManifestItem(r.id) for r in rows]
        results = await scheduler.run(items, self._stop)
        for row, result in zip(rows, results, strict=True):
            await self._settle(row, result)

    async def _settle(self, row: JobRow, result: ItemResult) -> None:
        outcome = result.outcome
        if outcome in (Outcome.ARCHIVED, Outcome.ALREADY_ARCHIVED, Outcome.EXPIRED) or (
                outcome is Outcome.FAILED and result.error_kind not in _RETRYABLE_KINDS):
            await self._done(row.id, outcome.value, result.error)
            return
        if self._stop.is_set() or result.error_kind == LeaseLost.kind:
            return  # interrupted: the row stays due, the next start takes it at once
        if time.time() - row.received_at > _GIVE_UP_AFTER:
            await self._done(row.id, Outcome.EXPIRED.value,
                             f"not archived within {_GIVE_UP_AFTER / 86400:g} days of the "
                             f"first callback (last: {result.error or 'not final at Akool'})")
            return
        await self._journal.retry_later(row.id, self._repoll, result.error, row.status)

    async def _done(self, job_id: str, outcome: str, error: str | None) -> None:
        await self._journal.finish(job_id, outcome, error)
        self._counters.outcomes[outcome] += 1


def _with_deadline(config: Config, deadline: float) -> Config:
    return config.model_copy(update={"polling": config.polling.model_copy(
        update={"deadline": deadline})})


# ---------------------------------------------------------------------- server

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
                    AkoolClient(config.api, limit=config.concurrency.polls) as client,
                    Downloader(config.downloads, limit=config.concurrency.downloads,
                               bandwidth=config.limits.bandwidth_bytes) as downloader,
                ):
                    wake = asyncio.Event()
                    intake = IntakeThread(self.webhook, self.journal_path, storage,
                                          self.counters, wake, self._host, self._port)
                    port = await intake.start()
                    worker = Worker(config, _JournalProxy(intake), storage, client,
                                    downloader, self.counters, wake, self.stop, fence)
                    worker_task = asyncio.create_task(worker.run(), name="webhook-worker")
                    url = f"http://{_url_host(self._host)}:{port}{self.webhook.path}"
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


class IntakeThread:
    """The intake on its own thread and event loop; it also owns the journal.

    Why: the worker keeps its loop busy (polls, downloads, hashing); on one shared loop
    each callback waited for a whole turn of that work before its 200 (an accept p99 of
    ~80 ms at 500 callbacks/s in bench/bench_serve.py). On its own loop a callback waits
    at most for the interpreter to switch threads. The journal stays one connection on
    one thread, so callbacks and the worker's outcomes still share group commits (two
    connections would contend for SQLite's write lock, whose busy handler sleeps); the
    worker reaches it through :class:`_JournalProxy`. /healthz's storage check runs on
    the worker's loop: storage clients belong to the loop that opened them.
    """

    def __init__(self, webhook: WebhookConfig, journal: Path, storage: Archive,
                 counters: Counters, wake: asyncio.Event, host: str, port: int) -> None:
        self._webhook, self._journal_path, self._storage = webhook, journal, storage
        self._counters, self._wake, self._host, self._port = counters, wake, host, port
        self._main = asyncio.get_running_loop()
        self._ready: concurrent.futures.Future[int] = concurrent.futures.Future()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.journal: Journal | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="webhook-intake", daemon=True)

    async def start(self) -> int:
        """Open the journal and start serving; the bound port, or the start-up error."""
        self._thread.start()
        return await asyncio.wrap_future(self._ready)

    async def stop(self) -> None:
        """Stop accepting (callbacks in a handler are committed and answered first), then
        close the journal: call after the worker has stopped."""
        if self.loop is not None and self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        await asyncio.to_thread(self._thread.join)

    async def stop_accepting(self) -> None:
        """Close the listening socket and finish the handlers in flight; the journal
        stays open for the worker."""
        if self.loop is not None and self._runner is not None:
            await self.call(self._runner.cleanup())

    async def call(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run *coro* on the intake's loop (from the worker's) and return its result."""
        assert self.loop is not None
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._serve(loop))
        except BaseException as exc:
            if not self._ready.done():
                self._ready.set_exception(exc)
            else:
                log.error("webhook intake stopped: %s", exc)
        finally:
            loop.close()

    async def _serve(self, loop: asyncio.AbstractEventLoop) -> None:
        self._stop = asyncio.Event()
        self._runner: web.AppRunner | None = None
        main = self._main

        def wake() -> None:
            main.call_soon_threadsafe(self._wake.set)

        async def check_storage() -> None:
            future = asyncio.run_coroutine_threadsafe(self._storage.open(), main)
            await asyncio.wrap_future(future)

        async with Journal(self._journal_path,
                           repoll_interval=self._webhook.repoll_interval) as journal:
            intake = Intake(self._webhook, journal, check_storage, self._counters, wake)
            async with _http(intake.app(), self._host, self._port) as (runner, port):
                self._runner, self.journal, self.loop = runner, journal, loop
                self._ready.set_result(port)
                await self._stop.wait()


class _JournalProxy:
    """The worker's view of the journal the intake thread owns."""

    def __init__(self, intake: IntakeThread) -> None:
        self._intake = intake

    @property
    def _journal(self) -> Journal:
        journal = self._intake.journal
        assert journal is not None, "the intake thread is not running"
        return journal

    # Each call runs on the intake's loop: the journal's thread and futures belong to it.
    async def due(self, now: float, limit: int, skip: Iterable[str] = ()) -> list[JobRow]:
        return await self._intake.call(self._journal.due(now, limit, skip))

    async def finish(self, job_id: str, outcome: str, error: str | None = None) -> None:
        await self._intake.call(self._journal.finish(job_id, outcome, error))

    async def retry_later(self, job_id: str, delay: float, error: str | None = None,
                          seen_status: int | None = None) -> None:
        await self._intake.call(self._journal.retry_later(job_id, delay, error, seen_status))

    async def prune(self, before_ms: int) -> int:
        return await self._intake.call(self._journal.prune(before_ms))


@contextlib.asynccontextmanager
async def _http(app: web.Application, host: str,
                port: int) -> AsyncIterator[tuple[web.AppRunner, int]]:
    # access_log=None: each callback already gets one line of ours, without query strings.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0, logger=_PROTOCOL_LOG)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, backlog=1024)
        try:
            await site.start()
        except OSError as exc:
            raise UsageError(f"cannot listen on {host}:{port}: "
                             f"{exc.strerror or exc}") from None
        bound = runner.addresses[0][1]
        yield runner, bound
    finally:
        await runner.cleanup()


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host
