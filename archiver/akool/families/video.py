"""The video family: talking photo, talking avatar, video translation, lip sync,
character swap, avatar video.

``GET /api/open/v3/content/video/infobymodelid?video_model_id=<id>``: ``data`` is the
job: ``video_status``, the result ``video`` and, for translation jobs, the subtitles and
the video without captions under ``audio_splits``. Names are fixed (``video.mp4``,
``original.srt``...): archives made before the other families keep their names.
``video_url``, ``image_url`` and ``talking_photo`` are inputs and never archived.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...errors import APIError
from ...models import RESULT_FILES, JobInfo, JobStatus, RemoteFile, redact_urls_in
from .base import OK, Family, Role

SUCCESS = int(JobStatus.SUCCESS)

INFO_PATH = "/api/open/v3/content/video/infobymodelid"


def parse(item_id: str, data: Mapping[str, Any]) -> JobInfo:
    """Type the ``data`` object; unknown fields stay in ``raw``."""
    status = data.get("video_status")
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    if not isinstance(status, int) or isinstance(status, bool):
        raise APIError(OK, f"data.video_status is not a number: {str(status)[:40]!r}")

    # Only a finished job's files are fetched: most polls find the job still queued or
    # processing, and pay for none of this.
    files = _files(data) if status == SUCCESS else []

    create_time = data.get("create_time")
    error_code = data.get("error_code")
    return JobInfo(
        id=item_id,
        status=status,
        files=tuple(files),
        create_time_ms=create_time if isinstance(create_time, int) else None,
        error_code=error_code if isinstance(error_code, int) else None,
        # Akool's words as written (the report keeps them exact; what prints them
        # escapes), only the URLs redacted: one may be a signed result URL.
        error_reason=redact_urls_in(str(data["error_reason"]))
        if data.get("error_reason") not in (None, "") else None,
        raw=dict(data),
        family="video",
    )


def _files(data: Mapping[str, Any]) -> list[RemoteFile]:
    files: list[RemoteFile] = []
    splits = data.get("audio_splits")
    splits = splits if isinstance(splits, dict) else {}
    for field_name, file_name in RESULT_FILES:
        value = data.get(field_name) if field_name == "video" else splits.get(field_name)
        if value in (None, ""):
            continue
        if not isinstance(value, str) or not value.lower().startswith(("http://", "https://")):
            raise APIError(OK, f"data.{field_name} is not an http(s) URL")
        files.append(RemoteFile(file_name, value))
    return files


VIDEO = Family(
    name="video",
    section="videos",
    path=INFO_PATH,
    id_param="video_model_id",
    parse=parse,
    roles=tuple(Role(name, ()) for _, name in RESULT_FILES),
)
