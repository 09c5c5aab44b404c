"""The single-stream fetch: one answer's body, hashed, checked and stored as it arrives.

No file may exceed ``downloads.max_file_size``: the declared length is checked before
the body (:func:`check_declared`), the bytes as they stream (:class:`_Cap`), whatever
was declared.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from ..errors import DownloadError
from ..fleet.limits import TokenBucket, format_size
from ..storage.base import FileSink
from .attempt import Target
from .pipe import Pipe, Store

#: Chunks up to this size are hashed on the event loop (tens of microseconds).
_INLINE_HASH = 128 * 1024


def check_declared(name: str, shown: str, total: int | None, cap: int) -> None:
    """Refuse, before anything is stored, a file whose declared size is above *cap*."""
    if total is not None and total > cap:
        raise DownloadError(f"{shown}: {name} is {total} bytes, "
                            f"more than downloads.max_file_size ({format_size(cap)}); "
                            "not downloaded")


async def stream(target: Target, resp: aiohttp.ClientResponse, *, chunk_size: int,
                 cap: int, bandwidth: TokenBucket | None) -> int:
    """Store *resp*'s body after *target*'s offset; the number of bytes it had."""
    size = 0
    limit, check = _Cap(target, cap), target.check
    store = _hashing_store(target.sink, target.hasher)
    async with Pipe(store, target.listener, bandwidth=bandwidth, chunk_size=chunk_size) as pipe:
        async for data in resp.content.iter_any():
            size += len(data)
            limit.check(size)
            check.feed(data)
            await pipe.put(data)
    return size


def _hashing_store(sink: FileSink, hasher: Any) -> Store:
    """Hashes each chunk and writes it, in order.

    Chunk N is hashed (in a thread: ``sha256.update`` releases the GIL on large buffers)
    and written while chunk N+1 arrives, so neither the hash nor the disk holds up the
    socket.
    """
    async def store(chunk: bytes) -> None:
        if len(chunk) <= _INLINE_HASH:
            # Hashing a small chunk here costs less than handing it to a thread and back.
            hasher.update(chunk)
            await sink.write(chunk)
            return
        loop = asyncio.get_running_loop()
        await asyncio.gather(loop.run_in_executor(None, hasher.update, chunk),
                             sink.write(chunk))
    return store


class _Cap:
    """downloads.max_file_size, enforced on the bytes as they stream (whatever was declared)."""

    __slots__ = ("_cap", "_left", "_name", "_shown")

    def __init__(self, target: Target, cap: int) -> None:
        self._name, self._shown, self._cap = target.name, target.shown, cap
        self._left = cap - target.offset

    def check(self, received: int) -> None:
        if received > self._left:
            raise DownloadError(f"{self._shown}: {self._name} is larger than "
                                f"downloads.max_file_size ({format_size(self._cap)}); "
                                "download stopped, nothing kept")
