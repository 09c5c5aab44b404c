"""What a lease object says (:class:`LeaseState`), and what a holder writes into it.

The lease (:mod:`.lease`) is a small JSON object: a random owner token, the holder's
host, pid and command, when it was acquired and renewed, and its TTL. Whether it expired
is judged by S3's clock alone: its ``LastModified`` plus the TTL in its body, against the
``Date`` of the answer that read it, plus one second for the granularity of both - no
host's clock (or skew) counts.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

from ... import __version__
from ...models import iso_utc
from .answers import server_time

#: One second for the granularity of LastModified and Date (both whole seconds).
CLOCK_MARGIN = 1.0
#: A lease body is a few hundred bytes; more than this is not read.
MAX_BODY = 64 * 1024


@dataclass(frozen=True, slots=True)
class LeaseState:
    """What a GetObject of the lease found."""

    body: dict[str, Any]
    etag: str
    expires: float  # S3 time
    now: float  # S3 time of the answer

    @classmethod
    def read(cls, answer: dict[str, Any], raw: bytes, *, default_ttl: float) -> LeaseState:
        """The state a GetObject *answer* with body *raw* shows. A body that is not ours
        to interpret still expires like any lease (after *default_ttl*)."""
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                body = {}
        except ValueError:
            body = {}
        ttl = body.get("ttl_s")
        ttl = float(ttl) if isinstance(ttl, int | float) and ttl > 0 else default_ttl
        modified = answer["LastModified"].timestamp()
        return cls(body=body, etag=answer["ETag"], expires=modified + ttl + CLOCK_MARGIN,
                   now=server_time(answer) or time.time())

    @property
    def expired(self) -> bool:
        return self.now > self.expires

    def describe(self) -> str:
        host = self.body.get("host", "an unknown host")
        pid = self.body.get("pid", "?")
        since = self.body.get("acquired_at", "?")
        command = self.body.get("command")
        who = f"archiver {command}, " if isinstance(command, str) and command.isalpha() else ""
        return f"host {host} ({who}pid {pid}, since {since}); its lease expires at " \
               f"{iso_utc(self.expires)} unless renewed"


def lease_body(*, owner: str, what: str, command: str, acquired_at: str | None,
               ttl: float) -> bytes:
    """The lease object a holder writes (or rewrites, renewing it) now."""
    now = time.time()
    return json.dumps({
        "owner": owner, "host": socket.gethostname(), "pid": os.getpid(),
        "what": what, "command": command,
        "acquired_at": acquired_at, "renewed_at": iso_utc(now),
        # By the holder's clock, for people; other runs judge expiry by S3's clock.
        "expires_at": iso_utc(now + ttl), "ttl_s": ttl,
        "archiver_version": __version__,
    }).encode()
