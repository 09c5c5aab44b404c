"""The downloader: fetches one result file into storage per call, retrying and resuming.

Each attempt decides the resume (:mod:`.resume`), transfers - over one stream
(:mod:`.single`) or several connections (:mod:`.segmented`) - and finishes: what the
server sent must agree with what it declared before the file is committed. A body
shorter than its Content-Length is a cut transfer (retried, resumed); bytes *beyond* it
(:func:`~.connections.overran`) mean the declared length was wrong, so the bytes kept
are no prefix to trust: they are dropped and the file is fetched again from zero. Bytes
that arrive only after the body's connection was released are never taken for the
file; for MP4s the box check (:class:`~archiver.validate.Mp4Boxes`) still rejects a
file whose boxes do not add up to its length.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable

import aiohttp

from .._http import describe_transport_error
from ..config import DownloadConfig
from ..errors import DownloadError, TransientDownloadError
from ..models import FileRecord, RemoteFile, redact_url
from ..retry import with_retries
from ..storage.base import ItemWriter, Partial
from ..validate import ContentCheck, named
from .attempt import Carry, Target, TransferListener
from .connections import overran
from .resume import (
    Overrun,
    StalePartial,
    kept_partial,
    range_headers,
    resume_from,
    reuse_complete,
    validator,
)
from .segmented import Segmented, segment_count
from .single import check_declared, stream
from .transport import TRANSPORT_ERRORS, Transport

log = logging.getLogger("archiver.download")

#: A HEAD that fails for any of these only leaves the size unknown.
_PROBE_ERRORS: tuple[type[BaseException], ...] = (*TRANSPORT_ERRORS, DownloadError)


class Downloader:
    """Streams result files into storage. Use as ``async with Downloader(cfg, limit=8)``.

    *limit* is the number of file connections at once; *bandwidth* (bytes per second)
    caps all transfers together.
    """

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
        fence (:class:`~archiver.fleet.lock.Fence`), which raises to keep it from starting.

        Raises :class:`UrlGone` for 403/404/410 (the caller may ask the API for a fresh
        URL), :class:`~archiver.validate.ContentRejected` for a body that is not the
        expected kind of file, :class:`DownloadError` otherwise.
        """
        carry = Carry()

        async def attempt() -> FileRecord:
            if admit is not None:
                await admit()
            try:
                return await self._attempt(remote, writer, listener, carry)
            finally:
                if listener is not None:
                    listener.ended()

        return await with_retries(
            attempt,
            retryable=TransientDownloadError, policy=self._config.retries,
            on_retry=lambda n: log.info("%s: retrying %s (attempt %d)", remote.name,
                                        redact_url(remote.url), n))

    async def probe(self, remote: RemoteFile) -> int | None:
        """The size the file host announces for *remote* (HEAD), or None if it does not say."""
        try:
            async with await self._transport.get(remote.url, {}, method="HEAD") as resp:
                if resp.status == 200:
                    return resp.content_length
        except _PROBE_ERRORS as exc:
            log.info("%s: HEAD failed: %s", redact_url(remote.url), exc)
        return None

    # ------------------------------------------------------------- one attempt

    async def _attempt(self, remote: RemoteFile, writer: ItemWriter,
                       listener: TransferListener | None, carry: Carry) -> FileRecord:
        """One try at *remote*: decide the resume, transfer, finish."""
        shown = redact_url(remote.url)
        partial = await kept_partial(writer, remote.name, shown)
        if partial is not None and partial.complete:
            # Received and checked in full by an earlier run that stopped before commit.
            return await reuse_complete(writer, remote.name, partial, shown, remote.kinds)
        target: Target | None = None
        stale = committed = False
        try:
            async with await self._transport.get(remote.url, range_headers(partial)) as resp:
                target = await self._open(remote, writer, listener, carry, partial, resp)
                size, cut_over = await self._transfer(target, resp)
            record = await self._finish(target, size, cut_over)
            committed = True
            return record
        except TRANSPORT_ERRORS as exc:
            raise TransientDownloadError(f"{shown}: {describe_transport_error(exc)}") from None
        except StalePartial:
            # What we hold does not match the file any more: drop it, retry from zero.
            stale = True
            if target is None:
                await (await writer.open_file(remote.name)).abort(keep=False)
            raise
        finally:
            if target is not None and not committed:
                # Bytes of a file that changed are worthless. Any other stop keeps them
                # for now - if storage can guard their resume (no validator: they go at
                # once) - and whether they stay is decided once for the whole item, when
                # its outcome is known (transaction.keeps_partials).
                await target.sink.abort(keep=not stale)

    async def _open(self, remote: RemoteFile, writer: ItemWriter,
                    listener: TransferListener | None, carry: Carry, partial: Partial | None,
                    resp: aiohttp.ClientResponse) -> Target:
        """Read the answer's headers: where its bytes go, and what checks them."""
        shown = redact_url(remote.url)
        resume = resume_from(resp, partial, shown)
        offset = resume.size if resume else 0
        expected = resp.content_length
        check_declared(remote.name, shown, None if expected is None else offset + expected,
                       self._config.max_file_size)
        check = ContentCheck(remote.name, resp.headers.get("Content-Type"),
                             head=resume.head if resume else b"", offset=offset,
                             boxes=carry.boxes if resume else None, kinds=remote.kinds)
        carry.boxes = check.boxes
        if check.boxes is not None and check.boxes.lost:
            log.info("%s: the MP4 box check cannot see the bytes an earlier run "
                     "stored; it is skipped for this file", remote.name)
        hasher = resume.hasher.copy() if resume else hashlib.sha256()
        if resume:
            log.info("%s: resuming at byte %d", remote.name, offset)
        # Last: once the sink is open, the caller holds it (and aborts it on failure).
        sink = await writer.open_file(remote.name, resume=resume,
                                      validator=validator(resp), source=shown)
        if remote.kinds:
            # The first bytes name the file (image -> image.png): the sink takes the
            # name before anything is stored under a final one.
            check.on_kind = lambda kind: sink.rename(named(remote.name, kind))
        return Target(remote.name, remote.url, shown, sink, hasher, check, listener, carry,
                      offset, expected)

    async def _transfer(self, target: Target,
                        resp: aiohttp.ClientResponse) -> tuple[int, bool]:
        """Store the answer's body; the file's size now, and whether bytes followed it."""
        if target.listener is not None:
            target.listener.started(target.total, target.offset)
        count = segment_count(self._config, target, resp)
        if count > 1:
            size = await Segmented(self._transport, self._config, target, resp, count).run()
            return size, False  # each range checked its own connection
        size = await stream(target, resp, chunk_size=self._config.chunk_size,
                            cap=self._config.max_file_size,
                            bandwidth=self._transport.bandwidth)
        return target.offset + size, overran(resp)

    async def _finish(self, target: Target, size: int, cut_over: bool) -> FileRecord:
        """Check the bytes agree with what was declared, then commit them."""
        if cut_over:
            raise Overrun(f"{target.shown}: the server sent more than its Content-Length "
                          f"({target.expected} bytes); what arrived was dropped")
        if target.total is not None and size != target.total:
            raise TransientDownloadError(f"{target.shown}: got {size - target.offset} of "
                                         f"{target.expected} bytes (Content-Length)")
        target.check.finish(size)
        kind = target.check.kind
        name = target.name if kind is None else named(target.name, kind)
        extra = await target.sink.commit(size, target.hasher.hexdigest())
        log.debug("stored %s (%d bytes) from %s", name, size, target.shown)
        return FileRecord(name=name, size=size, sha256=target.hasher.hexdigest(),
                          source_url=target.shown, extra=extra)
