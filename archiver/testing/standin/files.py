"""The CDN side of the stand-in: ``/files/<id>/<name>`` and ``/mirror/<id>/<name>``.

Ranges (one ``bytes=`` range; ``If-Range`` by ETag or date), validators, chunked
bodies, redirects, expired links and the per-file faults of the job's scenario; the
mirror path serves the same bytes without faults or redirects. Every family's files
are served here alike: a job's files are looked up by name.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from aiohttp import web

from archiver.testing.standin.content import File
from archiver.testing.standin.faults import FileFault, error_page, html_error, reset_connection

# How long a "stall" fault holds a connection open; shutdown cuts it short.
_STALL_SECONDS = 3600.0

# Set when the application shuts down, to wake "stall" handlers so that
# shutdown does not wait for them.
_CLOSING = web.AppKey("akool_standin_closing", asyncio.Event)

# One "bytes=first-last" range; ASCII digits only (str.isdigit() would let "²" through).
_RANGE_RE = re.compile(r"\s*bytes\s*=\s*([0-9]*)\s*-\s*([0-9]*)\s*", re.IGNORECASE)


@dataclass(frozen=True)
class FileAnswer:
    """What one file request gets, decided under the stand-in's lock."""

    file: File
    #: The fault this request answers (its own, now used up), if any.
    fault: FileFault | None
    #: ``Location`` of a 302 answered instead of the file.
    redirect: str | None
    #: Answer 403 as a CDN does once the signed URL has expired.
    expired: bool
    #: Answer the whole file to a ``Range`` request (and announce no ranges).
    ignore_range: bool
    #: Send the body chunked, without Content-Length.
    chunked: bool
    #: ``"etag"`` and/or ``"last_modified"``: the validators the answer carries.
    validators: tuple[str, ...]


class FileHost(Protocol):
    """What the file handlers need from the stand-in."""

    #: Body bytes per write.
    chunk_size: int
    #: Bytes per second per response, or ``None`` for as fast as possible.
    file_rate: float | None

    def _open_file(
        self, job_id: str, name: str, range_header: str | None, if_range: str | None,
        *, mirror: bool,
    ) -> FileAnswer | None:
        """Count the request and decide its answer (``None``: no such file)."""
        ...

    def _count_sent(self, job_id: str, name: str, size: int) -> None:
        """Count *size* body bytes written to a client."""
        ...


def add_file_routes(app: web.Application, host: FileHost) -> None:
    """Serve *host*'s result files from *app* (``GET`` and ``HEAD``)."""
    app.router.add_get("/files/{job_id}/{name}", _handler(host, mirror=False))
    app.router.add_get("/mirror/{job_id}/{name}", _handler(host, mirror=True))
    app.on_startup.append(_on_startup)
    app.on_shutdown.append(_on_shutdown)


async def _on_startup(app: web.Application) -> None:
    app[_CLOSING] = asyncio.Event()


async def _on_shutdown(app: web.Application) -> None:
    app[_CLOSING].set()


def _handler(
    host: FileHost, *, mirror: bool
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        job_id = request.match_info["job_id"]
        name = request.match_info["name"]
        answer = host._open_file(job_id, name, request.headers.get("Range"),
                                 request.headers.get("If-Range"), mirror=mirror)
        if answer is None:
            return html_error(404, "no such file")
        fault = answer.fault
        if fault == "reset":
            return reset_connection(request)
        if isinstance(fault, int):
            return html_error(fault, "injected fault")
        if fault == "html200":
            # A CDN "soft error": 200 with an HTML page where the media should be.
            return web.Response(text=error_page(200, "Access denied"), content_type="text/html")
        if fault is None and answer.expired:
            return html_error(403, "Request has expired")
        if fault is None and answer.redirect is not None:
            return web.Response(status=302, headers={"Location": answer.redirect})
        return await _stream(host, request, (job_id, name), answer)

    return handle


async def _stream(
    host: FileHost, request: web.Request, key: tuple[str, str], answer: FileAnswer
) -> web.StreamResponse:
    file, fault = answer.file, answer.fault
    size = file.content.size
    start, end, status = 0, size, 200
    range_header = request.headers.get("Range")
    if range_header and not answer.ignore_range and _if_range_ok(request, file):
        try:
            parsed = parse_range(range_header, size)
        except Unsatisfiable:
            return web.Response(
                status=416,
                headers={"Content-Range": f"bytes */{size}", "Accept-Ranges": "bytes"},
            )
        if parsed is not None:
            start, end = parsed
            status = 206

    resp = web.StreamResponse(status=status)
    resp.content_type = file.content_type
    if file.charset is not None:
        resp.charset = file.charset
    if answer.chunked:
        resp.enable_chunked_encoding()
    else:
        resp.content_length = end - start
    if "etag" in answer.validators:
        resp.etag = file.etag
    if "last_modified" in answer.validators:
        resp.last_modified = file.last_modified
    if not answer.ignore_range:
        resp.headers["Accept-Ranges"] = "bytes"
    if status == 206:
        resp.headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    await resp.prepare(request)
    if request.method == "HEAD":
        await resp.write_eof()
        return resp

    # For "truncate"/"stall" only the first half of the body is sent.
    stop = start + (end - start) // 2 if fault in ("truncate", "stall") else end
    if not await _send(host, resp, key, file, start, stop):
        return resp  # the client went away mid-download; nothing left to do

    if fault == "truncate":
        # Graceful close after the half body: the client sees EOF before
        # Content-Length is reached.
        if request.transport is not None:
            request.transport.close()
        return resp
    if fault == "stall":
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(request.app[_CLOSING].wait(), _STALL_SECONDS)
        if request.transport is not None:
            request.transport.abort()
        return resp
    await resp.write_eof()
    return resp


async def _send(
    host: FileHost, resp: web.StreamResponse, key: tuple[str, str], file: File,
    start: int, stop: int,
) -> bool:
    """Write bytes ``[start, stop)`` at the host's pace; ``False`` if the client left."""
    rate = host.file_rate
    # Paced responses go in small chunks (1/20 s each) so the rate holds smoothly.
    chunk_size = host.chunk_size if rate is None else \
        max(1024, min(host.chunk_size, int(rate / 20)))
    loop = asyncio.get_running_loop()
    began, sent = loop.time(), 0
    try:
        for chunk in file.content.iter_chunks(start, stop, chunk_size):
            await resp.write(chunk)
            host._count_sent(*key, len(chunk))
            if rate is not None:
                sent += len(chunk)
                ahead = sent / rate - (loop.time() - began)
                if ahead > 0:
                    await asyncio.sleep(ahead)
    except ConnectionError:
        return False
    return True


def _if_range_ok(request: web.Request, file: File) -> bool:
    """Whether a ``Range`` may be honoured given ``If-Range`` (RFC 9110 13.1.5)."""
    if_range = request.headers.get("If-Range")
    if not if_range:
        return True
    if_range = if_range.strip()
    if if_range.startswith(('"', "W/")):
        return if_range == f'"{file.etag}"'
    return if_range == http_date(file.last_modified)


def parse_range(value: str, size: int) -> tuple[int, int] | None:
    """Parse a single ``bytes=`` range into ``[start, end)``.

    Returns ``None`` when the header should be ignored (syntax we do not
    support, such as several ranges: RFC 9110 lets a server send the whole
    file then) and raises :class:`Unsatisfiable` for ranges beyond the end.
    """
    match = _RANGE_RE.fullmatch(value)
    if match is None:
        return None
    first, last = match.groups()
    if not first:
        # Suffix range: the last N bytes.
        if not last:
            return None
        length = int(last)
        if length == 0 or size == 0:
            raise Unsatisfiable
        return max(size - length, 0), size
    start = int(first)
    end = int(last) + 1 if last else size
    if last and end <= start:
        return None  # "bytes=5-2" is invalid syntax, not unsatisfiable
    if start >= size:
        raise Unsatisfiable
    return start, min(end, size)


class Unsatisfiable(Exception):
    """The requested range starts beyond the end of the file."""


def http_date(moment: datetime) -> str:
    """*moment* (UTC) as an HTTP date."""
    return moment.strftime("%a, %d %b %Y %H:%M:%S GMT")
