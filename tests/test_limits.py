"""The run-wide token bucket and the rate/size parsers of limits.py, as pure functions."""

from __future__ import annotations

import asyncio

import pytest

from archiver.fleet.limits import (
    TokenBucket,
    api_bucket,
    format_size,
    parse_rate,
    parse_size,
    share_of,
)


class _Clock:
    """A monotonic clock the test moves by hand: the bucket's arithmetic, no sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_burst_is_free_then_debt_is_paid_at_the_rate() -> None:
    """A full bucket lends its burst at once; the next unit waits 1/rate seconds."""
    bucket = TokenBucket(rate=10, burst=5, clock=_Clock())
    assert bucket.reserve(5) == 0
    assert bucket.reserve(1) == pytest.approx(0.1)


def test_burst_defaults_to_one_second_of_rate() -> None:
    """Without a burst, one second's worth of units passes at once."""
    bucket = TokenBucket(rate=4, clock=_Clock())
    assert bucket.reserve(4) == 0
    assert bucket.reserve(2) == pytest.approx(0.5)


def test_callers_queue_behind_each_others_debt() -> None:
    """Each caller waits for the debt of those before it too: fair, never all at once."""
    bucket = TokenBucket(rate=10, burst=10, clock=_Clock())
    assert bucket.reserve(10) == 0
    assert [bucket.reserve(5) for _ in range(3)] == pytest.approx([0.5, 1.0, 1.5])


def test_request_larger_than_burst_passes_at_the_average_rate() -> None:
    """A single request above the burst is not refused: it waits out its excess."""
    bucket = TokenBucket(rate=100, burst=10, clock=_Clock())
    assert bucket.reserve(310) == pytest.approx(3.0)


def test_time_pays_debt_and_refills_up_to_burst_only() -> None:
    """Elapsed time repays debt, then refills; idle time banks no more than the burst."""
    clock = _Clock()
    bucket = TokenBucket(rate=10, burst=10, clock=clock)
    assert bucket.reserve(20) == pytest.approx(1.0)
    clock.now += 1.0  # exactly the debt: nothing left over
    assert bucket.reserve(5) == pytest.approx(0.5)
    clock.now += 3600  # an idle hour
    assert bucket.reserve(10) == 0
    assert bucket.reserve(1) == pytest.approx(0.1)


@pytest.mark.parametrize("rate", [0, -1.5])
def test_rate_must_be_positive(rate: float) -> None:
    """A zero or negative rate is refused when the bucket is made."""
    with pytest.raises(ValueError, match="rate must be > 0"):
        TokenBucket(rate)


async def test_acquire_sleeps_only_when_in_debt() -> None:
    """acquire() returns without suspending within the burst, and suspends in debt."""
    bucket = TokenBucket(rate=1, burst=2, clock=_Clock())
    free = asyncio.ensure_future(bucket.acquire(2))
    await asyncio.sleep(0)
    assert free.done()
    in_debt = asyncio.ensure_future(bucket.acquire(1))  # 1 s at 1 unit/s on a frozen clock
    await asyncio.sleep(0)
    assert not in_debt.done()
    in_debt.cancel()
    with pytest.raises(asyncio.CancelledError):
        await in_debt


@pytest.mark.parametrize(("rate", "shares", "expected"), [
    (40.0, 1, 40.0), (40.0, 4, 10.0), (10.0, 4, 2.5), (5.0, 100, 0.05), (None, 4, None),
])
def test_share_of_is_an_equal_part_with_no_floor(rate, shares, expected) -> None:
    """Each of N gets rate / N, however small: a floor would add up to more than rate."""
    assert share_of(rate, shares) == expected


def test_share_of_needs_at_least_one_share() -> None:
    """Zero shares is a programming error, named."""
    with pytest.raises(ValueError, match="shares must be >= 1"):
        share_of(10.0, 0)


def test_api_bucket_scales_rate_and_burst() -> None:
    """No cap, no bucket; a share's bucket has 1/N of the rate and of the burst."""
    assert api_bucket(None, 4) is None
    whole = api_bucket(40.0)
    assert whole is not None and (whole.rate, whole.burst) == (40.0, 40.0)
    part = api_bucket(40.0, 4)
    assert part is not None and (part.rate, part.burst) == (10.0, 10.0)
    tiny = api_bucket(1.0, 4)  # the account's burst of 1 request, split four ways
    assert tiny is not None and (tiny.rate, tiny.burst) == (0.25, 0.25)


def _sent_by(bucket: TokenBucket, count: int, until: float) -> int:
    """How many of *count* callers, all queueing at t=0, the bucket lets send by *until*."""
    return sum(1 for _ in range(count) if bucket.reserve() <= until + 1e-9)


def _frozen(rate: float, shares: int) -> TokenBucket:
    """api_bucket's bucket, on a clock that stands still (as if all started at once)."""
    bucket = api_bucket(rate, shares)
    assert bucket is not None
    return TokenBucket(bucket.rate, bucket.burst, clock=_Clock())


@pytest.mark.parametrize("rate", [0.5, 1.0, 3.0, 40.0])
@pytest.mark.parametrize("shares", [2, 3, 4, 7, 100])
def test_shares_together_never_exceed_one_whole_bucket(rate: float, shares: int) -> None:
    """N share buckets starting full, all at once, let through no more by any time t
    than the one bucket of an unsharded run: the account sees at most its budget."""
    for until in (0.0, 0.3, 1.0, 2.5, 10.0):
        budget = _sent_by(_frozen(rate, 1), 1000, until)
        together = sum(_sent_by(_frozen(rate, shares), 1000, until) for _ in range(shares))
        assert together <= budget
        # ... and they use it: no more is lost than each share's fraction of a request.
        assert together >= budget - shares


@pytest.mark.parametrize(("text", "expected"), [
    ("50MB/s", 50e6), ("800KiB/s", 800 * 1024), ("1000000", 1e6), (" 1.5 gb ", 1.5e9),
    ("2MiB", 2 * 1024**2), ("10kb/s", 10_000),
])
def test_parse_rate(text: str, expected: float) -> None:
    """Decimal KB/MB/GB and binary KiB/MiB/GiB, '/s' optional, case and spaces ignored."""
    assert parse_rate(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["", "fast", "50 MB/h", "-5MB/s", "0", "5XB/s", "5ib"])
def test_parse_rate_refuses_what_is_not_a_rate(text: str) -> None:
    """Anything but a positive number with a known unit is a ValueError naming it."""
    with pytest.raises(ValueError, match=r"not a rate|more than 0"):
        parse_rate(text)


@pytest.mark.parametrize(("value", "expected"), [
    ("20GiB", 20 * 1024**3), ("500MB", 500_000_000), (4096, 4096), ("1.5KiB", 1536),
])
def test_parse_size(value: str | int, expected: int) -> None:
    """Sizes with units become bytes; an int is already bytes."""
    assert parse_size(value) == expected


@pytest.mark.parametrize("value", [0, -1, True, "0MB", "big", "20GiB/s"])
def test_parse_size_refuses_what_is_not_a_size(value: str | int) -> None:
    """Zero, negatives, booleans and rates are not sizes."""
    with pytest.raises(ValueError, match=r"not a size|more than 0|size like"):
        parse_size(value)


@pytest.mark.parametrize(("count", "expected"), [
    (20 * 1024**3, "20GiB"), (500_000_000, "500MB"), (1536, "1536 bytes"), (3 * 1024, "3KiB"),
    (7, "7 bytes"), (2000, "2kB"),
])
def test_format_size_is_exact_and_round_trips(count: int, expected: str) -> None:
    """format_size picks the largest exact unit, and parse_size reads it back."""
    assert format_size(count) == expected
    assert parse_size(expected.replace(" bytes", "")) == count
