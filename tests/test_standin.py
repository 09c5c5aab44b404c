"""Tests of the Akool stand-in: real loopback sockets and a real aiohttp client, no mocks."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import signal
import struct
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from archiver.testing import (
    FILE_KINDS,
    AkoolStandIn,
    JobScenario,
    SyntheticMp4,
    generated_job_id,
    mp4_bytes,
    mp4_header,
    sample_jobs,
    srt_text,
)
from archiver.testing.standin import INFO_PATH, TOKEN_PATH

KEY = "sk-standin-test-key"
TOKEN = "standin-test-token"
AUTH = {"x-api-key": KEY}
JOB = "64dd92c1f0b6684651e90e09"
OTHER = "64dd92c1f0b6684651e90e0a"

# The stand-in lives in a subdirectory of the repository root.
REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def standin() -> AkoolStandIn:
    return AkoolStandIn(api_key=KEY, token=TOKEN, client_id="cid", client_secret="csecret")


@pytest_asyncio.fixture
async def base(standin: AkoolStandIn) -> AsyncIterator[str]:
    async with standin.serve() as url:
        yield url


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    # force_close: one connection per request, so aiohttp never silently
    # retries a request on a reused connection that a fault has just cut.
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as client:
        yield client


async def poll(
    session: aiohttp.ClientSession,
    base: str,
    job_id: str | None = JOB,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    params = {"video_model_id": job_id} if job_id is not None else {}
    async with session.get(
        base + INFO_PATH, params=params, headers=AUTH if headers is None else headers
    ) as resp:
        assert resp.status == 200
        body: dict[str, Any] = await resp.json()
        return body


# ------------------------------------------------------------------ media


def _boxes(data: bytes) -> list[tuple[bytes, int, int]]:
    """Top-level ISO-BMFF boxes as (type, offset, size)."""
    out, pos = [], 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if size == 1:
            size = struct.unpack(">Q", data[pos + 8 : pos + 16])[0]
        out.append((kind, pos, size))
        pos += size
    return out


def test_mp4_structure_and_exact_size() -> None:
    data = mp4_bytes(10_000, b"seed")
    assert len(data) == 10_000
    assert data[4:8] == b"ftyp"
    assert data[8:12] == b"isom"
    assert data[16:32] == b"isomiso2avc1mp41"
    boxes = _boxes(data)
    assert [b[0] for b in boxes] == [b"ftyp", b"moov", b"mdat"]
    moov_offset = boxes[1][1]
    assert data[moov_offset + 12 : moov_offset + 16] == b"mvhd"
    mdat_offset, mdat_size = boxes[2][1], boxes[2][2]
    assert mdat_offset + mdat_size == len(data)
    # Smaller than the header: the header is truncated.
    assert mp4_bytes(10) == mp4_header(10_000)[:10]
    assert mp4_bytes(0) == b""


def test_mp4_large_file_uses_largesize_and_ranges_agree() -> None:
    big = SyntheticMp4(5 * 2**30, b"big")
    boxes = _boxes(big.header)
    assert boxes[-1][0] == b"mdat" and boxes[-1][1] + boxes[-1][2] == big.size
    small = SyntheticMp4(3 * 2**20 + 17, b"x")
    whole = small.read(0, small.size)
    assert b"".join(small.iter_chunks(chunk_size=100_000)) == whole
    for start, end in [(0, 5), (100, 2**20 + 5), (2**20 - 3, 3 * 2**20 + 17)]:
        assert small.read(start, end) == whole[start:end]
    assert hashlib.sha256(whole).hexdigest() == small.sha256()
    # Different seeds give different content.
    assert SyntheticMp4(small.size, b"y").sha256() != small.sha256()


def test_srt_text() -> None:
    en, es = srt_text("en"), srt_text("es")
    assert en.startswith("1\n00:00:01,000 --> 00:00:02,500\n")
    assert re.findall(r"^\d+$", es, flags=re.M) == ["1", "2", "3", "4"]
    assert en != es and "ó" in es


# -------------------------------------------------------------- API basics


@pytest.mark.asyncio
async def test_status_progression_and_fields(
    standin: AkoolStandIn, base: str, session: aiohttp.ClientSession
) -> None:
    standin.add_job(
        JOB,
        polls_until_done=3,
        files=FILE_KINDS,
        create_time=1692242625334,
        extra_fields={"video_duration": 12.5},
    )
    answers = [await poll(session, base) for _ in range(4)]
    assert [a["code"] for a in answers] == [1000] * 4
    assert [a["data"]["video_status"] for a in answers] == [1, 2, 3, 3]
    first, done = answers[0]["data"], answers[2]["data"]
    assert first["video"] == ""
    assert first["audio_splits"] == {
        "original_srt_url": "",
        "translated_srt_url": "",
        "no_caption_video_url": "",
    }
    assert first["_id"] == JOB and first["create_time"] == 1692242625334
    assert first["video_duration"] == 12.5
    for key in (
        "video_id",
        "uid",
        "type",
        "from",
        "storage_loc",
        "faceswap_quality",
        "video_lock_duration",
        "deduction_lock_duration",
        "external_video",
    ):
        assert key in first
    assert done["progress"] == 100 and first["progress"] == 0
    assert done["video"].startswith(f"{base}/files/{JOB}/video.mp4?Expires=")
    assert "Signature=" in done["video"]
    assert done["audio_splits"]["translated_srt_url"].startswith(
        f"{base}/files/{JOB}/translated.srt?"
    )
    assert "error_code" not in done
    assert standin.polls[JOB] == 4


@pytest.mark.asyncio
async def test_failed_never_and_immediate(
    standin: AkoolStandIn, base: str, session: aiohttp.ClientSession
) -> None:
    standin.add_job(
        JOB, polls_until_done=2, outcome="failed", error_code=77, error_reason="no face"
    )
    standin.add_job(OTHER, polls_until_done=2, outcome="never")
    failed = [(await poll(session, base))["data"] for _ in range(2)]
    assert [d["video_status"] for d in failed] == [1, 4]
    assert failed[1]["error_code"] == 77 and failed[1]["error_reason"] == "no face"
    assert failed[1]["video"] == "" and "audio_splits" not in failed[1]
    never = [(await poll(session, base, OTHER))["data"]["video_status"] for _ in range(5)]
    assert never == [1, 2, 2, 2, 2]
    # Jobs can be added while serving; polls_until_done=1 is final at once.
    standin.add_job("ffffffffffffffffffffffff")
    data = (await poll(session, base, "ffffffffffffffffffffffff"))["data"]
    assert data["video_status"] == 3 and "audio_splits" not in data


@pytest.mark.asyncio
async def test_auth_precedence_and_errors(
    standin: AkoolStandIn, base: str, session: aiohttp.ClientSession
) -> None:
    standin.add_job(JOB)
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    # Authorization wins: a valid token with a wrong key passes...
    assert (await poll(session, base, headers={**bearer, "x-api-key": "wrong"}))["code"] == 1000
    # ...and a wrong token fails even with the right key.
    wrong_bearer = {"Authorization": "Bearer nope", "x-api-key": KEY}
    body = await poll(session, base, headers=wrong_bearer)
    assert body == {"code": 1101, "msg": "invalid authorization", "data": None}
    assert (await poll(session, base, headers={"x-api-key": "wrong"}))["code"] == 1101
    body = await poll(session, base, headers={})
    assert body["code"] == 1102 and body["msg"] == "authorization empty"
    assert standin.api_calls == 4
    # Rejected requests are not polls of the id.
    assert standin.polls[JOB] == 1
    headers = standin.api_headers
    assert headers[0]["authorization"] == f"Bearer {TOKEN}"
    assert headers[2]["X-Api-Key"] == "wrong"
    assert "x-api-key" not in headers[3]


@pytest.mark.asyncio
async def test_get_token(base: str, session: aiohttp.ClientSession) -> None:
    async with session.post(
        base + TOKEN_PATH, json={"clientId": "cid", "clientSecret": "csecret"}
    ) as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["code"] == 1000 and body["token"] == TOKEN
    async with session.post(
        base + TOKEN_PATH, json={"clientId": "cid", "clientSecret": "bad"}
    ) as resp:
        assert (await resp.json())["code"] == 1101


@pytest.mark.asyncio
async def test_unknown_and_missing_id(
    standin: AkoolStandIn, base: str, session: aiohttp.ClientSession
) -> None:
    body = await poll(session, base, OTHER)
    assert body == {"code": 1008, "msg": "content not found", "data": None}
    assert (await poll(session, base, None))["code"] == 1003
    assert (await poll(session, base, ""))["code"] == 1003


# -------------------------------------------------------------- API faults


@pytest.mark.asyncio
async def test_api_faults_in_order_then_normal(
    standin: AkoolStandIn, base: str, session: aiohttp.ClientSession
) -> None:
    standin.add_job(
        JOB,
        polls_until_done=2,
        api_faults=[429, (429, 7), 500, 502, 503, "html", ("code", 1005), "reset", "reset"],
    )
    url = base + INFO_PATH + f"?video_model_id={JOB}"

    async def raw() -> tuple[int, str, str, str | None]:
        async with session.get(url, headers=AUTH) as resp:
            return (
                resp.status,
                resp.content_type,
                await resp.text(),
                resp.headers.get("Retry-After"),
            )

    status, _, _, retry_after = await raw()
    assert (status, retry_after) == (429, "1")
    status, _, _, retry_after = await raw()
    assert (status, retry_after) == (429, "7")
    for expected in (500, 502, 503):
        status, ctype, text, _ = await raw()
        assert status == expected and ctype == "text/html" and str(expected) in text
    status, ctype, text, _ = await raw()
    assert status == 200 and ctype == "text/html" and text.lstrip().startswith("<!DOCTYPE html>")
    body = await poll(session, base)
    assert body == {"code": 1005, "msg": "operation too frequent", "data": None}
    # aiohttp retries an idempotent request once after a reset, so it takes
    # two resets in a row for the client to see the error.
    with pytest.raises(aiohttp.ClientError):
        await raw()
    assert standin.polls[JOB] == 9
    # Faults do not advance the job: the first normal answer is still "queued".
    assert [(await poll(session, base))["data"]["video_status"] for _ in range(2)] == [1, 3]
    assert standin.polls[JOB] == 11


@pytest.mark.asyncio
async def test_business_code_and_fail_all(
    standin: AkoolStandIn, base: str, session: aiohttp.ClientSession
) -> None:
    standin.add_job(JOB, business_code=1009, api_faults=[("code", 2001)])
    assert [(await poll(session, base))["code"] for _ in range(3)] == [2001, 1009, 1009]
    standin.add_job(OTHER)
    standin.fail_all_with_code = 1200
    assert (await poll(session, base, OTHER)) == {
        "code": 1200,
        "msg": "account banned",
        "data": None,
    }
    assert (await poll(session, base, OTHER, headers={}))["code"] == 1200


@pytest.mark.asyncio
async def test_latency(standin: AkoolStandIn, base: str, session: aiohttp.ClientSession) -> None:
    standin.add_job(JOB)
    standin.latency = 0.1
    started = time.monotonic()
    await poll(session, base)
    assert time.monotonic() - started >= 0.09


def test_bad_faults_rejected(standin: AkoolStandIn) -> None:
    with pytest.raises(ValueError):
        standin.add_job(JOB, api_faults=["boom"])
    with pytest.raises(ValueError):
        standin.add_job(JOB, file_faults={"video": ["html"]})
    with pytest.raises(ValueError):
        standin.add_job(JOB, files=("video", "subtitles"))
    with pytest.raises(ValueError):
        standin.add_job(JOB, polls_until_done=0)


# ------------------------------------------------------------------ files


@pytest.mark.asyncio
async def test_file_headers_ranges_and_head(
    standin: AkoolStandIn, base: str, session: aiohttp.ClientSession
) -> None:
    standin.add_job(JOB, files=FILE_KINDS, video_size=100_000)
    url = standin.file_url(JOB, "video")
    assert "?Expires=" in url
    expected = standin.file_bytes(JOB, "video.mp4")
    assert len(expected) == 100_000 == standin.file_size(JOB, "video")

    async with session.get(url) as resp:
        assert resp.status == 200
        assert resp.content_type == "video/mp4"
        assert resp.headers["Content-Length"] == "100000"
        assert resp.headers["Accept-Ranges"] == "bytes"
        assert "Content-Encoding" not in resp.headers
        etag, last_modified = resp.headers["ETag"], resp.headers["Last-Modified"]
        assert etag.startswith('"') and last_modified.endswith("GMT")
        body = await resp.read()
    assert body == expected and body[4:8] == b"ftyp"
    assert hashlib.sha256(body).hexdigest() == standin.file_sha256(JOB, "video")

    ranges = {
        "bytes=10-19": (10, 20),
        "bytes=99990-": (99990, 100_000),
        "bytes=-5": (99_995, 100_000),
        "bytes=50-999999": (50, 100_000),
    }
    for header, (start, end) in ranges.items():
        async with session.get(url, headers={"Range": header}) as resp:
            assert resp.status == 206, header
            assert resp.headers["Content-Range"] == f"bytes {start}-{end - 1}/100000"
            assert resp.headers["Content-Length"] == str(end - start)
            assert await resp.read() == expected[start:end]
    async with session.get(url, headers={"Range": "bytes=100000-"}) as resp:
        assert resp.status == 416
        assert resp.headers["Content-Range"] == "bytes */100000"
    # A stale If-Range gets the whole file, a matching one the range.
    async with session.get(url, headers={"Range": "bytes=0-9", "If-Range": '"old"'}) as resp:
        assert resp.status == 200
    async with session.get(url, headers={"Range": "bytes=0-9", "If-Range": etag}) as resp:
        assert resp.status == 206

    async with session.head(url) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Length"] == "100000"
        assert resp.headers["ETag"] == etag
        assert await resp.read() == b""

    async with session.get(standin.file_url(JOB, "translated_srt")) as resp:
        assert resp.content_type == "application/x-subrip"
        text = (await resp.read()).decode("utf-8")
    assert text == srt_text("es")
    assert standin.file_bytes(JOB, "original_srt").decode() == srt_text("en")
    async with session.get(standin.file_url(JOB, "no_caption")) as resp:
        nc = await resp.read()
    assert nc[4:8] == b"ftyp" and nc != expected[: len(nc)]

    async with session.get(f"{base}/files/{JOB}/nothing.mp4") as resp:
        assert resp.status == 404
    assert standin.file_requests[(JOB, "video.mp4")] == 9
    # Full body, four ranges, nothing for 416, full body (stale If-Range), 10 bytes.
    sent = 100_000 + (10 + 10 + 5 + 99_950) + 0 + 100_000 + 10
    assert standin.file_bytes_sent[(JOB, "video.mp4")] == sent


@pytest.mark.asyncio
async def test_explicit_video_bytes(
    standin: AkoolStandIn, base: str, session: aiohttp.ClientSession
) -> None:
    standin.add_job(JOB, video_bytes=b"not really a video")
    async with session.get(standin.file_url(JOB, "video")) as resp:
        assert await resp.read() == b"not really a video"


@pytest.mark.asyncio
async def test_large_file_streams_and_ranges(
    standin: AkoolStandIn, base: str, session: aiohttp.ClientSession
) -> None:
    size = 64 * 2**20
    standin.add_job(JOB, video_size=size, create_time=1692242625334)
    url = standin.file_url(JOB, "video")
    # The generator documents how the server derives a file's content.
    reference = SyntheticMp4(size, f"{JOB}/video.mp4".encode(), 1692242625)
    start = size - 3 * 2**20 - 12345
    async with session.get(url, headers={"Range": f"bytes={start}-"}) as resp:
        assert resp.status == 206
        tail = await resp.read()
    assert tail == reference.read(start, size)
    # The whole file streams and hashes to the expected value.
    digest, total = hashlib.sha256(), 0
    async with session.get(url) as resp:
        async for chunk in resp.content.iter_chunked(2**20):
            digest.update(chunk)
            total += len(chunk)
    assert total == size
    assert digest.hexdigest() == standin.file_sha256(JOB, "video") == reference.sha256()


@pytest.mark.asyncio
async def test_file_faults(
    standin: AkoolStandIn, base: str, session: aiohttp.ClientSession
) -> None:
    standin.add_job(
        JOB,
        video_size=200_000,
        file_faults={"video": [403, "html200", "truncate", "reset", "reset", 503]},
    )
    url = standin.file_url(JOB, "video")
    async with session.get(url) as resp:
        assert resp.status == 403 and resp.content_type == "text/html"
        assert "403" in await resp.text()
    async with session.get(url) as resp:
        assert resp.status == 200 and resp.content_type == "text/html"
        assert b"<html>" in await resp.read()
    got = b""
    async with session.get(url) as resp:
        assert resp.headers["Content-Length"] == "200000"
        with pytest.raises(aiohttp.ClientPayloadError):
            async for chunk in resp.content.iter_chunked(65536):
                got += chunk
    assert 0 < len(got) < 200_000
    assert got == standin.file_bytes(JOB, "video")[: len(got)]
    with pytest.raises(aiohttp.ClientError):  # two resets: aiohttp retries once
        async with session.get(url) as resp:
            await resp.read()
    async with session.get(url) as resp:
        assert resp.status == 503
    async with session.get(url) as resp:
        assert resp.status == 200
        assert await resp.read() == standin.file_bytes(JOB, "video")
    assert standin.file_requests[(JOB, "video.mp4")] == 7


@pytest.mark.asyncio
async def test_stall_is_cut_by_client_timeout_and_shutdown(
    session: aiohttp.ClientSession,
) -> None:
    standin = AkoolStandIn(api_key=KEY)
    standin.add_job(JOB, file_faults={"video": ["stall"]})
    started = time.monotonic()
    async with standin.serve() as _:
        timeout = aiohttp.ClientTimeout(sock_read=0.3)
        async with session.get(standin.file_url(JOB, "video"), timeout=timeout) as resp:
            assert resp.status == 200
            with pytest.raises(asyncio.TimeoutError):
                await resp.read()
        # Leave a second stalled download running: shutdown must still be quick.
        standin.add_file_faults(JOB, "video.mp4", "stall")
        resp2 = await session.get(standin.file_url(JOB, "video"))
        await resp2.content.readexactly(1000)
    assert time.monotonic() - started < 5
    resp2.close()


@pytest.mark.asyncio
async def test_redirect_and_expired(
    standin: AkoolStandIn, base: str, session: aiohttp.ClientSession
) -> None:
    standin.add_job(JOB, redirects={"video": AkoolStandIn.mirror_path(JOB, "video")})
    standin.add_job(OTHER, expired=True)
    async with session.get(standin.file_url(JOB, "video"), allow_redirects=False) as resp:
        assert resp.status == 302
        assert resp.headers["Location"] == f"/mirror/{JOB}/video.mp4"
    async with session.get(standin.file_url(JOB, "video")) as resp:
        assert resp.status == 200 and len(resp.history) == 1
        assert await resp.read() == standin.file_bytes(JOB, "video")
    async with session.get(standin.file_url(OTHER, "video")) as resp:
        assert resp.status == 403


# ------------------------------------------------------- thread, CLI, demo


def test_run_in_thread(standin: AkoolStandIn) -> None:
    standin.add_job(JOB, polls_until_done=2)
    with standin.run_in_thread() as url:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
        request = urllib.request.Request(f"{url}{INFO_PATH}?video_model_id={JOB}", headers=AUTH)
        statuses = []
        for _ in range(2):
            with urllib.request.urlopen(request, timeout=5) as resp:
                statuses.append(json.load(resp)["data"]["video_status"])
        assert statuses == [1, 3]
        assert standin.polls[JOB] == 2 and standin.api_calls == 2
        with urllib.request.urlopen(standin.file_url(JOB, "video"), timeout=5) as resp:
            assert resp.read() == standin.file_bytes(JOB, "video")
    assert standin.base_url is None
    # The same stand-in can be started again.
    with (
        standin.run_in_thread() as url,
        urllib.request.urlopen(
            urllib.request.Request(f"{url}{INFO_PATH}?video_model_id={JOB}", headers=AUTH),
            timeout=5,
        ) as resp,
    ):
        assert json.load(resp)["data"]["video_status"] == 3


def test_cli_serves_generated_jobs(tmp_path: Path) -> None:
    manifest = tmp_path / "ids.yaml"
    command = [
        sys.executable,
        "-m",
        "archiver.testing",
        "--port",
        "0",
        "--api-key",
        "k",
        "--jobs",
        "3",
        "--polls-until-done",
        "2",
        "--files",
        "video,original_srt",
        "--video-size",
        "5000",
        "--ids-file",
        str(manifest),
    ]
    with subprocess.Popen(
        command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stdout is not None
            url = proc.stdout.readline().strip()
            assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
            ids = [generated_job_id(i) for i in range(3)]
            assert manifest.read_text() == "videos:\n" + "".join(f'  - "{i}"\n' for i in ids)
            assert all(re.fullmatch(r"[0-9a-f]{24}", i) for i in ids)
            request = urllib.request.Request(
                f"{url}{INFO_PATH}?video_model_id={ids[1]}", headers={"x-api-key": "k"}
            )
            answers = []
            for _ in range(2):
                with urllib.request.urlopen(request, timeout=5) as resp:
                    answers.append(json.load(resp)["data"])
            assert [a["video_status"] for a in answers] == [1, 3]
            assert set(answers[1]["audio_splits"]) == {"original_srt_url"}
            with urllib.request.urlopen(answers[1]["video"], timeout=5) as resp:
                assert len(resp.read()) == 5000
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0


def test_sample_jobs() -> None:
    jobs = sample_jobs()
    assert len(jobs) == 6
    assert all(re.fullmatch(r"[0-9a-f]{24}", job_id) for job_id in jobs)
    scenarios = list(jobs.values())
    assert sum(s.files == FILE_KINDS for s in scenarios) == 3
    assert sum(s.files == ("video",) and s.outcome == "success" for s in scenarios) == 2
    assert sum(s.outcome == "failed" for s in scenarios) == 1
    assert all(2 <= s.polls_until_done <= 3 for s in scenarios)
    standin = AkoolStandIn()
    standin.add_jobs(jobs)
    assert standin.job_ids == list(jobs)
    assert isinstance(scenarios[0], JobScenario)
