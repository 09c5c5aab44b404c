"""The storage contract, run unchanged against every backend: local disk, and S3 on two
real servers - moto (AWS's semantics) and SeaweedFS (a directory tree behind S3).

As restic's backend test suite: each backend supplies a factory fixture
(``local_backend``, ``moto_backend``, ``seaweedfs_backend``) that opens a storage and wraps
it with a few read-back helpers (:class:`Backend`); the tests below talk to the storage
only through the contract (:class:`~archiver.storage.base.Storage`) and to the helpers
only for looking at what was stored, so no test branches on the backend. What only one
backend has (S3's checksums, local resumption and links) is in test_s3.py,
test_segments.py and test_leftovers_and_links.py.

Sizes are relative to the backend's part size P: S3's multipart part, as small as each
server accepts (256 KiB on moto, told so; 5 MiB on SeaweedFS, which enforces S3's
minimum).

Faults and whole runs go through the archiver's own code path - the
:class:`~archiver.download.Downloader` fetching from the Akool stand-in's file server into
an item writer. The part-boundary sizes are written to sinks directly, the way the
downloader does (chunks in order, then commit, abort on failure), because the downloader's
content checks rightly refuse a 0-byte or 1-byte "video".
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from archiver.config import DownloadConfig
from archiver.download import Downloader
from archiver.errors import DownloadError, StorageError
from archiver.lock import LockHeld
from archiver.manifest import Manifest
from archiver.models import Outcome, RemoteFile
from archiver.run import archive
from archiver.storage import LocalStorage, Storage
from archiver.storage.s3 import S3Storage
from archiver.verify import verify

from .conftest import ID1, ID2, ID3
from .s3server import (  # noqa: F401 - fixtures: moto_endpoint, seaweedfs_endpoint
    TEST_PART_SIZE,
    S3Fixture,
    moto_endpoint_fixture,
    new_bucket,
    seaweedfs_endpoint_fixture,
)

#: Downloader chunk size in these tests: deliberately not a divisor of any part size.
CHUNK = 100_000


class Backend:
    """A storage under test plus ways to look at what it stored, whatever the backend."""

    #: Whether an aborted item keeps the files it made final (S3: the same keys may hold
    #: another run's committed files, so a run never deletes them; `gc` does).
    abort_keeps_final = False

    def __init__(self, storage: Storage, part_size: int = TEST_PART_SIZE) -> None:
        self.storage = storage
        #: P in the tests: the part size of S3's multipart uploads (the smallest the
        #: server accepts), so that sizes around it cross part boundaries.
        self.part_size = part_size

    def read(self, item: str, name: str) -> bytes | None:
        """The bytes stored under the final name, or None."""
        raise NotImplementedError

    def names(self, item: str) -> list[str]:
        """Every name stored for *item*, temporary ones included."""
        raise NotImplementedError

    def corrupt(self, item: str, name: str) -> None:
        """Replace a stored file with other bytes of the same size."""
        raise NotImplementedError

    def delete(self, item: str, name: str) -> None:
        """Remove a stored file, as an operator's mistake would."""
        raise NotImplementedError

    def leftovers(self) -> list[str]:
        """Unfinished writes: open multipart uploads, or temporary files on disk."""
        raise NotImplementedError


class LocalBackend(Backend):
    """LocalStorage under a temporary root."""

    def __init__(self, root: Path) -> None:
        super().__init__(LocalStorage(root))
        self.root = root

    def read(self, item: str, name: str) -> bytes | None:
        path = self.root / item / name
        return path.read_bytes() if path.is_file() else None

    def names(self, item: str) -> list[str]:
        folder = self.root / item
        return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []

    def corrupt(self, item: str, name: str) -> None:
        path = self.root / item / name
        path.write_bytes(os.urandom(path.stat().st_size))

    def delete(self, item: str, name: str) -> None:
        (self.root / item / name).unlink()

    def leftovers(self) -> list[str]:
        return sorted(str(p) for p in self.root.rglob("*")
                      if p.is_file() and p.name.endswith((".part", ".tmp", ".part.json")))


class S3Backend(Backend):
    """S3Storage on a test server, with the smallest part size that server accepts."""

    abort_keeps_final = True
    prefix = "archive/"

    def __init__(self, s3: S3Fixture) -> None:
        super().__init__(S3Storage(s3.bucket, self.prefix, endpoint_url=s3.endpoint,
                                   region="us-east-1", addressing_style="path",
                                   part_size=s3.part_size), s3.part_size)
        self.s3 = s3

    def read(self, item: str, name: str) -> bytes | None:
        key = f"{self.prefix}{item}/{name}"
        return self.s3.read(key) if key in self.s3.list_keys(key) else None

    def names(self, item: str) -> list[str]:
        folder = f"{self.prefix}{item}/"
        return [k[len(folder):] for k in self.s3.list_keys(folder)]

    def corrupt(self, item: str, name: str) -> None:
        # A replaced object: S3's checksum is now that of the new bytes, not the record's.
        size = len(self.read(item, name) or b"")
        self.s3.client.put_object(Bucket=self.s3.bucket, Key=f"{self.prefix}{item}/{name}",
                                  Body=os.urandom(size), ChecksumAlgorithm="SHA256")

    def delete(self, item: str, name: str) -> None:
        self.s3.client.delete_object(Bucket=self.s3.bucket, Key=f"{self.prefix}{item}/{name}")

    def leftovers(self) -> list[str]:
        return [u["Key"] for u in self.s3.open_uploads()]


@pytest.fixture
def local_backend(tmp_path: Path) -> Backend:
    """The local backend's factory."""
    return LocalBackend(tmp_path / "archive")


@pytest.fixture
def moto_backend(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Backend:
    """The S3 backend's factory on moto."""
    return S3Backend(new_bucket("moto", moto_endpoint, monkeypatch))


@pytest.fixture
def seaweedfs_backend(seaweedfs_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Backend:
    """The S3 backend's factory on SeaweedFS."""
    return S3Backend(new_bucket("seaweedfs", seaweedfs_endpoint, monkeypatch))


@pytest.fixture(params=["local", "moto", "seaweedfs"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    """Each backend from its factory, opened (and closed after the test)."""
    chosen: Backend = request.getfixturevalue(f"{request.param}_backend")
    await chosen.storage.open()
    try:
        yield chosen
    finally:
        await chosen.storage.close()


@pytest.fixture
async def downloader() -> AsyncIterator[Downloader]:
    config = DownloadConfig(chunk_size=CHUNK, read_timeout=2, allow_private=True,
                            retries={"attempts": 1, "wait_initial": 0.01, "wait_max": 0.01})
    async with Downloader(config, limit=4) as d:
        yield d


def url(base_url: str, item: str, name: str = "video.mp4") -> str:
    return f"{base_url}/files/{item}/{name}"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def store(writer: Any, name: str, data: bytes, chunk: int = CHUNK) -> dict[str, Any]:
    """Write *data* into a sink as the downloader does; returns what commit() returned."""
    sink = await writer.open_file(name)
    try:
        for start in range(0, len(data), chunk):
            await sink.write(data[start:start + chunk])
        return dict(await sink.commit(len(data), sha256(data)))
    except BaseException:
        await sink.abort()
        raise


def sizes(*names: str) -> Any:
    """Parametrise over sizes named relative to the part size P: "P-1", "2P+1"..."""
    return pytest.mark.parametrize("size", names)


def size_of(name: str, part_size: int) -> int:
    """The number of bytes *name* ("0", "P", "3P+1") means for *part_size*."""
    times, p, offset = name.partition("P")
    if not p:
        return int(name)
    return int(times or 1) * part_size + int(offset or 0)


@sizes("0", "1", "P-1", "P", "P+1", "2P+1")
async def test_sizes_round_trip(backend, size):
    """Files of 0, 1, P-1, P, P+1, 2P+1 bytes come back byte-identical after commit."""
    data = os.urandom(size_of(size, backend.part_size))
    writer = backend.storage.item(ID1)
    await store(writer, "video.mp4", data)
    await writer.commit(b"{}\n")

    assert backend.read(ID1, "video.mp4") == data
    assert backend.names(ID1) == ["archive.json", "video.mp4"]
    assert backend.leftovers() == []


@sizes("P-1", "P", "3P+1")
async def test_downloaded_sizes_record_sha256(backend, downloader, standin, base_url, size):
    """Through the downloader: the recorded sha256 is the served file's, bytes identical."""
    size = size_of(size, backend.part_size)
    standin.add_job(ID1, video_size=size)
    writer = backend.storage.item(ID1)
    record = await downloader.fetch(RemoteFile("video.mp4", url(base_url, ID1)), writer)
    await writer.commit(b"{}\n")
    served = standin.file_bytes(ID1, "video.mp4")
    assert record.size == size == len(served)
    assert record.sha256 == sha256(served) == standin.file_sha256(ID1, "video.mp4")
    assert backend.read(ID1, "video.mp4") == served
    assert backend.leftovers() == []


async def test_small_chunks_many_parts(backend):
    """4 KiB chunks across several parts still assemble into the exact file."""
    P = backend.part_size
    data = os.urandom(3 * P + 12345)
    writer = backend.storage.item(ID1)
    await store(writer, "video.mp4", data, chunk=4096)
    await writer.commit(b"{}\n")
    assert backend.read(ID1, "video.mp4") == data
    assert backend.leftovers() == []


async def test_source_dies_mid_stream(backend, downloader, standin, base_url):
    """A download cut after 2P bytes: nothing under the final name, nothing left open."""
    P = backend.part_size
    standin.add_job(ID1, video_size=4 * P, file_faults={"video": ["truncate"]})
    writer = backend.storage.item(ID1)
    with pytest.raises(DownloadError):
        await downloader.fetch(RemoteFile("video.mp4", url(base_url, ID1)), writer)
    assert backend.read(ID1, "video.mp4") is None
    if not backend.storage.resumable:  # local keeps .video.mp4.part to resume; S3 nothing
        assert backend.leftovers() == []
    await writer.abort()
    assert backend.names(ID1) == []
    assert backend.leftovers() == []


async def test_retry_after_dying_source_restarts_cleanly(backend, standin, base_url):
    """A retried download starts from zero; the stored file is whole, no upload left open."""
    P = backend.part_size
    standin.add_job(ID1, video_size=4 * P, file_faults={"video": ["truncate"]})
    config = DownloadConfig(chunk_size=CHUNK, allow_private=True,  # the stand-in: loopback
                            retries={"attempts": 2, "wait_initial": 0.01})
    writer = backend.storage.item(ID1)
    async with Downloader(config) as retrying:
        record = await retrying.fetch(RemoteFile("video.mp4", url(base_url, ID1)), writer)
    await writer.commit(b"{}\n")
    assert record.sha256 == standin.file_sha256(ID1, "video.mp4")
    assert sha256(backend.read(ID1, "video.mp4") or b"") == record.sha256
    assert backend.leftovers() == []


async def test_abort_after_partial_writes(backend):
    """An aborted writer leaves no open upload or temporary; S3 keeps what it made final."""
    P = backend.part_size
    writer = backend.storage.item(ID1)
    done = await writer.open_file("video.mp4")
    data = os.urandom(P + 10)
    await done.write(data)
    await done.commit(len(data), sha256(data))
    await writer.put_small("info.json", b"{}")
    open_sink = await writer.open_file("no_caption.mp4")
    for _ in range(3):
        await open_sink.write(os.urandom(P // 2 + 1))  # a part or more is in S3 by now
    assert backend.leftovers()
    await writer.abort()
    await open_sink.abort()  # twice is fine
    kept = ["info.json", "video.mp4"] if backend.abort_keeps_final else []
    assert backend.names(ID1) == kept
    assert backend.leftovers() == []
    assert await backend.storage.archived([ID1]) == set()  # never looks archived


async def test_commit_with_wrong_size_fails_and_cleans_up(backend):
    """commit() with a size other than what was written raises and keeps nothing."""
    P = backend.part_size
    writer = backend.storage.item(ID1)
    sink = await writer.open_file("video.mp4")
    data = os.urandom(2 * P)
    await sink.write(data)
    with pytest.raises(StorageError):
        await sink.commit(len(data) + 1, sha256(data))
    await sink.abort()  # after a failed commit: allowed, and a no-op
    assert backend.read(ID1, "video.mp4") is None
    assert backend.leftovers() == []


async def test_cancelled_mid_stream_leaves_nothing(backend, downloader, standin, base_url):
    """A download cancelled (twice) while the source stalls: no object, no open upload."""
    P = backend.part_size
    standin.add_job(ID1, video_size=4 * P, file_faults={"video": ["stall"]})
    writer = backend.storage.item(ID1)

    async def archive_one() -> None:
        try:
            await downloader.fetch(RemoteFile("video.mp4", url(base_url, ID1)), writer)
        finally:
            await writer.abort()  # as the scheduler does, also when cancelled

    task = asyncio.create_task(archive_one())
    for _ in range(500):  # until half the file has arrived and some of it is stored
        await asyncio.sleep(0.02)
        if standin.file_bytes_sent[(ID1, "video.mp4")] >= 2 * P and backend.leftovers():
            break
    assert backend.leftovers(), "nothing in progress to cancel"  # S3: an open upload
    task.cancel()
    await asyncio.sleep(0)
    task.cancel()  # a second Ctrl-C while the clean-up runs
    with pytest.raises(asyncio.CancelledError):
        await task
    await backend.storage.close()  # waits for clean-up handed to threads
    assert backend.read(ID1, "video.mp4") is None
    assert backend.leftovers() == []
    assert backend.names(ID1) == []
    await backend.storage.open()


async def test_archived_sees_committed_items_only(backend):
    """An id counts as archived only once archive.json exists, not for its files alone."""
    for item, commit in ((ID1, True), (ID2, False)):
        writer = backend.storage.item(item)
        sink = await writer.open_file("video.mp4")
        await sink.write(b"....ftypvideo")
        await sink.commit(13, sha256(b"....ftypvideo"))
        await writer.put_small("SHA256SUMS", f"{sha256(b'....ftypvideo')}  video.mp4\n".encode())
        if commit:
            await writer.commit(b'{"id": 1}\n')
    assert await backend.storage.archived([ID1, ID2, ID3]) == {ID1}
    assert await backend.storage.archived([]) == set()


async def test_second_commit_of_an_id(backend):
    """A second archive.json for one id succeeds and keeps the first (write-once record)."""
    for record in (b'{"run": 1}\n', b'{"run": 2}\n'):
        writer = backend.storage.item(ID1)
        sink = await writer.open_file("video.mp4")
        await sink.write(b"same bytes")
        await sink.commit(10, sha256(b"same bytes"))
        await writer.commit(record)  # no exception: the id is archived either way
        await writer.abort()  # after commit: must not remove the committed item
    # Local: a hard link that fails if the record exists; S3: If-None-Match: *.
    assert backend.read(ID1, "archive.json") == b'{"run": 1}\n'
    assert backend.read(ID1, "video.mp4") == b"same bytes"
    assert await backend.storage.archived([ID1]) == {ID1}


async def test_rerun_skips_without_api_calls(backend, standin, base_url, make_config):
    """The whole run twice: the second finds everything archived and asks Akool nothing."""
    P = backend.part_size
    standin.add_job(ID1, video_size=2 * P + 7, files=("video", "original_srt"))
    standin.add_job(ID2, video_size=P)
    config = make_config()
    manifest = Manifest.from_ids([ID1, ID2])
    first = await archive(config, manifest, storage=backend.storage)
    assert [i.outcome for i in first.items] == [Outcome.ARCHIVED] * 2
    calls = standin.api_calls
    second = await archive(config, manifest, storage=backend.storage)
    assert [i.outcome for i in second.items] == [Outcome.ALREADY_ARCHIVED] * 2
    assert standin.api_calls == calls
    assert backend.names(ID1) == sorted(
        ["SHA256SUMS", "archive.json", "info.json", "original.srt", "video.mp4"])
    sums = (backend.read(ID1, "SHA256SUMS") or b"").decode()
    assert f"{standin.file_sha256(ID1, 'video.mp4')}  video.mp4\n" in sums
    record = json.loads(backend.read(ID1, "archive.json") or b"")
    video = next(f for f in record["files"] if f["name"] == "video.mp4")
    assert video["sha256"] == standin.file_sha256(ID1, "video.mp4")
    # Reopen after close works (a long-lived library user may run several passes).
    await backend.storage.open()


async def test_verify_and_status_read_back(backend, standin, make_config):
    """verify finds every file intact, then the corrupted one; status tells the states."""
    P = backend.part_size
    standin.add_job(ID1, video_size=2 * P + 7, files=("video", "original_srt"))
    standin.add_job(ID2, video_size=P // 2)
    result = await archive(make_config(), Manifest.from_ids([ID1, ID2]), storage=backend.storage)
    assert result.exit_status == 0
    await backend.storage.open()
    writer = backend.storage.item(ID3)  # some bytes, never committed
    await store(writer, "video.mp4", b"....ftyp" + os.urandom(100))

    reader = backend.storage
    assert await reader.list_archived() == sorted([ID1, ID2])
    assert await reader.item_states([ID1, ID2, ID3, "nothing-here"]) == {
        ID1: "archived", ID2: "archived", ID3: "partial", "nothing-here": "absent"}
    assert (await verify(reader, None)).ok
    backend.corrupt(ID1, "video.mp4")
    backend.delete(ID1, "original.srt")
    for deep in (False, True):
        found = await verify(reader, [ID1, ID2], deep=deep)
        assert [(p.id, p.file, p.kind) for p in found.problems] == [
            (ID1, "original.srt", "missing"), (ID1, "video.mp4", "corrupted")]
    await writer.abort()


async def test_run_lock_keeps_a_second_run_out(backend):
    """While a run holds the storage's lock, a second is refused; once released it is free."""
    async with backend.storage.run_lock("all", ttl=60, what="the archive"):
        with pytest.raises(LockHeld):
            async with backend.storage.run_lock("all", ttl=60, what="the archive"):
                pass
    async with backend.storage.run_lock("all", ttl=60, what="the archive"):
        pass
