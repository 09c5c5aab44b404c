"""Small aiohttp servers for hostile-server tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web


def redirect_to(location: str) -> Callable[[web.Request], Any]:
    """A handler answering 302 to *location*."""

    async def handler(request: web.Request) -> web.Response:
        raise web.HTTPFound(location)

    return handler


class aiohttp_server:  # lower case: it reads like a function, async with aiohttp_server()
    """A small aiohttp app on 127.0.0.1 serving *routes* (path -> handler of *method*)."""

    def __init__(self, routes: dict[str, Callable[[web.Request], Any]],
                 method: str = "GET") -> None:
        self._app = web.Application()
        for path, handler in routes.items():
            self._app.router.add_route(method, path, handler)
        self._runner = web.AppRunner(self._app, shutdown_timeout=0.1)

    async def __aenter__(self) -> str:
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{port}"

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()


async def wait_for(predicate: Callable[[], Any], timeout: float = 30) -> None:
    """Hang guard, not a timing assertion: poll *predicate* until true."""
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached before the hang guard")
        await asyncio.sleep(0.02)
