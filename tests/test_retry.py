"""The retry seam (archiver.retry): what is retried, how often, how long it waits."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import stamina.instrumentation
from pydantic import ValidationError

from archiver.errors import APIError, TransientAPIError, TransientDownloadError
from archiver.retry import RetryPolicy, with_retries, with_retries_sync

FAST = RetryPolicy(attempts=4, wait_initial=0.001, wait_max=0.01, timeout=30)


class Flaky:
    """Fails with the given errors in turn, then answers "done"; counts its calls."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"

    async def coro(self) -> str:
        return self()


@pytest.fixture
def waits() -> Iterator[list[float]]:
    """The pauses stamina announces before each retry."""
    seen: list[float] = []
    stamina.instrumentation.set_on_retry_hooks([lambda details: seen.append(details.wait_for)])
    yield seen
    stamina.instrumentation.set_on_retry_hooks([])


def test_success_first_time_calls_once_and_announces_nothing() -> None:
    """A call that works is made once; on_retry is never told anything."""
    flaky, told = Flaky(), []
    assert asyncio.run(with_retries(flaky.coro, policy=FAST, on_retry=told.append)) == "done"
    assert (flaky.calls, told) == (1, [])


def test_transient_errors_are_retried_and_attempts_numbered() -> None:
    """Two transient failures, then success: three calls, attempts 2 and 3 announced."""
    flaky, told = Flaky(TransientAPIError(None, "a"), TransientDownloadError("b")), []
    assert asyncio.run(with_retries(flaky.coro, policy=FAST, on_retry=told.append)) == "done"
    assert (flaky.calls, told) == (3, [2, 3])


def test_non_transient_error_is_raised_at_once() -> None:
    """A permanent error is not retried: one call, the same error out."""
    error = APIError(1008, "not found")
    flaky = Flaky(error)
    with pytest.raises(APIError) as caught:
        asyncio.run(with_retries(flaky.coro, policy=FAST))
    assert caught.value is error and flaky.calls == 1


def test_attempts_bound_the_calls_and_the_last_error_comes_out() -> None:
    """Always failing: exactly `attempts` calls, then the last failure is raised."""
    errors = [TransientDownloadError(f"cut {n}") for n in range(10)]
    flaky = Flaky(*errors)
    with pytest.raises(TransientDownloadError) as caught:
        asyncio.run(with_retries(flaky.coro, policy=FAST))
    assert flaky.calls == FAST.attempts and caught.value is errors[FAST.attempts - 1]


def test_retryable_type_narrows_what_is_retried() -> None:
    """With retryable=TransientAPIError, a transient download error is not retried."""
    flaky = Flaky(TransientDownloadError("cut"))
    with pytest.raises(TransientDownloadError):
        asyncio.run(with_retries(flaky.coro, policy=FAST, retryable=TransientAPIError))
    assert flaky.calls == 1


def test_retry_after_is_honoured_and_capped(waits: list[float]) -> None:
    """Retry-After 0.05 s waits 0.05 s; Retry-After 1000 s waits no more than the 1 s floor
    of the ceiling (wait_max 0.01 here)."""
    flaky = Flaky(TransientAPIError(None, "429", retry_after=0.05),
                  TransientAPIError(None, "429", retry_after=1000))
    assert asyncio.run(with_retries(flaky.coro, policy=FAST)) == "done"
    assert waits == pytest.approx([0.05, 1.0])


def test_backoff_without_retry_after_stays_within_wait_max(waits: list[float]) -> None:
    """Without Retry-After the pauses come from the policy, never above wait_max + jitter."""
    flaky = Flaky(*[TransientDownloadError("cut") for _ in range(3)])
    asyncio.run(with_retries(flaky.coro, policy=FAST))
    assert len(waits) == 3
    assert all(0 <= wait <= FAST.wait_max + FAST.wait_initial for wait in waits)


def test_sync_runner_with_a_predicate_for_foreign_errors(waits: list[float]) -> None:
    """The blocking runner retries what the predicate accepts, waiting what it answers."""
    flaky, told = Flaky(ConnectionResetError("reset"), TimeoutError("slow")), []

    def transient(exc: BaseException) -> bool | float:
        return 0.02 if isinstance(exc, TimeoutError) else isinstance(exc, ConnectionError)

    assert with_retries_sync(flaky, policy=FAST, retryable=transient,
                             on_retry=told.append) == "done"
    assert (flaky.calls, told) == (3, [2, 3])
    assert waits[1] == pytest.approx(0.02)  # stamina may trim it to the time left


def test_sync_runner_raises_what_the_predicate_refuses() -> None:
    """A predicate answering False stops at the first call."""
    flaky = Flaky(PermissionError("denied"))
    with pytest.raises(PermissionError):
        with_retries_sync(flaky, policy=FAST, retryable=lambda exc: False)
    assert flaky.calls == 1


def test_timeout_bounds_the_retrying() -> None:
    """A policy's timeout stops retrying before the attempts run out."""
    slow = RetryPolicy(attempts=100, wait_initial=0.05, wait_max=0.05, timeout=0.2)
    flaky = Flaky(*[TransientDownloadError("cut") for _ in range(100)])
    with pytest.raises(TransientDownloadError):
        asyncio.run(with_retries(flaky.coro, policy=slow))
    assert 2 <= flaky.calls < 100


def test_policy_wait_doubles_up_to_the_ceiling() -> None:
    """RetryPolicy.wait: wait_initial, doubled per failure, capped at wait_max."""
    policy = RetryPolicy(wait_initial=0.5, wait_max=3)
    assert [policy.wait(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_policy_refuses_unknown_keys_and_nonsense() -> None:
    """The policy is configuration too: a typo'd key or zero attempts is an error."""
    with pytest.raises(ValidationError):
        RetryPolicy.model_validate({"atempts": 3})
    with pytest.raises(ValidationError):
        RetryPolicy(attempts=0)
