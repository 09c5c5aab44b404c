"""The image-to-video family (v4): image2video, single and batch.

``POST /api/open/v4/image2Video/resultsByIds`` with ``{"_ids": "a,b,c"}`` - one string,
not an array - answers several jobs at once: ``data.result[]``, one entry per known id
in request order, unknown ids left out (akool-families.md, section 6). An entry has
``status``, the result ``video_url`` and, when Akool generated the sound, ``audio_url``;
``image_url`` is the *input* image, served at ``/files/<id>/input.png`` from the first
answer on: not a result, never to be archived. ``create_time`` and ``update_time`` are
in ms.

Result kinds: ``"video"`` (required, an MP4 of ``video_size`` bytes), ``"audio"``
(``audio_format``, MP3 by default, ``audio_size`` bytes; ``audio_type`` 1, "AI
generate", with it and 3, "none", without) and ``"cover"`` (a JPEG of ``image_size``
bytes, as ``cover_url``). Input kind: ``"input_image"`` (a PNG of ``image_size`` bytes).

Where the docs are silent, the stand-in chooses:

- ``cover_url`` is there only for a job with a cover (it is in Akool's demo types, not
  in the docs);
- a failed job (status 4) carries ``error_code`` and ``error_reason``, as the other v4
  result the docs describe (head swap) does;
- its webhook callbacks carry **no** ``type``: the docs list none for image-to-video.
  A test wanting an unknown one says so (``callback_type="image2video"``).
"""

from __future__ import annotations

import hashlib
from typing import Any

from archiver.testing.media import MEDIA_FORMATS
from archiver.testing.standin.content import File, media_file, mp4_file
from archiver.testing.standin.family import Family
from archiver.testing.standin.jobs import JobScenario, JobView, generated_job_id

#: Path of the result lookup endpoint (several ids per request, in a POST body).
RESULTS_PATH = "/api/open/v4/image2Video/resultsByIds"
#: Result file kind -> default name under ``/files/<id>/``.
FILE_NAMES: dict[str, str] = {"video": "video.mp4", "audio": "audio.mp3",
                              "cover": "cover.jpg"}
#: Input file kind -> name: the image the video was made from.
INPUT_NAMES: dict[str, str] = {"input_image": "input.png"}


def names(scen: JobScenario) -> dict[str, str]:
    """The job's file names: the audio's extension follows its format."""
    audio = "audio." + MEDIA_FORMATS[scen.audio_format].extension
    return {**FILE_NAMES, "audio": audio, **INPUT_NAMES}


def render(view: JobView) -> dict[str, Any]:
    """One ``data.result[]`` entry, with the documented fields."""
    scen = view.scenario
    id_hash = hashlib.sha256(view.job_id.encode()).digest()
    entry: dict[str, Any] = {
        "_id": view.job_id,
        "create_time": view.create_time,
        "uid": 100000 + int.from_bytes(id_hash[:2], "big"),
        "team_id": id_hash[4:16].hex(),
        "update_time": view.update_time,
        "video_duration": 5,
        "webhookUrl": "",
        "file_name": f"Image2Video_{view.create_time}.mp4",
        "effect_name": "",
        "effect_code": "",
        "image_url": view.url("input_image"),
        "prompt": "The camera slowly pushes in as the subject smiles.",
        "resolution": "720p",
        "audio_type": 1 if "audio" in scen.files else 3,
        "audio_url": view.url("audio"),
        "deduction_credit": 20,
        "video_url": view.url("video"),
        "status": view.status,
        "only_add_audio": False,
    }
    if "cover" in scen.files:
        entry["cover_url"] = view.url("cover")
    if view.status == 4:
        entry["error_code"] = scen.error_code
        entry["error_reason"] = scen.error_reason
    entry.update(scen.extra_fields)
    return entry


def make_files(job_id: str, scen: JobScenario, create_time: int) -> dict[str, File]:
    """The job's MP4, audio and cover, and its input image."""
    job_names = names(scen)

    def seed(kind: str) -> bytes:
        return f"{job_id}/{job_names[kind]}".encode()

    files: dict[str, File] = {
        "input_image": media_file("png", scen.image_size, seed("input_image"), create_time)}
    for kind in scen.files:
        if kind == "video":
            files[kind] = mp4_file(scen.video_size, seed(kind), create_time)
        elif kind == "audio":
            files[kind] = media_file(scen.audio_format, scen.audio_size, seed(kind),
                                     create_time)
        else:
            files[kind] = media_file("jpeg", scen.image_size, seed(kind), create_time)
    return files


def check(scen: JobScenario) -> None:
    """A video result, and sizes the formats allow."""
    if "video" not in scen.files:
        raise ValueError("an image-to-video job has the kind 'video' among its files")
    made = [("image_size", "png", scen.image_size)]  # the input image
    if "cover" in scen.files:
        made.append(("image_size", "jpeg", scen.image_size))
    if "audio" in scen.files:
        made.append(("audio_size", scen.audio_format, scen.audio_size))
    for name, fmt, size in made:
        problem = MEDIA_FORMATS[fmt].check_size(size)
        if problem:
            raise ValueError(f"{name}: {problem}")


IMAGE2VIDEO = Family(
    name="image2video",
    path=RESULTS_PATH,
    id_param="_ids",
    files=FILE_NAMES,
    render=render,
    make_files=make_files,
    method="POST",
    batched=True,
    inputs=INPUT_NAMES,
    names=names,
    check=check,
    callback_files=("video",),
)


def sample_jobs() -> dict[str, JobScenario]:
    """Image-to-video jobs for a demo: one with generated sound and a cover, one silent,
    and one that fails."""
    def job_id(i: int) -> str:
        return generated_job_id(i, "demo-image2video")

    return {
        job_id(0): JobScenario(family="image2video", polls_until_done=2,
                               files=("video", "audio", "cover"), video_size=96 * 1024),
        job_id(1): JobScenario(family="image2video", polls_until_done=3,
                               video_size=72 * 1024),
        job_id(2): JobScenario(family="image2video", polls_until_done=2, outcome="failed",
                               error_code=1015,
                               error_reason="Create video error, please try again later"),
    }
