"""The face swap family: image and video face swap (v3, v4 Pro/Plus), reage.

``GET /api/open/v3/faceswap/result/listbyids?_ids=a,b,c`` answers several jobs at once:
``data.result[]``, one entry per known id in request order, unknown ids left out
(akool-families.md, section 5). An entry has ``_id``, ``faceswap_status`` and the
result ``url`` - an image *or* a video, which only its bytes tell - and ``createdAt``,
an ISO-8601 string: this family has no ``create_time``.

Result kinds: exactly one of ``"image"`` (in ``JobScenario.image_format``, PNG by
default, ``image_size`` bytes) and ``"video"`` (an MP4 of ``video_size`` bytes): the
scenario's ``files`` chooses, ``("video",)`` by default. Serve it under a name without
an extension (``file_names={"video": "result"}``) to make sure nothing trusts the URL.

The docs' example holds Mintlify placeholders (``123``), so the stand-in chooses:

- ``createdAt`` with milliseconds (``2024-03-18T10:33:01.609Z``), as a MongoDB date
  serialises; the docs' example has none: parse both;
- ``image`` is 1 for an image result and 0 for a video, ``faceswap_type`` 1 and 2 alike
  (both undocumented guesses: judge by the bytes); ``deduction_status`` 1 once done;
- ``update_time`` in ms (unit undocumented), ``video_duration`` and
  ``deduction_duration`` in seconds (0 for an image);
- a failed job (status 4) carries ``alg_msg`` with the reason (seen in third-party
  client code only) and no ``error_code``; its failure callback carries the same.

Akool's v3 create call already answers the ``url`` of a result not made yet; a scenario
with ``early_urls=True`` plays that: the URL is in every answer, the file 404 until done.
"""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, datetime
from typing import Any

from archiver.testing.media import MEDIA_FORMATS
from archiver.testing.standin.content import File, media_file, mp4_file
from archiver.testing.standin.family import Family
from archiver.testing.standin.jobs import JobScenario, JobView, generated_job_id

#: Path of the result lookup endpoint (several ids per request).
LIST_PATH = "/api/open/v3/faceswap/result/listbyids"
#: File kind -> default name under ``/files/<id>/``; a job has exactly one of them.
FILE_NAMES: dict[str, str] = {"image": "image.png", "video": "video.mp4"}


def created_at(create_time: int) -> str:
    """*create_time* (ms) as ``createdAt``: ISO-8601, UTC, with milliseconds."""
    moment = datetime.fromtimestamp(create_time // 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{create_time % 1000:03d}Z"


def names(scen: JobScenario) -> dict[str, str]:
    """The job's file names: the image's extension follows its format."""
    return {"image": "image." + MEDIA_FORMATS[scen.image_format].extension,
            "video": FILE_NAMES["video"]}


def _kind(scen: JobScenario) -> str:
    return "image" if "image" in scen.files else "video"


def render(view: JobView) -> dict[str, Any]:
    """One ``data.result[]`` entry."""
    scen = view.scenario
    id_hash = hashlib.sha256(view.job_id.encode()).digest()
    is_image = _kind(scen) == "image"
    # The synthetic MP4's own duration: a 1 Mbit/s stream (media.mp4_header).
    seconds = 0.0 if is_image else round(scen.video_size * 8 / 1_000_000, 2)
    entry: dict[str, Any] = {
        "faceswap_type": 1 if is_image else 2,
        "faceswap_quality": 2,
        "faceswap_status": view.status,
        "deduction_status": 1 if view.status == 3 else 0,
        "image": 1 if is_image else 0,
        "video_duration": seconds,
        "deduction_duration": math.ceil(seconds),
        "update_time": view.update_time,
        "_id": view.job_id,
        "userId": id_hash[4:16].hex(),
        "uid": 100000 + int.from_bytes(id_hash[:2], "big"),
        "url": view.url(_kind(scen)),
        "createdAt": created_at(view.create_time),
    }
    if view.status == 4:
        entry.update(failure_fields(scen))
    entry.update(scen.extra_fields)
    return entry


def failure_fields(scen: JobScenario) -> dict[str, Any]:
    """What a failed face swap says: ``alg_msg``."""
    return {"alg_msg": scen.error_reason}


def make_files(job_id: str, scen: JobScenario, create_time: int) -> dict[str, File]:
    """The job's image (in its format) or MP4."""
    job_names = names(scen)
    files: dict[str, File] = {}
    for kind in scen.files:
        seed = f"{job_id}/{job_names[kind]}".encode()
        files[kind] = (media_file(scen.image_format, scen.image_size, seed, create_time)
                       if kind == "image" else mp4_file(scen.video_size, seed, create_time))
    return files


def check(scen: JobScenario) -> None:
    """One result, image or video, of a size its format allows."""
    if len(scen.files) != 1:
        raise ValueError("a face swap job has one result: files=('image',) or ('video',)")
    problem = MEDIA_FORMATS[scen.image_format].check_size(scen.image_size)
    if "image" in scen.files and problem:
        raise ValueError(f"image_size: {problem}")


FACESWAP = Family(
    name="faceswap",
    path=LIST_PATH,
    id_param="_ids",
    files=FILE_NAMES,
    render=render,
    make_files=make_files,
    batched=True,
    names=names,
    check=check,
    callback_files=("image", "video"),
    callback_type=lambda scen: "faceswap",
    failure_fields=failure_fields,
)


def sample_jobs() -> dict[str, JobScenario]:
    """Face swap jobs for a demo: a WebP image, a video served as ``result`` (no
    extension) whose URL is known before it is done, and one that fails."""
    def job_id(i: int) -> str:
        return generated_job_id(i, "demo-faceswap")

    return {
        job_id(0): JobScenario(family="faceswap", polls_until_done=2, files=("image",),
                               image_format="webp", image_size=20 * 1024),
        job_id(1): JobScenario(family="faceswap", polls_until_done=3, files=("video",),
                               video_size=80 * 1024, file_names={"video": "result"},
                               early_urls=True),
        job_id(2): JobScenario(family="faceswap", polls_until_done=2, outcome="failed",
                               error_reason="no face detected in the target"),
    }
