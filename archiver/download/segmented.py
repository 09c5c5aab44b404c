"""The segmented fetch: one large file over several connections at once.

A file with more than ``downloads.segment_threshold`` bytes left to fetch, whose server
gives a strong validator and a length, is fetched over ``downloads.segments`` connections
when the storage can write by position (:func:`segment_count`). The bytes are split into
pieces (a few per connection); each connection takes the lowest piece nobody has taken
yet, until none is left. Piece 0 is the answer already received (a 200, or the 206 of a
resume) read up to the piece's end; the others are asked for with ``Range: bytes=a-b``
and ``If-Range``. Each piece is written by position (:meth:`FileSink.write_at`) and,
when its connection breaks, asked for again from where it stopped; behind them the file
is read back in order to be hashed and checked (:mod:`.readback`). So memory stays about
two chunks per connection plus one read-back block, whatever the file size.

Answers are checked against the first: a 206 must have the exact Content-Range asked
for, the same total and the same validator; a 200 with the same validator means Range
is ignored (one stream: range 0 reads on to the end if it still can, otherwise the file
is fetched again over one connection); anything else means the file changed
(:class:`~.resume.StalePartial`: everything is dropped, fetched from zero).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging

import aiohttp

from .._http import describe_transport_error
from ..config import DownloadConfig
from ..errors import DownloadError, TransientDownloadError
from .attempt import Target
from .connections import overran
from .pipe import Pipe, Store
from .readback import ReadBack
from .resume import Overrun, StalePartial, resume_from, validator
from .transport import BROKEN, Transport

log = logging.getLogger("archiver.download")

#: No range is made smaller than this: below it a connection costs more than it brings.
_MIN_SEGMENT = 1024 * 1024
#: Pieces per connection. Equal ranges, one per connection, would all finish at the
#: end, and hashing (in order) could only start then; with several pieces per
#: connection, taken lowest first, the checked prefix follows the downloads closely.
_PIECES_PER_CONNECTION = 4
#: What cuts a range short and is asked for again from where it stopped.
_CUT: tuple[type[BaseException], ...] = (*BROKEN, TransientDownloadError)


def segment_count(config: DownloadConfig, target: Target, resp: aiohttp.ClientResponse) -> int:
    """How many connections to fetch this answer's bytes over (1: just this one)."""
    expected = target.expected
    if (config.segments < 2 or target.carry.single or expected is None
            or expected <= config.segment_threshold or validator(resp) is None
            or not target.sink.supports_positional_writes):
        return 1
    return max(1, min(config.segments, expected // _MIN_SEGMENT))


class NoRanges(TransientDownloadError):
    """The server does not honour Range for this file: fetch it again over one stream."""


class Range:
    """One piece of the file: bytes ``[start, end)``, of which ``[start, stored)`` are written."""

    __slots__ = ("end", "index", "start", "stored")

    def __init__(self, index: int, start: int, end: int) -> None:
        self.index, self.start, self.end, self.stored = index, start, end, start


class Segmented:
    """Fetches the rest of *target*'s file, from its offset on, over *count* connections.

    *resp* is the first answer (its body not read yet). :meth:`run` returns once every
    byte is stored, hashed and checked; the caller commits.
    """

    def __init__(self, transport: Transport, config: DownloadConfig, target: Target,
                 resp: aiohttp.ClientResponse, count: int) -> None:
        assert target.total is not None
        self._transport, self._config, self._target = transport, config, target
        self._resp, self._count = resp, count
        self._shown, self._total = target.shown, target.total
        self._validator = validator(resp)
        self._ranges = _split(target.offset, self._total, count)
        self._behind = ReadBack(target, target.offset, self._total, self._frontier)
        #: Range 0 is reading its answer on to the end: Range is not honoured.
        self._single = False
        #: A 206 came: the server honours Range (a 200 from now on is no fallback).
        self._ranged = False
        self._taken = 1  # pieces handed out; piece 0 is the first answer's

    async def run(self) -> int:
        """Fetch, hash and check every range; the file's size."""
        # Recorded before any write by position: a run that dies from here on resumes
        # after the checked prefix, never onto the bytes written out of order.
        await self._behind.record()
        try:
            await self._gather()
        except BaseException as exc:
            await self._keep_prefix(exc)
            raise
        return self._total

    async def _gather(self) -> None:
        tasks: list[asyncio.Future[None]] = [asyncio.ensure_future(self._first()),
                                             asyncio.ensure_future(self._behind.run())]
        tasks += [asyncio.ensure_future(self._worker()) for _ in range(self._count - 1)]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for task in tasks:
                task.cancel()
            # Let every write in flight finish before the caller commits or aborts.
            await asyncio.gather(*tasks, return_exceptions=True)
            if (mark := await self._behind.last_mark()) is not None:
                tasks.append(mark)  # a failed mark aborted the sink: it must surface
        errors = [exc for t in tasks if not t.cancelled() and (exc := t.exception()) is not None]
        if errors:
            raise _worst(errors)
        if self._behind.hashed != self._total:  # every task ended, yet something is missing
            raise TransientDownloadError(f"{self._shown}: ranges ended at byte "
                                         f"{self._behind.hashed} of {self._total}")

    async def _keep_prefix(self, exc: BaseException) -> None:
        """After a failure worth resuming, record how far the bytes are checked."""
        if isinstance(exc, NoRanges) or self._single:
            self._target.carry.single = True
        if isinstance(exc, Exception) and (not isinstance(exc, TransientDownloadError)
                                           or isinstance(exc, StalePartial)):
            return  # nothing is kept
        # The MP4 box walk has seen exactly the bytes up to the checked prefix: the next
        # attempt resumes there and carries on with it.
        with contextlib.suppress(Exception):
            await asyncio.shield(self._behind.record())

    def _frontier(self) -> int:
        """Where the bytes stored without a gap from the start end."""
        for part in self._ranges:
            if part.stored < part.end or part.end == self._total:
                return part.stored
        return self._total

    # ------------------------------------------------------------- the ranges

    async def _first(self) -> None:
        """Range 0: the answer already received, then (if cut) asked for again."""
        first = self._ranges[0]
        try:
            await self._pump(first, self._resp, bounded=False)
            if first.stored == self._total and overran(self._resp):
                raise Overrun(f"{self._shown}: the server sent more than its Content-Length "
                              f"({self._total} bytes); what arrived was dropped")
        except StalePartial:
            raise  # an overrun: nothing of this answer is to be trusted
        except _CUT as exc:
            # Cut, or stopped at its piece's end just before the news that Range is
            # ignored made it the only stream: either way, asked for again below.
            log.info("%s: range 0 ended at byte %d: %s", self._target.name, first.stored,
                     _why(exc))
        finally:
            self._resp.close()  # a range cut short: the rest is for the other connections
        await self._other(first)
        await self._worker()

    async def _worker(self) -> None:
        """One connection's work: the lowest piece not taken yet, until none is left."""
        while not self._single and self._taken < len(self._ranges):
            part = self._ranges[self._taken]
            self._taken += 1
            await self._other(part)

    async def _other(self, part: Range) -> None:
        """Ask for what is missing of *part* until it is all stored (bounded retries)."""
        failures = 0
        while part.stored < part.end and not (self._single and part.index > 0):
            before = part.stored
            try:
                await self._fetch(part)
            except NoRanges:
                if self._one_stream(part):
                    return
                raise
            except StalePartial:
                raise
            except _CUT as exc:
                failures = 0 if part.stored > before else failures + 1
                await self._pause(part, failures, exc)

    def _one_stream(self, part: Range) -> bool:
        """Range is ignored: whether range 0 can read on to the end (True) or not."""
        if self._single and part.index > 0:
            return True  # range 0 reads everything already
        first = self._ranges[0]
        if not self._ranged and first.stored < first.end < self._total:
            log.info("%s: the server ignores Range; one connection", self._target.name)
            self._single = True
            first.end = self._total
            return True
        return False

    async def _pause(self, part: Range, failures: int, exc: BaseException) -> None:
        """Wait before asking for *part* again; give up after downloads.retries attempts."""
        retries = self._config.retries
        if failures >= retries.attempts:
            raise TransientDownloadError(
                f"{self._shown}: bytes {part.stored}-{part.end - 1}: {_why(exc)}") from None
        log.info("%s: range %d cut at byte %d; asking for the rest",
                 self._target.name, part.index, part.stored)
        await asyncio.sleep(retries.wait(failures + 1))

    async def _fetch(self, part: Range) -> None:
        assert self._validator is not None
        headers = {"Range": f"bytes={part.stored}-{part.end - 1}",
                   "If-Range": self._validator}
        async with await self._transport.get(self._target.url, headers) as resp:
            self._check_answer(resp, part)
            self._ranged = True
            await self._pump(part, resp, bounded=True)
        if overran(resp):
            raise Overrun(f"{self._shown}: the server sent more than its Content-Length "
                          f"for bytes {part.start}-{part.end - 1}; what arrived was dropped")

    def _check_answer(self, resp: aiohttp.ClientResponse, part: Range) -> None:
        status, shown = resp.status, self._shown
        if status in (200, 206) and validator(resp) not in (None, self._validator):
            raise StalePartial(f"{shown}: the file changed while it was fetched in ranges")
        if status == 200:
            raise NoRanges(f"{shown}: the server ignores Range")
        if status == 206:
            self._check_content_range(resp, part)
            return
        if status in (412, 416):
            raise StalePartial(f"{shown}: the file changed while it was fetched in ranges "
                               f"(HTTP {status})")
        resume_from(resp, None, shown)  # raises the error that fits the status
        raise DownloadError(f"{shown}: HTTP {status}")

    def _check_content_range(self, resp: aiohttp.ClientResponse, part: Range) -> None:
        want = f"bytes {part.stored}-{part.end - 1}/{self._total}"
        got = resp.headers.get("Content-Range", "")
        if got == want and resp.content_length in (None, part.end - part.stored):
            return
        if not got.endswith(f"/{self._total}"):
            raise StalePartial(f"{self._shown}: the file changed while it was fetched in "
                               f"ranges (Content-Range {got!r})")
        raise NoRanges(f"{self._shown}: asked for {want!r}, got {got!r}")

    async def _pump(self, part: Range, resp: aiohttp.ClientResponse, *, bounded: bool) -> None:
        """Write *resp*'s body at *part*'s position until the range is stored.

        A *bounded* answer (a range asked for) sending more than asked is an overrun;
        the first answer is simply not read past its range's end.
        """
        received = part.stored
        store = _range_store(self._target, part, self._behind.progress)
        async with Pipe(store, self._target.listener, bandwidth=self._transport.bandwidth,
                        chunk_size=self._config.chunk_size) as pipe:
            async for data in resp.content.iter_any():
                if part.index > 0 and self._single:
                    break  # range 0 reads everything now
                if received + len(data) > part.end:
                    data = self._trim(part, data, received, bounded=bounded)
                received += len(data)
                await pipe.put(data, end=received >= part.end)
                if received >= part.end:
                    break
        if part.stored < part.end and not (part.index > 0 and self._single):
            raise TransientDownloadError(f"{self._shown}: bytes {part.start}-{part.end - 1} "
                                         f"ended at {part.stored}")

    def _trim(self, part: Range, data: bytes, received: int, *, bounded: bool) -> bytes:
        """The part of *data* within *part*; more than asked for is an overrun."""
        if bounded or part.end == self._total:
            raise Overrun(f"{self._shown}: more bytes than asked for in "
                          f"bytes {part.start}-{part.end - 1}")
        return data[:part.end - received]


def _split(first: int, total: int, count: int) -> list[Range]:
    """Bytes ``[first, total)`` as pieces for *count* connections, a few each."""
    pieces = max(count, min(count * _PIECES_PER_CONNECTION, (total - first) // _MIN_SEGMENT))
    step = -(-(total - first) // pieces)
    bounds = [*range(first, total, step), total]
    return [Range(i, a, b) for i, (a, b) in enumerate(itertools.pairwise(bounds))]


def _range_store(target: Target, part: Range, progress: asyncio.Event) -> Store:
    """Writes one range's chunks by position, in order; each one stored moves the
    range on and wakes the read-back."""
    at = part.stored
    sink = target.sink

    async def store(chunk: bytes) -> None:
        nonlocal at
        offset, at = at, at + len(chunk)
        await sink.write_at(offset, chunk)
        part.stored = offset + len(chunk)
        progress.set()
    return store


def _why(exc: BaseException) -> object:
    """What to say about a range cut short: our message, or the transport error's."""
    return exc if isinstance(exc, DownloadError) else describe_transport_error(exc)


def _worst(errors: list[BaseException]) -> BaseException:
    """The error that says most about a failed segmented fetch: a permanent one first,
    then a changed file, then any other."""
    permanent = [e for e in errors if not isinstance(e, TransientDownloadError)]
    changed = [e for e in errors if isinstance(e, StalePartial)]
    return (permanent or changed or errors)[0]
