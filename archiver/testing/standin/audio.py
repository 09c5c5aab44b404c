"""The audio family: text to speech and voice clone (v3).

``GET /api/open/v3/audio/infobymodelid?audio_model_id=<id>`` answers one job's ``data``:
``status`` and the result ``url`` (akool-families.md, section 4). Akool's docs do not
document this endpoint: its path and those two fields come from public client code, so
the rest is the stand-in's choice:

- ``create_time`` (ms), ``uid``, ``from`` and ``input_text`` are there, as in the
  documented *create* answer, on the guess that the poll shows the same record;
- a failed job (status 4) carries ``error_code`` and ``error_reason`` (undocumented; the
  pair the other v3 families use).

Result kind: ``"audio"``, in ``JobScenario.audio_format`` (MP3 by default, as in the
client code's examples), ``audio_size`` bytes.
"""

from __future__ import annotations

import hashlib
from typing import Any

from archiver.testing.media import MEDIA_FORMATS
from archiver.testing.standin.content import File, media_file
from archiver.testing.standin.family import Family
from archiver.testing.standin.jobs import JobScenario, JobView, generated_job_id

#: Path of the result lookup endpoint.
INFO_PATH = "/api/open/v3/audio/infobymodelid"
#: File kind -> default name under ``/files/<id>/`` (the extension follows the format).
FILE_NAMES: dict[str, str] = {"audio": "audio.mp3"}


def names(scen: JobScenario) -> dict[str, str]:
    """The job's file name, with its format's extension."""
    return {"audio": "audio." + MEDIA_FORMATS[scen.audio_format].extension}


def render(view: JobView) -> dict[str, Any]:
    """One job's ``data``."""
    scen = view.scenario
    id_hash = hashlib.sha256(view.job_id.encode()).digest()
    data: dict[str, Any] = {
        "_id": view.job_id,
        "create_time": view.create_time,
        "uid": 100000 + int.from_bytes(id_hash[:2], "big"),
        "from": 3,
        "input_text": "Hello, and welcome to our channel.",
        "status": view.status,
        "url": view.url("audio"),
    }
    if view.status == 4:
        data["error_code"] = scen.error_code
        data["error_reason"] = scen.error_reason
    data.update(scen.extra_fields)
    return data


def make_files(job_id: str, scen: JobScenario, create_time: int) -> dict[str, File]:
    """The job's audio file, in its format."""
    name = names(scen)["audio"]
    return {kind: media_file(scen.audio_format, scen.audio_size, f"{job_id}/{name}".encode(),
                             create_time)
            for kind in scen.files}


def check(scen: JobScenario) -> None:
    """The audio file can be made at the size asked for."""
    problem = MEDIA_FORMATS[scen.audio_format].check_size(scen.audio_size)
    if problem:
        raise ValueError(f"audio_size: {problem}")


AUDIO = Family(
    name="audio",
    path=INFO_PATH,
    id_param="audio_model_id",
    files=FILE_NAMES,
    render=render,
    make_files=make_files,
    default_files=("audio",),
    names=names,
    check=check,
    callback_files=("audio",),
    callback_type=lambda scen: "audio",
)


def sample_jobs() -> dict[str, JobScenario]:
    """Audio jobs for a demo: an MP3, a WAV, an M4A (served as ``speech``, without an
    extension), and one that fails."""
    def job_id(i: int) -> str:
        return generated_job_id(i, "demo-audio")

    return {
        job_id(0): JobScenario(family="audio", polls_until_done=2, audio_size=40 * 1024),
        job_id(1): JobScenario(family="audio", polls_until_done=3, audio_format="wav",
                               audio_size=48 * 1024),
        job_id(2): JobScenario(family="audio", polls_until_done=2, audio_format="m4a",
                               file_names={"audio": "speech"}, audio_size=36 * 1024),
        job_id(3): JobScenario(family="audio", polls_until_done=3, outcome="failed",
                               error_code=1201, error_reason="voice not available"),
    }
