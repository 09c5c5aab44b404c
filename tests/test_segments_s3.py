"""One large file over several connections into S3 (downloads.segments + storage.s3).

Real servers: the stand-in (or a small aiohttp server written here) serves the ranges,
moto_server is S3. The S3 sink spools the ranges to an anonymous local file and sends a
part once the bytes under it are hashed and checked in order; these tests check the
object is byte-exact, its checksums verify, and that neither a spool file nor a
multipart upload outlives the run, whatever happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import os
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from archiver.archive.verify import verify
from archiver.errors import StorageError, StorageUnavailable
from archiver.manifest import Manifest
from archiver.models import Outcome
from archiver.retry import RetryPolicy
from archiver.run import archive
from archiver.storage.s3 import S3Backend, composite_checksum
from archiver.testing.media import mp4_bytes

from .conftest import ID1
from .s3server import (  # noqa: F401 - fixtures: moto_endpoint, s3
    S3Fixture,
    moto_endpoint_fixture,
    s3_fixture,
)
from .servers import aiohttp_server

MiB = 1024 * 1024
#: S3's smallest part (the configuration refuses less).
PART = 5 * MiB
#: Three parts, the last one short; not a multiple of anything.
SIZE = 12 * MiB + 12_345
SEGMENTED = {"segment_threshold": MiB, "segments": 4}


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    """An empty folder used as storage.s3.spool_dir."""
    folder = tmp_path / "spool"
    folder.mkdir()
    return folder


def s3_config(make_config: Any, s3: S3Fixture, spool: Path, **downloads: Any) -> Any:
    return make_config(downloads={**SEGMENTED, **downloads}, storage={"backend": "s3", "s3": {
        "bucket": s3.bucket, "prefix": "akool/", "endpoint_url": s3.endpoint,
        "region": "us-east-1", "addressing_style": "path", "part_size": PART,
        "parts_in_flight": 2, "spool_dir": str(spool),
        "retries": {"attempts": 2, "wait_initial": 0.01, "wait_max": 0.02}}})


def open_in(folder: Path) -> list[str]:
    """Descriptors of this process open on files in *folder* (an O_TMPFILE spool shows
    as ``folder/#123 (deleted)``)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(folder)):
            found.append(target)
    return found


def assert_nothing_left(s3: S3Fixture, spool: Path) -> None:
    assert s3.open_uploads() == []
    assert list(spool.iterdir()) == []
    assert open_in(spool) == []


def ranges_asked(requests: list[tuple[str, str, str]]) -> list[tuple[int, int]]:
    """The ``bytes=a-b`` ranges requested, as sorted (a, b + 1)."""
    pairs = [header.split("=")[1].split("-") for _, _, header in requests]
    return sorted((int(a), int(b) + 1) for a, b in pairs)


def video_entry(s3: S3Fixture, job: str) -> dict[str, Any]:
    record = json.loads(s3.read(f"akool/{job}/archive.json"))
    [entry] = [f for f in record["files"] if f["name"] == "video.mp4"]
    return dict(entry)


async def deep_verify(config: Any, job: str) -> None:
    storage = S3Backend.from_config(config.storage.s3)
    await storage.open(readonly=True)
    try:
        for deep in (False, True):
            result = await verify(storage, [job], deep=deep)
            assert result.ok and result.files >= 1, result.problems
    finally:
        await storage.close()


async def test_segmented_file_into_s3_is_byte_exact_and_verifies(standin, make_config, s3,
                                                                 spool):
    """A 12 MiB file over four connections into S3: byte-exact, checksums verify."""
    standin.add_job(ID1, video_size=SIZE)
    config = s3_config(make_config, s3, spool)
    result = await archive(config, Manifest.from_ids([ID1]))
    assert result.items[0].outcome is Outcome.ARCHIVED, result.items[0].error
    data = standin.file_bytes(ID1, "video")
    want = hashlib.sha256(data).hexdigest()
    assert hashlib.sha256(s3.read(f"akool/{ID1}/video.mp4")).hexdigest() == want
    entry = video_entry(s3, ID1)
    assert entry["sha256"] == want
    parts = [hashlib.sha256(data[i:i + PART]).digest() for i in range(0, SIZE, PART)]
    assert entry["s3"]["checksum_sha256"] == composite_checksum(parts)  # numbered by offset
    assert entry["s3"]["checksum_type"] == "COMPOSITE" and entry["s3"]["parts"] == 3
    # Every byte after the first answer's piece was asked for by range, each once.
    asked = ranges_asked(standin.file_ranges)
    assert len(asked) >= 3 and asked[-1][1] == SIZE
    assert all(a[1] == b[0] for a, b in itertools.pairwise(asked))
    await deep_verify(config, ID1)
    assert_nothing_left(s3, spool)


class _RangedFile:
    """Serves *data* with Range; holds every body until two requests are in flight at
    once (or a second has passed), and remembers the most seen at once."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.active = self.peak = 0
        self._two = asyncio.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.active += 1
        self.peak = max(self.peak, self.active)
        if self.active >= 2:
            self._two.set()
        try:
            start, end = 0, len(self.data)
            status, headers = 200, {"ETag": '"v1"', "Content-Type": "video/mp4",
                                    "Accept-Ranges": "bytes"}
            wanted = request.headers.get("Range")
            if wanted:
                first, _, last = wanted.removeprefix("bytes=").partition("-")
                start, end = int(first), int(last) + 1 if last else len(self.data)
                status = 206
                headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(self.data)}"
            resp = web.StreamResponse(status=status, headers=headers)
            resp.content_length = end - start
            await resp.prepare(request)  # headers first: the client starts its ranges
            with contextlib.suppress(TimeoutError):  # one connection only: the peak says so
                await asyncio.wait_for(self._two.wait(), 1.0)
            for at in range(start, end, 256 * 1024):
                await resp.write(self.data[at:min(at + 256 * 1024, end)])
            await resp.write_eof()
            return resp
        finally:
            self.active -= 1


async def test_segments_into_s3_run_at_once_and_one_part_is_one_put(standin, make_config,
                                                                    s3, spool):
    """Ranges are fetched at once; a file within one part goes up as one PutObject."""
    server = _RangedFile(mp4_bytes(3 * MiB + 7, seed=b"at-once"))
    async with aiohttp_server({"/video.mp4": server.handle}) as url:
        standin.add_job(ID1, redirects={"video": f"{url}/video.mp4"})
        config = s3_config(make_config, s3, spool)
        result = await archive(config, Manifest.from_ids([ID1]))
    assert result.items[0].outcome is Outcome.ARCHIVED, result.items[0].error
    assert server.peak >= 2
    assert s3.read(f"akool/{ID1}/video.mp4") == server.data
    entry = video_entry(s3, ID1)
    assert entry["sha256"] == hashlib.sha256(server.data).hexdigest()
    assert entry["s3"]["checksum_type"] == "FULL_OBJECT"
    await deep_verify(config, ID1)
    assert_nothing_left(s3, spool)


async def test_range_cut_midway_into_s3_is_resumed(standin, make_config, s3, spool):
    """A range cut half-way is asked for again from where it stopped; the object is exact."""
    standin.add_job(ID1, video_size=SIZE, range_faults={"video": ["truncate"]})
    result = await archive(s3_config(make_config, s3, spool), Manifest.from_ids([ID1]))
    assert result.items[0].outcome is Outcome.ARCHIVED, result.items[0].error
    data = standin.file_bytes(ID1, "video")
    assert s3.read(f"akool/{ID1}/video.mp4") == data
    assert video_entry(s3, ID1)["sha256"] == hashlib.sha256(data).hexdigest()
    # One range was asked for twice: its end, from two different starts.
    ends = [end for _, end in ranges_asked(standin.file_ranges)]
    assert len(ends) == len(set(ends)) + 1
    assert_nothing_left(s3, spool)


async def test_server_ignoring_range_into_s3_falls_back_to_one_stream(standin, make_config,
                                                                      s3, spool):
    """A server answering 200 to Range requests: one stream, the object still exact."""
    standin.add_job(ID1, video_size=SIZE, ignore_range=True)
    result = await archive(s3_config(make_config, s3, spool), Manifest.from_ids([ID1]))
    assert result.items[0].outcome is Outcome.ARCHIVED, result.items[0].error
    assert standin.file_ranges  # ranges were tried, and their 200s recognised
    data = standin.file_bytes(ID1, "video")
    assert s3.read(f"akool/{ID1}/video.mp4") == data
    assert video_entry(s3, ID1)["sha256"] == hashlib.sha256(data).hexdigest()
    assert_nothing_left(s3, spool)


class _ChangingFile:
    """Version A to the first request, B to every later one (with *if_range*, a Range
    whose If-Range is not B's ETag gets all of B; without, any Range is honoured)."""

    def __init__(self, *, if_range: bool) -> None:
        self.a = mp4_bytes(SIZE, seed=b"s3-version-a")
        self.b = mp4_bytes(SIZE, seed=b"s3-version-b")
        self.if_range = if_range
        self.requests: list[str | None] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(request.headers.get("Range"))
        data, tag = (self.a, '"a"') if len(self.requests) == 1 else (self.b, '"b"')
        headers = {"ETag": tag, "Content-Type": "video/mp4", "Accept-Ranges": "bytes"}
        wanted = request.headers.get("Range")
        if not wanted or (self.if_range and request.headers.get("If-Range") != tag):
            return web.Response(body=data, headers=headers)
        first, _, last = wanted.removeprefix("bytes=").partition("-")
        start, end = int(first), int(last) + 1 if last else len(data)
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
        return web.Response(status=206, body=data[start:end], headers=headers)


@pytest.mark.parametrize("if_range", [True, False], ids=["if-range", "no-if-range"])
async def test_file_changing_between_ranges_never_reaches_s3_mixed(standin, make_config, s3,
                                                                   spool, if_range):
    """The file changes after the first answer: no version of the object is ever a mix;
    B is fetched from zero."""
    s3.client.put_bucket_versioning(Bucket=s3.bucket,
                                    VersioningConfiguration={"Status": "Enabled"})
    server = _ChangingFile(if_range=if_range)
    async with aiohttp_server({"/video.mp4": server.handle}) as url:
        standin.add_job(ID1, redirects={"video": f"{url}/video.mp4"})
        result = await archive(s3_config(make_config, s3, spool), Manifest.from_ids([ID1]))
    assert result.items[0].outcome is Outcome.ARCHIVED, result.items[0].error
    assert server.requests.count(None) == 2  # ranges asked, then B from zero
    key = f"akool/{ID1}/video.mp4"
    versions = s3.client.list_object_versions(Bucket=s3.bucket, Prefix=key)["Versions"]
    assert len(versions) == 1  # every attempt but the last left no object at all
    body = s3.client.get_object(Bucket=s3.bucket, Key=key, VersionId=versions[0]["VersionId"])
    assert body["Body"].read() == server.b
    assert video_entry(s3, ID1)["sha256"] == hashlib.sha256(server.b).hexdigest()
    assert_nothing_left(s3, spool)


async def test_failed_segmented_fetch_leaves_no_spool_and_no_upload(standin, make_config, s3,
                                                                    spool):
    """A segmented fetch into S3 that fails for good: no spool file, no open upload, no
    object, no record."""
    # Each range stalls half-way, then resets when asked again: the item fails.
    standin.add_job(ID1, video_size=SIZE,
                    range_faults={"video": ["stall"] * 3 + ["reset"] * 12})
    config = s3_config(make_config, s3, spool, read_timeout=0.5, retries={"attempts": 1})
    result = await archive(config, Manifest.from_ids([ID1]))
    assert result.items[0].outcome is Outcome.FAILED
    assert s3.list_keys(f"akool/{ID1}/video.mp4") == []
    assert s3.list_keys(f"akool/{ID1}/archive.json") == []
    assert_nothing_left(s3, spool)


def storage_for(s3: S3Fixture, spool: Path | None) -> S3Backend:
    return S3Backend(s3.bucket, "akool/", endpoint_url=s3.endpoint, region="us-east-1",
                     addressing_style="path", part_size=PART, parts_in_flight=1,
                     spool_dir=spool,
                     retry=RetryPolicy(attempts=2, timeout=5, wait_initial=0.01,
                                       wait_max=0.02))


async def test_mark_prefix_sends_whole_checked_parts_only(s3, spool):
    """Parts go up as the checked prefix covers them, numbered by offset; nothing under
    the prefix can be written again; the commit sends the rest."""
    data = os.urandom(SIZE)
    storage = storage_for(s3, spool)
    await storage.open()
    sent: list[tuple[str, int]] = []

    def record(request: Any, **_: Any) -> None:
        sent.append((request.url.split("partNumber=")[1].split("&")[0], len(request.body)))

    try:
        storage.bucket.data_client.meta.events.register("before-send.s3.UploadPart", record)
        sink = await storage.item(ID1).open_file("video.mp4")
        for start in reversed(range(0, SIZE, MiB)):  # ranges arrive out of order
            await sink.write_at(start, data[start:start + MiB])
        back = bytearray(20)
        assert await sink.read_into(PART - 10, memoryview(back)) == 20
        assert back == data[PART - 10:PART + 10]
        await sink.mark_prefix(2 * PART - 1)  # part 2 not wholly checked yet
        # The part is handed to the pool, not awaited: wait until it is on its way (an
        # abort cancels a part not started yet), then end everything with a refused write.
        for _ in range(500):
            if sent:
                break
            await asyncio.sleep(0.01)
        with pytest.raises(StorageError, match="inside the checked prefix"):
            await sink.write_at(PART, b"x")
        # The abort waited for the parts in flight: just part 1 went up.
        assert sent == [("1", PART)]
    finally:
        await storage.close()
    assert_nothing_left(s3, spool)

    storage = storage_for(s3, spool)
    await storage.open()
    try:
        writer = storage.item(ID1)
        sink = await writer.open_file("video.mp4")
        for start in range(0, SIZE, MiB):
            await sink.write_at(start, data[start:start + MiB])
        await sink.mark_prefix(2 * PART)
        facts = await sink.commit(SIZE, hashlib.sha256(data).hexdigest())
        await writer.commit(b"{}")
    finally:
        await storage.close()
    assert s3.read(f"akool/{ID1}/video.mp4") == data
    parts = [hashlib.sha256(data[i:i + PART]).digest() for i in range(0, SIZE, PART)]
    assert facts["s3"]["checksum_sha256"] == composite_checksum(parts)
    assert_nothing_left(s3, spool)


async def test_unusable_spool_dir_stops_before_any_download(s3, tmp_path):
    """A storage.s3.spool_dir that cannot take a file: StorageUnavailable naming it."""
    missing = tmp_path / "no-such-folder"
    with pytest.raises(StorageUnavailable, match=r"storage\.s3\.spool_dir: .*no-such-folder"):
        await storage_for(s3, missing).open()
