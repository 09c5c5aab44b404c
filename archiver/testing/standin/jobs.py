"""Jobs on the stand-in: what a test asks for (:class:`JobScenario`), what a job has
answered so far (:class:`JobState`), and what one answer shows of it (:class:`JobView`).

Every family shares the status progression: 1 queued, 2 processing, then 3 (success)
or 4 (failed), counted in normal answers (API faults do not advance it).
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from archiver.testing.standin.content import File, file_path
from archiver.testing.standin.faults import (
    ApiFault,
    FileFault,
    check_api_fault,
    check_file_fault,
)
from archiver.testing.standin.files import FileAnswer

_FINAL_STATUS = {"success": 3, "failed": 4, "never": 2}


@dataclass
class JobScenario:
    """How one job (one Akool ``_id``, such as a ``video_model_id``) behaves on the stand-in.

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
    #: The result family the job belongs to (``"video"``): which lookup endpoint
    #: knows it, and which file kinds it may have.
    family: str = "video"


def validate(job_id: str, scenario: JobScenario, kinds: Collection[str]) -> None:
    """Raise ``ValueError`` for a scenario the stand-in cannot play (*kinds*: the
    file kinds of the job's family)."""
    if not job_id or "/" in job_id:
        raise ValueError(f"invalid job id {job_id!r}")
    if scenario.polls_until_done < 1:
        raise ValueError("polls_until_done must be >= 1")
    if scenario.outcome not in _FINAL_STATUS:
        raise ValueError(f"invalid outcome {scenario.outcome!r}")
    unknown = set(scenario.files) - set(kinds)
    if unknown:
        raise ValueError(f"unknown file kinds {sorted(unknown)}; expected {tuple(kinds)}")
    if scenario.video_size < 0 or scenario.no_caption_size < 0:
        raise ValueError("file sizes must be >= 0")
    if set(scenario.validators) - {"etag", "last_modified"}:
        raise ValueError(f"unknown validators {scenario.validators}; expected 'etag', "
                         "'last_modified'")


def status_after(scenario: JobScenario, answered: int) -> tuple[int, int]:
    """``(status, progress)`` of the *answered*-th normal answer (1 = the first)."""
    k = scenario.polls_until_done
    final = _FINAL_STATUS[scenario.outcome]
    status = final if answered >= k else (1 if answered == 1 else 2)
    if status == 3:
        progress = 100
    elif status == 1:
        progress = 0
    elif scenario.outcome == "never":
        progress = min(95, 10 * (answered - 1))
    else:
        progress = min(95, 100 * (answered - 1) // k)
    return status, progress


@dataclass(frozen=True)
class JobView:
    """One job as one lookup answer shows it: what a family's ``render`` works from."""

    job_id: str
    scenario: JobScenario
    #: ``create_time`` in ms since the epoch.
    create_time: int
    #: Normal answers so far, this one included.
    answered: int
    #: 1 queued, 2 processing, 3 success, 4 failed.
    status: int
    #: 0-100, as the video family reports it.
    progress: int
    #: File kind -> absolute URL, for each file the job has, once the status is 3.
    urls: Mapping[str, str]

    def url(self, kind: str) -> str:
        """URL of the job's *kind* file, or ``""`` (not a file of the job, or not done)."""
        return self.urls.get(kind, "")


@dataclass
class JobState:
    """One job's live state; mutated only under the stand-in's lock."""

    scenario: JobScenario
    create_time: int
    api_faults: deque[ApiFault]
    file_faults: dict[str, deque[FileFault]]
    redirects: dict[str, str]
    range_faults: dict[str, deque[FileFault]] = field(default_factory=dict)
    #: Normal answers given so far.
    answered: int = 0
    #: File name -> file.
    files: dict[str, File] = field(default_factory=dict)

    @classmethod
    def create(
        cls, scenario: JobScenario, create_time: int, file_name: Callable[[str], str]
    ) -> JobState:
        """A fresh state with *scenario*'s faults checked and queued (*file_name* maps a
        file kind or name to the name, raising ``ValueError`` for neither)."""
        def queues(faults: Mapping[str, list[FileFault]]) -> dict[str, deque[FileFault]]:
            return {file_name(n): deque(check_file_fault(f) for f in fs)
                    for n, fs in faults.items()}

        return cls(
            scenario=scenario,
            create_time=create_time,
            api_faults=deque(check_api_fault(f) for f in scenario.api_faults),
            file_faults=queues(scenario.file_faults),
            redirects={file_name(n): url for n, url in scenario.redirects.items()},
            range_faults=queues(scenario.range_faults),
        )

    def next_fault(self) -> ApiFault | None:
        """The fault this lookup answers instead of the job (queued ones first, then the
        scenario's business code), or ``None`` for a normal answer."""
        if self.api_faults:
            return self.api_faults.popleft()
        if self.scenario.business_code is not None:
            return ("code", self.scenario.business_code)
        return None

    def advance(self) -> int:
        """Count one normal answer; return how many there have been."""
        self.answered += 1
        return self.answered

    def view(
        self, job_id: str, answered: int, base_url: str, names: Mapping[str, str]
    ) -> JobView:
        """The job as its *answered*-th normal answer shows it (*names*: kind -> file
        name, *base_url*: where the files are served). Needs no lock."""
        scen = self.scenario
        status, progress = status_after(scen, answered)
        urls = {} if status != 3 else {
            kind: base_url + file_path(job_id, names[kind], self.create_time,
                                       signed=scen.signed_urls)
            for kind in scen.files
        }
        return JobView(job_id, scen, self.create_time, answered, status, progress, urls)

    def take_file(self, name: str, *, ranged: bool, mirror: bool) -> FileAnswer | None:
        """What one request for file *name* gets (its next fault is used up), or
        ``None`` if the job has no such file. The mirror path has no faults."""
        file = self.files.get(name)
        if file is None:
            return None
        fault: FileFault | None = None
        redirect: str | None = None
        if not mirror:
            faults = self.file_faults.get(name)
            fault = faults.popleft() if faults else None
            range_faults = self.range_faults.get(name) if ranged else None
            if fault is None and range_faults:
                fault = range_faults.popleft()
            redirect = self.redirects.get(name)
        scen = self.scenario
        return FileAnswer(
            file,
            fault,
            redirect,
            expired=scen.expired and not mirror,
            ignore_range=scen.ignore_range,
            chunked=scen.chunked,
            validators=scen.validators,
        )


def generated_job_id(index: int, namespace: str = "standin") -> str:
    """Deterministic 24-char lowercase hex id (shaped like an Akool ObjectId)."""
    return hashlib.sha256(f"{namespace}:{index}".encode()).hexdigest()[:24]
