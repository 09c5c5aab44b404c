"""An in-process stand-in for Akool's result API and its CDN.

:class:`AkoolStandIn` is a small aiohttp server that answers
``GET /api/open/v3/content/video/infobymodelid`` and ``POST /api/open/v3/getToken``
the way ``docs/akool-api.md`` describes, and serves the result files those answers
point to at ``/files/<id>/<name>``. Each job follows a :class:`JobScenario`:
how many polls until it finishes, how it ends, which files it has, and which
faults (HTTP errors, HTML pages, connection resets, truncated or stalled downloads)
the API and the file host inject along the way.

It is used by the project's tests, by ``archiver demo`` and by users who want to
test their own pipelines without an Akool account::

    standin = AkoolStandIn(api_key="test-key")
    standin.add_job("64dd92c1f0b6684651e90e09", polls_until_done=2)
    async with standin.serve() as base_url:
        ...  # point the archiver at base_url

or, from synchronous code, ``with standin.run_in_thread() as base_url: ...``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import html
import http
import ipaddress
import re
import socket
import struct
import threading
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeAlias

from aiohttp import web
from multidict import CIMultiDict

from archiver.testing.media import CHUNK_SIZE, SyntheticMp4, srt_text

if TYPE_CHECKING:
    from archiver.testing.callbacks import CallbackSender, Delivery

__all__ = [
    "API_MESSAGES",
    "FILE_KINDS",
    "FILE_NAMES",
    "INFO_PATH",
    "TOKEN_PATH",
    "AkoolStandIn",
    "ApiFault",
    "FileFault",
    "JobScenario",
    "Lookup",
    "RecordedRequest",
    "generated_job_id",
    "sample_jobs",
]

#: Path of the result lookup endpoint.
INFO_PATH = "/api/open/v3/content/video/infobymodelid"
#: Path of the legacy token endpoint.
TOKEN_PATH = "/api/open/v3/getToken"

#: Scenario file kind -> name under ``/files/<id>/``.
FILE_NAMES: dict[str, str] = {
    "video": "video.mp4",
    "original_srt": "original.srt",
    "translated_srt": "translated.srt",
    "no_caption": "no_caption.mp4",
}
#: All file kinds a job may have.
FILE_KINDS: tuple[str, ...] = tuple(FILE_NAMES)
_KIND_BY_NAME = {name: kind for kind, name in FILE_NAMES.items()}
# Translation-job files and their keys in ``data.audio_splits``.
_AUDIO_SPLIT_FIELDS = {
    "original_srt": "original_srt_url",
    "translated_srt": "translated_srt_url",
    "no_caption": "no_caption_video_url",
}

#: Messages sent with business codes (texts follow akool-api.md, not Akool verbatim).
API_MESSAGES: dict[int, str] = {
    1000: "OK",
    1003: "parameter error or empty",
    1005: "operation too frequent",
    1008: "content not found",
    1009: "no permission",
    1101: "invalid authorization",
    1102: "authorization empty",
    1103: "not paid",
    1104: "insufficient credit",
    1200: "account banned",
    2001: "server error",
}

#: An API fault: an HTTP status (``429``), an HTTP status with a ``Retry-After``
#: value (``(429, 5)``), ``"html"``, ``"reset"``, or a business code (``("code", 1005)``).
ApiFault: TypeAlias = int | str | tuple[int, int | float | str] | tuple[str, int]
#: A file fault: an HTTP status (``403``), ``"html200"``, ``"truncate"``, ``"stall"``
#: or ``"reset"``.
FileFault: TypeAlias = int | str

_API_FAULT_WORDS = frozenset({"html", "reset"})
_FILE_FAULT_WORDS = frozenset({"html200", "truncate", "stall", "reset"})

# CDN result files are kept for 7 days (akool-api.md); signed URLs expire then too.
_RETENTION_S = 7 * 24 * 3600
# How long a "stall" fault holds a connection open; shutdown cuts it short.
_STALL_SECONDS = 3600.0


@dataclass
class JobScenario:
    """How one job (one ``video_model_id``) behaves on the stand-in.

    Status progression counts *normal* answers only (API faults do not advance
    it): the first answer says 1 (queued), later ones 2 (processing), and from
    the ``polls_until_done``-th on the final status (3 for ``"success"``,
    4 for ``"failed"``; ``"never"`` stays at 2).
    """

    #: Normal answers until the final status (1 = final on the first poll).
    polls_until_done: int = 1
    #: ``"success"`` (status 3), ``"failed"`` (status 4) or ``"never"`` (stays 2).
    outcome: Literal["success", "failed", "never"] = "success"
    #: File kinds the job has: any of ``"video"``, ``"original_srt"``,
    #: ``"translated_srt"``, ``"no_caption"``.
    files: tuple[str, ...] = ("video",)
    #: ``create_time`` in ms since the epoch; ``None`` = when the job is added.
    create_time: int | None = None
    #: Size of the generated ``video.mp4``.
    video_size: int = 64 * 1024
    #: Size of the generated ``no_caption.mp4``.
    no_caption_size: int = 64 * 1024
    #: Exact bytes for ``video.mp4`` instead of generated MP4 content.
    video_bytes: bytes | None = None
    #: Language of ``original.srt``.
    original_lang: str = "en"
    #: Language of ``translated.srt``.
    translated_lang: str = "es"
    #: ``error_code`` sent with status 4.
    error_code: int = 1015
    #: ``error_reason`` sent with status 4.
    error_reason: str = "face not detected in the source image"
    #: Extra keys merged into ``data`` last (they may also override standard ones).
    extra_fields: dict[str, Any] = field(default_factory=dict)
    #: Faults answered one per poll of this id before any normal answer.
    api_faults: list[ApiFault] = field(default_factory=list)
    #: A business code answered to every poll once ``api_faults`` are used up.
    business_code: int | None = None
    #: File kind or name (``"video"`` / ``"video.mp4"``) -> faults, one per request.
    file_faults: dict[str, list[FileFault]] = field(default_factory=dict)
    #: File kind or name -> URL answered as a 302 ``Location`` on every request
    #: (after file faults). Relative URLs are fine; ``/mirror/<id>/<name>``
    #: serves the same file without faults or redirects.
    redirects: dict[str, str] = field(default_factory=dict)
    #: Whether the files answer 403 as if the 7-day retention had passed.
    expired: bool = False
    #: Whether file URLs carry a CloudFront-like ``?Expires=&Signature=`` query.
    signed_urls: bool = True
    #: File kind or name -> faults, one per request that carries a ``Range`` header
    #: (after ``file_faults``): to cut one range of a file fetched over several connections.
    range_faults: dict[str, list[FileFault]] = field(default_factory=dict)
    #: Whether file answers ignore ``Range`` (a full 200 every time, as some servers do).
    ignore_range: bool = False
    #: The validators file answers carry: ``"etag"``, ``"last_modified"`` (the job's
    #: ``create_time``); ``()`` for none, as some origins stream files (an ``If-Range``
    #: then never matches: a Range request gets the whole file).
    validators: tuple[str, ...] = ("etag", "last_modified")
    #: Whether file answers go without Content-Length (chunked transfer coding).
    chunked: bool = False


@dataclass(frozen=True, slots=True)
class Lookup:
    """One authenticated result lookup, as the account's rate limit counted it."""

    #: ``time.monotonic()`` when the stand-in received it.
    at: float
    video_model_id: str
    #: Answered code 1005 by the ``requests_per_second`` limit.
    throttled: bool


@dataclass(frozen=True)
class RecordedRequest:
    """One API request as the stand-in received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: CIMultiDict[str]


class _Content(Protocol):
    """What the file handler needs from a file's content."""

    @property
    def size(self) -> int: ...

    def read(self, start: int, end: int) -> bytes: ...

    def iter_chunks(
        self, start: int = 0, end: int | None = None, chunk_size: int = CHUNK_SIZE
    ) -> Iterator[bytes]: ...

    def sha256(self) -> str: ...


@dataclass(frozen=True)
class _BytesContent:
    """Small in-memory content (SRTs, explicit ``video_bytes``)."""

    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)

    def read(self, start: int, end: int) -> bytes:
        return self.data[max(start, 0) : end]

    def iter_chunks(
        self, start: int = 0, end: int | None = None, chunk_size: int = CHUNK_SIZE
    ) -> Iterator[bytes]:
        stop = self.size if end is None else min(end, self.size)
        for pos in range(max(start, 0), stop, chunk_size):
            yield self.data[pos : min(pos + chunk_size, stop)]

    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True)
class _File:
    content: _Content
    content_type: str
    etag: str
    last_modified: datetime


@dataclass
class _JobState:
    scenario: JobScenario
    create_time: int
    api_faults: deque[ApiFault]
    file_faults: dict[str, deque[FileFault]]
    redirects: dict[str, str]
    range_faults: dict[str, deque[FileFault]] = field(default_factory=dict)
    answered: int = 0
    files: dict[str, _File] = field(default_factory=dict)


# Set when the application shuts down, to wake "stall" handlers so that
# shutdown does not wait for them.
_CLOSING = web.AppKey("akool_standin_closing", asyncio.Event)


async def _on_startup(app: web.Application) -> None:
    app[_CLOSING] = asyncio.Event()


async def _on_shutdown(app: web.Application) -> None:
    app[_CLOSING].set()


def generated_job_id(index: int, namespace: str = "standin") -> str:
    """Deterministic 24-char lowercase hex id (shaped like an Akool ObjectId)."""
    return hashlib.sha256(f"{namespace}:{index}".encode()).hexdigest()[:24]


def sample_jobs() -> dict[str, JobScenario]:
    """A small demo set of jobs for ``archiver demo``.

    Three video translations with all four files, two talking-photo jobs with
    a video only, and one job that fails with status 4. All finish after 2-3 polls.
    """
    jobs: dict[str, JobScenario] = {}
    for i, lang in enumerate(("es", "fr", "ja")):
        jobs[generated_job_id(i, "demo")] = JobScenario(
            polls_until_done=2 + i % 2,
            files=FILE_KINDS,
            translated_lang=lang,
            video_size=(96 + 32 * i) * 1024,
            no_caption_size=(80 + 32 * i) * 1024,
        )
    for i in (3, 4):
        jobs[generated_job_id(i, "demo")] = JobScenario(
            polls_until_done=i - 1, video_size=(48 + 16 * i) * 1024
        )
    jobs[generated_job_id(5, "demo")] = JobScenario(
        polls_until_done=3,
        outcome="failed",
        error_code=1015,
        error_reason="face not detected in the source image",
    )
    return jobs


def _canonical_name(name: str) -> str:
    """Accept a file kind (``video``) or name (``video.mp4``); return the name."""
    if name in FILE_NAMES:
        return FILE_NAMES[name]
    if name in _KIND_BY_NAME:
        return name
    raise ValueError(f"unknown file {name!r}; expected one of {sorted(FILE_NAMES)}")


def _check_api_fault(fault: object) -> ApiFault:
    # Validate eagerly so that a typo in a test fails at add_job, not as a
    # puzzling answer in the middle of a run.
    if isinstance(fault, bool):
        raise ValueError(f"invalid API fault {fault!r}")
    if isinstance(fault, int) and 100 <= fault <= 599:
        return fault
    if isinstance(fault, str) and fault in _API_FAULT_WORDS:
        return fault
    if isinstance(fault, tuple) and len(fault) == 2:
        first, second = fault
        if first == "code" and isinstance(second, int) and not isinstance(second, bool):
            return ("code", second)
        if (
            isinstance(first, int)
            and not isinstance(first, bool)
            and 100 <= first <= 599
            and isinstance(second, int | float | str)
            and not isinstance(second, bool)
        ):
            return (first, second)
    raise ValueError(
        f"invalid API fault {fault!r}: use an HTTP status, (status, retry_after), "
        "'html', 'reset' or ('code', N)"
    )


def _check_file_fault(fault: object) -> FileFault:
    if isinstance(fault, int) and not isinstance(fault, bool) and 100 <= fault <= 599:
        return fault
    if isinstance(fault, str) and fault in _FILE_FAULT_WORDS:
        return fault
    raise ValueError(
        f"invalid file fault {fault!r}: use an HTTP status, 'html200', 'truncate', "
        "'stall' or 'reset'"
    )


def _validate(job_id: str, scenario: JobScenario) -> None:
    if not job_id or "/" in job_id:
        raise ValueError(f"invalid job id {job_id!r}")
    if scenario.polls_until_done < 1:
        raise ValueError("polls_until_done must be >= 1")
    if scenario.outcome not in ("success", "failed", "never"):
        raise ValueError(f"invalid outcome {scenario.outcome!r}")
    unknown = set(scenario.files) - set(FILE_KINDS)
    if unknown:
        raise ValueError(f"unknown file kinds {sorted(unknown)}; expected {FILE_KINDS}")
    if scenario.video_size < 0 or scenario.no_caption_size < 0:
        raise ValueError("file sizes must be >= 0")
    if set(scenario.validators) - {"etag", "last_modified"}:
        raise ValueError(f"unknown validators {scenario.validators}; expected 'etag', "
                         "'last_modified'")


def _error_page(status: int, detail: str = "") -> str:
    """A CDN/proxy-style HTML error page."""
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    title = html.escape(f"{status} {phrase}")
    body = f"<p>{html.escape(detail)}</p>" if detail else ""
    return (
        f"<!DOCTYPE html>\n<html><head><title>{title}</title></head>\n"
        f"<body><h1>{title}</h1>{body}<hr><address>akool-standin</address></body></html>\n"
    )


def _reset_connection(request: web.BaseRequest) -> web.Response:
    """Drop the connection with a TCP RST and no answer.

    Returns a placeholder response for the handler to return: aiohttp cannot
    send it any more, and 444 ("no response", as nginx logs it) makes the
    access log honest about what happened.
    """
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # SO_LINGER with a zero timeout turns close() into a RST, which is
            # what a crashing proxy looks like to the client.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    return web.Response(status=444)


# One "bytes=first-last" range; ASCII digits only (str.isdigit() would let "²" through).
_RANGE_RE = re.compile(r"\s*bytes\s*=\s*([0-9]*)\s*-\s*([0-9]*)\s*", re.IGNORECASE)


def _parse_range(value: str, size: int) -> tuple[int, int] | None:
    """Parse a single ``bytes=`` range into ``[start, end)``.

    Returns ``None`` when the header should be ignored (syntax we do not
    support, such as several ranges: RFC 9110 lets a server send the whole
    file then) and raises :class:`_Unsatisfiable` for ranges beyond the end.
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
            raise _Unsatisfiable
        return max(size - length, 0), size
    start = int(first)
    end = int(last) + 1 if last else size
    if last and end <= start:
        return None  # "bytes=5-2" is invalid syntax, not unsatisfiable
    if start >= size:
        raise _Unsatisfiable
    return start, min(end, size)


class _Unsatisfiable(Exception):
    """The requested range starts beyond the end of the file."""


def _http_date(moment: datetime) -> str:
    return moment.strftime("%a, %d %b %Y %H:%M:%S GMT")


def _url_host(host: str) -> str:
    """Host part of a base URL for a bind address (wildcards -> loopback)."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]"
    return host


class AkoolStandIn:
    """A fake Akool result API and CDN on a real socket.

    Jobs are added with :meth:`add_job` (before or while serving). The server
    is started with :meth:`serve` (async context manager) or
    :meth:`run_in_thread` (sync context manager); :attr:`app` is the
    underlying :class:`aiohttp.web.Application` for embedding.

    Counters (:attr:`api_calls`, :attr:`polls`, :attr:`file_requests`,
    :attr:`file_bytes_sent`, :attr:`api_requests`, :attr:`api_headers`,
    :attr:`throttled`, :attr:`lookups`) are
    updated under a lock and returned as snapshots, so tests may read them
    from another thread while the server runs.
    """

    def __init__(
        self,
        api_key: str | None = "test-key",
        token: str | None = "test-token",
        # 16 and 24 bytes: also the AES IV and key of webhook callbacks (callbacks.py).
        client_id: str | None = "standin-clientid",
        client_secret: str | None = "standin-client-secret-24",
        *,
        latency: float = 0.0,
        fail_all_with_code: int | None = None,
        public_base_url: str | None = None,
        chunk_size: int = CHUNK_SIZE,
        max_recorded_requests: int = 10_000,
        file_rate: float | None = None,
        requests_per_second: float | None = None,
        burst: float | None = None,
    ) -> None:
        """Configure credentials and global behaviour.

        ``api_key``/``token`` of ``None`` reject every ``x-api-key``/Bearer
        value. ``latency`` (seconds) delays every API answer;
        ``fail_all_with_code`` answers that business code to every API
        request. ``public_base_url`` replaces the request's own scheme and
        host in result URLs (for a stand-in behind a proxy).
        ``max_recorded_requests`` bounds :attr:`api_requests` so that long
        benchmarks do not grow memory without limit. ``file_rate`` (bytes per
        second) paces every file response on its own, like a CDN that limits each
        connection (nginx ``limit_rate``): N parallel downloads get N times the rate.
        ``requests_per_second`` is an account-wide limit on result lookups, however
        many clients send them: a token bucket of ``burst`` (default: one second's
        worth, at least 1) refilled at that rate; a lookup finding it empty is answered
        code 1005 ("operation too frequent", HTTP 200) and counted in :attr:`throttled`.
        """
        if chunk_size <= 0:
            raise ValueError("chunk_size must be > 0")
        if file_rate is not None and file_rate <= 0:
            raise ValueError("file_rate must be > 0")
        if requests_per_second is not None and requests_per_second <= 0:
            raise ValueError("requests_per_second must be > 0")
        if burst is not None and (requests_per_second is None or burst < 1):
            raise ValueError("burst needs requests_per_second and must be >= 1")
        self.requests_per_second = requests_per_second
        self.burst = burst if burst is not None else max(1.0, requests_per_second or 0.0)
        self.file_rate = file_rate
        self.api_key = api_key
        self.token = token
        self.client_id = client_id
        self.client_secret = client_secret
        self.latency = latency
        self.fail_all_with_code = fail_all_with_code
        self.public_base_url = public_base_url.rstrip("/") if public_base_url else None
        self.chunk_size = chunk_size
        #: Base URL while :meth:`serve` / :meth:`run_in_thread` is active.
        self.base_url: str | None = None

        # Handlers run on the server's loop while tests read counters and add
        # jobs from their own thread, so all shared state goes through this lock.
        self._lock = threading.Lock()
        self._jobs: dict[str, _JobState] = {}
        self._api_calls = 0
        self._polls: Counter[str] = Counter()
        self._file_requests: Counter[tuple[str, str]] = Counter()
        self._file_bytes_sent: Counter[tuple[str, str]] = Counter()
        #: (id, name, Range, If-Range or None) of each file request with a Range.
        self._file_ranges: list[tuple[str, str, str, str | None]] = []
        self._requests: deque[RecordedRequest] = deque(maxlen=max_recorded_requests)
        self._lookups: deque[Lookup] = deque(maxlen=max_recorded_requests)
        self._throttled = 0
        # The account's bucket: full at the start, like an account idle until now.
        self._tokens = self.burst
        self._refilled = time.monotonic()
        self._app: web.Application | None = None

    # ------------------------------------------------------------------ jobs

    @property
    def app(self) -> web.Application:
        """The aiohttp application, for embedding in another server or runner.

        Created on first access and then always the same object. (:meth:`serve`
        builds a fresh one each time: an aiohttp application stays tied to the
        first event loop that ran it, and :meth:`run_in_thread` uses a new loop
        per call.) All applications share this stand-in's jobs and counters.
        """
        if self._app is None:
            self._app = self.make_app()
        return self._app

    def make_app(self) -> web.Application:
        """Build a new :class:`aiohttp.web.Application` serving this stand-in."""
        app = web.Application()
        app.router.add_get(INFO_PATH, self._handle_info)
        app.router.add_post(TOKEN_PATH, self._handle_token)
        app.router.add_get("/files/{job_id}/{name}", self._handle_file)
        app.router.add_get("/mirror/{job_id}/{name}", self._handle_mirror)
        app.on_startup.append(_on_startup)
        app.on_shutdown.append(_on_shutdown)
        return app

    def add_job(
        self, job_id: str, scenario: JobScenario | None = None, /, **fields: Any
    ) -> JobScenario:
        """Add (or replace) a job; ``fields`` are :class:`JobScenario` fields.

        With both ``scenario`` and ``fields``, the fields override the
        scenario's. Fault lists are copied, so a scenario can be reused.
        Safe to call while the server runs, from any thread.
        """
        base = scenario if scenario is not None else JobScenario()
        scen = dataclasses.replace(base, **fields)
        # Lists are accepted for convenience; a tuple keeps comparisons simple.
        scen.files = tuple(scen.files)
        _validate(job_id, scen)
        create_time = scen.create_time if scen.create_time is not None else int(time.time() * 1000)
        state = _JobState(
            scenario=scen,
            create_time=create_time,
            api_faults=deque(_check_api_fault(f) for f in scen.api_faults),
            file_faults={
                _canonical_name(n): deque(_check_file_fault(f) for f in faults)
                for n, faults in scen.file_faults.items()
            },
            redirects={_canonical_name(n): url for n, url in scen.redirects.items()},
            range_faults={
                _canonical_name(n): deque(_check_file_fault(f) for f in faults)
                for n, faults in scen.range_faults.items()
            },
        )
        state.files = self._build_files(job_id, scen, create_time)
        with self._lock:
            self._jobs[job_id] = state
        return scen

    def add_jobs(self, jobs: Mapping[str, JobScenario] | Iterable[tuple[str, JobScenario]]) -> None:
        """Add several jobs, e.g. ``standin.add_jobs(sample_jobs())``."""
        items = jobs.items() if isinstance(jobs, Mapping) else jobs
        for job_id, scenario in items:
            self.add_job(job_id, scenario)

    def remove_job(self, job_id: str) -> None:
        """Forget a job: later polls answer 1008 and its files 404."""
        with self._lock:
            self._jobs.pop(job_id, None)

    @property
    def job_ids(self) -> list[str]:
        """Ids of all known jobs, in insertion order."""
        with self._lock:
            return list(self._jobs)

    def add_api_faults(self, job_id: str, *faults: ApiFault) -> None:
        """Queue more API faults for a known job (answered before normal polls)."""
        checked = [_check_api_fault(f) for f in faults]
        with self._lock:
            self._state(job_id).api_faults.extend(checked)

    def add_file_faults(self, job_id: str, name: str, *faults: FileFault) -> None:
        """Queue more faults for a job's file (kind or file name)."""
        checked = [_check_file_fault(f) for f in faults]
        key = _canonical_name(name)
        with self._lock:
            self._state(job_id).file_faults.setdefault(key, deque()).extend(checked)

    def _state(self, job_id: str) -> _JobState:
        try:
            return self._jobs[job_id]
        except KeyError:
            raise KeyError(f"unknown job {job_id!r}") from None

    @staticmethod
    def _build_files(job_id: str, scen: JobScenario, create_time: int) -> dict[str, _File]:
        modified = datetime.fromtimestamp(create_time / 1000, UTC).replace(microsecond=0)
        created_unix = create_time // 1000
        files: dict[str, _File] = {}
        for kind in scen.files:
            name = FILE_NAMES[kind]
            seed = f"{job_id}/{name}".encode()
            content: _Content
            if kind == "video" and scen.video_bytes is not None:
                content = _BytesContent(scen.video_bytes)
                tag = hashlib.sha256(scen.video_bytes).hexdigest()
            elif kind in ("video", "no_caption"):
                size = scen.video_size if kind == "video" else scen.no_caption_size
                content = SyntheticMp4(size, seed, created_unix)
                # Hashing 2 GiB per job would be slow; the generator's inputs
                # determine the bytes, so a hash of them is a valid strong ETag.
                tag = hashlib.sha256(b"mp4:%d:%d:" % (size, created_unix) + seed).hexdigest()
            else:
                lang = scen.original_lang if kind == "original_srt" else scen.translated_lang
                data = srt_text(lang).encode("utf-8")
                content = _BytesContent(data)
                tag = hashlib.sha256(data).hexdigest()
            ctype = "video/mp4" if name.endswith(".mp4") else "application/x-subrip"
            files[name] = _File(content, ctype, tag[:32], modified)
        return files

    def _file(self, job_id: str, name: str) -> _File:
        key = _canonical_name(name)
        with self._lock:
            state = self._state(job_id)
        try:
            return state.files[key]
        except KeyError:
            raise KeyError(f"job {job_id!r} has no file {key!r}") from None

    def file_size(self, job_id: str, name: str) -> int:
        """Size in bytes of a job's file (kind or file name)."""
        return self._file(job_id, name).content.size

    def file_bytes(self, job_id: str, name: str) -> bytes:
        """The exact bytes served for a job's file (use for small files only)."""
        content = self._file(job_id, name).content
        return content.read(0, content.size)

    def file_sha256(self, job_id: str, name: str) -> str:
        """Hex SHA-256 of a job's file, computed by streaming (fine for huge files)."""
        return self._file(job_id, name).content.sha256()

    def file_path(self, job_id: str, name: str) -> str:
        """Path and signed query of a job's file, as put in API answers."""
        key = _canonical_name(name)
        with self._lock:
            state = self._state(job_id)
        path = f"/files/{job_id}/{key}"
        if not state.scenario.signed_urls:
            return path
        # A CloudFront-like signature: ignored when serving, but present so that
        # clients learn not to treat the query as part of the file's identity.
        expires = state.create_time // 1000 + _RETENTION_S
        signature = hashlib.sha256(f"{path}:{expires}".encode()).hexdigest()[:40]
        return f"{path}?Expires={expires}&Signature={signature}&Key-Pair-Id=K2AKOOLSTANDIN"

    def file_url(self, job_id: str, name: str, base_url: str | None = None) -> str:
        """Absolute URL of a job's file (``base_url`` defaults to the running server's)."""
        base = base_url or self.public_base_url or self.base_url
        if base is None:
            raise RuntimeError("the stand-in is not serving; pass base_url")
        return base.rstrip("/") + self.file_path(job_id, name)

    # -------------------------------------------------------------- webhooks

    def callbacks(self, webhook_url: str, *, connections: int = 100) -> CallbackSender:
        """A sender of signed, encrypted callbacks to *webhook_url* with this stand-in's
        ``client_id`` / ``client_secret`` (``async with standin.callbacks(url) as s``)."""
        from archiver.testing.callbacks import CallbackSender

        if self.client_id is None or self.client_secret is None:
            raise RuntimeError("callbacks need client_id and client_secret")
        return CallbackSender(webhook_url, self.client_id, self.client_secret,
                              connections=connections)

    async def deliver(self, sender: CallbackSender, job_id: str) -> Delivery:
        """Tell *sender*'s receiver what Akool would once *job_id* is final: status 3
        with the video URL, or 4 with the reason (the job's scenario decides)."""
        with self._lock:
            scen = self._jobs[job_id].scenario
        if scen.outcome == "failed":
            return await sender.notify(job_id, 4, extra={
                "error_code": scen.error_code, "error_reason": scen.error_reason})
        if scen.outcome == "never":
            return await sender.notify(job_id, 2)
        url = self.file_url(job_id, "video") if "video" in scen.files else None
        return await sender.notify(job_id, 3, url=url)

    @staticmethod
    def mirror_path(job_id: str, name: str) -> str:
        """Path serving a job's file without faults or redirects (a redirect target)."""
        return f"/mirror/{job_id}/{_canonical_name(name)}"

    # -------------------------------------------------------------- counters

    @property
    def api_calls(self) -> int:
        """Total API requests received (both endpoints, including rejected ones)."""
        with self._lock:
            return self._api_calls

    @property
    def polls(self) -> Counter[str]:
        """Snapshot: id -> lookups of that id that passed authentication (faulted ones too)."""
        with self._lock:
            return Counter(self._polls)

    @property
    def file_requests(self) -> Counter[tuple[str, str]]:
        """Snapshot: (id, file name) -> requests (``/files`` and ``/mirror``, any outcome)."""
        with self._lock:
            return Counter(self._file_requests)

    @property
    def file_bytes_sent(self) -> Counter[tuple[str, str]]:
        """Snapshot: (id, file name) -> body bytes written to clients."""
        with self._lock:
            return Counter(self._file_bytes_sent)

    @property
    def file_ranges(self) -> list[tuple[str, str, str]]:
        """Snapshot: (id, file name, Range header) of each file request with a Range."""
        with self._lock:
            return [(job, name, ranged) for job, name, ranged, _ in self._file_ranges]

    @property
    def file_if_ranges(self) -> list[tuple[str, str, str, str | None]]:
        """Snapshot: :attr:`file_ranges` with each request's If-Range header (or None)."""
        with self._lock:
            return list(self._file_ranges)

    @property
    def api_requests(self) -> list[RecordedRequest]:
        """Snapshot of the most recent API requests, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def throttled(self) -> int:
        """Lookups answered code 1005 by the ``requests_per_second`` limit."""
        with self._lock:
            return self._throttled

    @property
    def lookups(self) -> list[Lookup]:
        """Snapshot: the recent authenticated lookups (the ones the rate limit counts,
        throttled or not), oldest first."""
        with self._lock:
            return list(self._lookups)

    @property
    def api_headers(self) -> list[CIMultiDict[str]]:
        """Headers (case-insensitive) of the most recent API requests, oldest first."""
        return [r.headers for r in self.api_requests]

    def reset_counters(self) -> None:
        """Zero all counters and forget recorded requests (jobs are kept)."""
        with self._lock:
            self._api_calls = 0
            self._polls.clear()
            self._file_requests.clear()
            self._file_bytes_sent.clear()
            self._file_ranges.clear()
            self._requests.clear()
            self._lookups.clear()
            self._throttled = 0

    # --------------------------------------------------------------- serving

    @contextlib.asynccontextmanager
    async def serve(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
        """Serve on ``host:port`` (0 = ephemeral) and yield the base URL.

        The base URL looks like ``http://127.0.0.1:PORT``; wildcard bind
        addresses are reported as loopback.
        """
        # handler_cancellation stops streaming handlers whose client went
        # away; the short shutdown timeout keeps test teardown fast even if a
        # download is still in flight.
        runner = web.AppRunner(self.make_app(), handler_cancellation=True, shutdown_timeout=1.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
            bound_port = runner.addresses[0][1]
            self.base_url = f"http://{_url_host(host)}:{bound_port}"
            yield self.base_url
        finally:
            self.base_url = None
            await runner.cleanup()

    @contextlib.contextmanager
    def run_in_thread(
        self, host: str = "127.0.0.1", port: int = 0, *, timeout: float = 10.0
    ) -> Iterator[str]:
        """Serve from a daemon thread with its own event loop; yield the base URL.

        For synchronous tests and for running the project's CLI against the
        stand-in. The server is stopped (and the thread joined) on exit.
        """
        started = threading.Event()
        box: dict[str, Any] = {}
        loop = asyncio.new_event_loop()

        async def main() -> None:
            stop = asyncio.Event()
            box["stop"] = stop
            async with self.serve(host, port) as url:
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

    # ------------------------------------------------------------------- API

    def _record_api(self, request: web.Request) -> None:
        record = RecordedRequest(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers=CIMultiDict(request.headers),
        )
        with self._lock:
            self._api_calls += 1
            self._requests.append(record)

    def _auth_error(self, request: web.Request) -> int | None:
        """Business code for bad credentials, or ``None`` when authorised."""
        authorization = request.headers.get("Authorization", "").strip()
        if authorization:
            # Authorization wins over x-api-key even when it is wrong
            # (akool-api.md), so a stale token cannot be rescued by a key.
            scheme, _, value = authorization.partition(" ")
            valid = self.token is not None and value.strip() == self.token
            if scheme.lower() == "bearer" and valid:
                return None
            return 1101
        api_key = request.headers.get("x-api-key", "")
        if not api_key:
            return 1102
        return None if self.api_key is not None and api_key == self.api_key else 1101

    @staticmethod
    def _envelope(code: int, data: dict[str, Any] | None = None) -> web.Response:
        return web.json_response(
            {"code": code, "msg": API_MESSAGES.get(code, "error"), "data": data}
        )

    async def _handle_token(self, request: web.Request) -> web.Response:
        self._record_api(request)
        if self.latency:
            await asyncio.sleep(self.latency)
        if self.fail_all_with_code is not None:
            return self._envelope(self.fail_all_with_code)
        try:
            body = await request.json()
        except ValueError:
            return self._envelope(1003)
        if not isinstance(body, dict) or not body.get("clientId") or not body.get("clientSecret"):
            return self._envelope(1003)
        if (
            self.token is not None
            and body["clientId"] == self.client_id
            and body["clientSecret"] == self.client_secret
        ):
            return web.json_response({"code": 1000, "msg": "OK", "token": self.token})
        return self._envelope(1101)

    async def _handle_info(self, request: web.Request) -> web.Response:
        self._record_api(request)
        if self.latency:
            await asyncio.sleep(self.latency)
        if self.fail_all_with_code is not None:
            return self._envelope(self.fail_all_with_code)
        auth_error = self._auth_error(request)
        if auth_error is not None:
            return self._envelope(auth_error)
        job_id = request.query.get("video_model_id", "").strip()
        if not job_id:
            return self._envelope(1003)

        answered = 0
        with self._lock:
            self._polls[job_id] += 1
            state = self._jobs.get(job_id)
            if not self._admit(job_id):
                # Before the job's own faults: the account is over its limit, whatever the id.
                answer: ApiFault | None = ("code", 1005)
            elif state is None:
                answer = ("code", 1008)
            elif state.api_faults:
                answer = state.api_faults.popleft()
            elif state.scenario.business_code is not None:
                answer = ("code", state.scenario.business_code)
            else:
                answer = None
                state.answered += 1
                answered = state.answered

        if answer is not None:
            return self._api_fault(request, answer)
        assert state is not None
        return self._envelope(1000, self._job_data(request, job_id, state, answered))

    def _admit(self, job_id: str) -> bool:
        """Count one lookup against the account's rate limit (call with the lock held)."""
        now = time.monotonic()
        rate = self.requests_per_second
        admitted = True
        if rate is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._refilled) * rate)
            self._refilled = now
            # Refused lookups cost nothing, as with nginx's limit_req: a client that
            # backs off gets through again as soon as a token has come back.
            admitted = self._tokens >= 1
            if admitted:
                self._tokens -= 1
            else:
                self._throttled += 1
        self._lookups.append(Lookup(now, job_id, throttled=not admitted))
        return admitted

    @staticmethod
    def _api_fault(request: web.Request, fault: ApiFault) -> web.Response:
        if fault == "reset":
            return _reset_connection(request)
        if fault == "html":
            # What a captive portal or misconfigured proxy answers: 200, but HTML.
            return web.Response(
                text=_error_page(200, "Service temporarily unavailable"), content_type="text/html"
            )
        if isinstance(fault, tuple) and fault[0] == "code":
            return AkoolStandIn._envelope(int(fault[1]))
        if isinstance(fault, tuple):
            status, retry_after = int(fault[0]), str(fault[1])
        else:
            status, retry_after = int(fault), "1"
        # A bare 429 carries "Retry-After: 1"; (status, N) sets it on any status.
        headers = {"Retry-After": retry_after} if status == 429 or isinstance(fault, tuple) else {}
        return web.Response(
            status=status, text=_error_page(status), content_type="text/html", headers=headers
        )

    def _job_data(
        self, request: web.Request, job_id: str, state: _JobState, answered: int
    ) -> dict[str, Any]:
        scen = state.scenario
        k = scen.polls_until_done
        final = {"success": 3, "failed": 4, "never": 2}[scen.outcome]
        status = final if answered >= k else (1 if answered == 1 else 2)
        if status == 3:
            progress = 100
        elif status == 1:
            progress = 0
        elif scen.outcome == "never":
            progress = min(95, 10 * (answered - 1))
        else:
            progress = min(95, 100 * (answered - 1) // k)

        base = self.public_base_url or f"{request.scheme}://{request.host}"

        def url(kind: str) -> str:
            return base + self.file_path(job_id, kind) if status == 3 else ""

        id_hash = hashlib.sha256(job_id.encode()).digest()
        is_translation = any(kind in scen.files for kind in _AUDIO_SPLIT_FIELDS)
        data: dict[str, Any] = {
            "faceswap_quality": 2,
            "storage_loc": 1,
            "_id": job_id,
            "create_time": state.create_time,
            "uid": 100000 + int.from_bytes(id_hash[:2], "big"),
            "type": 8 if is_translation else 2,
            "from": 2,
            "video_lock_duration": round(5 + id_hash[2] / 16, 2),
            "deduction_lock_duration": 20,
            "video_status": status,
            "external_video": "",
            "video_id": id_hash[3:15].hex(),
            "video": url("video") if "video" in scen.files else "",
            "progress": progress,
        }
        if is_translation:
            data["audio_splits"] = {
                field_name: url(kind)
                for kind, field_name in _AUDIO_SPLIT_FIELDS.items()
                if kind in scen.files
            }
        if status == 4:
            data["error_code"] = scen.error_code
            data["error_reason"] = scen.error_reason
        data.update(scen.extra_fields)
        return data

    # ----------------------------------------------------------------- files

    async def _handle_file(self, request: web.Request) -> web.StreamResponse:
        return await self._serve_file(request, mirror=False)

    async def _handle_mirror(self, request: web.Request) -> web.StreamResponse:
        return await self._serve_file(request, mirror=True)

    async def _serve_file(self, request: web.Request, *, mirror: bool) -> web.StreamResponse:
        job_id = request.match_info["job_id"]
        name = request.match_info["name"]
        key = (job_id, name)
        ranged = request.headers.get("Range")
        with self._lock:
            self._file_requests[key] += 1
            if ranged:
                self._file_ranges.append((job_id, name, ranged,
                                          request.headers.get("If-Range")))
            state = self._jobs.get(job_id)
            file = state.files.get(name) if state is not None else None
            fault: FileFault | None = None
            redirect: str | None = None
            expired = False
            if state is not None and file is not None and not mirror:
                faults = state.file_faults.get(name)
                fault = faults.popleft() if faults else None
                range_faults = state.range_faults.get(name) if ranged else None
                if fault is None and range_faults:
                    fault = range_faults.popleft()
                redirect = state.redirects.get(name)
                expired = state.scenario.expired

        if file is None:
            return self._html_error(404, "no such file")
        if fault == "reset":
            return _reset_connection(request)
        if isinstance(fault, int):
            return self._html_error(fault, "injected fault")
        if fault == "html200":
            # A CDN "soft error": 200 with an HTML page where the media should be.
            return web.Response(text=_error_page(200, "Access denied"), content_type="text/html")
        if fault is None and expired:
            return self._html_error(403, "Request has expired")
        if fault is None and redirect is not None:
            return web.Response(status=302, headers={"Location": redirect})
        return await self._stream(request, key, file, fault)

    @staticmethod
    def _html_error(status: int, detail: str) -> web.Response:
        return web.Response(
            status=status, text=_error_page(status, detail), content_type="text/html"
        )

    async def _stream(
        self,
        request: web.Request,
        key: tuple[str, str],
        file: _File,
        fault: FileFault | None,
    ) -> web.StreamResponse:
        size = file.content.size
        start, end, status = 0, size, 200
        range_header = request.headers.get("Range")
        ignore = self._ignores_range(key)
        if range_header and not ignore and self._if_range_ok(request, file):
            try:
                parsed = _parse_range(range_header, size)
            except _Unsatisfiable:
                return web.Response(
                    status=416,
                    headers={"Content-Range": f"bytes */{size}", "Accept-Ranges": "bytes"},
                )
            if parsed is not None:
                start, end = parsed
                status = 206

        resp = web.StreamResponse(status=status)
        resp.content_type = file.content_type
        if file.content_type == "application/x-subrip":
            resp.charset = "utf-8"
        scenario = self._scenario(key)
        if scenario is not None and scenario.chunked:
            resp.enable_chunked_encoding()
        else:
            resp.content_length = end - start
        validators = scenario.validators if scenario is not None else ("etag", "last_modified")
        if "etag" in validators:
            resp.etag = file.etag
        if "last_modified" in validators:
            resp.last_modified = file.last_modified
        if not ignore:
            resp.headers["Accept-Ranges"] = "bytes"
        if status == 206:
            resp.headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        await resp.prepare(request)
        if request.method == "HEAD":
            await resp.write_eof()
            return resp

        # For "truncate"/"stall" only the first half of the body is sent.
        stop = start + (end - start) // 2 if fault in ("truncate", "stall") else end
        rate = self.file_rate
        # Paced responses go in small chunks (1/20 s each) so the rate holds smoothly.
        chunk_size = self.chunk_size if rate is None else \
            max(1024, min(self.chunk_size, int(rate / 20)))
        loop = asyncio.get_running_loop()
        began, sent = loop.time(), 0
        try:
            for chunk in file.content.iter_chunks(start, stop, chunk_size):
                await resp.write(chunk)
                with self._lock:
                    self._file_bytes_sent[key] += len(chunk)
                if rate is not None:
                    sent += len(chunk)
                    ahead = sent / rate - (loop.time() - began)
                    if ahead > 0:
                        await asyncio.sleep(ahead)
        except ConnectionError:
            # The client went away mid-download; nothing left to do.
            return resp

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

    def _ignores_range(self, key: tuple[str, str]) -> bool:
        with self._lock:
            state = self._jobs.get(key[0])
        return state is not None and state.scenario.ignore_range

    def _scenario(self, key: tuple[str, str]) -> JobScenario | None:
        with self._lock:
            state = self._jobs.get(key[0])
        return None if state is None else state.scenario

    @staticmethod
    def _if_range_ok(request: web.Request, file: _File) -> bool:
        """Whether a ``Range`` may be honoured given ``If-Range`` (RFC 9110 13.1.5)."""
        if_range = request.headers.get("If-Range")
        if not if_range:
            return True
        if_range = if_range.strip()
        if if_range.startswith(('"', "W/")):
            return if_range == f'"{file.etag}"'
        return if_range == _http_date(file.last_modified)
