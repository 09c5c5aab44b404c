"""The image family: image generation (and its 4K upscales and variations), background
change.

``GET /api/open/v3/content/image/infobymodelid?image_model_id=<id>``: ``data`` is the
job: ``image_status`` (``status`` tolerated), the result ``image`` and every URL of
``upscaled_urls[]``, archived as ``image.<ext>``, ``upscaled-1.<ext>``... with the
extension the bytes prove (PNG, JPEG or WebP). ``source_image`` is an input.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...models import JobInfo, RemoteFile
from .base import IMAGE_KINDS, Family, Role, int_or_none, job_info, status_of, url_of, urls_of

INFO_PATH = "/api/open/v3/content/image/infobymodelid"


def parse(item_id: str, data: Mapping[str, Any]) -> JobInfo:
    status = status_of(data, ("image_status", "status"))
    files: list[RemoteFile] = []
    image = url_of(data.get("image"), "image")
    if image is not None:
        files.append(RemoteFile("image", image, IMAGE_KINDS))
    for n, url in enumerate(urls_of(data.get("upscaled_urls"), "upscaled_urls"), start=1):
        files.append(RemoteFile(f"upscaled-{n}", url, IMAGE_KINDS))
    return job_info("image", item_id, data, status=status, files=files,
                    create_time_ms=int_or_none(data.get("create_time")))


IMAGE = Family(
    name="image",
    section="images",
    path=INFO_PATH,
    id_param="image_model_id",
    parse=parse,
    roles=(Role("image", IMAGE_KINDS), Role("upscaled", IMAGE_KINDS, numbered=True)),
)
