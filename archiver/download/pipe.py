"""From the network's reads to storage: coalesced, one store job behind the reads.

Both fetchers read a body in whatever pieces aiohttp hands over (often a few KiB) and
store it in ``downloads.chunk_size`` chunks - fewer thread hops and syscalls - while the
next chunk arrives: memory per transfer is about two chunks whatever the file size.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

from ..fleet.limits import TokenBucket
from .attempt import TransferListener
from .transport import BROKEN

#: Stores one chunk; started only once the chunk before it is stored.
Store = Callable[[bytes], Coroutine[Any, Any, None]]


class Pipe:
    """Takes a body's reads: counts them (*listener*), paces them (*bandwidth*), and
    stores them coalesced into chunks, each while the next one arrives.

    Use ``async with Pipe(store, ...) as pipe`` and ``await pipe.put(data)`` for each
    read. When the block ends normally, or because the connection broke
    (:data:`~.transport.BROKEN`), what is buffered is stored and waited for: the bytes
    that arrived are a good prefix, kept so that a retry asks only for the rest. On any
    other error (a check failed, a cancellation) only the store job in flight is let
    finish, so the sink is never aborted under a write.
    """

    __slots__ = ("_bandwidth", "_buffered", "_chunk_size", "_listener", "_pending", "_pieces",
                 "_store")

    def __init__(self, store: Store, listener: TransferListener | None, *,
                 bandwidth: TokenBucket | None, chunk_size: int) -> None:
        self._store = store
        self._listener, self._bandwidth = listener, bandwidth
        self._chunk_size = chunk_size
        self._pieces: list[bytes] = []
        self._buffered = 0
        self._pending: asyncio.Future[None] | None = None

    async def __aenter__(self) -> Pipe:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: object) -> None:
        if exc is None or isinstance(exc, BROKEN):
            await self._flush()
            await self._drain()
        else:
            await self._settle()

    async def put(self, data: bytes, *, end: bool = False) -> None:
        """Take one read; a chunk goes to the store once one is buffered, or at *end*."""
        self._pieces.append(data)
        self._buffered += len(data)
        if self._listener is not None:
            self._listener.advanced(len(data))
        if self._bandwidth is not None:
            await self._bandwidth.acquire(len(data))
        if end or self._buffered >= self._chunk_size:
            await self._flush()

    async def _flush(self) -> None:
        """Hand what is buffered to the store, once the chunk before it is stored."""
        if not self._pieces:
            return
        chunk = b"".join(self._pieces)
        self._pieces.clear()
        self._buffered = 0
        await self._drain()
        self._pending = asyncio.ensure_future(self._store(chunk))

    async def _drain(self) -> None:
        """Wait until every chunk handed over is stored (errors surface here)."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            await pending

    async def _settle(self) -> None:
        """On cancellation or error: let a write in flight finish before the sink is aborted."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            with contextlib.suppress(BaseException):
                await asyncio.shield(pending)
