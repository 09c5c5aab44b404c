"""Running the stand-in's application on a real socket, from async code or a thread."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from typing import Any

from aiohttp import web

from ..._http import url_host


@contextlib.asynccontextmanager
async def serve_app(app: web.Application, host: str, port: int) -> AsyncIterator[str]:
    """Serve *app* on ``host:port`` (0 = ephemeral) and yield its base URL."""
    # handler_cancellation stops streaming handlers whose client went
    # away; the short shutdown timeout keeps test teardown fast even if a
    # download is still in flight.
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_port = runner.addresses[0][1]
        yield f"http://{url_host(host)}:{bound_port}"
    finally:
        await runner.cleanup()


@contextlib.contextmanager
def in_thread(
    serve: Callable[[], AbstractAsyncContextManager[str]], *, timeout: float
) -> Iterator[str]:
    """Enter ``serve()`` on a daemon thread with its own event loop; yield its URL.

    The server is stopped (and the thread joined) on exit.
    """
    started = threading.Event()
    box: dict[str, Any] = {}
    loop = asyncio.new_event_loop()

    async def main() -> None:
        stop = asyncio.Event()
        box["stop"] = stop
        async with serve() as url:
            box["url"] = url
            started.set()
            await stop.wait()

    def run() -> None:
        try:
            loop.run_until_complete(main())
        except BaseException as exc:  # handed to the caller below
            box["error"] = exc
        finally:
            started.set()
            loop.close()

    thread = threading.Thread(target=run, name="akool-standin", daemon=True)
    thread.start()
    if not started.wait(timeout):
        raise TimeoutError("the Akool stand-in did not start in time")
    if "url" not in box:
        thread.join(timeout)
        raise RuntimeError("the Akool stand-in failed to start") from box.get("error")
    try:
        yield box["url"]
    finally:
        loop.call_soon_threadsafe(box["stop"].set)
        thread.join(timeout)
