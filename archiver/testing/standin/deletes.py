"""Akool's destructive endpoints, served so that a test can prove none is ever called.

Akool's API deletes results irreversibly on request (akool-families.md, section 11); an
archiver must never call such an endpoint. The stand-in serves each one as Akool would -
it authenticates the call, deletes the jobs it names (later lookups leave them out or
answer 1008, their files 404) and answers the documented shape - and records every call,
authenticated or not, in ``standin.delete_calls``: a test asserts that stays empty.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from archiver.testing.standin.api import ApiHost, auth_error, envelope

#: Deleted ids, and refused ones with the reason.
Outcome = tuple[list[str], list[tuple[str, str]]]


@dataclass(frozen=True)
class Destructive:
    """One destructive endpoint."""

    method: str
    path: str
    #: The family whose jobs it deletes (``None``: nothing the stand-in holds).
    family: str | None
    #: Whether it refuses to delete a job still processing (status 2).
    spares_processing: bool
    #: The answer to a call that named ids: ``(deleted, refused) -> body``.
    answer: Callable[[Outcome], dict[str, Any]]


def _ok(outcome: Outcome) -> dict[str, Any]:
    # The face swap page documents exactly {"code": 1000, "msg": "OK"}.
    return {"code": 1000, "msg": "OK"}


def _image2video(outcome: Outcome) -> dict[str, Any]:
    deleted, refused = outcome
    return {"code": 1000, "msg": "Delete successfully", "data": {
        "successIds": deleted,
        "noPermissionItems": [{"_id": job_id, "msg": msg} for job_id, msg in refused]}}


def _plain(outcome: Outcome) -> dict[str, Any]:
    return {"code": 1000, "msg": "OK", "data": None}


#: Every destructive endpoint known (the knowledge base and live session ones delete no
#: results, but an archiver has no business there either).
DESTRUCTIVE: tuple[Destructive, ...] = (
    Destructive("POST", "/api/open/v3/faceswap/result/delbyids", "faceswap", False, _ok),
    Destructive("POST", "/api/open/v4/image2Video/delbyids", "image2video", True,
                _image2video),
    Destructive("DELETE", "/api/open/v4/knowledge/delete", None, False, _plain),
    Destructive("POST", "/api/open/v4/liveAvatar/session/close", None, False, _plain),
)


class DeleteHost(ApiHost, Protocol):
    """What the delete handlers need from the stand-in."""

    def _record_delete(self, request: web.Request, ids: list[str]) -> None:
        """Record one call, before anything else happens."""
        ...

    def _delete(self, family: str, ids: list[str], *, spare_processing: bool) -> Outcome:
        """Delete the jobs of *family* among *ids*; unknown ids are refused."""
        ...


def add_delete_routes(app: web.Application, host: DeleteHost) -> None:
    """Serve every :data:`DESTRUCTIVE` endpoint from *app*."""
    for endpoint in DESTRUCTIVE:
        app.router.add_route(endpoint.method, endpoint.path, _handler(host, endpoint))


async def _ids(request: web.Request) -> list[str]:
    """The ids a call names: ``_ids`` ("a,b") or ``id``, in a JSON body."""
    try:
        body = await request.json()
    except ValueError:
        return []
    value = body.get("_ids", body.get("id")) if isinstance(body, dict) else None
    if not isinstance(value, str):
        return []
    return list(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))


def _handler(
    host: DeleteHost, endpoint: Destructive
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        host._record_api(request)
        ids = await _ids(request)
        host._record_delete(request, ids)
        if host.latency:
            await asyncio.sleep(host.latency)
        if host.fail_all_with_code is not None:
            return envelope(host.fail_all_with_code)
        code = auth_error(request, host)
        if code is not None:
            return envelope(code)
        if not ids:
            return envelope(1003)
        outcome: Outcome = (
            host._delete(endpoint.family, ids, spare_processing=endpoint.spares_processing)
            if endpoint.family is not None else (ids, []))
        return web.json_response(endpoint.answer(outcome))

    return handle
