"""The video family: talking photo, talking avatar, video translation, lip sync...

``GET /api/open/v3/content/video/infobymodelid?video_model_id=<id>`` answers one job's
``data``: ``video_status``, the result ``video`` and, for translation jobs,
``audio_splits`` with the subtitles and the video without captions (akool-api.md).
"""

from __future__ import annotations

import hashlib
from typing import Any

from archiver.testing.media import srt_text
from archiver.testing.standin.content import File, bytes_file, mp4_file
from archiver.testing.standin.family import Family
from archiver.testing.standin.jobs import JobScenario, JobView, generated_job_id

#: Path of the result lookup endpoint.
INFO_PATH = "/api/open/v3/content/video/infobymodelid"

#: Scenario file kind -> name under ``/files/<id>/``.
FILE_NAMES: dict[str, str] = {
    "video": "video.mp4",
    "original_srt": "original.srt",
    "translated_srt": "translated.srt",
    "no_caption": "no_caption.mp4",
}
#: All file kinds a job may have.
FILE_KINDS: tuple[str, ...] = tuple(FILE_NAMES)
# Translation-job files and their keys in ``data.audio_splits``.
_AUDIO_SPLIT_FIELDS = {
    "original_srt": "original_srt_url",
    "translated_srt": "translated_srt_url",
    "no_caption": "no_caption_video_url",
}


def render(view: JobView) -> dict[str, Any]:
    """One job's ``data``, shaped like Akool's (ids and numbers derived from the id)."""
    scen = view.scenario
    id_hash = hashlib.sha256(view.job_id.encode()).digest()
    is_translation = _is_translation(scen)
    data: dict[str, Any] = {
        "faceswap_quality": 2,
        "storage_loc": 1,
        "_id": view.job_id,
        "create_time": view.create_time,
        "uid": 100000 + int.from_bytes(id_hash[:2], "big"),
        "type": 8 if is_translation else 2,
        "from": 2,
        "video_lock_duration": round(5 + id_hash[2] / 16, 2),
        "deduction_lock_duration": 20,
        "video_status": view.status,
        "external_video": "",
        "video_id": id_hash[3:15].hex(),
        "video": view.url("video"),
        "progress": view.progress,
    }
    if is_translation:
        data["audio_splits"] = {
            field_name: view.url(kind)
            for kind, field_name in _AUDIO_SPLIT_FIELDS.items()
            if kind in scen.files
        }
    if view.status == 4:
        data["error_code"] = scen.error_code
        data["error_reason"] = scen.error_reason
    data.update(scen.extra_fields)
    return data


def make_files(job_id: str, scen: JobScenario, create_time: int) -> dict[str, File]:
    """The job's MP4s (generated, or ``video_bytes``) and SRTs, by kind."""
    files: dict[str, File] = {}
    for kind in scen.files:
        name = FILE_NAMES[kind]
        seed = f"{job_id}/{name}".encode()
        if kind == "video" and scen.video_bytes is not None:
            files[kind] = bytes_file(scen.video_bytes, "video/mp4", create_time)
        elif kind in ("video", "no_caption"):
            size = scen.video_size if kind == "video" else scen.no_caption_size
            files[kind] = mp4_file(size, seed, create_time)
        else:
            lang = scen.original_lang if kind == "original_srt" else scen.translated_lang
            files[kind] = bytes_file(srt_text(lang).encode("utf-8"), "application/x-subrip",
                                     create_time, charset="utf-8")
    return files


def callback_type(scen: JobScenario) -> str:
    """``"video translate"`` for a translation job (it has subtitles or a video without
    captions), else ``"talking photo"``; avatar and lip sync jobs say so in their
    scenario (``callback_type="avatar"`` / ``"lipsync"``)."""
    return "video translate" if _is_translation(scen) else "talking photo"


def _is_translation(scen: JobScenario) -> bool:
    return any(kind in scen.files for kind in _AUDIO_SPLIT_FIELDS)


VIDEO = Family(
    name="video",
    path=INFO_PATH,
    id_param="video_model_id",
    files=FILE_NAMES,
    render=render,
    make_files=make_files,
    callback_files=("video",),
    callback_type=callback_type,
)


def sample_jobs() -> dict[str, JobScenario]:
    """A small demo set of video jobs for ``archiver demo``.

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
