"""The image-to-video family (v4): image2video, single and batch.

``POST /api/open/v4/image2Video/resultsByIds`` with ``{"_ids": "a,b,c"}`` - one
string, never an array: several jobs per request, ``data.result[]`` one entry per known
id. An entry has ``status``, the result ``video_url`` (``video.mp4``), ``audio_url``
when there is sound (``audio.<ext>``: MP3, WAV or M4A by its bytes) and maybe
``cover_url`` (Akool's demo types; ``cover.<ext>``). ``image_url`` is the *input*
image: never archived. ``create_time`` is in ms.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...models import JobInfo, RemoteFile
from .base import (
    AUDIO_KINDS,
    IMAGE_KINDS,
    Family,
    Role,
    int_or_none,
    job_info,
    status_of,
    url_of,
)

RESULTS_PATH = "/api/open/v4/image2Video/resultsByIds"
#: (field, role, kinds), in archive order.
_FIELDS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("video_url", "video", ("mp4",)),
    ("audio_url", "audio", AUDIO_KINDS),
    ("cover_url", "cover", IMAGE_KINDS),
)


def parse(item_id: str, data: Mapping[str, Any]) -> JobInfo:
    status = status_of(data, ("status", "video_status"))
    files: list[RemoteFile] = []
    for field, role, kinds in _FIELDS:
        url = url_of(data.get(field), field)
        if url is not None:
            files.append(RemoteFile(role, url, kinds))
    return job_info("image2video", item_id, data, status=status, files=files,
                    create_time_ms=int_or_none(data.get("create_time")))


IMAGE2VIDEO = Family(
    name="image2video",
    section="image2videos",
    path=RESULTS_PATH,
    id_param="_ids",
    parse=parse,
    roles=tuple(Role(role, kinds) for _, role, kinds in _FIELDS),
    method="POST",
    batched=True,
)
