"""Fetches result files: streamed in chunks, hashed and checked while streaming.

Its HTTP session is separate from the API client's and carries no credentials: result
files live on a CDN, which must never see the Akool key.

A transfer cut short keeps its bytes (where the backend can) and the next attempt -
in this run or the next - asks only for the rest with ``Range``, guarded by ``If-Range``
so that a file changed in between is fetched again from zero. Only a strong validator
can guard that (:func:`_validator`: an ETag that is not weak, or a Last-Modified at
least a minute older than the answer's Date): bytes that came without one are never
resumed, so storage does not keep them - a Range request without If-Range could splice
two versions of a file.

What the server sends must agree with what it declares. A body shorter than its
Content-Length is a cut transfer (resumed); bytes *beyond* it mean the declared length
was wrong, so the bytes kept are no prefix to trust: they are dropped and the file is
fetched again from zero. aiohttp reads exactly Content-Length bytes and parses whatever
follows as the next response on the connection; so a file connection goes back to the
pool only once the read that ended the body is fully parsed and left nothing behind -
no queued answer, no parse error (:class:`~.connections.FileResponse`) - and is checked again before
reuse (:class:`~.connections.FileConnector`): bytes past one body can never be taken for the next
file's answer. A body followed by anything is an overrun (:func:`~.connections.overran`) and its
connection is closed. Bytes that arrive only after the body's connection was released
are never taken for the file; for MP4s the box check
(:class:`~archiver.validate.Mp4Boxes`) still rejects a file whose boxes do not add up
to its length.

No file may exceed ``downloads.max_file_size``, declared or streamed. Unless
``downloads.allow_private`` is set, result files are fetched only from public
addresses: IP literals are checked before each request (redirects included) and names
at connect time, by the resolver (:class:`~archiver._http.PublicOnlyResolver`).

A file with more than ``downloads.segment_threshold`` bytes left to fetch, whose server
gives a strong validator and a length, is fetched over ``downloads.segments`` connections
when the storage can write by position (:class:`_Segmented`): the first answer goes on
as the first range, the others are asked with ``Range`` + ``If-Range``. The bytes are
read back in order behind the ranges to be hashed and checked, so memory stays a few
chunks per range. A server that ignores Range gets one stream; a file that changed
between the requests is dropped and fetched again from zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import email.utils
import hashlib
import itertools
import logging
import mmap
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import aiohttp

from .._http import (
    describe_transport_error,
    parse_retry_after,
)
from ..config import DownloadConfig
from ..errors import DownloadError, TransientDownloadError, UrlGone
from ..limits import format_size
from ..models import FileRecord, RemoteFile, redact_url
from ..retry import with_retries
from ..storage.base import FileSink, ItemWriter, Partial
from ..validate import ContentCheck, Mp4Boxes
from .connections import overran
from .transport import Transport

log = logging.getLogger("archiver.download")  # the package's name, as before the move


class TransferListener(Protocol):
    """Hears about the attempts of one file transfer (progress bars, totals)."""

    def started(self, total: int | None, offset: int) -> None:
        """Headers arrived: *total* bytes expected (if known), *offset* already stored."""

    def advanced(self, count: int) -> None:
        """*count* more bytes arrived."""

    def ended(self) -> None:
        """The attempt ended, whatever its outcome."""

_GONE = frozenset({403, 404, 410})


class Downloader:
    """Streams result files into storage. Use as ``async with Downloader(cfg, limit=8)``."""

    def __init__(self, config: DownloadConfig, *, limit: int = 8,
                 bandwidth: float | None = None) -> None:
        self._config = config
        self._transport = Transport(config, limit=limit, bandwidth=bandwidth)

    @property
    def requests(self) -> int:
        """Requests sent (redirect hops included), for reports and tests."""
        return self._transport.requests

    async def __aenter__(self) -> Downloader:
        await self._transport.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._transport.__aexit__(*exc_info)

    async def fetch(self, remote: RemoteFile, writer: ItemWriter,
                    listener: TransferListener | None = None, *,
                    admit: Callable[[], Awaitable[None]] | None = None) -> FileRecord:
        """Download *remote* into *writer*, retrying transient failures (resuming if possible).

        *admit* is awaited before each attempt, the first and every retry: the run's
        fence (:class:`~archiver.lock.Fence`), which raises to keep it from starting.

        Raises :class:`UrlGone` for 403/404/410 (the caller may ask the API for a fresh
        URL), :class:`~archiver.validate.ContentRejected` for a body that is not the
        expected kind of file, :class:`DownloadError` otherwise.
        """
        carry = _Carry()

        async def attempt() -> FileRecord:
            if admit is not None:
                await admit()
            return await self._fetch_once(remote, writer, listener, carry)

        return await with_retries(
            attempt,
            retryable=TransientDownloadError, policy=self._config.retries,
            on_retry=lambda n: log.info("%s: retrying %s (attempt %d)", remote.name,
                                        redact_url(remote.url), n))

    async def _fetch_once(self, remote: RemoteFile, writer: ItemWriter,
                          listener: TransferListener | None, carry: _Carry) -> FileRecord:
        try:
            return await self._attempt(remote, writer, listener, carry)
        finally:
            if listener is not None:
                listener.ended()

    async def _attempt(self, remote: RemoteFile, writer: ItemWriter,
                       listener: TransferListener | None, carry: _Carry) -> FileRecord:
        shown = redact_url(remote.url)
        partial = await writer.partial(remote.name)
        if partial is not None and partial.source != shown:
            partial = None  # bytes of some other file: start over
        if partial is not None and partial.complete:
            # Received and checked in full by an earlier run that stopped before commit.
            log.info("%s: using the complete copy kept by an earlier attempt", remote.name)
            kept = await writer.open_file(remote.name, resume=partial)
            extra = await kept.commit(partial.size, partial.hasher.hexdigest())
            return FileRecord(name=remote.name, size=partial.size,
                              sha256=partial.hasher.hexdigest(), source_url=shown, extra=extra)
        if partial is not None and not partial.validator:
            # Nothing to send as If-Range: a Range request could splice two versions of
            # the file. (Storage keeps no such bytes; an earlier version did.)
            partial = None
        headers = {}
        if partial is not None:
            assert partial.validator
            headers["Range"] = f"bytes={partial.size}-"
            headers["If-Range"] = partial.validator
        sink: FileSink | None = None
        stale = committed = False
        try:
            async with await self._transport.get(remote.url, headers) as resp:
                resume = _resume_from(resp, partial, shown)
                offset = resume.size if resume else 0
                expected = resp.content_length
                cap = self._config.max_file_size
                if expected is not None and offset + expected > cap:
                    raise DownloadError(f"{shown}: {remote.name} is {offset + expected} bytes, "
                                        f"more than downloads.max_file_size "
                                        f"({format_size(cap)}); not downloaded")
                check = ContentCheck(remote.name, resp.headers.get("Content-Type"),
                                     head=resume.head if resume else b"", offset=offset,
                                     boxes=carry.boxes if resume else None)
                carry.boxes = check.boxes
                if check.boxes is not None and check.boxes.lost:
                    log.info("%s: the MP4 box check cannot see the bytes an earlier run "
                             "stored; it is skipped for this file", remote.name)
                sink = await writer.open_file(remote.name, resume=resume,
                                              validator=_validator(resp), source=shown)
                hasher = resume.hasher.copy() if resume else hashlib.sha256()
                if resume:
                    log.info("%s: resuming at byte %d", remote.name, offset)
                if listener is not None:
                    listener.started(None if expected is None else offset + expected, offset)
                segments = self._segments(resp, sink, expected, carry)
                if segments > 1:
                    assert expected is not None
                    size = await _Segmented(
                        self, remote, resp, sink, hasher, check, listener,
                        first=offset, total=offset + expected, count=segments,
                        carry=carry).run()
                    cut_over = False  # each range checked its own connection
                else:
                    size = offset + await self._stream(resp, sink, hasher, check, listener,
                                                       _Cap(remote.name, shown, cap, offset))
                    cut_over = overran(resp)
            if cut_over:
                raise _Overrun(f"{shown}: the server sent more than its Content-Length "
                               f"({expected} bytes); what arrived was dropped")
            if expected is not None and size != offset + expected:
                raise TransientDownloadError(
                    f"{shown}: got {size - offset} of {expected} bytes (Content-Length)")
            check.finish(size)
            extra = await sink.commit(size, hasher.hexdigest())
            committed = True
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise TransientDownloadError(f"{shown}: {describe_transport_error(exc)}") from None
        except _StalePartial:
            # What we hold does not match the file any more: drop it, retry from zero.
            stale = True
            if sink is None:
                await (await writer.open_file(remote.name)).abort(keep=False)
            raise
        finally:
            if sink is not None and not committed:
                # Bytes of a file that changed are worthless. Any other stop keeps them
                # for now - if storage can guard their resume (no validator: they go at
                # once) - and whether they stay is decided once for the whole item, when
                # its outcome is known (transaction.keeps_partials).
                await sink.abort(keep=not stale)
        log.debug("stored %s (%d bytes) from %s", remote.name, size, shown)
        return FileRecord(name=remote.name, size=size, sha256=hasher.hexdigest(),
                          source_url=shown, extra=extra)

    def _segments(self, resp: aiohttp.ClientResponse, sink: FileSink, expected: int | None,
                  carry: _Carry) -> int:
        """How many connections to fetch this answer's bytes over (1: just this one)."""
        config = self._config
        if (config.segments < 2 or carry.single or expected is None
                or expected <= config.segment_threshold or _validator(resp) is None
                or not sink.supports_positional_writes):
            return 1
        return max(1, min(config.segments, expected // _MIN_SEGMENT))

    async def probe(self, remote: RemoteFile) -> int | None:
        """The size the file host announces for *remote* (HEAD), or None if it does not say."""
        try:
            async with await self._transport.get(remote.url, {}, method="HEAD") as resp:
                if resp.status == 200:
                    return resp.content_length
        except (aiohttp.ClientError, TimeoutError, OSError, DownloadError) as exc:
            log.info("%s: HEAD failed: %s", redact_url(remote.url), exc)
        return None

    async def _stream(self, resp: aiohttp.ClientResponse, sink: FileSink, hasher: Any,
                      check: ContentCheck, listener: TransferListener | None,
                      cap: _Cap) -> int:
        chunk_size = self._config.chunk_size
        pieces: list[bytes] = []
        buffered = size = 0
        store = _ChunkStore(sink, hasher)
        # Coalesce the network's small reads into chunk_size writes (fewer thread hops and
        # syscalls); memory per transfer is about two chunks whatever the file size.
        try:
            async for data in resp.content.iter_any():
                size += len(data)
                cap.check(size)
                check.feed(data)
                pieces.append(data)
                buffered += len(data)
                if listener is not None:
                    listener.advanced(len(data))
                if self._transport.bandwidth is not None:
                    await self._transport.bandwidth.acquire(len(data))
                if buffered >= chunk_size:
                    await store.put(b"".join(pieces))
                    pieces.clear()
                    buffered = 0
        except (aiohttp.ClientError, TimeoutError):
            # The connection broke, but what did arrive is a good prefix of the file:
            # store it so the retry resumes exactly where the transfer stopped.
            if pieces:
                await store.put(b"".join(pieces))
            await store.drain()
            raise
        except BaseException:
            await store.settle()
            raise
        if pieces:
            await store.put(b"".join(pieces))
        await store.drain()
        return size


#: Chunks up to this size are hashed on the event loop (tens of microseconds).
_INLINE_HASH = 128 * 1024


class _OneBehind:
    """One store job in flight at a time, one step behind the network reads."""

    def __init__(self) -> None:
        self._pending: asyncio.Future[Any] | None = None

    async def drain(self) -> None:
        """Wait until every chunk handed over is stored (errors surface here)."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            await pending

    async def settle(self) -> None:
        """On cancellation or error: let a write in flight finish before the sink is aborted."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            with contextlib.suppress(BaseException):
                await asyncio.shield(pending)


class _ChunkStore(_OneBehind):
    """Hashes and stores chunks one step behind the network.

    Chunk N is hashed (in a thread: ``sha256.update`` releases the GIL on large buffers)
    and written while chunk N+1 arrives, so neither the hash nor the disk holds up the
    socket. Order is kept: a chunk starts only once the one before it is stored.
    """

    def __init__(self, sink: FileSink, hasher: Any) -> None:
        super().__init__()
        self._sink = sink
        self._hasher = hasher

    async def put(self, chunk: bytes) -> None:
        await self.drain()
        self._pending = asyncio.ensure_future(self._store(chunk))

    async def _store(self, chunk: bytes) -> None:
        if len(chunk) <= _INLINE_HASH:
            # Hashing a small chunk here costs less than handing it to a thread and back.
            self._hasher.update(chunk)
            await self._sink.write(chunk)
            return
        loop = asyncio.get_running_loop()
        await asyncio.gather(loop.run_in_executor(None, self._hasher.update, chunk),
                             self._sink.write(chunk))


def _resume_from(resp: aiohttp.ClientResponse, partial: Partial | None,
                 shown: str) -> Partial | None:
    """Check the status; the partial to append to, or None to write from byte 0."""
    status = resp.status
    if status == 206 and partial is not None:
        content_range = resp.headers.get("Content-Range", "")
        if content_range.startswith(f"bytes {partial.size}-"):
            return partial
        raise _StalePartial(f"{shown}: unexpected Content-Range {content_range!r}")
    if status == 200:
        return None  # a full answer: the file changed, or the server ignores Range
    if status == 416 and partial is not None:
        # We hold more than the file has: it changed. Start over on the next attempt.
        raise _StalePartial(f"{shown}: stored partial no longer fits (HTTP 416)")
    if status in _GONE:
        raise UrlGone(f"{shown}: HTTP {status}", status)
    if status == 429 or status >= 500:
        raise TransientDownloadError(f"{shown}: HTTP {status}",
                                     parse_retry_after(resp.headers.get("Retry-After")))
    raise DownloadError(f"{shown}: HTTP {status}")


class _StalePartial(TransientDownloadError):
    """The partial bytes kept from an earlier attempt cannot be resumed."""


class _Overrun(_StalePartial):
    """More bytes came than Content-Length said: what was stored is not to be trusted."""


class _Carry:
    """What one attempt hands the next for the same file (a resume in this run)."""

    __slots__ = ("boxes", "single")

    def __init__(self) -> None:
        #: The MP4 box walk over the bytes stored so far, so a resume keeps checking.
        self.boxes: Mp4Boxes | None = None
        #: The server does not honour Range for this file: fetch it over one connection.
        self.single = False


class _Cap:
    """downloads.max_file_size, enforced on the bytes as they stream (whatever was declared)."""

    __slots__ = ("_cap", "_left", "_name", "_shown")

    def __init__(self, name: str, shown: str, cap: int, offset: int) -> None:
        self._name, self._shown, self._cap = name, shown, cap
        self._left = cap - offset

    def check(self, received: int) -> None:
        if received > self._left:
            raise DownloadError(f"{self._shown}: {self._name} is larger than "
                                f"downloads.max_file_size ({format_size(self._cap)}); "
                                "download stopped, nothing kept")


def _validator(resp: aiohttp.ClientResponse) -> str | None:
    """What a resume of this answer's bytes may send as ``If-Range``; None if nothing can
    guard one (the bytes are then never resumed, so never kept).

    If-Range needs a strong validator (RFC 9110 13.1.5): an ETag that is not weak; else
    Last-Modified, but only where it is strong - at least 60 seconds before the answer's
    Date (RFC 9110 8.8.2.2): a file changed twice within one second keeps its date.
    """
    etag = resp.headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return etag
    modified = resp.headers.get("Last-Modified")
    sent = _http_date(resp.headers.get("Date"))
    changed = _http_date(modified)
    if modified and sent is not None and changed is not None \
            and (sent - changed).total_seconds() >= _STRONG_DATE:
        return modified
    return None


#: Last-Modified is a strong validator only this many seconds before the answer's Date.
_STRONG_DATE = 60


def _http_date(value: str | None) -> datetime.datetime | None:
    """An HTTP date header as an aware datetime, or None (absent or unparseable)."""
    if not value:
        return None
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=datetime.UTC)


# ------------------------------------------------- one large file over several connections

#: No range is made smaller than this: below it a connection costs more than it brings.
_MIN_SEGMENT = 1024 * 1024
#: Bytes read back per step to be hashed in order. 4 MiB rather than 1: a quarter of the
#: thread hops, which without a per-connection cap made segments measurably slower
#: than one stream on 2 cores.
_READ_BACK = 4 * 1024 * 1024
#: The checked prefix is made durable and recorded (for a resume) about this often.
_MARK_STEP = 64 * 1024 * 1024
#: Pieces per connection. Equal ranges, one per connection, would all finish at the
#: end, and hashing (in order) could only start then; with several pieces per
#: connection, taken lowest first, the checked prefix follows the downloads closely.
_PIECES_PER_CONNECTION = 4


class _NoRanges(TransientDownloadError):
    """The server does not honour Range for this file: fetch it again over one stream."""


class _Range:
    """One range of the file: bytes ``[start, end)``, of which ``[start, stored)`` are written."""

    __slots__ = ("end", "index", "start", "stored")

    def __init__(self, index: int, start: int, end: int) -> None:
        self.index, self.start, self.end, self.stored = index, start, end, start


class _Segmented:
    """Fetches bytes ``[first, total)`` of one file as several ranges at once.

    The bytes are split into pieces (a few per connection); *count* connections each
    take the lowest piece nobody has taken yet, until none is left. Piece 0 is the
    answer already received (a 200, or the 206 of a resume) read up to the piece's end;
    the others are asked for with ``Range: bytes=a-b`` and ``If-Range``.
    Each range is written by position (:meth:`FileSink.write_at`) and, when its
    connection breaks, asked for again from where it stopped. One task reads the file
    back in order behind the ranges, feeding the hash and the content check, and every
    ``_MARK_STEP`` bytes has the sink record the checked prefix: what a later attempt or
    run resumes from (bytes past it are never trusted). So memory stays about two chunks
    per range plus one read-back block, whatever the file size.

    Answers are checked against the first: a 206 must have the exact Content-Range
    asked for, the same total and the same validator; a 200 with the same validator
    means Range is ignored (one stream: range 0 reads on to the end if it still can,
    otherwise the file is fetched again over one connection); anything else means the
    file changed (:class:`_StalePartial`: everything is dropped, fetched from zero).
    """

    def __init__(self, downloader: Downloader, remote: RemoteFile,
                 resp: aiohttp.ClientResponse, sink: FileSink, hasher: Any,
                 check: ContentCheck, listener: TransferListener | None, *,
                 first: int, total: int, count: int, carry: _Carry) -> None:
        self._dl, self._config = downloader, downloader._config
        self._remote, self._shown = remote, redact_url(remote.url)
        self._resp, self._sink, self._hasher, self._check = resp, sink, hasher, check
        self._listener, self._carry = listener, carry
        self._total = total
        self._validator = _validator(resp)
        self._count = count
        pieces = max(count, min(count * _PIECES_PER_CONNECTION, (total - first) // _MIN_SEGMENT))
        step = -(-(total - first) // pieces)
        bounds = [*range(first, total, step), total]
        self._ranges = [_Range(i, a, b) for i, (a, b) in enumerate(itertools.pairwise(bounds))]
        #: Bytes hashed and checked, in order, from 0.
        self.hashed = first
        self._marked = first
        self._progress = asyncio.Event()
        #: Range 0 is reading its answer on to the end: Range is not honoured.
        self._single = False
        #: A 206 came: the server honours Range (a 200 from now on is no fallback).
        self._ranged = False
        self._taken = 1  # pieces handed out; piece 0 is the first answer's
        self._mark: asyncio.Task[None] | None = None

    async def run(self) -> int:
        """Fetch, hash and check every range; the file's size. The caller commits."""
        # Recorded before any write by position: a run that dies from here on resumes
        # after the checked prefix, never onto the bytes written out of order.
        await self._sink.mark_prefix(self.hashed)
        try:
            await self._gather()
        except BaseException as exc:
            await self._keep_prefix(exc)
            raise
        return self._total

    async def _gather(self) -> None:
        tasks = [asyncio.ensure_future(self._first()), asyncio.ensure_future(self._read_back())]
        tasks += [asyncio.ensure_future(self._worker()) for _ in range(self._count - 1)]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for task in tasks:
                task.cancel()
            # Let every write in flight finish before the caller commits or aborts.
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._mark is not None:
                await asyncio.gather(self._mark, return_exceptions=True)
                tasks.append(self._mark)  # a failed mark aborted the sink: it must surface
        errors = [exc for t in tasks if not t.cancelled() and (exc := t.exception()) is not None]
        if errors:
            raise _worst(errors)
        if self.hashed != self._total:  # every task ended, yet something is missing
            raise TransientDownloadError(f"{self._shown}: ranges ended at byte {self.hashed} "
                                         f"of {self._total}")

    async def _keep_prefix(self, exc: BaseException) -> None:
        """After a failure worth resuming, record how far the bytes are checked."""
        if isinstance(exc, _NoRanges) or self._single:
            self._carry.single = True
        if isinstance(exc, Exception) and (not isinstance(exc, TransientDownloadError)
                                           or isinstance(exc, _StalePartial)):
            return  # nothing is kept
        # The MP4 box walk has seen exactly the bytes up to self.hashed: the next
        # attempt resumes there and carries on with it.
        with contextlib.suppress(Exception):
            await asyncio.shield(self._sink.mark_prefix(self.hashed))

    # ------------------------------------------------------------- the ranges

    async def _first(self) -> None:
        """Range 0: the answer already received, then (if cut) asked for again."""
        first = self._ranges[0]
        try:
            await self._pump(first, self._resp, bounded=False)
            if first.stored == self._total and overran(self._resp):
                raise _Overrun(f"{self._shown}: the server sent more than its Content-Length "
                               f"({self._total} bytes); what arrived was dropped")
        except _StalePartial:
            raise  # an overrun: nothing of this answer is to be trusted
        except (aiohttp.ClientError, TimeoutError, TransientDownloadError) as exc:
            # Cut, or stopped at its piece's end just before the news that Range is
            # ignored made it the only stream: either way, asked for again below.
            why = exc if isinstance(exc, DownloadError) else describe_transport_error(exc)
            log.info("%s: range 0 ended at byte %d: %s", self._remote.name, first.stored, why)
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

    async def _other(self, part: _Range) -> None:
        """Ask for what is missing of *part* until it is all stored (bounded retries)."""
        failures = 0
        while part.stored < part.end and not (self._single and part.index > 0):
            before = part.stored
            try:
                await self._fetch(part)
            except _NoRanges:
                if self._single and part.index > 0:
                    return  # range 0 reads everything already
                if not self._ranged and self._ranges[0].stored < self._ranges[0].end < self._total:
                    log.info("%s: the server ignores Range; one connection", self._remote.name)
                    self._single = True
                    self._ranges[0].end = self._total
                    return
                raise
            except _StalePartial:
                raise
            except (aiohttp.ClientError, TimeoutError, TransientDownloadError) as exc:
                failures = 0 if part.stored > before else failures + 1
                if failures >= self._config.retries.attempts:
                    why = exc if isinstance(exc, DownloadError) else describe_transport_error(exc)
                    raise TransientDownloadError(
                        f"{self._shown}: bytes {part.stored}-{part.end - 1}: {why}") from None
                log.info("%s: range %d cut at byte %d; asking for the rest",
                         self._remote.name, part.index, part.stored)
                await asyncio.sleep(self._config.retries.wait(failures + 1))

    async def _fetch(self, part: _Range) -> None:
        assert self._validator is not None
        headers = {"Range": f"bytes={part.stored}-{part.end - 1}",
                   "If-Range": self._validator}
        async with await self._dl._transport.get(self._remote.url, headers) as resp:
            self._check_answer(resp, part)
            self._ranged = True
            await self._pump(part, resp, bounded=True)
        if overran(resp):
            raise _Overrun(f"{self._shown}: the server sent more than its Content-Length "
                           f"for bytes {part.start}-{part.end - 1}; what arrived was dropped")

    def _check_answer(self, resp: aiohttp.ClientResponse, part: _Range) -> None:
        status, shown = resp.status, self._shown
        if status in (200, 206) and _validator(resp) not in (None, self._validator):
            raise _StalePartial(f"{shown}: the file changed while it was fetched in ranges")
        if status == 200:
            raise _NoRanges(f"{shown}: the server ignores Range")
        if status == 206:
            want = f"bytes {part.stored}-{part.end - 1}/{self._total}"
            got = resp.headers.get("Content-Range", "")
            if got == want and resp.content_length in (None, part.end - part.stored):
                return
            if not got.endswith(f"/{self._total}"):
                raise _StalePartial(f"{shown}: the file changed while it was fetched in "
                                    f"ranges (Content-Range {got!r})")
            raise _NoRanges(f"{shown}: asked for {want!r}, got {got!r}")
        if status in (412, 416):
            raise _StalePartial(f"{shown}: the file changed while it was fetched in ranges "
                                f"(HTTP {status})")
        _resume_from(resp, None, shown)  # raises the error that fits the status
        raise DownloadError(f"{shown}: HTTP {status}")

    async def _pump(self, part: _Range, resp: aiohttp.ClientResponse, *, bounded: bool) -> None:
        """Write *resp*'s body at *part*'s position until the range is stored.

        A *bounded* answer (a range asked for) sending more than asked is an overrun;
        the first answer is simply not read past its range's end.
        """
        chunk_size = self._config.chunk_size
        pieces: list[bytes] = []
        buffered = 0
        received = part.stored
        store = _RangeStore(self._sink, part, self._progress)
        bucket = self._dl._transport.bandwidth
        try:
            async for data in resp.content.iter_any():
                if part.index > 0 and self._single:
                    break  # range 0 reads everything now
                if received + len(data) > part.end:
                    if bounded or part.end == self._total:
                        raise _Overrun(f"{self._shown}: more bytes than asked for in "
                                       f"bytes {part.start}-{part.end - 1}")
                    data = data[:part.end - received]
                received += len(data)
                pieces.append(data)
                buffered += len(data)
                if self._listener is not None:
                    self._listener.advanced(len(data))
                if bucket is not None:
                    await bucket.acquire(len(data))
                if buffered >= chunk_size or received >= part.end:
                    await store.put(b"".join(pieces))
                    pieces.clear()
                    buffered = 0
                if received >= part.end:
                    break
        except (aiohttp.ClientError, TimeoutError):
            if pieces:  # a good prefix of the range: kept, so the retry asks for the rest
                await store.put(b"".join(pieces))
            await store.drain()
            raise
        except BaseException:
            await store.settle()
            raise
        if pieces:
            await store.put(b"".join(pieces))
        await store.drain()
        if part.stored < part.end and not (part.index > 0 and self._single):
            raise TransientDownloadError(f"{self._shown}: bytes {part.start}-{part.end - 1} "
                                         f"ended at {part.stored}")

    # --------------------------------------------------- hash and check, in order

    def _frontier(self) -> int:
        """Where the bytes stored without a gap from the start end."""
        for part in self._ranges:
            if part.stored < part.end or part.end == self._total:
                return part.stored
        return self._total

    async def _read_back(self) -> None:
        # One block, read into again and again: a fresh 4 MiB object per read, made in
        # whichever worker thread ran it, is what left glibc's per-thread arenas holding
        # tens of MiB (see _ReadBack).
        with _ReadBack() as block:
            await self._read_back_into(block.view)

    async def _read_back_into(self, view: memoryview) -> None:
        loop = asyncio.get_running_loop()
        while self.hashed < self._total:
            frontier = self._frontier()
            if frontier <= self.hashed:
                self._progress.clear()
                await self._progress.wait()
                continue
            while self.hashed < frontier:
                got = await self._sink.read_into(
                    self.hashed, view[:min(len(view), frontier - self.hashed)])
                if not got:
                    raise DownloadError(f"{self._remote.name}: stored bytes vanished at "
                                        f"{self.hashed}")
                data = view[:got]
                await loop.run_in_executor(None, self._hasher.update, data)
                self._check.feed(data)  # copies what it keeps (a head, box headers)
                self.hashed += got
            if self._mark is not None and self._mark.done() and self._mark.exception():
                raise self._mark.exception()  # type: ignore[misc]
            if self.hashed - self._marked >= _MARK_STEP and (self._mark is None
                                                            or self._mark.done()):
                self._marked = self.hashed
                self._mark = asyncio.ensure_future(self._sink.mark_prefix(self.hashed))


class _ReadBack:
    """The read-back block of a segmented fetch: an anonymous memory map of
    ``_READ_BACK`` bytes, reused for every read and unmapped at the end.

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

    def __enter__(self) -> _ReadBack:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.view.release()
        # A hash still running in a thread after a cancellation holds a slice: the map
        # then goes when that slice does.
        with contextlib.suppress(BufferError):
            self._map.close()


class _RangeStore(_OneBehind):
    """Writes one range's chunks by position, one step behind its network reads."""

    def __init__(self, sink: FileSink, part: _Range, progress: asyncio.Event) -> None:
        super().__init__()
        self._sink, self._part, self._progress = sink, part, progress
        self._at = part.stored

    async def put(self, chunk: bytes) -> None:
        await self.drain()
        at, self._at = self._at, self._at + len(chunk)
        self._pending = asyncio.ensure_future(self._write(at, chunk))

    async def _write(self, at: int, chunk: bytes) -> None:
        await self._sink.write_at(at, chunk)
        self._part.stored = at + len(chunk)
        self._progress.set()


def _worst(errors: list[BaseException]) -> BaseException:
    """The error that says most about a failed segmented fetch: a permanent one first,
    then a changed file, then any other."""
    permanent = [e for e in errors if not isinstance(e, TransientDownloadError)]
    changed = [e for e in errors if isinstance(e, _StalePartial)]
    return (permanent or changed or errors)[0]
