"""`archiver serve`: Akool's signed, encrypted callbacks over real HTTP, journal, worker."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from archiver.config import Config
from archiver.service.journal import Journal
from archiver.service.serve import JOURNAL_NAME, Server
from archiver.testing.callbacks import CallbackSender, hostile_bodies, sign
from archiver.testing.standin import AkoolStandIn, generated_job_id
from tests.conftest import API_KEY, config_dict
from tests.servers import wait_for

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


async def test_a_24_character_client_id_as_akool_issues_them(
        base_url: str, serve: Any, tmp_path: Path) -> None:
    """Akool's client ids are 24 characters (its docs' example): the configuration takes
    one, the IV is its first 16 bytes and the signature covers all 24, as Akool's demos do."""
    client_id = "64db241f6d9e5c4bd136c187"
    standin_24 = AkoolStandIn(api_key=API_KEY, client_id=client_id,
                              client_secret=CLIENT_SECRET)
    job = generated_job_id(1, "clientid24")
    standin_24.add_job(job, video_size=4096)
    async with standin_24.serve() as api_url:
        server = Server(make(api_url, tmp_path / "archive",
                             webhook={"client_id": client_id}))
        async with server.running() as url:
            async with standin_24.callbacks(url) as sender:
                delivery = await standin_24.deliver(sender, job)
            assert delivery.status == 200, delivery
            await wait_for(all_done(tmp_path / "archive", 1))
    assert (await rows(tmp_path / "archive"))[job].outcome == "archived"
    # Decrypted independently: AES-CBC with the first 16 bytes of the id as the IV.
    padder = padding.PKCS7(128).padder()
    plain = padder.update(b'{"_id": "x"}') + padder.finalize()
    enc = Cipher(algorithms.AES(CLIENT_SECRET.encode()),
                 modes.CBC(client_id.encode()[:16])).encryptor()
    from archiver.akool.webhook import decrypt
    assert decrypt(base64.b64encode(enc.update(plain) + enc.finalize()).decode(),
                   client_id, CLIENT_SECRET) == b'{"_id": "x"}'


async def test_known_vector_signature() -> None:
    """The signature function matches a SHA-1 computed by hand over the sorted strings."""
    from archiver.akool.webhook import signature_of

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
            ({**good, "timestamp": f"{good['timestamp']}ms"}, 400, "bad_shape"),
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


async def metrics(url: str) -> str:
    async with aiohttp.ClientSession() as http, \
            http.get(url.rsplit("/", 2)[0] + "/metrics") as resp:
        return await resp.text()


def log_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """What the server logged at warning or above, from any logger (aiohttp's too)."""
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("name", list(hostile_bodies(CLIENT_ID, CLIENT_SECRET)))
async def test_hostile_bodies_are_refused_counted_and_logged_in_one_line(
        name: str, standin: AkoolStandIn, base_url: str, serve: Any, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """Bodies that crashed the handler (deep nesting, a 5,000-digit integer, a 10^400 ms
    timestamp, a deep encrypted payload, lone surrogates...): 4xx with the reason,
    counted, one warning naming the peer and the reason, no traceback, never the body."""
    caplog.set_level(logging.INFO)
    # Built now, not at collection: the signed ones carry a fresh timestamp.
    body, status, reason = hostile_bodies(CLIENT_ID, CLIENT_SECRET)[name]
    async with serve() as (server, url), CallbackSender(url, CLIENT_ID, CLIENT_SECRET) as sender:
        caplog.clear()
        answer = await sender.post(body)
        assert (answer.status, answer.text.split(":")[0]) == (status, reason)
        lines = log_lines(caplog)
        assert len(lines) == 1, [r.getMessage() for r in lines]
        message = lines[0].getMessage()
        assert "127.0.0.1" in message and f"{status} {reason}" in message, message
        assert lines[0].exc_info is None and "Traceback" not in caplog.text
        assert "7777777777" not in caplog.text and "\\ud" not in caplog.text
        text = await metrics(url)
    assert f'archiver_webhook_rejected_total{{reason="{reason}"}} 1' in text, text
    assert dict(server.counters.rejected) == {reason: 1}
    assert "archiver_webhook_received_total 1" in text
    assert await rows(tmp_path / "archive") == {} and standin.api_calls == 0


async def test_a_sender_hanging_up_mid_body_is_counted_in_one_line(
        standin: AkoolStandIn, base_url: str, serve: Any, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """A body cut short by the sender (Content-Length never reached): counted as
    `incomplete`, one warning, no traceback from aiohttp or from us."""
    from urllib.parse import urlsplit

    caplog.set_level(logging.INFO)
    async with serve() as (server, url):
        parts = urlsplit(url)
        _, writer = await asyncio.open_connection(parts.hostname, parts.port)
        writer.write(f"POST {parts.path} HTTP/1.1\r\nHost: x\r\nContent-Type: "
                     f"application/json\r\nContent-Length: 1000\r\n\r\n".encode()
                     + b'{"signature": "')
        await writer.drain()
        await wait_for(_received(server))
        writer.close()
        await writer.wait_closed()

        async def counted() -> bool:
            return server.counters.rejected["incomplete"] == 1
        await wait_for(counted, timeout=10)
        text = await metrics(url)
    assert 'archiver_webhook_rejected_total{reason="incomplete"} 1' in text
    lines = log_lines(caplog)
    assert len(lines) == 1 and "incomplete" in lines[0].getMessage(), caplog.text
    assert "Traceback" not in caplog.text and lines[0].exc_info is None


@pytest.mark.parametrize("request_bytes", [
    b"Transfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":\r\nZZsecretZZ\r\n",
    b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nZZsecretZZ",
    b"X-Hostile: ZZsecretZZ\x01\r\nContent-Length: 2\r\n\r\n{}",
], ids=["bad chunk size", "two Content-Lengths", "control character in a header"])
async def test_malformed_http_is_one_line_without_traceback(
        request_bytes: bytes, standin: AkoolStandIn, base_url: str, serve: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    """Requests aiohttp's parser refuses before any handler runs: 400, one warning
    naming the peer, no traceback, none of the request's bytes in the log."""
    from urllib.parse import urlsplit

    caplog.set_level(logging.INFO)
    async with serve() as (_, url):
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        writer.write(f"POST {parts.path} HTTP/1.1\r\nHost: x\r\n".encode() + request_bytes)
        await writer.drain()
        answer = await reader.read()
        writer.close()
        await writer.wait_closed()
    assert answer.startswith(b"HTTP/1.0 400") or answer.startswith(b"HTTP/1.1 400"), answer
    lines = log_lines(caplog)
    assert len(lines) == 1 and "127.0.0.1" in lines[0].getMessage(), caplog.text
    assert lines[0].exc_info is None and "Traceback" not in caplog.text
    assert "ZZsecretZZ" not in caplog.text


def _received(server: Server) -> Callable[[], Any]:
    async def check() -> bool:
        return server.counters.received >= 1
    return check


async def test_a_redelivery_is_200_and_changes_nothing_even_after_a_restart(
        standin: AkoolStandIn, base_url: str, serve: Any, tmp_path: Path) -> None:
    """The very body accepted before (Akool did not see our 200) gets 200, counted as a
    duplicate, the journal unchanged - before and after a restart; once stale, 401."""
    job = generated_job_id(3, "again")
    standin.add_job(job, polls_until_done=10**6, outcome="never")
    root = tmp_path / "archive"
    # Stamped 30 s ago: fresh for max_age 60, stale for max_age 10.
    stamp = int((time.time() - 30) * 1000)
    async with serve(webhook={"max_age": 60}) as (server, url), \
            CallbackSender(url, CLIENT_ID, CLIENT_SECRET) as sender:
        first = await sender.notify(job, 2, timestamp=stamp)
        assert first.status == 200
        before = await rows(root)
        again = await sender.replay(first)
        assert (again.status, again.text) == (200, "ok\n")
        assert dict(server.counters.recorded) == {("new", "video"): 1,
                                                  ("duplicate", "video"): 1}
        assert not server.counters.rejected
    async with serve(webhook={"max_age": 60}) as (server, url), \
            CallbackSender(url, CLIENT_ID, CLIENT_SECRET) as sender:
        assert (await sender.replay(first)).status == 200
        assert dict(server.counters.recorded) == {("duplicate", "video"): 1}
        # The same news under a fresh nonce is a harmless duplicate too.
        assert (await sender.duplicate(job, 2)).status == 200
        assert not server.counters.rejected
        assert await rows(root) == before
    # Two deliveries accepted: the first, and the same news under a fresh nonce.
    db = sqlite3.connect(root / JOURNAL_NAME)
    assert db.execute("SELECT count(*) FROM accepted").fetchone()[0] == 2
    db.close()
    async with serve(webhook={"max_age": 10}) as (server, url), \
            CallbackSender(url, CLIENT_ID, CLIENT_SECRET) as sender:
        stale = await sender.replay(first)
        assert (stale.status, stale.text.split(":")[0]) == (401, "stale")
    assert await rows(root) == before and list(before) == [job]


async def test_different_callbacks_sharing_nonce_and_timestamp_are_all_recorded(
        standin: AkoolStandIn, base_url: str, serve: Any, tmp_path: Path) -> None:
    """Akool's short nonces: two callbacks with one nonce and timestamp are two jobs, not
    a replay; each is recorded and archived, and each re-delivery is 200."""
    jobs = [generated_job_id(i, "shared") for i in range(2)]
    for job in jobs:
        standin.add_job(job, video_size=2048)
    stamp = int(time.time() * 1000)
    async with serve() as (server, url), CallbackSender(url, CLIENT_ID, CLIENT_SECRET) as sender:
        bodies = [sender.body(job, 3, url=standin.file_url(job, "video"), timestamp=stamp,
                              nonce="1529") for job in jobs]
        for body in bodies + bodies:
            answer = await sender.post(body)
            assert (answer.status, answer.text) == (200, "ok\n")
        await wait_for(all_done(tmp_path / "archive", 2))
        assert dict(server.counters.recorded) == {("new", "video"): 2,
                                                  ("duplicate", "video"): 2}
    assert {r.outcome for r in (await rows(tmp_path / "archive")).values()} == {"archived"}


async def test_nonce_and_timestamp_in_either_form_and_hex_ciphertext(
        standin: AkoolStandIn, base_url: str, serve: Any, tmp_path: Path) -> None:
    """A number nonce, a string timestamp, integral floats, hex dataEncrypt: accepted,
    signed over their text as it came. Bools, fractions, empty or long nonces, and
    timestamps that are no time: 400 bad_shape. A signature over another form: 401."""
    now = int(time.time() * 1000)
    accepted = {
        "nonce as a number": {"nonce": 1529},
        "timestamp as a string": {"timestamp": str(now)},
        "both the other way": {"nonce": 1530, "timestamp": str(now)},
        "integral floats": {"nonce": 1531.0, "timestamp": float(now)},
        "negative nonce": {"nonce": -7},
        "hex, odd blocks": {"encoding": "hex"},
        "hex, even blocks": {"encoding": "hex", "extra": {"pad": "x" * 16}},
    }
    refused = {
        "nonce true": {"nonce": True}, "nonce 1.5": {"nonce": 1.5},
        "nonce empty": {"nonce": ""}, "nonce of 257": {"nonce": "x" * 257},
        "nonce null": {"nonce": None}, "nonce a list": {"nonce": [1]},
        "timestamp true": {"timestamp": True}, "timestamp +0.5": {"timestamp": now + 0.5},
        "timestamp 2^53": {"timestamp": 2**53}, "timestamp negative": {"timestamp": -1},
        "timestamp '-1'": {"timestamp": "-1"}, "timestamp ' 1'": {"timestamp": f" {now}"},
    }
    jobs = {name: generated_job_id(i, "forms") for i, name in enumerate(accepted)}
    async with serve() as (_, url), CallbackSender(url, CLIENT_ID, CLIENT_SECRET) as sender:
        for name, kwargs in accepted.items():
            answer = await sender.post(sender.body(jobs[name], 2, **kwargs))
            assert (answer.status, answer.text) == (200, "ok\n"), (name, answer.text)
        for name, kwargs in refused.items():
            # Signed as they are written (None would mean "a random nonce": set after).
            body = {**sender.body(jobs["nonce as a number"], 2,
                                  **{k: v for k, v in kwargs.items() if v is not None}),
                    **{k: v for k, v in kwargs.items() if v is None}}
            answer = await sender.post(body)
            assert answer.status == 400 and answer.text.startswith("bad_shape:"), \
                (name, answer.text)
        # JSON's own way of writing a number too large for any float, signed as written.
        body = sender.body(jobs["nonce as a number"], 2, timestamp=0)
        body["signature"] = sign(CLIENT_ID, "1e400", body["nonce"], body["dataEncrypt"])
        answer = await sender.post(json.dumps(body).replace('"timestamp": 0', '"timestamp": 1e400'))
        assert answer.text.startswith("bad_shape: timestamp is not a time"), answer.text
        # The text as it came is what is signed, not a re-formatted value.
        body = sender.body(jobs["nonce as a number"], 2, nonce=1529)
        other = {**body, "nonce": 1529.0}
        assert (await sender.post(other)).text.startswith("bad_signature:")
        other = {**body, "nonce": "1529"}
        assert sign(CLIENT_ID, body["timestamp"], "1529", body["dataEncrypt"]) == \
            body["signature"]
        assert (await sender.post(other)).status == 200  # "1529" and 1529: the same text
        zero = {**body, "timestamp": "0" + str(body["timestamp"])}
        assert (await sender.post(zero)).text.startswith("bad_signature:")
    recorded = await rows(tmp_path / "archive")
    assert set(recorded) == set(jobs.values())
    assert all(r.status == 2 for r in recorded.values())


async def test_a_journal_of_the_previous_version_keeps_working_after_the_upgrade(
        standin: AkoolStandIn, base_url: str, serve: Any, tmp_path: Path) -> None:
    """A version-0 journal: its pending job is archived, and a new job's callback under a
    nonce and timestamp the old guard held is recorded (it got 409 before)."""
    from tests.old_journal import old_journal

    done, waiting, new = (generated_job_id(i, "upgrade") for i in range(3))
    for job in (waiting, new):
        standin.add_job(job, video_size=2048)
    root = tmp_path / "archive"
    root.mkdir()
    stamp = int(time.time() * 1000)
    old_journal(root / JOURNAL_NAME, stamp, done, waiting, waiting_status=3)
    async with serve() as (_, url), CallbackSender(url, CLIENT_ID, CLIENT_SECRET) as sender:
        answer = await sender.notify(new, 3, url=standin.file_url(new, "video"),
                                     timestamp=stamp, nonce="1529")
        assert (answer.status, answer.text) == (200, "ok\n")
        await wait_for(all_done(root, 3))
    jobs = await rows(root)
    assert {j: r.outcome for j, r in jobs.items()} == \
        {done: "archived", waiting: "archived", new: "archived"}
    assert (root / waiting / "archive.json").is_file() and (root / new / "archive.json").is_file()


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
        assert server.counters.recorded["duplicate", "video"] == 1
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
    assert 'archiver_webhook_items_total{outcome="archived",family="video"} 1' in text
    assert 'archiver_webhook_items_total{outcome="archived",family="image"} 0' in text
    assert 'archiver_webhook_accepted_total{result="new",family="video"} 2' in text
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
    from archiver.service import counters as serve_module
    counters = serve_module.Counters()
    full = serve_module.batch_limits(counters, time.monotonic())
    counters.slow_accept_at = time.monotonic()
    busy = serve_module.batch_limits(counters, time.monotonic())
    later = serve_module.batch_limits(counters, time.monotonic() + 3600)
    assert full == later == (serve_module._BATCHES, serve_module._BATCH)
    assert busy == (1, serve_module._BUSY_BATCH) and busy[1] < serve_module._BATCH
