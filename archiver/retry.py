"""The one retry seam: every failed request the archiver tries again goes through here.

:class:`RetryPolicy` says how much to retry (it is also the ``retries:`` block of the
configuration: ``api.retries``, ``downloads.retries``, ``storage.s3.retries``), and two
runners apply it - :func:`with_retries` for coroutines (the API client, the downloader;
:func:`retry_failed` when the caller made the first attempt itself)
and :func:`with_retries_sync` for blocking calls (boto3 in worker threads: the S3 backend,
the S3 lease). Loops that resume by themselves (a ranged download asking for the rest of
a segment) take their pause from :meth:`RetryPolicy.wait`.

What is retried is the caller's decision, given as *retryable*: an exception type (by
default :class:`~archiver.errors.Transient`, the base of every transient archiver error),
a tuple of them, or a predicate for third-party errors (botocore's). An error's
``retry_after`` (a Retry-After header), or a float returned by the predicate, is
honoured up to ``wait_max``.

The first attempt runs without the retry machinery (nearly every call succeeds, and
setting stamina up per poll showed in profiles); a retryable failure then counts as
attempt 1 and stamina takes over: exponential backoff with jitter, bounded in attempts
and in time.

Not retries, and so not here: polling a job that is not done yet (the scheduler's poll
schedule: the job did not fail) and asking the API for a fresh URL after a 403/404/410
(the scheduler, bounded by ``downloads.url_refreshes``: a new request, not the same one).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, TypedDict, TypeVar

import stamina
from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, PositiveFloat

from .errors import Transient

T = TypeVar("T")

#: What to retry: exception types, or a predicate answering False (give up), True (retry
#: after the policy's backoff) or a number of seconds to wait first (Retry-After).
Retryable = type[BaseException] | tuple[type[BaseException], ...] \
    | Callable[[BaseException], bool | float]


class RetryPolicy(BaseModel):
    """Bounds for retrying transient failures of one request."""

    # Unknown keys are errors: a typo'd key silently ignored is a setting silently lost.
    model_config = ConfigDict(extra="forbid", frozen=True)

    attempts: Annotated[int, Field(ge=1, le=100)] = 5
    wait_initial: NonNegativeFloat = 1.0
    wait_max: NonNegativeFloat = 60.0
    #: Give up retrying one request after this many seconds in all.
    timeout: PositiveFloat = 300.0

    def wait(self, failures: int) -> float:
        """The pause after *failures* consecutive failures (1, 2...): doubling, capped."""
        return float(min(self.wait_initial * 2 ** max(failures - 1, 0), self.wait_max))


#: ``storage.s3.retries`` by default: bounds for every S3 request - the archive's, the
#: run lease's and an ``s3://`` manifest's. The one S3 retry default.
S3_RETRIES = RetryPolicy(attempts=5, timeout=120.0, wait_initial=0.5, wait_max=10.0)


async def with_retries(call: Callable[[], Awaitable[T]], *, policy: RetryPolicy,
                       retryable: Retryable = Transient,
                       on_retry: Callable[[int], None] | None = None) -> T:
    """``await call()``, retried on *retryable* errors within *policy*'s bounds.

    *on_retry* is told the number of each attempt after the first, before it starts.
    """
    try:
        return await call()
    except Exception as exc:  # sorted by retry_failed
        return await retry_failed(call, exc, policy=policy, retryable=retryable,
                                  on_retry=on_retry)


async def retry_failed(call: Callable[[], Awaitable[T]], failure: Exception, *,
                       policy: RetryPolicy, retryable: Retryable = Transient,
                       on_retry: Callable[[int], None] | None = None) -> T:
    """:func:`with_retries` after its first attempt, which failed with *failure*
    (re-raised at once unless *retryable*), for a caller that makes the first attempt
    itself: a hot path that must not pay for a coroutine layer per call."""
    if _decide(retryable, failure, policy) is False:
        raise failure
    first: Exception | None = failure
    async for attempt in stamina.retry_context(on=_hook(retryable, policy),
                                               **_bounds(policy)):
        with attempt:
            if first is not None:
                # The first call's failure is attempt 1: stamina waits and counts it.
                failed, first = first, None
                raise failed
            if on_retry is not None:
                on_retry(attempt.num)
            return await call()
    raise AssertionError("unreachable")  # pragma: no cover - stamina re-raises


def with_retries_sync(call: Callable[[], T], *, policy: RetryPolicy,
                      retryable: Retryable = Transient,
                      on_retry: Callable[[int], None] | None = None) -> T:
    """``call()``, retried on *retryable* errors within *policy*'s bounds (blocking).

    For worker threads only: it sleeps between attempts.
    """
    try:
        return call()
    except Exception as exc:  # sorted by _decide right below
        if _decide(retryable, exc, policy) is False:
            raise
        first: Exception | None = exc

    for attempt in stamina.retry_context(on=_hook(retryable, policy), **_bounds(policy)):
        with attempt:
            if first is not None:
                failed, first = first, None
                raise failed
            if on_retry is not None:
                on_retry(attempt.num)
            return call()
    raise AssertionError("unreachable")  # pragma: no cover - stamina re-raises


def _decide(retryable: Retryable, exc: BaseException, policy: RetryPolicy) -> bool | float:
    """False: give up; True: back off as the policy says; a float: wait that long first."""
    if isinstance(retryable, (type, tuple)):
        if not isinstance(exc, retryable):
            return False
        verdict: bool | float = True
    else:
        verdict = retryable(exc)
    if verdict is False:
        return False
    retry_after = getattr(exc, "retry_after", None)
    wait = retry_after if retry_after is not None else verdict
    if wait is True:
        return True
    # Honour Retry-After, but never sleep longer than the configured ceiling.
    return float(min(float(wait), max(policy.wait_max, 1.0)))


def _hook(retryable: Retryable, policy: RetryPolicy) -> Callable[[Exception], bool | float]:
    return lambda exc: _decide(retryable, exc, policy)


class _Bounds(TypedDict):
    attempts: int
    timeout: float
    wait_initial: float
    wait_max: float
    wait_jitter: float


def _bounds(policy: RetryPolicy) -> _Bounds:
    return {"attempts": policy.attempts, "timeout": policy.timeout,
            "wait_initial": policy.wait_initial, "wait_max": policy.wait_max,
            "wait_jitter": policy.wait_initial}
