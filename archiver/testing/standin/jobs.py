"""Jobs on the stand-in: what a test asks for (:class:`JobScenario`), what a job has
answered so far (:class:`JobState`), and what one answer shows of it (:class:`JobView`).

Every family shares the status progression: 1 queued, 2 processing, then 3 (success)
or 4 (failed), counted in normal answers (API faults do not advance it).
"""

from __future__ import annotations

import hashlib
import re
from collections import deque
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from archiver.testing.media import AUDIO_FORMATS, IMAGE_FORMATS
from archiver.testing.standin.content import File, file_path
from archiver.testing.standin.faults import (
    ApiFault,
    FileFault,
    check_api_fault,
    check_file_fault,
)
from archiver.testing.standin.files import FileAnswer

_FINAL_STATUS = {"success": 3, "failed": 4, "never": 2}
# A file name served under /files/<id>/: one path segment that needs no escaping.
_NAME_RE = re.compile(r"[A-Za-z0-9._-]+")


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
    #: Result file kinds the job has, among its family's (video: ``"video"``,
    #: ``"original_srt"``, ``"translated_srt"``, ``"no_caption"``; see each family's
    #: module). The default, ``("video",)``, stands for the family's usual result in a
    #: family without a ``"video"`` kind (``Family.default_files``).
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
    #: The result family the job belongs to (``"video"``, ``"image"``, ``"audio"``,
    #: ``"faceswap"``, ``"image2video"``): which lookup endpoint knows it, and which
    #: file kinds it may have.
    family: str = "video"
    #: Size of each generated image (an image job's image and upscaled images, a face
    #: swap's image, an image-to-video job's cover and input image).
    image_size: int = 16 * 1024
    #: Size of each generated audio file (an audio job's, an image-to-video job's).
    audio_size: int = 32 * 1024
    #: Format of the generated images: ``"png"``, ``"jpeg"`` or ``"webp"`` (a WebP's
    #: size must be even).
    image_format: str = "png"
    #: Format of the generated audio: ``"mp3"``, ``"wav"`` (even size) or ``"m4a"``.
    audio_format: str = "mp3"
    #: File kind -> the name it is served under instead of its default, e.g.
    #: ``{"video": "result"}`` (no extension) or ``{"image": "image.jpg"}`` for a PNG:
    #: URLs do not tell what a file is.
    file_names: dict[str, str] = field(default_factory=dict)
    #: File kind -> the Content-Type served instead of the format's.
    content_types: dict[str, str] = field(default_factory=dict)
    #: File kind -> exact bytes served instead of generated content (any family).
    file_bytes: dict[str, bytes] = field(default_factory=dict)
    #: Whether result URLs are in the answers from the first one on, as face swap's
    #: create call already answers the URL: until the job has answered status 3 its
    #: result files answer 404, as a file not written yet.
    early_urls: bool = False
    #: The ``type`` of the job's webhook callbacks: ``None`` for its family's (video:
    #: ``"talking photo"``, or ``"video translate"`` for a translation; ``"image"``;
    #: ``"audio"``; ``"faceswap"``; none for image-to-video), ``""`` for no ``type`` at
    #: all, any other text as it is (an unknown type: ``"reage"``).
    callback_type: str | None = None


def validate(
    job_id: str, scenario: JobScenario, kinds: Collection[str], inputs: Collection[str] = ()
) -> None:
    """Raise ``ValueError`` for a scenario the stand-in cannot play (*kinds*: the
    result file kinds of the job's family, *inputs*: its input file kinds)."""
    if not job_id or "/" in job_id:
        raise ValueError(f"invalid job id {job_id!r}")
    if scenario.polls_until_done < 1:
        raise ValueError("polls_until_done must be >= 1")
    if scenario.outcome not in _FINAL_STATUS:
        raise ValueError(f"invalid outcome {scenario.outcome!r}")
    unknown = set(scenario.files) - set(kinds)
    if unknown:
        raise ValueError(f"unknown file kinds {sorted(unknown)}; expected {tuple(kinds)}")
    if min(scenario.video_size, scenario.no_caption_size, scenario.image_size,
           scenario.audio_size) < 0:
        raise ValueError("file sizes must be >= 0")
    if scenario.image_format not in IMAGE_FORMATS:
        raise ValueError(f"unknown image_format {scenario.image_format!r}; "
                         f"expected one of {IMAGE_FORMATS}")
    if scenario.audio_format not in AUDIO_FORMATS:
        raise ValueError(f"unknown audio_format {scenario.audio_format!r}; "
                         f"expected one of {AUDIO_FORMATS}")
    if set(scenario.validators) - {"etag", "last_modified"}:
        raise ValueError(f"unknown validators {scenario.validators}; expected 'etag', "
                         "'last_modified'")
    # Names may be given for any kind; what is served differently only for the job's files.
    for field_name, allowed in (("file_names", (*kinds, *inputs)),
                                ("content_types", (*scenario.files, *inputs)),
                                ("file_bytes", (*scenario.files, *inputs))):
        stray = set(getattr(scenario, field_name)) - set(allowed)
        if stray:
            raise ValueError(f"{field_name}: {sorted(stray)} not among the job's files "
                             f"{allowed}")
    names = list(scenario.file_names.values())
    for name in names:
        if not _NAME_RE.fullmatch(name):
            raise ValueError(f"file_names: {name!r} is not a file name for a URL path "
                             "(letters, digits, '.', '_', '-')")


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
    #: File kind -> absolute URL: each result file the job has once the status is 3
    #: (from the first answer with ``early_urls``), and its input files always.
    urls: Mapping[str, str]

    def url(self, kind: str) -> str:
        """URL of the job's *kind* file, or ``""`` (not a file of the job, or not done)."""
        return self.urls.get(kind, "")

    @property
    def update_time(self) -> int:
        """When the status last changed, in ms: ``create_time`` plus 30 s per normal
        answer up to the final one (families with an ``update_time`` show it)."""
        return self.create_time + 30_000 * min(self.answered, self.scenario.polls_until_done)


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
    #: File kind -> name, for every kind of the job's family (results and inputs).
    names: dict[str, str] = field(default_factory=dict)
    #: The input kinds: shown in every answer, served whatever the status.
    inputs: tuple[str, ...] = ()

    @classmethod
    def create(
        cls, scenario: JobScenario, create_time: int, names: Mapping[str, str],
        inputs: tuple[str, ...] = (),
    ) -> JobState:
        """A fresh state with *scenario*'s faults checked and queued (*names*: file kind
        -> name for the job; faults may name a file by either)."""
        state = cls(scenario=scenario, create_time=create_time, api_faults=deque(),
                    file_faults={}, redirects={}, names=dict(names), inputs=inputs)

        def queues(faults: Mapping[str, list[FileFault]]) -> dict[str, deque[FileFault]]:
            return {state.file_name(n): deque(check_file_fault(f) for f in fs)
                    for n, fs in faults.items()}

        state.api_faults.extend(check_api_fault(f) for f in scenario.api_faults)
        state.file_faults = queues(scenario.file_faults)
        state.redirects = {state.file_name(n): url for n, url in scenario.redirects.items()}
        state.range_faults = queues(scenario.range_faults)
        return state

    def file_name(self, name: str) -> str:
        """Accept a file kind (``video``) or this job's name of one; return the name."""
        if name in self.names:
            return self.names[name]
        if name in self.names.values():
            return name
        raise ValueError(f"unknown file {name!r}; expected one of {sorted(self.names)}")

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

    def status(self) -> int:
        """The status the job has shown last (1 before its first answer)."""
        return status_after(self.scenario, max(self.answered, 1))[0]

    def view(self, job_id: str, answered: int, base_url: str) -> JobView:
        """The job as its *answered*-th normal answer shows it (*base_url*: where the
        files are served). Needs no lock."""
        scen = self.scenario
        status, progress = status_after(scen, answered)
        shown = [*self.inputs]
        if status == 3 or scen.early_urls:
            shown += scen.files
        urls = {kind: base_url + file_path(job_id, self.names[kind], self.create_time,
                                           signed=scen.signed_urls)
                for kind in shown}
        return JobView(job_id, scen, self.create_time, answered, status, progress, urls)

    def take_file(self, name: str, *, ranged: bool, mirror: bool) -> FileAnswer | None:
        """What one request for file *name* gets (its next fault is used up), or
        ``None`` if the job has no such file (yet). The mirror path has no faults."""
        file = self.files.get(name)
        if file is None:
            return None
        scen = self.scenario
        if (scen.early_urls and self.status() != 3
                and name not in {self.names[kind] for kind in self.inputs}):
            return None  # not written yet: the URL was handed out before the result
        fault: FileFault | None = None
        redirect: str | None = None
        if not mirror:
            faults = self.file_faults.get(name)
            fault = faults.popleft() if faults else None
            range_faults = self.range_faults.get(name) if ranged else None
            if fault is None and range_faults:
                fault = range_faults.popleft()
            redirect = self.redirects.get(name)
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
