"""The API's circuit breaker (:class:`Breaker`), shared by every request of one client.

A down API is noticed once, not once per id: the breaker counts the requests that got
no answer after their retries and, at ``api.unavailable_after`` in a row, refuses
further requests with :class:`~archiver.errors.ApiUnavailable` - without a connection -
until a cool-down has passed; then one request at a time probes, and any answer closes
it again. A batched request (several ids) counts once, as it is one request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from ..errors import ApiUnavailable, TransientAPIError

log = logging.getLogger("archiver.akool.client")

#: Seconds the breaker refuses requests once open, before one request probes the API.
#: A run stops polling when it opens, so this matters to long-lived clients (``serve``).
UNAVAILABLE_COOLDOWN = 60.0


class Breaker:
    """The API's circuit breaker, shared by every request of one client.

    Closed, it lets requests through and counts those that got no answer once their
    retries ran out (:attr:`TransientAPIError.no_answer`). Any answer from the API - a
    result, a business code, a 4xx, a 429 - resets the count: the API is up. At
    *threshold* in a row it opens: :meth:`admit` raises :class:`ApiUnavailable` for
    every attempt (even the next attempt of a request already retrying) until *cooldown*
    seconds have passed; then one call at a time is let through as a probe, and its
    answer closes the breaker, its failure opens it again. *threshold* 0: never opens.

    Counting whole requests, not attempts, keeps a blip the retries ride out (a load
    balancer restarting for two seconds) from stopping a run.
    """

    def __init__(self, threshold: int, origin: str, *, cooldown: float = UNAVAILABLE_COOLDOWN,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._threshold = threshold
        self._origin = origin
        self._cooldown = cooldown
        self._clock = clock
        self._failures = 0
        self._last = ""
        #: What opened the breaker (failures, last error): every id says the same.
        self._cause = (0, "")
        self._open_until: float | None = None
        self._probe: object | None = None

    @property
    def is_open(self) -> bool:
        return self._open_until is not None

    def error(self) -> ApiUnavailable:
        """The error of a request refused (or failed) while the breaker is open."""
        return ApiUnavailable(self._origin, *self._cause)

    def admit(self, call: object) -> None:
        """Before each attempt of *call* (any object, one per request): raise
        :class:`ApiUnavailable` unless the breaker is closed or *call* is the probe."""
        if self._open_until is None or self._probe is call:
            return
        if self._probe is None and self._clock() >= self._open_until:
            self._probe = call
            return
        raise self.error()

    def answered(self) -> None:
        """The API answered something: it is up."""
        if self._open_until is not None:
            log.warning("the Akool API at %s answers again", self._origin)
        self._failures = 0
        self._open_until = None
        self._probe = None

    def no_answer(self, call: object, error: TransientAPIError) -> None:
        """*call* ran out of retries without an answer from the API."""
        if not self._threshold:
            return
        self._failures += 1
        self._last = error.msg
        if self._failures < self._threshold:
            return
        was_open, probing = self._open_until is not None, self._probe is call
        self._open_until = self._clock() + self._cooldown
        if not was_open:
            self._cause = (self._failures, self._last)
        if probing:
            self._probe = None
            log.warning("the Akool API at %s still does not answer (%s)", self._origin,
                        self._last)
        elif not was_open:
            # The one line that says why the rest of the run is pending.
            log.error("%s; no new polls: ids not finished are left pending for a later run",
                      self.error())

    def release(self, call: object) -> None:
        """*call* is over, whatever its end: a probe that ended otherwise (cancelled, a
        redirect refused...) hands the probe to the next call."""
        if self._probe is call:
            self._probe = None
