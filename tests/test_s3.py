"""What only S3 has: bucket checks, the CLI end to end on moto, encryption, listing,
retries, interruption, and credentials kept out of everything a run writes.

The shared behaviour (sizes, faults, abort, skip check) is in test_storage_contract.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import botocore.exceptions as bce
import pytest
from botocore.awsrequest import AWSResponse

from archiver.archive import Archive
from archiver.config import DownloadConfig
from archiver.download import Downloader
from archiver.errors import StorageError, StorageUnavailable
from archiver.models import RemoteFile
from archiver.retry import RetryPolicy
from archiver.storage.s3 import S3Backend, composite_checksum, is_transient
from archiver.storage.s3.cleanups import Cleanups
from archiver.testing.standin import AkoolStandIn

from .conftest import API_KEY, ID1, ID2, ID3, config_dict, run_cli, write_yaml
from .s3server import (  # noqa: F401 - fixtures: moto_endpoint, s3
    SECRETS,
    S3Fixture,
    aws_env,
    moto_endpoint_fixture,
    recording,
    s3_fixture,
)

MiB = 1024 * 1024
FAST = RetryPolicy(attempts=3, timeout=5, wait_initial=0.01, wait_max=0.02)


def storage_for(s3: S3Fixture, **kwargs: Any) -> S3Backend:
    options: dict[str, Any] = {"endpoint_url": s3.endpoint, "region": "us-east-1",
                               "addressing_style": "path", "part_size": 256 * 1024,
                               "retry": FAST}
    options.update(kwargs)
    return S3Backend(s3.bucket, "akool/", **options)


# ------------------------------------------------------------------- open()

async def test_open_missing_bucket_names_it(s3):
    """open() on a bucket that does not exist: StorageUnavailable naming the bucket."""
    storage = S3Backend("no-such-bucket-for-archiver", "x/", endpoint_url=s3.endpoint,
                        region="us-east-1", retry=FAST)
    with pytest.raises(StorageUnavailable, match="'no-such-bucket-for-archiver' does not exist"):
        await storage.open()


async def test_open_without_credentials(s3, monkeypatch):
    """No credentials anywhere in boto3's chain: a clear StorageUnavailable, at once."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    with pytest.raises(StorageUnavailable, match="no AWS credentials found"):
        await storage_for(s3).open()


async def test_open_unknown_profile(s3):
    """A profile that is not in the shared config: StorageUnavailable naming the profile."""
    with pytest.raises(StorageUnavailable, match="profile 'nope' not found"):
        await storage_for(s3, profile="nope").open()


async def test_open_unreachable_endpoint(s3):
    """Nothing listening at the endpoint: StorageUnavailable after bounded retries."""
    storage = S3Backend(s3.bucket, endpoint_url="http://127.0.0.1:9", region="us-east-1",
                        retry=FAST)
    started = time.monotonic()
    with pytest.raises(StorageUnavailable, match="Could not connect"):
        await storage.open()
    assert time.monotonic() - started < 10


async def test_open_probe_leaves_nothing(s3):
    """The write probe of open() is deleted again; description carries no credentials."""
    storage = storage_for(s3)
    await storage.open()
    await storage.close()
    assert s3.list_keys() == []
    assert storage.description == f"s3://{s3.bucket}/akool/"
    assert not any(secret in repr(storage) for secret in SECRETS)


# ---------------------------------------------------------------- skip check

def _fill(s3: S3Fixture, keys: list[str]) -> None:
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: s3.client.put_object(Bucket=s3.bucket, Key=k, Body=b"x"),
                      keys))


def _list_calls(requests: list[dict[str, Any]]) -> int:
    return sum(1 for r in requests if r["method"] == "GET" and "list-type=2" in r["url"])


async def test_archived_lists_pages_not_ids(s3):
    """The skip check costs about a request per 1,000 keys, or per id, whichever is less."""
    archived = [f"id{n:04d}" for n in range(400)]
    keys = [f"akool/{i}/{name}" for i in archived
            for name in ("video.mp4", "SHA256SUMS", "archive.json")]
    keys += [f"akool/pending{n:03d}/video.mp4" for n in range(300)]  # no archive.json
    _fill(s3, keys)  # 1,500 keys: two list pages
    storage = storage_for(s3)
    await storage.open()
    try:
        with recording(s3.endpoint) as everything:
            found = await Archive(storage).archived([*archived, "pending007", "never"])
        assert found == set(archived)
        assert _list_calls(everything) <= 3
        assert not any(r["method"] == "HEAD" for r in everything)

        with recording(s3.endpoint) as sparse:
            found = await Archive(storage).archived(["id0003", "id0399", "pending123", "zzz"])
        assert found == {"id0003", "id0399"}
        assert _list_calls(sparse) <= 4
    finally:
        await storage.close()


# ------------------------------------------------------------ retries, checks

def _client_error(code: str, status: int) -> bce.ClientError:
    return bce.ClientError({"Error": {"Code": code, "Message": "m"},
                            "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")


def test_retry_classification():
    """Throttling, 5xx, connection errors and FlexibleChecksumError retry; denials do not."""
    assert is_transient(_client_error("SlowDown", 503))
    assert is_transient(_client_error("InternalError", 500))
    assert is_transient(_client_error("ConditionalRequestConflict", 409))
    assert is_transient(bce.EndpointConnectionError(endpoint_url="http://x"))
    assert is_transient(bce.ConnectionClosedError(endpoint_url="http://x"))
    assert is_transient(bce.ReadTimeoutError(endpoint_url="http://x"))
    assert is_transient(bce.FlexibleChecksumError(error_msg="bad checksum"))
    assert not is_transient(_client_error("AccessDenied", 403))
    assert not is_transient(_client_error("NoSuchBucket", 404))
    assert not is_transient(_client_error("PreconditionFailed", 412))
    assert not is_transient(bce.SSLError(endpoint_url="https://x", error="cert"))
    assert not is_transient(bce.NoCredentialsError())


#: storage_for()'s part size.
P = 256 * 1024
SIZES = [0, 1, P - 1, P, P + 1, 2 * P + 1]


def check_s3_checksums(s3: S3Fixture, facts: dict[str, Any], data: bytes) -> None:
    """What commit() recorded matches what S3 reports, and what the bytes really are."""
    key = f"akool/{ID1}/video.mp4"
    head = s3.client.head_object(Bucket=s3.bucket, Key=key, ChecksumMode="ENABLED")
    attributes = s3.client.get_object_attributes(Bucket=s3.bucket, Key=key,
                                                 ObjectAttributes=["Checksum", "ObjectSize"])
    assert facts["key"] == key
    assert facts["checksum_verified"] is True
    assert attributes["ObjectSize"] == len(data)
    # HEAD and GetObjectAttributes may leave off the "-N" of a composite checksum.
    reported = head["ChecksumSHA256"].split("-")[0]
    assert attributes["Checksum"]["ChecksumSHA256"].split("-")[0] == reported
    assert facts["checksum_sha256"].split("-")[0] == reported
    if len(data) <= P:
        whole = base64.b64encode(hashlib.sha256(data).digest()).decode()
        assert facts["checksum_sha256"] == whole
        assert facts["checksum_type"] == "FULL_OBJECT"
        assert head["Metadata"]["sha256"] == hashlib.sha256(data).hexdigest()
        assert "parts" not in facts
    else:
        parts = [hashlib.sha256(data[i:i + P]).digest() for i in range(0, len(data), P)]
        assert facts["checksum_sha256"] == composite_checksum(parts)
        assert facts["checksum_sha256"].endswith(f"-{len(parts)}")
        assert facts["checksum_type"] == "COMPOSITE"
        assert facts["parts"] == len(parts)
        assert facts["part_size"] == P


@pytest.mark.parametrize("size", SIZES, ids=[f"{s}B" for s in SIZES])
async def test_commit_records_s3_checksums(s3, size):
    """Files of 0 .. 2P+1 bytes: the recorded checksum is S3's, and the bytes' own."""
    data = os.urandom(size)
    storage = storage_for(s3)
    await storage.open()
    try:
        writer = storage.item(ID1)
        sink = await writer.open_file("video.mp4")
        for start in range(0, size, 100_000):  # chunks that do not divide P
            await sink.write(data[start:start + 100_000])
        facts = (await sink.commit(size, hashlib.sha256(data).hexdigest()))["s3"]
        await writer.commit(b"{}\n")
    finally:
        await storage.close()
    check_s3_checksums(s3, facts, data)


@pytest.mark.parametrize("size", [P - 1, P, 3 * P + 1])
async def test_downloaded_files_record_s3_checksums(s3, standin, base_url, size):
    """Through the downloader: the recorded checksum is S3's and the served file's."""
    standin.add_job(ID1, video_size=size)
    config = DownloadConfig(chunk_size=100_000, allow_private=True)
    storage = storage_for(s3)
    await storage.open()
    try:
        writer = storage.item(ID1)
        async with Downloader(config) as downloader:
            record = await downloader.fetch(
                RemoteFile("video.mp4", f"{base_url}/files/{ID1}/video.mp4"), writer)
        await writer.commit(b"{}\n")
    finally:
        await storage.close()
    check_s3_checksums(s3, record.extra["s3"], standin.file_bytes(ID1, "video.mp4"))


async def test_configured_retries_bound_requests_then_fail_as_storage(s3, make_config):
    """storage.s3.retries sets how often a throttled request is sent; then StorageError."""
    config = make_config(storage={"backend": "s3", "s3": {
        "bucket": s3.bucket, "prefix": "akool/", "endpoint_url": s3.endpoint,
        "region": "us-east-1", "addressing_style": "path",
        "retries": {"attempts": 3, "wait_initial": 0.01, "wait_max": 0.02}}})
    storage = S3Backend.from_config(config.storage.s3)
    await storage.open()
    sends = []

    def throttle(request: Any, **_: Any) -> AWSResponse:
        sends.append(request.url)
        body = b"<Error><Code>SlowDown</Code><Message>Reduce your rate</Message></Error>"
        return AWSResponse(request.url, 503, {}, _Raw(body))

    storage.bucket.data_client.meta.events.register("before-send.s3.PutObject", throttle)
    try:
        with pytest.raises(StorageError, match=r"s3://.*/info\.json failed: SlowDown") as caught:
            await storage.item(ID1).put_small("info.json", b"{}")
    finally:
        await storage.close()
    assert len(sends) == 3
    assert caught.value.kind == "storage"


def test_cleanups_run_once_and_late_ones_at_once():
    """A registered clean-up runs once; one announced done never; one added late at once."""
    ran: list[str] = []
    cleanups = Cleanups()
    cleanups.add("upload", lambda: ran.append("upload"))
    cleanups.add("completed", lambda: ran.append("completed"))
    cleanups.done("completed")
    cleanups.run()
    cleanups.run()
    assert ran == ["upload"]
    cleanups.add("late", lambda: ran.append("late"))  # a request that was still running
    assert ran == ["upload", "late"]


def test_composite_checksum_format():
    """The composite checksum is base64(sha256(part digests)) with a -N suffix."""
    digests = [hashlib.sha256(b"part one").digest(), hashlib.sha256(b"part two").digest()]
    expected = base64.b64encode(hashlib.sha256(digests[0] + digests[1]).digest()).decode()
    assert composite_checksum(digests) == f"{expected}-2"


async def test_throttled_part_upload_is_retried(s3):
    """A 503 SlowDown on an UploadPart (injected: moto never throttles) is retried whole."""
    storage = storage_for(s3)
    await storage.open()
    faults = {"left": 2, "sends": 0}

    def throttle(request: Any, **_: Any) -> AWSResponse | None:
        if "partNumber=2" in request.url:
            faults["sends"] += 1
        if faults["left"] and "partNumber=2" in request.url:
            faults["left"] -= 1
            request.body.read()  # as if sent: the retry must rewind the body
            body = b"<Error><Code>SlowDown</Code><Message>Reduce your rate</Message></Error>"
            return AWSResponse(request.url, 503, {}, _Raw(body))
        return None

    storage.bucket.data_client.meta.events.register("before-send.s3.UploadPart", throttle)
    started = time.monotonic()
    try:
        writer = storage.item(ID1)
        sink = await writer.open_file("video.mp4")
        data = os.urandom(3 * 256 * 1024)
        await sink.write(data)
        facts = await sink.commit(len(data), hashlib.sha256(data).hexdigest())
        await writer.commit(b"{}")
    finally:
        await storage.close()
    assert faults == {"left": 0, "sends": 3}  # two throttled, then one whole send
    assert time.monotonic() - started < 10
    assert facts["s3"]["parts"] == 3
    assert s3.read(f"akool/{ID1}/video.mp4") == data
    assert s3.open_uploads() == []


class _Raw:
    """Just enough of a urllib3 response for botocore to read an injected error body."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, *_: Any, **__: Any) -> Iterator[bytes]:
        yield self._body

    def read(self, *_: Any) -> bytes:
        body, self._body = self._body, b""
        return body


async def test_store_ignoring_if_none_match_still_works(s3):
    """A store that ignores If-None-Match (header dropped in flight) overwrites, no error."""
    storage = storage_for(s3)
    await storage.open()

    def drop_condition(params: dict[str, Any], **_: Any) -> None:
        params.pop("IfNoneMatch", None)

    storage.bucket.data_client.meta.events.register(
        "provide-client-params.s3.PutObject", drop_condition)
    try:
        for record in (b"first", b"second"):
            writer = storage.item(ID1)
            await writer.commit(record)
    finally:
        await storage.close()
    assert s3.read(f"akool/{ID1}/archive.json") == b"second"


# ----------------------------------------------------------- the CLI, end to end

@pytest.fixture
def cli(tmp_path: Path, served: tuple[AkoolStandIn, str], s3: S3Fixture) -> Callable[..., Any]:
    """``cli(*args, manifest=[...], command="run", **storage_s3_options)``: a real process.

    Writes the manifest and a config for the stand-in and the test's bucket, then runs
    ``python -m archiver COMMAND videos.yaml -c archiver.yaml *args`` with AWS_* set.
    """
    _, url = served

    def run(*args: str, manifest: list[str], command: str = "run",
            **options: Any) -> subprocess.CompletedProcess[str]:
        data = config_dict(url, tmp_path / "unused")
        data["api"]["api_key"] = "${TEST_AKOOL_KEY}"
        data["storage"] = {"backend": "s3", "s3": {
            "bucket": s3.bucket, "prefix": "akool/", "endpoint_url": s3.endpoint,
            "region": "us-east-1", "addressing_style": "path", **options}}
        write_yaml(tmp_path / "archiver.yaml", data)
        write_yaml(tmp_path / "videos.yaml", manifest)
        return run_cli(command, "videos.yaml", "-c", "archiver.yaml", *args, cwd=tmp_path,
                       env=cli_env(tmp_path))

    return run


def cli_env(home: Path) -> dict[str, str]:
    return {"TEST_AKOOL_KEY": API_KEY, **aws_env(home)}


def test_cli_end_to_end(cli, served, s3):
    """Layout, checksums and SSE in S3; a re-run lists once and asks Akool nothing."""
    standin, _ = served
    standin.add_job(ID1, video_size=20 * MiB)  # > 8 MiB default part size: multipart
    standin.add_job(ID2, files=("video", "original_srt", "translated_srt", "no_caption"),
                    video_size=300_000)
    first = cli("-v", manifest=[ID1, ID2], sse="AES256", storage_class="STANDARD_IA")
    assert first.returncode == 0, first.stderr
    assert summary(first.stdout, "archived") == 2

    assert s3.list_keys() == sorted(
        [f"akool/{ID1}/{n}" for n in ("video.mp4", "info.json", "SHA256SUMS", "archive.json")]
        + [f"akool/{ID2}/{n}" for n in ("video.mp4", "original.srt", "translated.srt",
                                        "no_caption.mp4", "info.json", "SHA256SUMS",
                                        "archive.json")])
    assert s3.open_uploads() == []
    record = json.loads(s3.read(f"akool/{ID1}/archive.json"))
    [video] = record["files"]
    assert video["sha256"] == standin.file_sha256(ID1, "video.mp4")
    assert video["size"] == 20 * MiB
    facts = video["s3"]
    assert facts["key"] == f"akool/{ID1}/video.mp4"
    assert facts["checksum_type"] == "COMPOSITE" and facts["checksum_verified"] is True
    assert facts["part_size"] == 8 * MiB and facts["parts"] == 3
    assert facts["checksum_sha256"].endswith("-3")
    assert facts["server_side_encryption"] == "AES256"
    head = s3.client.head_object(Bucket=s3.bucket, Key=facts["key"], ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"].split("-")[0] == facts["checksum_sha256"].split("-")[0]
    assert head["ServerSideEncryption"] == "AES256"
    assert head["StorageClass"] == "STANDARD_IA"
    assert s3.read(f"akool/{ID1}/SHA256SUMS").decode() == \
        f"{standin.file_sha256(ID1, 'video.mp4')}  video.mp4\n"
    for key in s3.list_keys():  # every object encrypted, metadata files checksummed too
        head = s3.client.head_object(Bucket=s3.bucket, Key=key, ChecksumMode="ENABLED")
        assert head["ServerSideEncryption"] == "AES256", key
        assert head.get("ChecksumSHA256"), key

    calls, keys = standin.api_calls, s3.list_keys()
    with recording(s3.endpoint) as requests:
        second = cli("-v", manifest=[ID1, ID2], sse="AES256", storage_class="STANDARD_IA")
    assert second.returncode == 0, second.stderr
    assert summary(second.stdout, "already archived") == 2
    assert standin.api_calls == calls
    kinds = sorted({(r["method"], "list" if "list-type=2" in r["url"] else "other")
                    for r in requests})
    # HeadBucket + the write probe (PUT, DELETE) of open(), the run's lease (PUT to
    # take it, a listing of the lease folder, DELETE to release it), then one listing
    # of the prefix for the skip check.
    lease_lists = [r for r in requests if "list-type=2" in r["url"]
                   and "archiver-lease" in r["url"]]
    assert len(lease_lists) == 1
    assert _list_calls(requests) == 2
    assert len(requests) == 7, kinds
    assert s3.list_keys() == keys and s3.open_uploads() == []
    assert_no_secrets(first, second, s3=s3)


def test_cli_dry_run_and_report_on_s3(cli, served, s3, tmp_path):
    """--dry-run against S3 lists what it would upload and writes no object at all."""
    standin, _ = served
    standin.add_job(ID1, video_size=300_000)
    with recording(s3.endpoint) as requests:
        result = cli("--dry-run", "--report", "report.json", manifest=[ID1])
    assert result.returncode == 0, result.stderr
    assert f"would archive {ID1}: video.mp4" in result.stdout
    assert s3.list_keys() == [] and s3.open_uploads() == []
    assert not [r for r in requests if r["method"] in ("PUT", "POST", "DELETE")]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["storage"] == f"s3://{s3.bucket}/akool/"
    assert report["items"][0]["outcome"] == "ready"


def test_cli_verify_and_status(cli, served, s3):
    """verify compares S3's checksums (or re-hashes with --deep); status lists, per id."""
    standin, _ = served
    standin.add_job(ID1, video_size=20 * MiB)
    standin.add_job(ID2, video_size=300_000)
    assert cli(manifest=[ID1, ID2]).returncode == 0
    s3.client.put_object(Bucket=s3.bucket, Key=f"akool/{ID3}/video.mp4", Body=b"partial")

    status = cli(manifest=[ID1, ID2, ID3, "never-seen"], command="status")
    assert status.returncode == 0, status.stderr
    states = dict(line.split()[:2] for line in status.stdout.splitlines())
    assert states == {ID1: "archived", ID2: "archived", ID3: "partial", "never-seen": "absent"}

    for deep in ((), ("--deep",)):
        ok = cli(*deep, manifest=[ID1, ID2], command="verify")
        assert ok.returncode == 0, ok.stderr
        assert "OK" in ok.stdout

    # Same size, other bytes, and S3 computes the checksum of what it got.
    key = f"akool/{ID2}/video.mp4"
    size = len(s3.read(key))
    s3.client.put_object(Bucket=s3.bucket, Key=key, Body=os.urandom(size),
                         ChecksumAlgorithm="SHA256")
    for deep in ((), ("--deep",)):
        bad = cli(*deep, manifest=[ID1, ID2], command="verify")
        assert bad.returncode == 1
        assert f"{ID2}/video.mp4: corrupted" in bad.stderr
        assert ID1 not in bad.stderr
    assert_no_secrets(status, ok, bad)


def test_cli_failed_download_leaves_no_upload(cli, served, s3):
    """A download cut mid-file: exit 1, no object under the id, ListMultipartUploads empty."""
    standin, _ = served
    standin.add_job(ID1, video_size=20 * MiB, file_faults={"video": ["truncate"] * 5})
    standin.add_job(ID2, video_size=100_000)
    result = cli(manifest=[ID1, ID2])
    assert result.returncode == 1, result.stderr
    assert s3.open_uploads() == []
    assert [k for k in s3.list_keys() if ID1 in k] == []
    assert f"akool/{ID2}/archive.json" in s3.list_keys()
    assert_no_secrets(result, s3=s3)


def test_cli_missing_bucket_exit_2_before_polling(cli, served, s3, tmp_path):
    """A bucket that does not exist: exit 2 naming it, and not one API call."""
    standin, _ = served
    standin.add_job(ID1)
    s3.bucket = "archiver-missing-bucket"
    result = cli(manifest=[ID1])
    assert result.returncode == 2
    assert "archiver-missing-bucket" in result.stderr
    assert "Traceback" not in result.stderr
    assert standin.api_calls == 0
    assert_no_secrets(result)


def test_cli_interrupted_aborts_multipart_upload(served, s3, tmp_path):
    """SIGINT while a multipart upload is open: exit 130 and ListMultipartUploads is empty."""
    standin, url = served
    standin.add_job(ID1, video_size=24 * MiB, file_faults={"video": ["stall"]})
    data = config_dict(url, tmp_path / "unused", run={"shutdown_grace": 0.5})
    data["api"]["api_key"] = "${TEST_AKOOL_KEY}"
    data["storage"] = {"backend": "s3", "s3": {
        "bucket": s3.bucket, "prefix": "akool/", "endpoint_url": s3.endpoint,
        "region": "us-east-1"}}
    write_yaml(tmp_path / "archiver.yaml", data)
    write_yaml(tmp_path / "videos.yaml", [ID1, ID3])
    standin.add_job(ID3, outcome="never")
    proc = subprocess.Popen([sys.executable, "-m", "archiver", "run", "videos.yaml", "-c",
                             "archiver.yaml"], cwd=tmp_path,
                            env={**os.environ, **cli_env(tmp_path)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not s3.open_uploads():  # 12 MiB arrive, then the source stalls
            assert time.monotonic() < deadline and proc.poll() is None, "no upload started"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert s3.open_uploads() == []
    assert s3.list_keys() == []


def summary(stdout: str, label: str) -> int:
    """A count from the summary table the CLI prints (its spacing may change)."""
    match = re.search(rf"^\s*{label}\s+(\d+)\s*$", stdout, re.M)
    assert match, stdout
    return int(match.group(1))


def assert_no_secrets(*results: subprocess.CompletedProcess[str],
                      s3: S3Fixture | None = None) -> None:
    """No AWS credential in what the runs printed or in any object (body or metadata)."""
    texts = [r.stdout + r.stderr for r in results]
    if s3 is not None:
        for key in s3.list_keys():
            answer = s3.client.get_object(Bucket=s3.bucket, Key=key)
            texts.append(answer["Body"].read().decode("latin-1"))
            texts.append(json.dumps(answer.get("Metadata", {})))
    for text in texts:
        for secret in SECRETS:
            assert secret not in text


async def test_readonly_open_writes_nothing(s3):
    """open(readonly=True) (dry runs) checks the bucket without the write probe."""
    storage = storage_for(s3)
    with recording(s3.endpoint) as requests:
        await storage.open(readonly=True)
        await storage.close()
    assert [r["method"] for r in requests] == ["HEAD"]


async def test_kms_encryption_and_storage_class_on_every_object(s3):
    """sse aws:kms with a key id and a storage class reach PutObject and multipart uploads."""
    key_id = "arn:aws:kms:us-east-1:123456789012:key/archiver-test"
    storage = storage_for(s3, sse="aws:kms", kms_key_id=key_id, storage_class="STANDARD_IA")
    await storage.open()
    try:
        writer = storage.item(ID1)
        for name, size in (("video.mp4", 3 * 256 * 1024 + 5), ("original.srt", 100)):
            sink = await writer.open_file(name)
            data = os.urandom(size)
            await sink.write(data)
            facts = await sink.commit(size, hashlib.sha256(data).hexdigest())
            assert facts["s3"]["server_side_encryption"] == "aws:kms"
        await writer.put_small("info.json", b"{}")
        await writer.commit(b"{}")
    finally:
        await storage.close()
    for key in s3.list_keys():
        head = s3.client.head_object(Bucket=s3.bucket, Key=key)
        assert head["ServerSideEncryption"] == "aws:kms", key
        assert head["SSEKMSKeyId"] == key_id, key
        assert head["StorageClass"] == "STANDARD_IA", key


def test_bucket_problem_messages_name_the_bucket():
    """403, 404 and a wrong region on HeadBucket become messages naming bucket and fix."""
    storage = S3Backend("my-archive", "akool/")

    def head_error(status: int, headers: dict[str, str] | None = None) -> bce.ClientError:
        return bce.ClientError({"Error": {"Code": str(status), "Message": ""},
                                "ResponseMetadata": {"HTTPStatusCode": status,
                                                     "HTTPHeaders": headers or {}}},
                               "HeadBucket")

    assert "'my-archive' does not exist" in storage._bucket_problem(head_error(404))
    assert "access to S3 bucket 'my-archive' denied" in storage._bucket_problem(head_error(403))
    moved = storage._bucket_problem(head_error(301, {"x-amz-bucket-region": "eu-west-1"}))
    assert "'my-archive' is in eu-west-1" in moved and "storage.s3.region" in moved


async def test_store_refusing_if_none_match_falls_back(s3):
    """A store answering 501 to If-None-Match gets plain writes of archive.json instead."""
    storage = storage_for(s3)
    await storage.open()
    refused = []

    def refuse(request: Any, **_: Any) -> AWSResponse | None:
        if request.headers.get("If-None-Match"):
            refused.append(request.url)
            body = b"<Error><Code>NotImplemented</Code><Message>If-None-Match</Message></Error>"
            return AWSResponse(request.url, 501, {}, _Raw(body))
        return None

    storage.bucket.data_client.meta.events.register("before-send.s3.PutObject", refuse)
    try:
        for item in (ID1, ID2):
            await storage.item(item).commit(b"{}")
    finally:
        await storage.close()
    assert len(refused) == 1  # asked once, then no more
    assert s3.list_keys() == [f"akool/{ID1}/archive.json", f"akool/{ID2}/archive.json"]
