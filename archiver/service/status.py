"""The status page of ``archiver serve``: ``GET /`` (HTML) and ``GET /status.json``
(the same document as JSON), on the webhook's listener.

What it shows: the jobs pending, most urgent first, with the time left before Akool
deletes their results; the latest outcomes; the latest failures with their reasons; the
callbacks accepted and refused (by reason) and the archive rate; when the server
started, its uptime and version. :func:`build_document` makes one document of the
journal's overview (:func:`~archiver.service.overview.read_overview`) and the server's
:class:`~archiver.service.counters.Counters`; :func:`render_html` draws it.

Time left: Akool deletes a result 7 days after the job was *created*; a callback carries
no creation time, so the page counts 7 days from the job's first callback. The job was
created before that callback: the deadline shown is the latest Akool may delete it, and
the time left an upper bound (both are named so).

Safety, by construction rather than care:

- read-only, and bounded whatever the journal holds (:data:`LIMIT` rows per list, read
  on a connection of their own, reused for :data:`REUSE_FOR` seconds);
- no secret, and no URL with its query: the journal's payloads (which hold result URLs,
  maybe signed) are never read, and a URL inside an error text is shown as the logs
  show it (:func:`~archiver.models.redact_url`: no query, no user info);
- every string from Akool or the journal is escaped (:func:`archiver.pages.html.text`);
  the page runs no script at all (``script-src 'none'``; it refreshes itself with
  ``<meta http-equiv="refresh">``), its one style is allowed by its hash;
- :class:`StatusPage` lets in, without ``webhook.status_user`` / ``status_password``,
  only clients on loopback; with them, only clients that send them (basic auth,
  compared in constant time).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import ipaddress
import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from .. import __version__
from ..config import WebhookConfig
from ..models import RETENTION_SECONDS, iso_utc, redact_urls_in
from .counters import Counters
from .journal import JournalError
from .overview import read_overview
from .status_html import render_html

log = logging.getLogger(__name__)

#: Rows per list on the page (pending, latest outcomes, failures).
LIMIT = 50
#: The archive rate's window, seconds.
RATE_WINDOW = 3600.0
#: Seconds a read of the journal serves again: any number of clients costs the journal
#: file one read (some 0.3 s of CPU on 100,000 rows) per this interval at most.
REUSE_FOR = 2.0
#: Longest text shown of one error (an Akool error text may be up to a callback's size).
TEXT_MAX = 1000
#: The ``schema`` of /status.json: fields are only ever added within a version.
SCHEMA = 1

_STATUS_WORDS = {1: "queued", 2: "processing", 3: "success", 4: "failed"}
_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}


def shown(value: object) -> str | None:
    """*value* as the page may show it: text, URLs without their query (a signature
    lives there), at most :data:`TEXT_MAX` characters; None stays None."""
    if value is None:
        return None
    text = redact_urls_in(str(value))
    return text if len(text) <= TEXT_MAX else text[:TEXT_MAX] + "…"


def _totals(counts: Mapping[Any, int]) -> dict[str, int]:
    """Counts by their first key: a counter keyed by ``value`` or ``(value, family)``."""
    totals: dict[str, int] = {}
    for key, n in counts.items():
        name = str(key[0] if isinstance(key, tuple) else key)
        totals[name] = totals.get(name, 0) + n
    return totals


def _pending_row(row: dict[str, Any], now: float) -> dict[str, Any]:
    deadline = row["received_at"] + RETENTION_SECONDS
    return {"id": row["id"], "family": row["family"], "type": shown(row["type"]),
            "akool_status": row["status"],
            "akool_status_text": _STATUS_WORDS.get(row["status"], str(row["status"])),
            "first_callback_at": iso_utc(row["received_at"]),
            "deadline_at_latest": iso_utc(deadline),
            "seconds_left_at_most": round(deadline - now, 1),
            "attempts": row["attempts"], "next_attempt_at": iso_utc(row["next_attempt"]),
            "last_error": shown(row["error"])}


def _done_row(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "family": row["family"], "type": shown(row["type"]),
            "outcome": row["outcome"],
            "finished_at": iso_utc(row["done_at"]),
            "first_callback_at": iso_utc(row["received_at"]),
            "attempts": row["attempts"], "error": shown(row["error"])}


def build_document(overview: dict[str, Any], counters: Counters, now: float
                   ) -> dict[str, Any]:
    """The status document (what /status.json answers and the page draws) of a journal
    *overview* (:func:`~archiver.service.overview.read_overview`) and *counters*."""
    uptime = max(0.0, now - counters.started)
    since_start = _totals(counters.outcomes)
    return {
        "schema": SCHEMA,
        "archiver_version": __version__,
        "generated_at": iso_utc(now),
        "server": {"started_at": iso_utc(counters.started),
                   "uptime_seconds": round(uptime, 1)},
        "retention_seconds": RETENTION_SECONDS,
        "callbacks": {"received": counters.received,
                      "accepted": {"new": 0, "duplicate": 0} | _totals(counters.recorded),
                      "refused": _totals(counters.rejected)},
        "jobs": {"pending": overview["pending"],
                 "oldest_pending_first_callback_at": iso_utc(overview["oldest"]),
                 "done": overview["done"]},
        "rates": {"window_seconds": RATE_WINDOW,
                  "finished_in_window": overview["finished_since"],
                  "finished_since_start": since_start,
                  # None in the first minute: a rate over seconds says nothing.
                  "archived_per_hour_since_start": round(
                      since_start.get("archived", 0) * 3600 / uptime, 2)
                  if uptime >= 60 else None},
        "pending": [_pending_row(r, now) for r in overview["urgent"]],
        "latest": [_done_row(r) for r in overview["latest"]],
        "failures": [_done_row(r) for r in overview["failures"]],
    }


class StatusPage:
    """The handlers of ``GET /`` and ``GET /status.json`` (see the module docstring)."""

    def __init__(self, webhook: WebhookConfig, journal: Path, counters: Counters) -> None:
        self._journal = journal
        self._counters = counters
        self._user = webhook.status_user
        self._password = (webhook.status_password.get_secret_value()
                          if webhook.status_password is not None else None)
        self._lock = asyncio.Lock()
        self._read: tuple[float, dict[str, Any]] | None = None

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/", self.handle_page)
        app.router.add_get("/status.json", self.handle_json)
        log.info("status page at / and /status.json: %s", "basic auth"
                 if self._user is not None else "loopback clients only")

    async def handle_page(self, request: web.Request) -> web.Response:
        refused = self._refusal(request)
        if refused is not None:
            return refused
        page, policy = render_html(await self._document())
        return web.Response(text=page, content_type="text/html", charset="utf-8",
                            headers={**_HEADERS, "Content-Security-Policy": policy})

    async def handle_json(self, request: web.Request) -> web.Response:
        refused = self._refusal(request)
        if refused is not None:
            return refused
        body = json.dumps(await self._document(), indent=1) + "\n"
        return web.Response(text=body, content_type="application/json", charset="utf-8",
                            headers=_HEADERS)

    async def _document(self) -> dict[str, Any]:
        now = time.time()
        try:
            overview = await self._overview(now)
        except JournalError as exc:
            log.error("status page: %s", exc)
            raise web.HTTPServiceUnavailable(text=f"journal unavailable: {exc}\n",
                                             headers=_HEADERS) from None
        return build_document(overview, self._counters, now)

    async def _overview(self, now: float) -> dict[str, Any]:
        async with self._lock:  # clients arriving together share one read
            if self._read is None or time.monotonic() - self._read[0] > REUSE_FOR:
                overview = await asyncio.to_thread(read_overview, self._journal, LIMIT,
                                                   now - RATE_WINDOW)
                self._read = (time.monotonic(), overview)
            return self._read[1]

    def _refusal(self, request: web.Request) -> web.Response | None:
        """None if *request* may see the page, else the answer that refuses it."""
        if self._user is None or self._password is None:
            if is_loopback(request.remote):
                return None
            return web.Response(
                status=403, headers=_HEADERS,
                text="the status page answers only clients on loopback: set "
                     "webhook.status_user and webhook.status_password to open it to others\n")
        if check_basic_auth(request.headers.get("Authorization", ""), self._user,
                            self._password):
            return None
        return web.Response(status=401, text="the status page needs a user and password\n",
                            headers={**_HEADERS, "WWW-Authenticate":
                                     'Basic realm="archiver serve", charset="UTF-8"'})


def is_loopback(remote: str | None) -> bool:
    """Whether the peer address *remote* is loopback (an IPv4-mapped one included)."""
    try:
        address = ipaddress.ip_address(remote or "")
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def check_basic_auth(header: str, user: str, password: str) -> bool:
    """Whether an ``Authorization`` *header* carries *user* and *password* (basic
    auth). Constant time: both parts are compared whatever the first gave, as digests
    (so not even their lengths show in the time taken)."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        given = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return False
    given_user, colon, given_password = given.partition(":")
    same_user = hmac.compare_digest(_digest(given_user), _digest(user))
    same_password = hmac.compare_digest(_digest(given_password), _digest(password))
    return bool(colon) and same_user & same_password


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()
