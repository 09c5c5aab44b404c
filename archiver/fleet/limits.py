"""Run-wide rate limits: one token bucket shared by every worker, not a sleep per task.

``api.requests_per_second`` is the budget of the whole Akool *account*: N processes
sharing it (``--shard K/N``) each get :func:`share_of` it, rate and burst alike (see
:func:`api_bucket`), so that together they never ask more of the account than one
process with the whole budget would.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable

_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3,
          "gb": 1000**3, "t": 1000**4, "tb": 1000**4, "kib": 1024, "mib": 1024**2,
          "gib": 1024**3, "tib": 1024**4}
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)\s*(?:/s)?\s*$", re.IGNORECASE)
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)\s*$", re.IGNORECASE)


def parse_rate(text: str) -> float:
    """``"50MB/s"`` -> 50e6 bytes per second (KB/MB/GB are decimal, KiB/MiB/GiB binary)."""
    match = _RATE.match(text)
    if not match or match.group(2).lower() not in _UNITS:
        raise ValueError(f"{text!r} is not a rate like 50MB/s, 800KiB/s or 1000000")
    value = float(match.group(1)) * _UNITS[match.group(2).lower()]
    if value <= 0:
        raise ValueError("must be more than 0")
    return value


def parse_size(value: str | int) -> int:
    """``"20GiB"`` -> 21474836480 bytes, ``"500MB"`` -> 500000000; an int is bytes."""
    if isinstance(value, bool):
        raise ValueError("must be a size like 20GiB, 500MB or 1000000")
    if isinstance(value, int):
        number = value
    else:
        match = _SIZE.match(value)
        if not match or match.group(2).lower() not in _UNITS:
            raise ValueError(f"{value!r} is not a size like 20GiB, 500MB or 1000000")
        number = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if number <= 0:
        raise ValueError("must be more than 0")
    return number


def format_size(count: int) -> str:
    """*count* bytes in the largest unit that says it exactly (``20GiB``, ``500MB``)."""
    for unit in ("TiB", "GiB", "MiB", "KiB", "TB", "GB", "MB", "kB"):
        factor = _UNITS[unit.lower()]
        if count >= factor and count % factor == 0:
            return f"{count // factor}{unit}"
    return f"{count} bytes"


class TokenBucket:
    """Allows *rate* units per second on average, bursts of up to *burst* units.

    ``acquire(n)`` takes *n* units, going into debt if needed and sleeping it off, so a
    single request larger than the burst still passes - at the average rate. Callers
    queue fairly: each sees the debt of those before it.
    """

    def __init__(self, rate: float, burst: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.rate = rate
        self.burst = burst if burst is not None else rate
        self._clock = clock
        self._tokens = self.burst
        self._last = clock()

    def reserve(self, amount: float = 1.0) -> float:
        """Take *amount* now; return how many seconds the caller must wait for it."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        self._tokens -= amount
        return max(0.0, -self._tokens / self.rate)

    async def acquire(self, amount: float = 1.0) -> None:
        delay = self.reserve(amount)
        if delay > 0:
            await asyncio.sleep(delay)


def share_of(rate: float | None, shares: int) -> float | None:
    """One of *shares* equal parts of *rate* (None - no cap - stays None).

    No floor: a share below what a floor would give adds up to more than *rate* over
    all the processes; a tiny share is slow, never over budget.
    """
    if shares < 1:
        raise ValueError("shares must be >= 1")
    return None if rate is None else rate / shares


def api_bucket(rate: float | None, shares: int = 1) -> TokenBucket | None:
    """The bucket for one process's API requests, or None when *rate* is None (no cap).

    *rate* is the account's budget; the process gets ``rate / shares`` per second and
    ``max(1, rate) / shares`` of burst. Scaling the burst too keeps the sum of the
    *shares* buckets equal to the one bucket of an unsharded run: in any window of t
    seconds the processes together send at most ``max(1, rate) + rate * t`` requests,
    even when they all start at once with full buckets. A burst below 1 is fine: the
    first request waits out the rest of its token (see :meth:`TokenBucket.reserve`).
    """
    share = share_of(rate, shares)
    if rate is None or share is None:
        return None
    return TokenBucket(share, burst=max(1.0, rate) / shares)
