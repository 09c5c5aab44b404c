"""Hash and check, in order, the bytes a segmented fetch writes out of order.

The ranges of a segmented fetch are written by position as they arrive; one task reads
the file back behind them, from the first byte on, as far as the bytes are stored
without a gap (the frontier), feeding the SHA-256 and the content check. Every
``_MARK_STEP`` bytes it has the sink record the checked prefix: what a later attempt or
run resumes from (bytes past it are never trusted). Memory: one read-back block.
"""

from __future__ import annotations

import asyncio
import contextlib
import mmap
from collections.abc import Callable, Coroutine
from typing import Any

from ..errors import DownloadError
from .attempt import Target

#: Bytes read back per step to be hashed in order. 4 MiB rather than 1: a quarter of the
#: thread hops, which without a per-connection cap made segments measurably slower
#: than one stream on 2 cores.
_READ_BACK = 4 * 1024 * 1024
#: The checked prefix is made durable and recorded (for a resume) about this often.
_MARK_STEP = 64 * 1024 * 1024


class ReadBack:
    """Reads ``[first, total)`` back in order as it is stored, hashing and checking it.

    *frontier* says where the bytes stored without a gap end; whoever stores bytes sets
    :attr:`progress` so the reader looks again.
    """

    def __init__(self, target: Target, first: int, total: int,
                 frontier: Callable[[], int]) -> None:
        self._target, self._total, self._frontier = target, total, frontier
        #: Bytes hashed and checked, in order, from 0.
        self.hashed = first
        self._marked = first
        self._mark: asyncio.Future[None] | None = None
        #: Set when more bytes are stored: the frontier may have moved.
        self.progress = asyncio.Event()

    def record(self) -> Coroutine[Any, Any, None]:
        """Have the sink record the prefix checked by now (a resume starts after it)."""
        return self._target.sink.mark_prefix(self.hashed)

    async def run(self) -> None:
        """Hash and check every byte up to the total, as the ranges store them."""
        # One block, read into again and again: a fresh 4 MiB object per read, made in
        # whichever worker thread ran it, is what left glibc's per-thread arenas holding
        # tens of MiB (see _Block).
        with _Block() as block:
            while self.hashed < self._total:
                frontier = self._frontier()
                if frontier <= self.hashed:
                    self.progress.clear()
                    await self.progress.wait()
                    continue
                await self._hash_up_to(frontier, block.view)
                self._mark_now_and_then()

    async def last_mark(self) -> asyncio.Future[None] | None:
        """Wait for the prefix record in flight, if any; it (its error counts) or None."""
        if self._mark is not None:
            await asyncio.gather(self._mark, return_exceptions=True)
        return self._mark

    async def _hash_up_to(self, frontier: int, view: memoryview) -> None:
        loop = asyncio.get_running_loop()
        sink, hasher, check = self._target.sink, self._target.hasher, self._target.check
        while self.hashed < frontier:
            got = await sink.read_into(self.hashed,
                                       view[:min(len(view), frontier - self.hashed)])
            if not got:
                raise DownloadError(f"{self._target.name}: stored bytes vanished at "
                                    f"{self.hashed}")
            data = view[:got]
            await loop.run_in_executor(None, hasher.update, data)
            check.feed(data)  # copies what it keeps (a head, box headers)
            self.hashed += got

    def _mark_now_and_then(self) -> None:
        """Record the checked prefix every _MARK_STEP bytes, one record at a time."""
        mark = self._mark
        if mark is not None and mark.done() and (failed := mark.exception()) is not None:
            raise failed
        if self.hashed - self._marked >= _MARK_STEP and (mark is None or mark.done()):
            self._marked = self.hashed
            self._mark = asyncio.ensure_future(self.record())


class _Block:
    """The read-back block: an anonymous memory map of ``_READ_BACK`` bytes, reused for
    every read and unmapped at the end.

    Not ``bytes`` per read: each ``os.pread`` made a new 4 MiB object in the worker
    thread that ran it; glibc gives each thread its own arena and, once a block that
    large has been freed, serves later ones from those arenas instead of fresh maps
    (its mmap threshold rises to the freed size), so up to six arenas kept several
    blocks each: 1 GiB over 4 connections peaked at 115 MiB of RSS against 54 for one
    stream. A map is outside malloc: it costs its pages while in use, nothing after.
    """

    def __init__(self) -> None:
        self._map = mmap.mmap(-1, _READ_BACK)
        self.view = memoryview(self._map)

    def __enter__(self) -> _Block:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.view.release()
        # A hash still running in a thread after a cancellation holds a slice: the map
        # then goes when that slice does.
        with contextlib.suppress(BufferError):
            self._map.close()
