"""One retry policy for every network call: try once, then retry within bounds.

The first attempt runs without the retry machinery (nearly every call succeeds, and
setting stamina up per poll showed in profiles); a retryable failure then counts as
attempt 1 and stamina takes over: exponential backoff with jitter, bounded in attempts
and time, honouring an error's ``retry_after`` (a Retry-After header) up to ``wait_max``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import stamina

from .config import RetryConfig

T = TypeVar("T")


async def with_retries(call: Callable[[], Awaitable[T]], *,
                       retryable: type[Exception], config: RetryConfig,
                       on_retry: Callable[[int], None] | None = None) -> T:
    """``await call()``, retried on *retryable* errors within *config*'s bounds."""
    try:
        return await call()
    except retryable as exc:
        first: Exception | None = exc

    def hook(exc: Exception) -> bool | float:
        if not isinstance(exc, retryable):
            return False
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            # Honour Retry-After, but never sleep longer than the configured ceiling.
            return min(retry_after, max(config.wait_max, 1.0))
        return True

    async for attempt in stamina.retry_context(
        on=hook, attempts=config.attempts, timeout=config.timeout,
        wait_initial=config.wait_initial, wait_max=config.wait_max,
        wait_jitter=config.wait_initial,
    ):
        with attempt:
            if first is not None:
                # The first call's failure is attempt 1: stamina waits and counts it.
                exc, first = first, None
                raise exc
            if on_retry is not None:
                on_retry(attempt.num)
            return await call()
    raise AssertionError("unreachable")  # pragma: no cover - stamina re-raises
