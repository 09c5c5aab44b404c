"""Fetches result files: streamed in chunks, hashed and checked while streaming.

Its HTTP session is separate from the API client's and carries no credentials: result
files live on a CDN, which must never see the Akool key.

A transfer cut short keeps its bytes (where the backend can) and the next attempt -
in this run or the next - asks only for the rest with ``Range``, guarded by ``If-Range``
so that a file changed in between is fetched again from zero.

What the server sends must agree with what it declares. A body shorter than its
Content-Length is a cut transfer (resumed); bytes *beyond* it mean the declared length
was wrong, so the bytes kept are no prefix to trust: they are dropped and the file is
fetched again from zero. aiohttp reads exactly Content-Length bytes and parses whatever
follows as the next response on the connection; so result files never reuse a
connection (bytes past one body can never be taken for the next file's answer), and
after each body the connection is inspected for what followed it (:func:`_overran`).
Bytes that arrive only after the connection was closed at the end of the declared body
are never read; for MP4s the box check (:class:`~archiver.validate.Mp4Boxes`) still
rejects a file whose boxes do not add up to its length.

No file may exceed ``downloads.max_file_size``, declared or streamed. Unless
``downloads.allow_private`` is set, result files are fetched only from public
addresses: IP literals are checked before each request (redirects included) and names
at connect time, by the resolver (:class:`~archiver._http.PublicOnlyResolver`).
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import hashlib
import logging
from typing import Any, Protocol
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.http_exceptions import HttpProcessingError

from ._http import (
    USER_AGENT,
    BlockedAddress,
    PublicOnlyResolver,
    check_public_literal,
    describe_transport_error,
    parse_retry_after,
)
from .config import DownloadConfig
from .errors import DownloadError, TransientDownloadError, UrlGone
from .limits import TokenBucket, format_size
from .models import FileRecord, RemoteFile, redact_url
from .retry import with_retries
from .storage.base import FileSink, ItemWriter, Partial
from .validate import ContentCheck, Mp4Boxes

log = logging.getLogger(__name__)


class TransferListener(Protocol):
    """Hears about the attempts of one file transfer (progress bars, totals)."""

    def started(self, total: int | None, offset: int) -> None:
        """Headers arrived: *total* bytes expected (if known), *offset* already stored."""

    def advanced(self, count: int) -> None:
        """*count* more bytes arrived."""

    def ended(self) -> None:
        """The attempt ended, whatever its outcome."""

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_GONE = frozenset({403, 404, 410})


class Downloader:
    """Streams result files into storage. Use as ``async with Downloader(cfg, limit=8)``."""

    def __init__(self, config: DownloadConfig, *, limit: int = 8,
                 bandwidth: float | None = None) -> None:
        self._config = config
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None
        self._resolver: PublicOnlyResolver | None = None
        # Shared by every transfer: limits.bandwidth caps the run, not each file.
        self._bucket = TokenBucket(bandwidth) if bandwidth else None
        #: Requests sent (redirect hops included), for reports and tests.
        self.requests = 0

    async def __aenter__(self) -> Downloader:
        timeout = aiohttp.ClientTimeout(
            total=None,  # a 2 GiB file may take long; stalls are caught by sock_read
            sock_connect=self._config.connect_timeout,
            sock_read=self._config.read_timeout,
        )
        if not self._config.allow_private:
            self._resolver = PublicOnlyResolver()
        # force_close: a connection is never reused, so bytes a server sends past one
        # body (a wrong Content-Length) cannot be parsed as the answer to the next
        # request. A handshake per file is nothing next to a file's transfer.
        connector = aiohttp.TCPConnector(limit=self._limit, force_close=True,
                                         resolver=self._resolver)
        self._session = aiohttp.ClientSession(
            headers={"User-Agent": USER_AGENT},
            timeout=timeout,
            connector=connector,
            # Store the bytes exactly as served: Content-Length and checksums refer to them.
            auto_decompress=False,
            read_bufsize=2**18,
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._resolver is not None:  # the connector does not own a resolver passed in
            await self._resolver.close()
            self._resolver = None

    async def fetch(self, remote: RemoteFile, writer: ItemWriter,
                    listener: TransferListener | None = None) -> FileRecord:
        """Download *remote* into *writer*, retrying transient failures (resuming if possible).

        Raises :class:`UrlGone` for 403/404/410 (the caller may ask the API for a fresh
        URL), :class:`~archiver.validate.ContentRejected` for a body that is not the
        expected kind of file, :class:`DownloadError` otherwise.
        """
        carry = _Carry()
        return await with_retries(
            lambda: self._fetch_once(remote, writer, listener, carry),
            retryable=TransientDownloadError, config=self._config.retries,
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
            sink = await writer.open_file(remote.name, resume=partial)
            extra = await sink.commit(partial.size, partial.hasher.hexdigest())
            return FileRecord(name=remote.name, size=partial.size,
                              sha256=partial.hasher.hexdigest(), source_url=shown, extra=extra)
        headers = {}
        if partial is not None:
            headers["Range"] = f"bytes={partial.size}-"
            if partial.validator:
                headers["If-Range"] = partial.validator
        sink: FileSink | None = None
        keep = committed = False
        try:
            async with await self._get(remote.url, headers) as resp:
                # Held from the start: the connection leaves the response at body's end.
                protocol = resp.connection.protocol if resp.connection else None
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
                size = offset + await self._stream(resp, sink, hasher, check, listener,
                                                   _Cap(remote.name, shown, cap, offset))
            if _overran(protocol):
                raise _Overrun(f"{shown}: the server sent more than its Content-Length "
                               f"({expected} bytes); what arrived was dropped")
            if expected is not None and size != offset + expected:
                raise TransientDownloadError(
                    f"{shown}: got {size - offset} of {expected} bytes (Content-Length)")
            check.finish(size)
            extra = await sink.commit(size, hasher.hexdigest())
            committed = True
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            keep = True
            raise TransientDownloadError(f"{shown}: {describe_transport_error(exc)}") from None
        except _StalePartial:
            # What we hold does not match the file any more: drop it, retry from zero.
            if sink is None:
                await (await writer.open_file(remote.name)).abort(keep=False)
            raise
        except TransientDownloadError:
            keep = True
            raise
        except BaseException as exc:
            # Cancellation (shutdown, item time limit) keeps the bytes for a later resume;
            # a permanent error (bad content, 4xx) leaves nothing worth keeping.
            keep = not isinstance(exc, Exception)
            raise
        finally:
            if sink is not None and not committed:
                await sink.abort(keep=keep)
        log.debug("stored %s (%d bytes) from %s", remote.name, size, shown)
        return FileRecord(name=remote.name, size=size, sha256=hasher.hexdigest(),
                          source_url=shown, extra=extra)

    async def probe(self, remote: RemoteFile) -> int | None:
        """The size the file host announces for *remote* (HEAD), or None if it does not say."""
        try:
            async with await self._get(remote.url, {}, method="HEAD") as resp:
                if resp.status == 200:
                    return resp.content_length
        except (aiohttp.ClientError, TimeoutError, OSError, DownloadError) as exc:
            log.info("%s: HEAD failed: %s", redact_url(remote.url), exc)
        return None

    async def _get(self, url: str, headers: dict[str, str],
                   method: str = "GET") -> aiohttp.ClientResponse:
        """Request *url*, following a bounded number of redirects to allowed http(s) hosts."""
        if self._session is None:
            raise RuntimeError("Downloader used outside 'async with'")
        for _hop in range(self._config.max_redirects + 1):
            self._check_url(url)
            self.requests += 1
            try:
                resp = await self._session.request(method, url, headers=headers,
                                                   allow_redirects=False)
            except BlockedAddress as exc:  # raised by the resolver, before connecting
                raise DownloadError(_blocked_message(url, exc)) from None
            if resp.status not in _REDIRECTS:
                return resp
            location = resp.headers.get("Location")
            resp.release()
            if not location:
                raise DownloadError(f"{redact_url(url)}: redirect without a Location")
            url = urljoin(url, location)
        raise DownloadError(f"{redact_url(url)}: more than {self._config.max_redirects} redirects")

    def _check_url(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise DownloadError(f"refusing to fetch a {parts.scheme or 'scheme-less'}: URL "
                                "(only http and https)")
        allowed = self._config.allowed_hosts
        host = (parts.hostname or "").lower()
        if allowed is not None and not any(_host_matches(host, parts.port, p) for p in allowed):
            raise DownloadError(f"{redact_url(url)}: host {host!r} is not in "
                                "downloads.allowed_hosts")
        if not self._config.allow_private:
            try:
                check_public_literal(host)  # aiohttp asks no resolver about IP literals
            except BlockedAddress as exc:
                raise DownloadError(_blocked_message(url, exc)) from None

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
                if self._bucket is not None:
                    await self._bucket.acquire(len(data))
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


class _ChunkStore:
    """Hashes and stores chunks one step behind the network.

    Chunk N is hashed (in a thread: ``sha256.update`` releases the GIL on large buffers)
    and written while chunk N+1 arrives, so neither the hash nor the disk holds up the
    socket. Order is kept: a chunk starts only once the one before it is stored.
    """

    def __init__(self, sink: FileSink, hasher: Any) -> None:
        self._sink = sink
        self._hasher = hasher
        self._pending: asyncio.Future[Any] | None = None

    async def put(self, chunk: bytes) -> None:
        await self.drain()
        self._pending = asyncio.ensure_future(self._store(chunk))

    async def _store(self, chunk: bytes) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.gather(loop.run_in_executor(None, self._hasher.update, chunk),
                             self._sink.write(chunk))

    async def drain(self) -> None:
        """Wait until every chunk handed over is hashed and stored (errors surface here)."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            await pending

    async def settle(self) -> None:
        """On cancellation or error: let a write in flight finish before the sink is aborted."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            with contextlib.suppress(BaseException):
                await asyncio.shield(pending)


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

    __slots__ = ("boxes",)

    def __init__(self) -> None:
        #: The MP4 box walk over the bytes stored so far, so a resume keeps checking.
        self.boxes: Mp4Boxes | None = None


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


def _overran(protocol: Any) -> bool:
    """Whether bytes followed the response body on its connection (a wrong Content-Length).

    aiohttp reads on past a body for the next response on the connection: bytes that
    came in the same read as the body's end either fail to parse - the protocol then
    holds an HttpProcessingError (a later disconnect does not replace it) - or parse
    as whole responses left in its queue. (A clean end shows None or the
    ServerDisconnectedError of our own close.)
    """
    if protocol is None:
        return False
    return isinstance(protocol.exception(), HttpProcessingError) or len(protocol) > 0


def _blocked_message(url: str, exc: BlockedAddress) -> str:
    return (f"{redact_url(url)}: refusing to connect to {exc.address} ({exc.reason}); "
            "set downloads.allow_private to allow it")


def _validator(resp: aiohttp.ClientResponse) -> str | None:
    # If-Range needs a strong validator: a weak ETag cannot be used, Last-Modified can.
    etag = resp.headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return etag
    return resp.headers.get("Last-Modified")


def _host_matches(host: str, port: int | None, pattern: str) -> bool:
    name, _, want_port = pattern.partition(":")
    if want_port and str(port) != want_port:
        return False
    if name.startswith("*."):
        return host.endswith(name[1:]) or fnmatch.fnmatchcase(host, name)
    return host == name
