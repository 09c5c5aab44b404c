"""What a result family is (:class:`Family`), and the parsing every family shares.

A family is everything family-specific about asking Akool for a job: its poll endpoint
(path, method, the parameter carrying the id or ids, one id per request or several),
how one job's object in the answer becomes a :class:`~archiver.models.JobInfo`, and the
result files' roles with the content kinds each may have. Everything else - auth, the
envelope, retries, batching, the rate limit - is the client's (:mod:`archiver.akool.client`).

Parsing is strict about what it keeps and lenient about what it ignores: unknown fields
stay in ``raw`` (and so in ``info.json``), a field the archiver needs that has the wrong
type is a one-line :class:`~archiver.errors.APIError` naming it, never a traceback, and
nothing unbounded (a 10 MB status, a million URLs) gets past it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ...errors import APIError
from ...models import JobInfo, RemoteFile, redact_urls_in

#: Akool's business code for success: parse errors are errors in a successful answer.
OK = 1000
#: Akool's code for "the content you get does not exist": what an id missing from a
#: batched answer is, as an unknown id is to a single-id endpoint.
NOT_FOUND = 1008

#: The content kinds (:mod:`archiver.validate`) an image result may be.
IMAGE_KINDS: tuple[str, ...] = ("png", "jpeg", "webp")
#: The content kinds an audio result may be.
AUDIO_KINDS: tuple[str, ...] = ("mp3", "wav", "m4a")

#: Parses one job's object (``data``, or one ``data.result[]`` entry) for an id.
Parser = Callable[[str, Mapping[str, Any]], JobInfo]


@dataclass(frozen=True, slots=True)
class Role:
    """One result file of a family: its role (the archived name's stem) and the content
    kinds it may have. ``numbered``: several files of this role, ``<role>-1``,
    ``<role>-2``... (an image's upscales)."""

    name: str
    kinds: tuple[str, ...]
    numbered: bool = False


@dataclass(frozen=True, slots=True)
class Family:
    """One Akool result family, as the archiver asks for it."""

    #: ``"video"``, ``"image"``, ``"audio"``, ``"faceswap"``, ``"image2video"``.
    name: str
    #: Its manifest section (``"videos"``).
    section: str
    #: Path of the poll endpoint, below ``api.base_url``.
    path: str
    #: The query parameter (``GET``) or JSON body key (``POST``) carrying the id(s).
    id_param: str
    #: One job's object -> JobInfo (see :data:`Parser`).
    parse: Parser
    #: The roles of its result files, in archive order.
    roles: tuple[Role, ...]
    #: ``"GET"``: ids in the query; ``"POST"``: ids in a JSON body, as one string.
    method: Literal["GET", "POST"] = "GET"
    #: Several comma-separated ids per request, answered as ``data.result[]``; ids the
    #: answer leaves out are not found.
    batched: bool = False


# ------------------------------------------------------------- shared parsing

#: Upper bound on the URLs of one list field (``upscaled_urls``): Akool's buttons are U1-U4.
MAX_LIST_URLS = 32
#: Longest URL kept; anything longer is no CDN URL.
MAX_URL_LENGTH = 8192


def status_of(data: Mapping[str, Any], fields: tuple[str, ...]) -> int:
    """The job's status from the first of *fields* present: 1-4, or another number
    (polled again until the deadline); an APIError if it is not a number."""
    name = next((f for f in fields if f in data), fields[0])
    status = data.get(name)
    if isinstance(status, str) and status.isdigit() and len(status) <= 3:
        status = int(status)
    if not isinstance(status, int) or isinstance(status, bool):
        raise APIError(OK, f"data.{name} is not a number: {str(status)[:40]!r}")
    return status


def url_of(value: object, where: str) -> str | None:
    """*value* as a result URL, None when absent or empty; an APIError naming *where*
    when it is anything but an http(s) URL."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_URL_LENGTH \
            or not value.lower().startswith(("http://", "https://")):
        raise APIError(OK, f"data.{where} is not an http(s) URL")
    return value


def urls_of(value: object, where: str) -> list[str]:
    """A list field of URLs (``upscaled_urls``): empty when absent; bounded."""
    if value is None or value == "":
        return []
    if not isinstance(value, list):
        raise APIError(OK, f"data.{where} is not a list")
    if len(value) > MAX_LIST_URLS:
        raise APIError(OK, f"data.{where} has {len(value)} entries "
                           f"(at most {MAX_LIST_URLS} expected)")
    urls = [url_of(v, f"{where}[{n}]") for n, v in enumerate(value)]
    return [u for u in urls if u is not None]


def int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def iso_ms(value: object) -> int | None:
    """An ISO-8601 time (``2023-11-07T05:31:56Z``, with or without milliseconds or a
    zone: UTC then) in ms since the epoch; None when it is not one."""
    if not isinstance(value, str) or not 10 <= len(value) <= 40:
        return None
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    try:
        return int(moment.timestamp() * 1000)
    except (OverflowError, ValueError, OSError):
        return None


def reason_of(data: Mapping[str, Any], *fields: str) -> str | None:
    """The first non-empty failure reason among *fields*, one line, bounded, its URLs
    redacted (a reason may quote a signed URL)."""
    for name in fields:
        value = data.get(name)
        if value not in (None, ""):
            return redact_urls_in(" ".join(str(value).split())[:500])
    return None


def job_info(family: str, item_id: str, data: Mapping[str, Any], *, status: int,
             files: list[RemoteFile], create_time_ms: int | None,
             reason_fields: tuple[str, ...] = ("error_reason",)) -> JobInfo:
    """The JobInfo of one parsed job."""
    return JobInfo(
        id=item_id,
        status=status,
        files=tuple(files),
        create_time_ms=create_time_ms,
        error_code=int_or_none(data.get("error_code")),
        error_reason=reason_of(data, *reason_fields),
        raw=dict(data),
        family=family,
    )
