"""Typed values passed between the API client, the scheduler, storage and the CLI."""

from __future__ import annotations

import datetime as dt
import enum
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .errors import ApiUnavailable
from .exitstatus import ExitStatus

#: Akool keeps generated results this long after ``create_time``.
RETENTION_SECONDS = 7 * 24 * 3600

#: The ``create_time`` values (ms since the epoch) taken to mean a moment: 2000-01-01 up to
#: 3000-01-01. Anything else (negative, seconds instead of ms, 1e17, 10**400) is garbage
#: that would send a wrong expiry into priorities and warnings, or overflow ``datetime``.
PLAUSIBLE_CREATE_TIME_MS = (946_684_800_000, 32_503_680_000_000)


class JobStatus(enum.IntEnum):
    QUEUED = 1
    PROCESSING = 2
    SUCCESS = 3
    FAILED = 4


class Outcome(enum.StrEnum):
    """What became of one id in one run."""

    ARCHIVED = "archived"
    ALREADY_ARCHIVED = "already_archived"
    PENDING = "pending"
    FAILED = "failed"
    #: The results were past Akool's 7 days and their URLs no longer work.
    EXPIRED = "expired"
    #: Dry run only: done at Akool, would be downloaded.
    READY = "ready"


#: data field / audio_splits field -> archived file name, in archive order.
RESULT_FILES: tuple[tuple[str, str], ...] = (
    ("video", "video.mp4"),
    ("original_srt_url", "original.srt"),
    ("translated_srt_url", "translated.srt"),
    ("no_caption_video_url", "no_caption.mp4"),
)


@dataclass(frozen=True, slots=True)
class RemoteFile:
    """A result file Akool offers: where it is and what we will call it.

    Without *kinds*, *name* is the archived name (``video.mp4``: the video family's
    names are fixed). With *kinds* (content kinds of :mod:`archiver.validate`, e.g.
    ``("png", "jpeg", "webp")``), *name* is the file's role (``image``, ``upscaled-1``)
    and the archived name is the role plus the extension its bytes prove
    (``image.png``), decided once the first bytes are checked, before the commit.
    """

    name: str
    url: str
    kinds: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class JobInfo:
    """One answer of the result endpoint, typed; ``raw`` is the ``data`` object as sent."""

    id: str
    status: int
    files: tuple[RemoteFile, ...]
    create_time_ms: int | None
    error_code: int | None
    error_reason: str | None
    raw: dict[str, Any]
    #: The result family that answered (:data:`archiver.akool.families.FAMILIES`).
    family: str = "video"

    @property
    def expires_at(self) -> float | None:
        """Epoch seconds after which Akool deletes the results (create_time + 7 days).

        None (unknown) when ``create_time`` is missing or not a plausible time.
        """
        created = self.create_time_ms
        if type(created) is not int:  # bool is an int; floats and strings are not sent
            return None
        low, high = PLAUSIBLE_CREATE_TIME_MS
        if not low <= created < high:
            return None
        return created / 1000 + RETENTION_SECONDS


@dataclass(frozen=True, slots=True)
class FileRecord:
    """A file that was stored: what ``archive.json`` says about it."""

    name: str
    size: int | None
    sha256: str
    source_url: str
    #: Backend facts, e.g. the checksum S3 reported; merged into the record.
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        # A dry run knows sizes (when the server says) but no checksum: null, not "".
        return {"name": self.name, "size": self.size, "sha256": self.sha256 or None,
                "source_url": self.source_url, **self.extra}


@dataclass(slots=True)
class ItemResult:
    """What happened to one id."""

    id: str
    label: str | None
    outcome: Outcome
    status: int | None = None
    files: list[FileRecord] = field(default_factory=list)
    error: str | None = None
    error_kind: str | None = None
    error_code: int | None = None
    polls: int = 0
    duration: float = 0.0
    #: Epoch seconds when Akool deletes the results (create_time + 7 days), if known.
    expires_at: float | None = None
    #: The item's result family (reports and metrics labels).
    family: str = "video"

    @property
    def bytes(self) -> int:
        return sum(f.size or 0 for f in self.files)


@dataclass(slots=True)
class RunResult:
    """The result of one run: per-id results in manifest order and totals."""

    items: list[ItemResult]
    duration: float
    started_at: float = 0.0
    storage: str = ""
    manifest: str = ""
    #: HTTP requests made (retries included) to the API and to file hosts.
    api_requests: int = 0
    file_requests: int = 0
    #: The run was stopped early (SIGINT/SIGTERM); unfinished ids are pending.
    interrupted: bool = False
    #: ``K/N`` when the run archived one shard of the manifest (``--shard``), else None.
    shard: str | None = None
    #: This run's cap on API requests per second: ``api.requests_per_second``, or its
    #: 1/N share for ``--shard K/N``; None when there is no cap.
    api_requests_per_second: float | None = None
    #: The run lost its S3 lease to another run and stopped early (exit status 75).
    lease_lost: bool = False

    def count(self, outcome: Outcome) -> int:
        return sum(1 for i in self.items if i.outcome is outcome)

    @property
    def bytes_archived(self) -> int:
        return sum(i.bytes for i in self.items if i.outcome is Outcome.ARCHIVED)

    @property
    def api_unavailable(self) -> bool:
        """The run stopped polling because the API did not answer (its pending ids
        say so in their error)."""
        return any(i.error_kind == ApiUnavailable.kind for i in self.items)

    @property
    def exit_status(self) -> ExitStatus:
        """FAILED if any id failed or expired (a person should look; retrying alone
        will not help them); else UNAVAILABLE if the API did not answer; else TEMPFAIL
        if the run lost its lease and stopped (another run has the shard); else PENDING
        if some are; else OK."""
        if any(i.outcome in (Outcome.FAILED, Outcome.EXPIRED) for i in self.items):
            return ExitStatus.FAILED
        if self.api_unavailable:
            return ExitStatus.UNAVAILABLE
        if self.lease_lost:
            return ExitStatus.TEMPFAIL
        if any(i.outcome is Outcome.PENDING for i in self.items):
            return ExitStatus.PENDING
        return ExitStatus.OK


def iso_utc(epoch: float | None) -> str | None:
    """``2026-11-26T17:50:59Z``, or None when *epoch* is unknown or beyond ``datetime``."""
    if epoch is None:
        return None
    try:
        moment = dt.datetime.fromtimestamp(epoch, dt.UTC)
    except (OverflowError, ValueError, OSError):
        return None
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def redact_url(url: str) -> str:
    """The URL without its query string and fragment: result URLs may be signed."""
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError on a port that is not 0-65535
    except ValueError:
        return "<unparseable URL>"
    # hostname drops any user:password@, and the brackets of an IPv6 literal: put those back.
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if port:
        netloc = f"{netloc}:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


#: A URL inside free text (an error message Akool wrote).
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]+")


def redact_urls_in(text: str) -> str:
    """*text* with every URL in it as :func:`redact_url` shows one: Akool's error texts
    may quote a signed result URL, which must reach no log, report or page."""
    return _URL_IN_TEXT.sub(lambda found: redact_url(found.group(0)), text)
