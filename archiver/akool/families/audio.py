"""The audio family: text to speech, voice clone (v3).

``GET /api/open/v3/audio/infobymodelid?audio_model_id=<id>`` (known from public client
code, not from Akool's docs): ``data`` is the job: ``status`` and the result ``url``,
archived as ``audio.<ext>`` with the extension the bytes prove (MP3, WAV or M4A).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...models import JobInfo, RemoteFile
from .base import AUDIO_KINDS, Family, Role, int_or_none, job_info, status_of, url_of

INFO_PATH = "/api/open/v3/audio/infobymodelid"


def parse(item_id: str, data: Mapping[str, Any]) -> JobInfo:
    status = status_of(data, ("status", "audio_status"))
    url = url_of(data.get("url"), "url")
    files = [RemoteFile("audio", url, AUDIO_KINDS)] if url is not None else []
    return job_info("audio", item_id, data, status=status, files=files,
                    create_time_ms=int_or_none(data.get("create_time")))


AUDIO = Family(
    name="audio",
    section="audios",
    path=INFO_PATH,
    id_param="audio_model_id",
    parse=parse,
    roles=(Role("audio", AUDIO_KINDS),),
)
