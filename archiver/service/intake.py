"""The intake of ``archiver serve``: the aiohttp handlers (the webhook, /healthz,
/metrics, the status page of :mod:`.status`) on their own thread and event loop, which
also owns the journal (see :class:`IntakeThread`)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from ..akool.families import FAMILIES
from ..akool.webhook import CallbackRejected, open_callback
from ..archive import Archive
from ..config import WebhookConfig
from ..errors import ArchiverError, UsageError
from .counters import SLOW_ACCEPT, UNKNOWN_FAMILY, Counters, render_metrics
from .journal import JobRow, Journal, JournalError, Recorded
from .status import StatusPage

log = logging.getLogger(__name__)

_T = TypeVar("_T")


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
        if self._webhook.status_page:
            StatusPage(self._webhook, self._journal.path, self._counters).add_routes(app)
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
        if time.monotonic() - started > SLOW_ACCEPT + 2 * self._journal.commit_floor:
            self._counters.slow_accept_at = time.monotonic()
        # A re-delivery (the very body accepted before: Akool did not see our 200) is a
        # duplicate like any other: 200, so that Akool stops sending it; nothing changes.
        counted = Recorded.DUPLICATE if recorded is Recorded.REDELIVERY else recorded
        self._counters.recorded[counted.value, note.family or UNKNOWN_FAMILY] += 1
        log.info("callback: %s status %d, %s (%s)", note.job_id, note.status,
                 note.family or "family unknown", recorded.value)
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
                                                stats.oldest_pending_received_at, stats.done,
                                                families=tuple(FAMILIES)),
                            content_type="text/plain", charset="utf-8")


class _ProtocolLog(logging.LoggerAdapter[logging.Logger]):
    """aiohttp's own log of requests it refuses before any handler runs (malformed HTTP:
    bad chunked framing, control characters in a header, two Content-Lengths): one
    warning line under ``archiver.service.serve``, naming the peer and the parser's verdict,
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


class IntakeThread:
    """The intake on its own thread and event loop; it also owns the journal.

    Why: the worker keeps its loop busy (polls, downloads, hashing); on one shared loop
    each callback waited for a whole turn of that work before its 200 (an accept p99 of
    ~80 ms at 500 callbacks/s in bench/bench_serve.py). On its own loop a callback waits
    at most for the interpreter to switch threads. The journal stays one connection on
    one thread, so callbacks and the worker's outcomes still share group commits (two
    connections would contend for SQLite's write lock, whose busy handler sleeps); the
    worker reaches it through :class:`JournalProxy`. /healthz's storage check runs on
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


class JournalProxy:
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

    async def set_family(self, job_id: str, family: str) -> None:
        await self._intake.call(self._journal.set_family(job_id, family))

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
