"""What the stand-in counts and records, for tests to read while it serves.

:class:`Ledger` holds the counters and the lock that guards them (and the stand-in's
jobs); the stand-in updates them from its handlers, and tests read snapshots from any
thread.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import dataclass

from aiohttp import web
from multidict import CIMultiDict


@dataclass(frozen=True, slots=True)
class Lookup:
    """One authenticated result lookup, as the account's rate limit counted it."""

    #: ``time.monotonic()`` when the stand-in received it.
    at: float
    #: The id looked up (a batched family's ids, comma-separated).
    video_model_id: str
    #: Answered code 1005 by the ``requests_per_second`` limit.
    throttled: bool


@dataclass(frozen=True)
class RecordedRequest:
    """One API request as the stand-in received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: CIMultiDict[str]


@dataclass(frozen=True, slots=True)
class DeleteCall:
    """One call of a destructive endpoint (``deletes.py``), whatever its answer."""

    method: str
    path: str
    #: The ids it named (its ``_ids``, split at commas), as far as its body could be read.
    ids: tuple[str, ...]


class Ledger:
    """Counters and recorded requests, updated under :attr:`_lock` and read as snapshots.

    ``max_recorded_requests`` bounds :attr:`api_requests` and :attr:`lookups` so that
    long benchmarks do not grow memory without limit.
    """

    def __init__(self, max_recorded_requests: int) -> None:
        # Handlers run on the server's loop while tests read counters and add
        # jobs from their own thread, so all shared state goes through this lock.
        self._lock = threading.Lock()
        self._api_calls = 0
        self._polls: Counter[str] = Counter()
        self._file_requests: Counter[tuple[str, str]] = Counter()
        self._file_bytes_sent: Counter[tuple[str, str]] = Counter()
        #: (id, name, Range, If-Range or None) of each file request with a Range.
        self._file_ranges: list[tuple[str, str, str, str | None]] = []
        self._requests: deque[RecordedRequest] = deque(maxlen=max_recorded_requests)
        self._lookups: deque[Lookup] = deque(maxlen=max_recorded_requests)
        self._throttled = 0
        self._token_requests = 0
        self._deletes: list[DeleteCall] = []
        self._unknown: deque[RecordedRequest] = deque(maxlen=max_recorded_requests)

    # ------------------------------------------------ updates, from the handlers

    def _record_api(self, request: web.Request) -> None:
        """Count and record one API request, whatever its fate."""
        record = RecordedRequest(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers=CIMultiDict(request.headers),
        )
        with self._lock:
            self._api_calls += 1
            self._requests.append(record)

    def _record_unknown(self, request: web.Request) -> None:
        """Record one request to a path the stand-in does not serve."""
        record = RecordedRequest(request.method, request.path, dict(request.query),
                                 CIMultiDict(request.headers))
        with self._lock:
            self._unknown.append(record)

    def _record_delete(self, request: web.Request, ids: list[str]) -> None:
        """Record one call of a destructive endpoint, before anything else happens."""
        with self._lock:
            self._deletes.append(DeleteCall(request.method, request.path, tuple(ids)))

    def _count_token_request(self) -> None:
        with self._lock:
            self._token_requests += 1

    def _note_lookup(self, ids: list[str], at: float, *, admitted: bool) -> None:
        """Count one authenticated lookup of *ids* (call with the lock held)."""
        for job_id in ids:
            self._polls[job_id] += 1
        if not admitted:
            self._throttled += 1
        self._lookups.append(Lookup(at, ",".join(ids), throttled=not admitted))

    def _note_file_request(
        self, job_id: str, name: str, range_header: str | None, if_range: str | None
    ) -> None:
        """Count one file request (call with the lock held)."""
        self._file_requests[job_id, name] += 1
        if range_header:
            self._file_ranges.append((job_id, name, range_header, if_range))

    def _count_sent(self, job_id: str, name: str, size: int) -> None:
        """Count *size* body bytes written to a client."""
        with self._lock:
            self._file_bytes_sent[job_id, name] += size

    # ------------------------------------------------------- snapshots, for tests

    @property
    def api_calls(self) -> int:
        """Total API requests received (every endpoint, including rejected ones)."""
        with self._lock:
            return self._api_calls

    @property
    def polls(self) -> Counter[str]:
        """Snapshot: id -> lookups of that id that passed authentication (faulted ones too)."""
        with self._lock:
            return Counter(self._polls)

    @property
    def file_requests(self) -> Counter[tuple[str, str]]:
        """Snapshot: (id, file name) -> requests (``/files`` and ``/mirror``, any outcome)."""
        with self._lock:
            return Counter(self._file_requests)

    @property
    def file_bytes_sent(self) -> Counter[tuple[str, str]]:
        """Snapshot: (id, file name) -> body bytes written to clients."""
        with self._lock:
            return Counter(self._file_bytes_sent)

    @property
    def file_ranges(self) -> list[tuple[str, str, str]]:
        """Snapshot: (id, file name, Range header) of each file request with a Range."""
        with self._lock:
            return [(job, name, ranged) for job, name, ranged, _ in self._file_ranges]

    @property
    def file_if_ranges(self) -> list[tuple[str, str, str, str | None]]:
        """Snapshot: :attr:`file_ranges` with each request's If-Range header (or None)."""
        with self._lock:
            return list(self._file_ranges)

    @property
    def api_requests(self) -> list[RecordedRequest]:
        """Snapshot of the most recent API requests, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def throttled(self) -> int:
        """Lookups answered code 1005 by the ``requests_per_second`` limit."""
        with self._lock:
            return self._throttled

    @property
    def lookups(self) -> list[Lookup]:
        """Snapshot: the recent authenticated lookups (the ones the rate limit counts,
        throttled or not), oldest first."""
        with self._lock:
            return list(self._lookups)

    @property
    def token_requests(self) -> int:
        """``POST getToken`` requests received, whatever their answer."""
        with self._lock:
            return self._token_requests

    @property
    def delete_calls(self) -> list[DeleteCall]:
        """Snapshot: every call of a destructive endpoint (deleting results at Akool),
        authenticated or not, oldest first. An archiver must leave this empty."""
        with self._lock:
            return list(self._deletes)

    @property
    def unknown_requests(self) -> list[RecordedRequest]:
        """Snapshot: the recent requests to paths the stand-in does not serve (answered
        404), oldest first."""
        with self._lock:
            return list(self._unknown)

    @property
    def api_headers(self) -> list[CIMultiDict[str]]:
        """Headers (case-insensitive) of the most recent API requests, oldest first."""
        return [r.headers for r in self.api_requests]

    def reset_counters(self) -> None:
        """Zero all counters and forget recorded requests (jobs are kept)."""
        with self._lock:
            self._api_calls = 0
            self._polls.clear()
            self._file_requests.clear()
            self._file_bytes_sent.clear()
            self._file_ranges.clear()
            self._requests.clear()
            self._lookups.clear()
            self._throttled = 0
            self._token_requests = 0
            self._deletes.clear()
            self._unknown.clear()
