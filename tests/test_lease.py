"""The S3 lease (archiver/storage/s3/lease.py) against real S3 servers (moto and
SeaweedFS): acquire, refuse, renew, release, take over after expiry, and a run that loses
its lease stops.

Every test runs on both servers: the lease is only as safe as the store's conditional
writes (If-None-Match, If-Match on PutObject and DeleteObject), so each is proven on each."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import botocore.exceptions as bce
import pytest
from botocore.awsrequest import AWSResponse

from archiver.archive import Archive
from archiver.errors import StorageUnavailable
from archiver.fleet.lock import LockHeld
from archiver.fleet.shard import shard_of
from archiver.retry import RetryPolicy
from archiver.storage.s3 import S3Backend
from archiver.storage.s3.lease import LEASE_FOLDER

from .conftest import API_KEY, config_dict, write_yaml
from .s3server import (  # noqa: F401 - fixtures: moto_endpoint, seaweedfs_endpoint, s3
    ON_BOTH_SERVERS,
    S3Fixture,
    aws_env,
    moto_endpoint_fixture,
    s3_fixture,
    seaweedfs_endpoint_fixture,
)

pytestmark = ON_BOTH_SERVERS

PREFIX = "akool/"
KEY = f"{PREFIX}{LEASE_FOLDER}shard-1-of-4"


def storage_for(s3: S3Fixture, **options: Any) -> S3Backend:
    return S3Backend(s3.bucket, PREFIX, endpoint_url=s3.endpoint, region="us-east-1",
                     addressing_style="path", **options)


def wait_until(condition: Any, what: str, timeout: float = 30.0) -> None:
    """A hang guard, not a timing assertion: poll *condition* until true."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def plant_lease(s3: S3Fixture, *, ttl: float, host: str = "dead-host", owner: str = "x" * 32,
                key: str = KEY) -> str:
    """A lease another (dead or live) run left; returns its ETag."""
    body = {"owner": owner, "host": host, "pid": 4242, "acquired_at": "2026-01-01T00:00:00Z",
            "ttl_s": ttl}
    return str(s3.client.put_object(Bucket=s3.bucket, Key=key,
                                    Body=json.dumps(body).encode())["ETag"])


async def test_acquire_refuse_release(s3):
    """One holder; a second is refused naming host and expiry; release frees the shard."""
    storage = storage_for(s3, sse="AES256", storage_class="GLACIER")
    await storage.open()
    try:
        async with storage.run_lock("shard-1-of-4", ttl=60, what="shard 1/4") as held:
            body = json.loads(s3.read(KEY))
            assert body["owner"] == held.owner
            assert body["host"] == socket.gethostname() and body["pid"] == os.getpid()
            assert {"acquired_at", "expires_at", "ttl_s"} <= set(body)
            head = s3.client.head_object(Bucket=s3.bucket, Key=KEY)
            assert head["ServerSideEncryption"] == "AES256"  # a bucket policy may demand it
            assert head.get("StorageClass", "STANDARD") == "STANDARD"  # readable at once
            with pytest.raises(LockHeld) as refused:
                async with storage.run_lock("shard-1-of-4", ttl=60, what="shard 1/4"):
                    pass
            message = str(refused.value)
            assert f"host {socket.gethostname()}" in message and "expires at" in message
            assert json.loads(s3.read(KEY))["owner"] == held.owner  # untouched
            async with storage.run_lock("shard-2-of-4", ttl=60, what="shard 2/4"):
                pass  # another shard: its own lease
        assert KEY not in s3.list_keys(PREFIX)
        async with storage.run_lock("shard-1-of-4", ttl=60, what="shard 1/4"):
            pass
    finally:
        await storage.close()


async def test_lease_is_renewed_on_its_etag(s3):
    """The holder rewrites its lease (If-Match) while it runs; expiry moves on."""
    storage = storage_for(s3)
    await storage.open()
    try:
        async with storage.run_lock("shard-1-of-4", ttl=3, what="shard 1/4"):
            first = s3.client.head_object(Bucket=s3.bucket, Key=KEY)
            wait_until(lambda: s3.client.head_object(Bucket=s3.bucket, Key=KEY)["ETag"]
                       != first["ETag"], "a renewal")
            renewed = json.loads(s3.read(KEY))
            assert renewed["renewed_at"] >= renewed["acquired_at"]
    finally:
        await storage.close()


async def test_runs_starting_together_one_wins(s3):
    """Eight runs take a free shard at the same instant (If-None-Match: *): one holds it,
    seven are refused - three times over. The store must make the check and the write one
    step; a store that did not would let two runs in."""
    storage = storage_for(s3)
    await storage.open()

    def race(shard: str) -> list[str]:
        leases = [storage.run_lock(shard, ttl=60, what=shard) for _ in range(8)]
        start = threading.Barrier(len(leases), timeout=30)

        def take(lease: Any) -> str:
            start.wait()
            try:
                lease.acquire()
                return "won"
            except LockHeld:
                return "refused"

        with ThreadPoolExecutor(len(leases)) as pool:
            outcomes = list(pool.map(take, leases))
        for lease in leases:
            lease.close()
        return sorted(outcomes)

    try:
        for round_ in range(3):
            outcomes = await asyncio.to_thread(race, f"shard-{round_}-of-3")
            assert outcomes == ["refused"] * 7 + ["won"]
        assert s3.list_keys(PREFIX) == []  # each winner released its lease
    finally:
        await storage.close()


async def test_store_without_conditional_writes_refuses_the_lease(s3):
    """A store that answers 501 to If-None-Match cannot keep runs apart: taking the lease
    fails at once (no retry) naming the lease - a run stops at its start with exit 2."""
    storage = storage_for(s3)
    await storage.open()
    refused: list[str] = []

    def refuse(request: Any, **_: Any) -> AWSResponse | None:
        if request.headers.get("If-None-Match"):
            refused.append(request.url)
            body = b"<Error><Code>NotImplemented</Code><Message>If-None-Match</Message></Error>"
            return AWSResponse(request.url, 501, {}, _Body(body))
        return None

    try:
        lease = storage.run_lock("shard-1-of-4", ttl=60, what="shard 1/4")
        lease.client.meta.events.register("before-send.s3.PutObject", refuse)
        with pytest.raises(StorageUnavailable) as failed:
            async with lease:
                pass
        assert f"cannot create the lease s3://{s3.bucket}/{KEY}" in str(failed.value)
        assert "NotImplemented" in str(failed.value)
        assert len(refused) == 1
        assert KEY not in s3.list_keys(PREFIX)
    finally:
        await storage.close()


class _Body:
    """Just enough of a urllib3 response for botocore to read an injected error body."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, *_: Any, **__: Any) -> Any:
        yield self._body

    def read(self, *_: Any) -> bytes:
        body, self._body = self._body, b""
        return body


async def test_take_over_only_after_expiry_and_only_once(s3):
    """A dead run's lease blocks until S3's clock says expired; then one challenger wins."""
    plant_lease(s3, ttl=3600)
    storage = storage_for(s3)
    await storage.open()
    try:
        with pytest.raises(LockHeld, match="dead-host"):
            async with storage.run_lock("shard-1-of-4", ttl=60, what="shard 1/4"):
                pass
        plant_lease(s3, ttl=0.2)  # now the dead run's lease runs out almost at once
        leases = [storage.run_lock("shard-1-of-4", ttl=60, what="shard 1/4") for _ in range(4)]

        def acquire_when_expired(lease: Any) -> str:
            while True:
                try:
                    lease.acquire()
                    return "won"
                except LockHeld as exc:
                    if "dead-host" not in str(exc):
                        return "refused"  # a live lease: another challenger won
                time.sleep(0.1)

        outcomes = await asyncio.gather(*(asyncio.to_thread(acquire_when_expired, lease)
                                          for lease in leases))
        assert sorted(outcomes) == ["refused", "refused", "refused", "won"]
        winner = leases[outcomes.index("won")]
        assert json.loads(s3.read(KEY))["owner"] == winner.owner
        for lease in leases:
            lease.client.close()
    finally:
        await storage.close()


async def test_renewal_conflict_reports_loss_and_leaves_the_successor(s3):
    """A 412 on renewal: on_lost is called, and release never deletes the new holder."""
    storage = storage_for(s3)
    await storage.open()
    lost = threading.Event()
    reasons: list[str] = []
    try:
        async with storage.run_lock("shard-1-of-4", ttl=2, what="shard 1/4",
                                 on_lost=lambda r: (reasons.append(r), lost.set())) as held:
            plant_lease(s3, ttl=60, host="successor-host")
            await asyncio.to_thread(lost.wait, 30)
            assert held.lost is not None
        assert "successor-host" in reasons[0]
        assert json.loads(s3.read(KEY))["host"] == "successor-host"
    finally:
        await storage.close()


async def test_lease_objects_are_no_item(s3):
    """The lease folder is invisible to the skip check, verify's listing and gc."""
    plant_lease(s3, ttl=60, key=f"{PREFIX}{LEASE_FOLDER}all")
    storage = storage_for(s3)
    await storage.open()
    try:
        assert await Archive(storage).list_archived() == []
        assert await Archive(storage).archived([".archiver-lease", "all"]) == set()
        result = await Archive(storage).collect_garbage(None, min_age=0, dry_run=False)
        assert result.removed == []
    finally:
        await storage.close()
    assert f"{PREFIX}{LEASE_FOLDER}all" in s3.list_keys(PREFIX)


# ------------------------------------------------------------------ real CLI runs

def s3_config(tmp_path: Path, url: str, s3: S3Fixture, **run: Any) -> Path:
    """archiver.yaml for the shared bucket: no lock file, so the run takes a lease."""
    data = config_dict(url, tmp_path / "unused",
                       polling={"interval": 0.05, "max_interval": 0.1, "deadline": 60},
                       run={"shutdown_grace": 1, **run})
    data["api"]["api_key"] = "${TEST_AKOOL_KEY}"
    data["storage"] = {"backend": "s3", "s3": {
        "bucket": s3.bucket, "prefix": PREFIX, "endpoint_url": s3.endpoint,
        "region": "us-east-1", "addressing_style": "path"}}
    return write_yaml(tmp_path / "archiver.yaml", data)


def cli_env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "TEST_AKOOL_KEY": API_KEY, **aws_env(tmp_path)}


def test_second_run_on_a_shard_exits_75_naming_holder(tmp_path, served, s3):
    """A live lease of shard 1/4: the run exits 75 naming host and expiry, polls nothing."""
    standin, url = served
    ids = [f"lease{n:02d}" for n in range(12)]
    config = s3_config(tmp_path, url, s3)
    write_yaml(tmp_path / "videos.yaml", ids)
    plant_lease(s3, ttl=3600, host="pod-archiver-1-x7k2q")
    result = subprocess.run(
        [sys.executable, "-m", "archiver", "run", "videos.yaml", "-c", str(config),
         "--shard", "1/4", "--report", "report.json"],
        cwd=tmp_path, env=cli_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert result.returncode == 75, result.stderr
    assert "pod-archiver-1-x7k2q" in result.stderr and "expires at" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert standin.api_calls == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["exit_status"] == 75 and report["shard"] == "1/4"


def test_run_that_loses_its_lease_stops_with_75(tmp_path, served, s3):
    """Another run takes the lease over mid-run: no new download, exit 75, ids pending;
    the metrics say the lease was lost."""
    standin, url = served
    ids = [i for i in (f"lost{n:02d}" for n in range(40)) if shard_of(i, 4) == 1][:6]
    for item in ids:
        standin.add_job(item, outcome="never")
    config = s3_config(tmp_path, url, s3, lease_ttl=2)
    write_yaml(tmp_path / "videos.yaml", ids)
    proc = subprocess.Popen(
        [sys.executable, "-m", "archiver", "run", "videos.yaml", "-c", str(config),
         "--shard", "1/4", "--report", "report.json", "--metrics-file", "archiver.prom"],
        cwd=tmp_path, env=cli_env(tmp_path), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: all(standin.polls[i] >= 1 for i in ids), "the run to poll")
        plant_lease(s3, ttl=3600, host="usurper-host")
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 75, err
    assert "lost the lease of shard 1/4" in err and "usurper-host" in err
    assert "lease lost" in out
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["lease_lost"] is True
    assert {i["outcome"] for i in report["items"]} == {"pending"}
    metrics = (tmp_path / "archiver.prom").read_text()  # what ArchiverRunLeaseLost reads
    assert 'archiver_lease_lost{shard="1",shards="4"} 1' in metrics
    assert 'archiver_exit_status{shard="1",shards="4"} 75' in metrics
    assert json.loads(s3.read(KEY))["host"] == "usurper-host"  # never deleted
    assert sum(standin.file_requests.values()) == 0


class _AnswerLost:
    """A real client whose first PutObject reaches S3 but whose answer never arrives -
    a fault moto cannot produce (a read timeout after the write landed)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.lost = 0

    def put_object(self, **params: Any) -> Any:
        answer = self._client.put_object(**params)
        if self.lost == 0:
            self.lost += 1
            raise bce.ReadTimeoutError(endpoint_url="http://s3.test")
        return answer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


async def test_acquire_whose_answer_was_lost_recognises_its_own_lease(s3):
    """The retried If-None-Match write gets 412; the lease holds our token: ours."""
    storage = storage_for(s3)
    await storage.open()
    try:
        lease = storage.run_lock("shard-1-of-4", ttl=60, what="shard 1/4")
        lease.client = _AnswerLost(lease.client)
        await asyncio.to_thread(lease.acquire)
        assert lease.client.lost == 1
        head = s3.client.head_object(Bucket=s3.bucket, Key=KEY)
        assert lease._etag == head["ETag"]
        assert json.loads(s3.read(KEY))["owner"] == lease.owner
        await asyncio.to_thread(lease.close)
        assert KEY not in s3.list_keys(PREFIX)  # released: the ETag was the right one
    finally:
        await storage.close()


class _Throttled:
    """A real client whose first *times* PutObject requests get 503 SlowDown."""

    def __init__(self, client: Any, times: int) -> None:
        self._client = client
        self.left = times
        self.sends = 0

    def put_object(self, **params: Any) -> Any:
        self.sends += 1
        if self.left:
            self.left -= 1
            raise bce.ClientError({"Error": {"Code": "SlowDown", "Message": "slow down"},
                                   "ResponseMetadata": {"HTTPStatusCode": 503}}, "PutObject")
        return self._client.put_object(**params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


async def test_lease_requests_retry_within_the_storage_policy(s3):
    """storage.s3.retries bounds the lease's requests: 2 attempts take one 503, not two."""
    storage = storage_for(s3, retry=RetryPolicy(attempts=2, wait_initial=0.01, wait_max=0.02))
    await storage.open()
    try:
        lease = storage.run_lock("shard-1-of-4", ttl=60, what="shard 1/4")
        lease.client = _Throttled(lease.client, times=1)
        await asyncio.to_thread(lease.acquire)
        assert lease.client.sends == 2
        await asyncio.to_thread(lease.close)
        lease = storage.run_lock("shard-1-of-4", ttl=60, what="shard 1/4")
        lease.client = _Throttled(lease.client, times=2)
        with pytest.raises(StorageUnavailable, match="SlowDown"):
            await asyncio.to_thread(lease.acquire)
        assert lease.client.sends == 2
        assert KEY not in s3.list_keys(PREFIX)
    finally:
        await storage.close()


class _Failing:
    """A real client whose PutObject requests all fail with *error*."""

    def __init__(self, client: Any, error: BaseException) -> None:
        self._client = client
        self.error = error
        self.sends = 0

    def put_object(self, **params: Any) -> Any:
        self.sends += 1
        raise self.error

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


@pytest.mark.parametrize("error", [
    bce.SSLError(endpoint_url="https://s3.test", error="certificate verify failed"),
    bce.ClientError({"Error": {"Code": "HTTPVersionNotSupported", "Message": "no"},
                     "ResponseMetadata": {"HTTPStatusCode": 505}}, "PutObject"),
    bce.ClientError({"Error": {"Code": "Strange", "Message": "no status"}}, "PutObject"),
], ids=["ssl", "505", "no-status"])
async def test_lease_retries_what_every_s3_request_retries(s3, error):
    """The lease's requests are retried by the bucket's one rule: not a certificate
    problem, a 505 or an answer without a status (before: each was sent 5 times)."""
    storage = storage_for(s3)
    await storage.open()
    try:
        lease = storage.run_lock("shard-1-of-4", ttl=60, what="shard 1/4")
        lease.client = _Failing(lease.client, error)
        with pytest.raises(StorageUnavailable, match=f"cannot create the lease s3://{s3.bucket}"):
            await asyncio.to_thread(lease.acquire)
        assert lease.client.sends == 1
        lease.client.close()
    finally:
        await storage.close()


async def test_live_lease_of_another_shard_count_refuses_the_run(s3):
    """A live 0/2 lease overlaps shard 1/4: refused, nothing left; an expired one is not."""
    other = f"{PREFIX}{LEASE_FOLDER}shard-0-of-2"
    plant_lease(s3, ttl=3600, host="old-layout-host", key=other)
    storage = storage_for(s3)
    await storage.open()
    try:
        with pytest.raises(LockHeld) as refused:
            async with storage.run_lock("shard-1-of-4", ttl=60, what="shard 1/4"):
                pass
        assert "a run of shard 0/2" in str(refused.value)
        assert "old-layout-host" in str(refused.value)
        assert KEY not in s3.list_keys(PREFIX)  # our own lease was given back
        async with storage.run_lock("shard-1-of-2", ttl=60, what="shard 1/2"):
            pass  # the same shard count: no overlap
        with pytest.raises(LockHeld, match="an unsharded run"):
            plant_lease(s3, ttl=3600, key=f"{PREFIX}{LEASE_FOLDER}all")
            async with storage.run_lock("shard-1-of-2", ttl=60, what="shard 1/2"):
                pass
        plant_lease(s3, ttl=0.01, key=other)
        plant_lease(s3, ttl=0.01, key=f"{PREFIX}{LEASE_FOLDER}all")
        lease = storage.run_lock("shard-1-of-4", ttl=60, what="shard 1/4")
        wait_until(lambda: _acquired(lease), "the old leases to expire")
        await asyncio.to_thread(lease.close)
    finally:
        await storage.close()


def _acquired(lease: Any) -> bool:
    try:
        lease.acquire()
    except LockHeld:
        return False
    return True
