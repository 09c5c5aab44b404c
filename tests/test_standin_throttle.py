"""The stand-in's throttles: per file connection (``file_rate``, which bench_shards.py
uses) and per account (``requests_per_second``: code 1005 above it), and how the archiver
fares against the second."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import signal
import subprocess
import sys
import time
import urllib.request

import aiohttp
import pytest

from archiver.config import Config
from archiver.manifest import Manifest
from archiver.models import Outcome
from archiver.run import archive
from archiver.testing.standin import INFO_PATH, AkoolStandIn

from .conftest import API_KEY, config_dict


async def test_file_rate_paces_each_connection_alone():
    """Each response is paced on its own: two at once both take >= size/rate, intact.

    Only a lower bound is checked: a slow machine can make a download slower, never
    faster, than its pace, so the check cannot flake.
    """
    rate, size = 256 * 1024, 128 * 1024
    standin = AkoolStandIn(file_rate=rate)
    standin.add_job("throttled1", video_size=size)
    async with standin.serve() as url, aiohttp.ClientSession() as session:
        target = standin.file_url("throttled1", "video.mp4", url)

        async def fetch() -> tuple[float, bytes]:
            began = time.monotonic()
            async with session.get(target) as resp:
                body = await resp.read()
            return time.monotonic() - began, body

        results = await asyncio.gather(fetch(), fetch())
    expected = standin.file_sha256("throttled1", "video.mp4")
    for took, body in results:
        assert hashlib.sha256(body).hexdigest() == expected
        assert took >= size / rate * 0.9


# ------------------------------------------------- the account's request limit

def _auth() -> dict[str, str]:
    return {"x-api-key": "test-key"}


async def test_request_limit_is_account_wide_and_answers_1005() -> None:
    """Past its burst, any lookup - whatever the id - is answered code 1005 (HTTP 200),
    counted and recorded; a refused lookup does not advance its job."""
    # 1 token per 100 s: nothing comes back while the test runs, however slow the machine.
    standin = AkoolStandIn(requests_per_second=0.01, burst=3)
    for name in ("limited1", "limited2"):
        standin.add_job(name, polls_until_done=2)
    async with standin.serve() as url, aiohttp.ClientSession(headers=_auth()) as session:

        async def lookup(job: str) -> tuple[int, int, int | None]:
            async with session.get(url + INFO_PATH, params={"video_model_id": job}) as resp:
                body = await resp.json()
            status = body["data"]["video_status"] if body["data"] else None
            return resp.status, body["code"], status

        answers = [await lookup(job) for job in
                   ("limited1", "limited2", "limited1", "limited2", "limited1")]
    assert answers == [(200, 1000, 1), (200, 1000, 1), (200, 1000, 3),
                       (200, 1005, None), (200, 1005, None)]
    assert standin.throttled == 2
    assert [(lk.video_model_id, lk.throttled) for lk in standin.lookups] == [
        ("limited1", False), ("limited2", False), ("limited1", False),
        ("limited2", True), ("limited1", True)]
    times = [lk.at for lk in standin.lookups]
    assert times == sorted(times)
    assert standin.polls == {"limited1": 3, "limited2": 2}
    standin.reset_counters()
    assert (standin.throttled, standin.lookups) == (0, [])


async def test_request_limit_refills_at_its_rate() -> None:
    """Right after its burst the account refuses; a client that waits 1/rate gets through."""
    standin = AkoolStandIn(requests_per_second=1, burst=1)
    standin.add_job("refill")
    async with standin.serve() as url, aiohttp.ClientSession(headers=_auth()) as session:

        async def code() -> int:
            async with session.get(url + INFO_PATH, params={"video_model_id": "refill"}) as r:
                return int((await r.json())["code"])

        assert [await code(), await code()] == [1000, 1005]  # the 2nd within 1 s: refused
        await asyncio.sleep(1.0)  # a token's worth: a lower bound, safe on a slow machine
        assert await code() == 1000
    assert standin.throttled == 1


def test_no_limit_by_default_and_bad_limits_refused() -> None:
    """Unset, nothing is refused; a rate <= 0 or a burst < 1 (or without rate) is an error."""
    assert AkoolStandIn().requests_per_second is None
    assert AkoolStandIn(requests_per_second=0.5).burst == 1
    for kwargs in ({"requests_per_second": 0}, {"requests_per_second": 5, "burst": 0.5},
                   {"burst": 3}):
        with pytest.raises(ValueError, match=r"requests_per_second|burst"):
            AkoolStandIn(**kwargs)


def test_standin_cli_limits_requests_and_counts_refusals() -> None:
    """`python -m archiver.testing --requests-per-second R --burst B` enforces the limit
    and says on exit how many lookups it answered 1005; a bad value is exit 2."""
    bad = subprocess.run([sys.executable, "-m", "archiver.testing", "--requests-per-second",
                          "0"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--requests-per-second" in bad.stderr
    proc = subprocess.Popen(
        [sys.executable, "-m", "archiver.testing", "--port", "0", "--jobs", "1",
         "--requests-per-second", "0.01", "--burst", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url, job = proc.stdout.readline().strip(), proc.stdout.readline().strip()
        codes = []
        for _ in range(3):
            request = urllib.request.Request(f"{url}{INFO_PATH}?video_model_id={job}",
                                             headers=_auth())
            with urllib.request.urlopen(request, timeout=30) as resp:
                codes.append(json.load(resp)["code"])
        assert codes == [1000, 1000, 1005]
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "answered 1 lookup(s) with code 1005 (over 0.01/s)" in err


async def test_archiver_backs_off_after_1005_and_gets_through(tmp_path) -> None:
    """Code 1005 is transient: the id is asked again only after the retry backoff (never
    at once), so a run that meets the account's limit slows down, then archives all."""
    ids = [f"busy{n}" for n in range(6)]
    standin = AkoolStandIn(api_key=API_KEY, requests_per_second=5, burst=1)
    for item in ids:
        standin.add_job(item)
    wait = 0.1
    async with standin.serve() as url:
        # No client-side cap and 6 polls at once: the account's limit is met for sure.
        config = Config.model_validate(config_dict(
            url, tmp_path / "archive", concurrency={"polls": 6},
            api={"retries": {"attempts": 10, "wait_initial": wait, "wait_max": 0.5}}))
        result = await archive(config, Manifest.from_ids(ids))
    assert result.count(Outcome.ARCHIVED) == len(ids)
    assert standin.throttled > 0
    lookups = standin.lookups
    for item in ids:
        times = [(lk.at, lk.throttled) for lk in lookups if lk.video_model_id == item]
        for (at, refused), (after, _) in itertools.pairwise(times):
            assert refused  # asked again only because it was refused
            # The retry waits >= wait_initial (jitter only adds): a lower bound, which
            # a slow machine cannot break. Immediate retries would hammer the account.
            assert after - at >= wait * 0.99
