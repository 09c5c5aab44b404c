"""The API plumbing every family shares: the envelope, auth, ``getToken``, API faults,
reading the requested ids, the account's rate limit, and the 404 (recorded) of any path
the stand-in does not serve.

Each family's lookup endpoint is served by :func:`add_api_routes` from its
:class:`~archiver.testing.standin.family.Family`; the answer for its jobs is decided by
the host (the stand-in) under its lock, then rendered here without it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from archiver.testing.standin.family import Family
from archiver.testing.standin.faults import ApiFault, error_page, html_error, reset_connection
from archiver.testing.standin.jobs import JobState

#: Path of the legacy token endpoint.
TOKEN_PATH = "/api/open/v3/getToken"

#: Messages sent with business codes (texts follow akool-api.md, not Akool verbatim).
API_MESSAGES: dict[int, str] = {
    1000: "OK",
    1003: "parameter error or empty",
    1005: "operation too frequent",
    1008: "content not found",
    1009: "no permission",
    1101: "invalid authorization",
    1102: "authorization empty",
    1103: "not paid",
    1104: "insufficient credit",
    1200: "account banned",
    2001: "server error",
}

#: A lookup's jobs, each with the number of its normal answers, this one included.
Answered = list[tuple[str, JobState, int]]

_Handler = Callable[[web.Request], Awaitable[web.Response]]


class ApiHost(Protocol):
    """What the API handlers need from the stand-in (its settings may change while
    it serves, so they are read on every request)."""

    api_key: str | None
    token: str | None
    client_id: str | None
    client_secret: str | None
    latency: float
    fail_all_with_code: int | None
    public_base_url: str | None

    def _record_api(self, request: web.Request) -> None:
        """Count and record one API request, whatever its fate."""
        ...

    def _count_token_request(self) -> None:
        """Count one ``getToken`` request, whatever its fate."""
        ...

    def _record_unknown(self, request: web.Request) -> None:
        """Record one request to a path the stand-in does not serve."""
        ...

    def _lookup(self, family: Family, ids: list[str]) -> ApiFault | Answered:
        """Count one authenticated lookup of *ids* and decide its answer: a fault for
        the whole request, or the known jobs of *family* among *ids*, each advanced."""
        ...


def add_api_routes(app: web.Application, host: ApiHost, families: Iterable[Family]) -> None:
    """Serve ``getToken`` and each family's lookup endpoint from *app*."""
    app.router.add_post(TOKEN_PATH, _token_handler(host))
    for family in families:
        handler = _lookup_handler(host, family)
        if family.method == "GET":
            app.router.add_get(family.path, handler)
        else:
            app.router.add_post(family.path, handler)


def record_unknown(host: ApiHost) -> Middleware:
    """A middleware answering 404 to any method and path no route takes (a GET of a POST
    endpoint included), and recording the request. A middleware rather than a catch-all
    route, so that routes added to the application later still get their requests."""
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if getattr(request.match_info, "http_exception", None) is None:
            return await handler(request)
        host._record_unknown(request)
        return html_error(404, f"Cannot {request.method} {request.path}")

    return middleware


class AccountLimit:
    """The account-wide limit on lookups: a token bucket, full at the start like an
    account idle until now. Not thread-safe: the stand-in calls it under its lock."""

    def __init__(self, burst: float, now: float) -> None:
        self._tokens = burst
        self._refilled = now

    def admit(self, now: float, rate: float | None, burst: float) -> bool:
        """Whether a lookup at *now* gets through (always, without a *rate*)."""
        if rate is None:
            return True
        self._tokens = min(burst, self._tokens + (now - self._refilled) * rate)
        self._refilled = now
        # Refused lookups cost nothing, as with nginx's limit_req: a client that
        # backs off gets through again as soon as a token has come back.
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


def envelope(code: int, data: dict[str, Any] | None = None) -> web.Response:
    """Akool's answer: ``{"code", "msg", "data"}``, HTTP 200 whatever the code."""
    return web.json_response({"code": code, "msg": API_MESSAGES.get(code, "error"), "data": data})


def auth_error(request: web.Request, host: ApiHost) -> int | None:
    """Business code for bad credentials, or ``None`` when authorised."""
    authorization = request.headers.get("Authorization", "").strip()
    if authorization:
        # Authorization wins over x-api-key even when it is wrong
        # (akool-api.md), so a stale token cannot be rescued by a key.
        scheme, _, value = authorization.partition(" ")
        valid = host.token is not None and value.strip() == host.token
        if scheme.lower() == "bearer" and valid:
            return None
        return 1101
    api_key = request.headers.get("x-api-key", "")
    if not api_key:
        return 1102
    return None if host.api_key is not None and api_key == host.api_key else 1101


def fault_response(request: web.Request, fault: ApiFault) -> web.Response:
    """The answer an API fault gives instead of the lookup's."""
    if fault == "reset":
        return reset_connection(request)
    if fault == "html":
        # What a captive portal or misconfigured proxy answers: 200, but HTML.
        return web.Response(
            text=error_page(200, "Service temporarily unavailable"), content_type="text/html"
        )
    if isinstance(fault, tuple) and fault[0] == "code":
        return envelope(int(fault[1]))
    if isinstance(fault, tuple):
        status, retry_after = int(fault[0]), str(fault[1])
    else:
        status, retry_after = int(fault), "1"
    # A bare 429 carries "Retry-After: 1"; (status, N) sets it on any status.
    headers = {"Retry-After": retry_after} if status == 429 or isinstance(fault, tuple) else {}
    return html_error(status, "", headers)


async def requested_ids(request: web.Request, family: Family) -> list[str]:
    """The ids a lookup asks for, without blanks or repeats (``[]``: none, or a body
    that is not JSON with a string under ``family.id_param``)."""
    if family.method == "GET":
        value: object = request.query.get(family.id_param, "")
    else:
        try:
            body = await request.json()
        except ValueError:
            return []
        # A string, as Akool wants it: "an array ... returns 'Failed to get results'".
        value = body.get(family.id_param) if isinstance(body, dict) else None
    if not isinstance(value, str):
        return []
    parts = value.split(",") if family.batched else [value]
    return list(dict.fromkeys(p.strip() for p in parts if p.strip()))


def _token_handler(host: ApiHost) -> _Handler:
    async def handle(request: web.Request) -> web.Response:
        host._record_api(request)
        host._count_token_request()
        if host.latency:
            await asyncio.sleep(host.latency)
        if host.fail_all_with_code is not None:
            return envelope(host.fail_all_with_code)
        try:
            body = await request.json()
        except ValueError:
            return envelope(1003)
        if not isinstance(body, dict) or not body.get("clientId") or not body.get("clientSecret"):
            return envelope(1003)
        if (
            host.token is not None
            and body["clientId"] == host.client_id
            and body["clientSecret"] == host.client_secret
        ):
            # The one answer without "data": the token sits at the top level, and the
            # docs' example has no "msg" either.
            return web.json_response({"code": 1000, "token": host.token})
        return envelope(1101)

    return handle


def _lookup_handler(host: ApiHost, family: Family) -> _Handler:
    async def handle(request: web.Request) -> web.Response:
        host._record_api(request)
        if host.latency:
            await asyncio.sleep(host.latency)
        if host.fail_all_with_code is not None:
            return envelope(host.fail_all_with_code)
        code = auth_error(request, host)
        if code is not None:
            return envelope(code)
        ids = await requested_ids(request, family)
        if not ids:
            return envelope(1003)
        answer = host._lookup(family, ids)
        if not isinstance(answer, list):
            return fault_response(request, answer)
        base = host.public_base_url or f"{request.scheme}://{request.host}"
        rendered = [family.render(state.view(job_id, answered, base))
                    for job_id, state, answered in answer]
        return envelope(1000, {"result": rendered} if family.batched else rendered[0])

    return handle
