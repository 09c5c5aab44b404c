"""`archiver serve`: Akool's signed, encrypted callbacks over real HTTP, journal, worker."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from archiver.config import Config
from archiver.journal import Journal
from archiver.serve import JOURNAL_NAME, Server
from archiver.testing.callbacks import CallbackSender
from archiver.testing.standin import AkoolStandIn, generated_job_id
from tests.conftest import API_KEY, config_dict

CLIENT_ID = "0123456789abcdef"              # 16 bytes: the IV
CLIENT_SECRET = "secret-key-of-24-bytes!!"  # 24 bytes: AES-192
WEBHOOK = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "listen": "127.0.0.1:0",
           "repoll_interval": 30}


@pytest.fixture
def standin() -> AkoolStandIn:
    return AkoolStandIn(api_key=API_KEY, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)


def make(base_url: str, root: Path, **sections: dict[str, Any]) -> Config:
    data = config_dict(base_url, root, webhook={**WEBHOOK, **sections.pop("webhook", {})},
                       **sections)
    return Config.model_validate(data)


@pytest.fixture
def serve(base_url: str, tmp_path: Path) -> Callable[..., Any]:
    """``async with serve(**sections) as (server, url)``: a real server on loopback."""
    import contextlib

    @contextlib.asynccontextmanager
    async def start(**sections: dict[str, Any]) -> AsyncIterator[tuple[Server, str]]:
        server = Server(make(base_url, tmp_path / "archive", **sections))
        async with server.running() as url:
            yield server, url

    return start


async def rows(root: Path) -> dict[str, Any]:
    """The journal's jobs by id (read through its own connection, as an operator would)."""
    path = root / JOURNAL_NAME
    if not path.exists():
        return {}
    async with Journal(path) as journal:
        return {r.id: r for r in await journal.jobs()}


async def wait_for(predicate: Callable[[], Any], timeout: float = 30) -> None:
    """Hang guard, not a timing assertion: poll *predicate* until true."""
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached before the hang guard")
        await asyncio.sleep(0.02)


def all_done(root: Path, count: int) -> Callable[[], Any]:
    async def check() -> bool:
        jobs = await rows(root)
        return len(jobs) == count and all(r.state == "done" for r in jobs.values())
    return check


# ------------------------------------------------------------------- the scheme

def independent_body(payload: dict[str, Any], timestamp: int, nonce: str) -> dict[str, Any]:
    """Sign and encrypt *payload* straight from akool-api.md, with no archiver code."""
    padder = padding.PKCS7(128).padder()
    plain = padder.update(json.dumps(payload).encode()) + padder.finalize()
    enc = Cipher(algorithms.AES(CLIENT_SECRET.encode()), modes.CBC(CLIENT_ID.encode())).encryptor()
    data = base64.b64encode(enc.update(plain) + enc.finalize()).decode()
    signature = hashlib.sha1("".join(sorted([CLIENT_ID, str(timestamp), nonce, data]))
                             .encode()).hexdigest()
    return {"signature": signature, "dataEncrypt": data, "timestamp": timestamp, "nonce": nonce}


async def test_documented_scheme_is_accepted_and_decrypted(
        standin: AkoolStandIn, base_url: str, serve: Any, tmp_path: Path) -> None:
    """A body built in the test from the documented scheme is verified, decrypted, archived."""
    job = generated_job_id(1, "vector")
    standin.add_job(job, video_size=4096)
    payload = {"_id": job, "status": 3, "url": standin.file_url(job, "video"),
               "type": 2, "unknown_field": ["kept"]}
    body = independent_body(payload, int(time.time() * 1000), "1529")
    async with serve() as (_, url), aiohttp.ClientSession() as http:
        async with http.post(url, json=body) as resp:
            assert resp.status == 200
        await wait_for(all_done(tmp_path / "archive", 1))
    row = (await rows(tmp_path / "archive"))[job]
    assert row.payload == payload and row.outcome == "archived"
    assert (tmp_path / "archive" / job / "archive.json").is_file()


async def test_known_vector_signature() -> None:
    """The signature function matches a SHA-1 computed by hand over the sorted strings."""
    from archiver.webhook import signature_of

    expected = hashlib.sha1(b"1529" + b"1710757981609" + b"LuG1" + b"abc").hexdigest()
    assert signature_of("abc", 1710757981609, "1529", "LuG1") == expected


# --------------------------------------------------------------- rejections

async def test_bad_callbacks_are_refused_and_nothing_is_recorded(
        standin: AkoolStandIn, base_url: str, serve: Any, tmp_path: Path) -> None:
    """Tampered, stale, future, oversized, non-JSON, mis-shaped, undecryptable: 4xx, no row."""
    job = generated_job_id(2, "bad")
    standin.add_job(job, video_size=4096)
    async with serve(webhook={"max_body": 2048, "max_age": 60}) as (server, url), \
            CallbackSender(url, CLIENT_ID, CLIENT_SECRET) as sender:
        good = sender.body(job, 3)
        wrong_key = CallbackSender(url, CLIENT_ID, "another-secret-24-bytes!")
        cases: list[tuple[Any, int, str]] = [
            (sender.tampered(good), 401, "bad_signature"),
            ({**good, "nonce": good["nonce"] + "1"}, 401, "bad_signature"),
            (sender.stale(job, 3600), 401, "stale"),
            (sender.stale(job, -3600), 401, "stale"),
            (b"not json at all", 400, "bad_json"),
            (b"[1, 2]", 400, "bad_shape"),
            ({k: v for k, v in good.items() if k != "nonce"}, 400, "bad_shape"),
            ({**good, "timestamp": str(good["timestamp"])}, 400, "bad_shape"),
            (b"{" + b" " * 4096 + b"}", 413, "too_large"),
            (independent_body({"_id": "../etc", "status": 3}, good["timestamp"], "7"),
             400, "bad_payload"),
            (independent_body({"_id": job, "status": 9}, good["timestamp"], "8"),
             400, "bad_payload"),
        ]
        # Signed correctly, encrypted with another key: padding or JSON fails.
        bad_cipher = wrong_key.body(job, 3)
        cases.append((bad_cipher, 400, "bad_payload"))
        for body, status, reason in cases:
            answer = await sender.post(body)
            assert (answer.status, answer.text.split(":")[0]) == (status, reason), body
        # A body streamed without Content-Length is cut off at max_body as well.
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(10):
                yield b" " * 1024
        async with aiohttp.ClientSession() as http, http.post(url, data=chunks()) as resp:
            assert resp.status == 413
        assert sum(server.counters.rejected.values()) == len(cases) + 1
    assert await rows(tmp_path / "archive") == {}
    assert standin.api_calls == 0 and not (tmp_path / "archive" / job).exists()


async def test_replay_is_refused_even_after_a_restart(
        standin: AkoolStandIn, base_url: str, serve: Any, tmp_path: Path) -> None:
    """The same nonce+timestamp is accepted once; a replay gets 409, before and after restart."""
    job = generated_job_id(3, "replay")
    standin.add_job(job, polls_until_done=10**6, outcome="never")
    async with serve() as (_, url), CallbackSender(url, CLIENT_ID, CLIENT_SECRET) as sender:
        first = await sender.notify(job, 2)
        assert first.status == 200
        assert (await sender.replay(first)).status == 409
    async with serve() as (server, url), CallbackSender(url, CLIENT_ID, CLIENT_SECRET) as sender:
        assert (await sender.replay(first)).status == 409
        assert server.counters.rejected["replay"] == 1
        # The same news under a fresh nonce is a harmless duplicate: 200.
        assert (await sender.duplicate(job, 2)).status == 200
    assert list(await rows(tmp_path / "archive")) == [job]


# ------------------------------------------------------------------ statuses

async def test_statuses_2_3_4_and_lost_callbacks(
        standin: AkoolStandIn, base_url: str, serve: Any, tmp_path: Path) -> None:
    """2 is recorded and re-polled until final (a lost 3); 4 fails with its reason; 3 archives."""
    processing, lost, failed = (generated_job_id(i, "flow") for i in range(3))
    standin.add_job(processing, video_size=4096)
    standin.add_job(lost, video_size=4096, polls_until_done=2)
    standin.add_job(failed, outcome="failed", error_reason="face not\ndetected")
    async with serve(webhook={"repoll_interval": 0.2}) as (server, url), \
            CallbackSender(url, CLIENT_ID, CLIENT_SECRET) as sender:
        for job in (processing, lost):
            assert (await sender.notify(job, 2)).status == 200
        assert (await standin.deliver(sender, failed)).status == 200
        # `processing` gets its 3; `lost` never does: only the re-poll can find it done.
        assert (await standin.deliver(sender, processing)).status == 200
        await wait_for(all_done(tmp_path / "archive", 3))
        # A late retry of "processing" after "success" changes nothing.
        late = await sender.notify(processing, 2)
        assert (late.status, late.text) == (200, "ok\n")
        assert server.counters.recorded["duplicate"] == 1
    jobs = await rows(tmp_path / "archive")
    assert jobs[processing].status == 3 and jobs[processing].state == "done"
    assert jobs[processing].outcome == jobs[lost].outcome == "archived"
    assert jobs[failed].outcome == "failed" and "face not\ndetected" in jobs[failed].error
    assert not (tmp_path / "archive" / failed).exists()
    # A failed job costs no API call: the callback said so.
    assert standin.polls[failed] == 0


# -------------------------------------------------------------- at volume

async def test_1000_concurrent_callbacks_with_duplicates_archive_each_once(
        standin: AkoolStandIn, base_url: str, serve: Any, tmp_path: Path) -> None:
    """1,000 jobs, 1,100 concurrent callbacks (10% duplicates): each file fetched once."""
    jobs = [generated_job_id(i, "bulk") for i in range(1000)]
    for job in jobs:
        standin.add_job(job, video_size=1024)
    sends = jobs + jobs[::10]
    async with serve(concurrency={"polls": 32, "downloads": 16}) as (_, url), \
            CallbackSender(url, CLIENT_ID, CLIENT_SECRET, connections=200) as sender:
        answers = await asyncio.gather(*(standin.deliver(sender, j) for j in sends))
        assert {a.status for a in answers} == {200}
        await wait_for(all_done(tmp_path / "archive", 1000), timeout=120)
    journal = await rows(tmp_path / "archive")
    assert {r.outcome for r in journal.values()} <= {"archived", "already_archived"}
    assert sum(r.outcome == "archived" for r in journal.values()) == 1000
    assert set(standin.file_requests.values()) == {1}
    assert len(standin.file_requests) == 1000
    assert all((tmp_path / "archive" / j / "archive.json").is_file() for j in jobs)


# -------------------------------------------------------------- operations

async def test_healthz_and_metrics(
        standin: AkoolStandIn, base_url: str, serve: Any, tmp_path: Path) -> None:
    """/healthz answers ok; /metrics counts received, rejected by reason, archived, queue."""
    job, waiting = generated_job_id(1, "ops"), generated_job_id(2, "ops")
    standin.add_job(job, video_size=4096)
    standin.add_job(waiting, outcome="never")
    async with serve() as (_, url), CallbackSender(url, CLIENT_ID, CLIENT_SECRET) as sender:
        base = url.rsplit("/", 2)[0]
        await standin.deliver(sender, job)
        await sender.notify(waiting, 2)
        await sender.post(b"nope")
        await sender.post(sender.tampered(sender.body(job)))

        async def archived() -> bool:
            return (await rows(tmp_path / "archive"))[job].state == "done"
        await wait_for(archived)
        async with aiohttp.ClientSession() as http:
            async with http.get(base + "/healthz") as resp:
                assert resp.status == 200
            async with http.get(base + "/metrics") as resp:
                text = await resp.text()
    assert "archiver_webhook_received_total 4" in text
    assert 'archiver_webhook_rejected_total{reason="bad_json"} 1' in text
    assert 'archiver_webhook_rejected_total{reason="bad_signature"} 1' in text
    assert 'archiver_webhook_items_total{outcome="archived"} 1' in text
    assert "archiver_webhook_queue_depth 1" in text
    assert "archiver_webhook_oldest_pending_age_seconds" in text


async def test_healthz_reports_unreachable_storage(
        standin: AkoolStandIn, base_url: str, serve: Any, tmp_path: Path) -> None:
    """/healthz is 503 naming the storage once the archive root is gone (a file in its way)."""
    journal = tmp_path / "state" / "journal.sqlite3"
    async with serve(webhook={"journal": str(journal)}) as (server, url), \
            aiohttp.ClientSession() as http:
        assert server.journal_path == journal
        health = url.rsplit("/", 2)[0] + "/healthz"
        async with http.get(health) as resp:
            assert resp.status == 200
        import shutil
        shutil.rmtree(tmp_path / "archive")
        (tmp_path / "archive").write_text("not a folder")
        async with http.get(health) as resp:
            status, text = resp.status, await resp.text()
    assert status == 503 and text.startswith("storage:") and "archive" in text


def test_worker_takes_one_small_batch_while_callbacks_wait() -> None:
    """After a slow commit the worker takes one small batch; two full ones once it is past."""
    from archiver import serve as serve_module
    counters = serve_module.Counters()
    full = serve_module.batch_limits(counters, time.monotonic())
    counters.slow_accept_at = time.monotonic()
    busy = serve_module.batch_limits(counters, time.monotonic())
    later = serve_module.batch_limits(counters, time.monotonic() + 3600)
    assert full == later == (serve_module._BATCHES, serve_module._BATCH)
    assert busy == (1, serve_module._BUSY_BATCH) and busy[1] < serve_module._BATCH
