"""The face swap family: image and video face swap (v3, v4 Pro), reage.

``GET /api/open/v3/faceswap/result/listbyids?_ids=a,b,c``: several jobs per request,
``data.result[]`` one entry per known id (unknown ids are left out). An entry has
``faceswap_status`` (``status`` tolerated), the result ``url`` - an image or a video,
which only its bytes tell: archived as ``result.png`` / ``result.jpg`` /
``result.webp`` / ``result.mp4`` - and ``createdAt``, an ISO-8601 string (there is no
``create_time``). A failed job's reason is in ``alg_msg`` (third-party code) or
``error_reason``.

Akool's v3 create call answers the URL before the job is done: it is only taken at
status 3 (the scheduler downloads successes only).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...models import JobInfo, RemoteFile
from .base import IMAGE_KINDS, Family, Role, int_or_none, iso_ms, job_info, status_of, url_of

LIST_PATH = "/api/open/v3/faceswap/result/listbyids"
RESULT_KINDS: tuple[str, ...] = (*IMAGE_KINDS, "mp4")


def parse(item_id: str, data: Mapping[str, Any]) -> JobInfo:
    status = status_of(data, ("faceswap_status", "status"))
    url = url_of(data.get("url"), "url") if status == 3 else None
    files = [RemoteFile("result", url, RESULT_KINDS)] if url is not None else []
    created = iso_ms(data.get("createdAt"))
    if created is None:
        created = int_or_none(data.get("create_time"))
    return job_info("faceswap", item_id, data, status=status, files=files,
                    create_time_ms=created, reason_fields=("error_reason", "alg_msg"))


FACESWAP = Family(
    name="faceswap",
    section="faceswaps",
    path=LIST_PATH,
    id_param="_ids",
    parse=parse,
    roles=(Role("result", RESULT_KINDS),),
    batched=True,
)
