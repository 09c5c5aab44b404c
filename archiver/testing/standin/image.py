"""The image family: image generation (and its 4K upscales), background change.

``GET /api/open/v3/content/image/infobymodelid?image_model_id=<id>`` answers one job's
``data`` (akool-families.md, section 3): ``image_status``, the result ``image`` and
``upscaled_urls[]``, plus informational fields (``create_time`` in ms, ``uid``,
``type``, ``buttons``, ``used_buttons``, ``deduction_credit``, ``faceswap_quality``).

Result kinds: ``"image"`` (required) and ``"upscaled_1"`` .. ``"upscaled_4"`` (0 to 4 of
them: the docs' buttons are U1-U4), all in ``JobScenario.image_format`` (PNG by default,
as in the docs' example), ``image_size`` bytes each.

Where the docs are silent, the stand-in chooses:

- the upscaled URLs (and their ``U<n>`` in ``used_buttons``) appear with status 3, like
  ``image``; Akool makes each upscale a job of its own, which the stand-in plays as a
  separate job when a test wants one;
- a failed job (status 4) carries ``error_code`` and ``error_reason``, as the video
  family's do (both are "content" services of the v3 API); the docs show no failed
  example;
- ``type`` stays 3 (the docs' example) for background change jobs too; their webhook
  ``type`` is ``"background change"`` (``callback_type="background change"``).
"""

from __future__ import annotations

import hashlib
from typing import Any

from archiver.testing.media import MEDIA_FORMATS
from archiver.testing.standin.content import File, media_file
from archiver.testing.standin.family import Family
from archiver.testing.standin.jobs import JobScenario, JobView, generated_job_id

#: Path of the result lookup endpoint.
INFO_PATH = "/api/open/v3/content/image/infobymodelid"
#: The upscaled kinds, in button order (U1-U4).
UPSCALED_KINDS: tuple[str, ...] = tuple(f"upscaled_{n}" for n in range(1, 5))
#: File kind -> default name under ``/files/<id>/`` (the extension follows the format).
FILE_NAMES: dict[str, str] = {"image": "image.png"} | {
    kind: f"upscaled-{kind[-1]}.png" for kind in UPSCALED_KINDS}
_BUTTONS = ["U1", "U2", "U3", "U4", "V1", "V2", "V3", "V4"]


def names(scen: JobScenario) -> dict[str, str]:
    """The job's file names, with its format's extension."""
    ext = MEDIA_FORMATS[scen.image_format].extension
    return {kind: name.rsplit(".", 1)[0] + "." + ext for kind, name in FILE_NAMES.items()}


def render(view: JobView) -> dict[str, Any]:
    """One job's ``data``, shaped like the docs' "Completed" example."""
    scen = view.scenario
    id_hash = hashlib.sha256(view.job_id.encode()).digest()
    upscaled = [kind for kind in UPSCALED_KINDS if view.url(kind)]
    data: dict[str, Any] = {
        "faceswap_quality": 2,
        "deduction_credit": 2,
        "buttons": list(_BUTTONS),
        "used_buttons": [f"U{kind[-1]}" for kind in upscaled],
        "upscaled_urls": [view.url(kind) for kind in upscaled],
        "_id": view.job_id,
        "create_time": view.create_time,
        "uid": 100000 + int.from_bytes(id_hash[:2], "big"),
        "type": 3,
        "image_status": view.status,
        "image": view.url("image"),
    }
    if view.status == 4:
        data["error_code"] = scen.error_code
        data["error_reason"] = scen.error_reason
    data.update(scen.extra_fields)
    return data


def make_files(job_id: str, scen: JobScenario, create_time: int) -> dict[str, File]:
    """The job's images, in its format."""
    job_names = names(scen)
    return {kind: media_file(scen.image_format, scen.image_size,
                             f"{job_id}/{job_names[kind]}".encode(), create_time)
            for kind in scen.files}


def check(scen: JobScenario) -> None:
    """An image job has its image (and maybe upscales), of a size its format allows."""
    if "image" not in scen.files:
        raise ValueError("an image job has the kind 'image' among its files")
    problem = MEDIA_FORMATS[scen.image_format].check_size(scen.image_size)
    if problem:
        raise ValueError(f"image_size: {problem}")


IMAGE = Family(
    name="image",
    path=INFO_PATH,
    id_param="image_model_id",
    files=FILE_NAMES,
    render=render,
    make_files=make_files,
    default_files=("image",),
    names=names,
    check=check,
    callback_files=("image",),
    callback_type=lambda scen: "image",
)


def sample_jobs() -> dict[str, JobScenario]:
    """Image jobs for a demo: a PNG with two 4K upscales, a JPEG served as ``.png`` (the
    URL's extension is wrong), and one that fails."""
    def job_id(i: int) -> str:
        return generated_job_id(i, "demo-image")

    return {
        job_id(0): JobScenario(family="image", polls_until_done=2,
                               files=("image", "upscaled_1", "upscaled_2"),
                               image_size=24 * 1024),
        job_id(1): JobScenario(family="image", polls_until_done=3, image_format="jpeg",
                               file_names={"image": "image.png"}, image_size=12 * 1024),
        job_id(2): JobScenario(family="image", polls_until_done=2, outcome="failed",
                               error_code=1108,
                               error_reason="Image generate error, please try again later"),
    }
