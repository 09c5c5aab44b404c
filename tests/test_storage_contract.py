"""The storage contract, run unchanged against every backend: local disk, S3 on two real
servers - moto (AWS's semantics) and SeaweedFS (a directory tree behind S3) - and the
in-memory backend of :mod:`archiver.testing.memory`, written to the contract alone.

As restic's backend test suite: each backend supplies a factory fixture
(``local_store``, ``moto_store``, ``seaweedfs_store``, ``memory_store``) that builds its
:class:`~archiver.storage.backend.Backend` and an :class:`~archiver.archive.Archive`
over it, plus a few helpers for looking at and tampering with what was stored
(:class:`Store`). The tests talk to storage only through the narrow interface and the
Archive layer, so no test branches on the backend; the two places where backends may
differ by the contract itself are capabilities (``resumable``, ``server_checksums``)
and whether an aborted item keeps the files it made final (S3: another run may share
those keys, so a run never deletes them; ``gc`` does). What only one backend has (S3's
checksums and lease, local resumption and links) is in test_s3.py, test_lease.py,
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

from archiver.archive import Archive
from archiver.archive.verify import verify
from archiver.config import DownloadConfig
from archiver.download import Downloader
from archiver.errors import DownloadError, StorageError
from archiver.fleet.lock import LockHeld
from archiver.manifest import Manifest
from archiver.models import FileRecord, Outcome, RemoteFile
from archiver.run import archive
from archiver.storage.backend import Backend, Kind
from archiver.storage.local import LocalBackend
from archiver.storage.names import RECORD_NAME, is_temporary
from archiver.storage.s3 import S3Backend
from archiver.testing.memory import MemoryBackend

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


class Store:
    """A backend under test, the Archive over it, and ways to look at what it stored."""

    #: Whether an aborted item keeps the files it made final (S3: the same keys may hold
    #: another run's committed files, so a run never deletes them; `gc` does).
    abort_keeps_final = False

    def __init__(self, backend: Backend, part_size: int = TEST_PART_SIZE) -> None:
        self.backend = backend
        self.archive = Archive(backend)
        #: P in the tests: the part size of S3's multipart uploads (the smallest the
        #: server accepts), so that sizes around it cross part boundaries.
        self.part_size = part_size

    def read(self, item: str, name: str) -> bytes | None:
        """The bytes stored under the final name, or None."""
        raise NotImplementedError

    def names(self, item: str) -> list[str]:
        """Every name stored for *item*, temporary ones included."""
        raise NotImplementedError

    def plant(self, item: str, name: str, data: bytes) -> None:
        """Store a file as another program (or an earlier attempt) would: whole, at once."""
        raise NotImplementedError

    def delete(self, item: str, name: str) -> None:
        """Remove a stored file, as an operator's mistake would."""
        raise NotImplementedError

    def leftovers(self) -> list[str]:
        """Unfinished writes: open multipart uploads, or temporary files."""
        raise NotImplementedError

    def corrupt(self, item: str, name: str) -> None:
        """Replace a stored file with other bytes of the same size."""
        self.plant(item, name, os.urandom(len(self.read(item, name) or b"")))


class LocalStore(Store):
    """LocalBackend under a temporary root."""

    def __init__(self, root: Path) -> None:
        super().__init__(LocalBackend(root))
        self.root = root

    def read(self, item: str, name: str) -> bytes | None:
        path = self.root / item / name
        return path.read_bytes() if path.is_file() else None

    def names(self, item: str) -> list[str]:
        folder = self.root / item
        return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []

    def plant(self, item: str, name: str, data: bytes) -> None:
        (self.root / item).mkdir(parents=True, exist_ok=True)
        temp = self.root / item / f"planting-{name}"
        temp.write_bytes(data)
        temp.replace(self.root / item / name)  # a new file (inode), as a writer makes

    def delete(self, item: str, name: str) -> None:
        (self.root / item / name).unlink()

    def leftovers(self) -> list[str]:
        return sorted(str(p) for p in self.root.rglob("*") if p.is_file() and is_temporary(p.name))


class S3Store(Store):
    """S3Backend on a test server, with the smallest part size that server accepts."""

    abort_keeps_final = True
    prefix = "archive/"

    def __init__(self, s3: S3Fixture) -> None:
        super().__init__(S3Backend(s3.bucket, self.prefix, endpoint_url=s3.endpoint,
                                   region="us-east-1", addressing_style="path",
                                   part_size=s3.part_size), s3.part_size)
        self.s3 = s3

    def read(self, item: str, name: str) -> bytes | None:
        key = f"{self.prefix}{item}/{name}"
        return self.s3.read(key) if key in self.s3.list_keys(key) else None

    def names(self, item: str) -> list[str]:
        folder = f"{self.prefix}{item}/"
        return [k[len(folder):] for k in self.s3.list_keys(folder)]

    def plant(self, item: str, name: str, data: bytes) -> None:
        # A replaced object: S3's checksum is now that of the new bytes, not the record's.
        self.s3.client.put_object(Bucket=self.s3.bucket, Key=f"{self.prefix}{item}/{name}",
                                  Body=data, ChecksumAlgorithm="SHA256")

    def delete(self, item: str, name: str) -> None:
        self.s3.client.delete_object(Bucket=self.s3.bucket, Key=f"{self.prefix}{item}/{name}")

    def leftovers(self) -> list[str]:
        return [u["Key"] for u in self.s3.open_uploads()]


class MemoryStore(Store):
    """The in-memory backend: the contract and nothing else."""

    def __init__(self) -> None:
        self.memory = MemoryBackend()
        super().__init__(self.memory)

    def read(self, item: str, name: str) -> bytes | None:
        stored = self.memory.files.get(item, {}).get(name)
        return None if stored is None else bytes(stored.data)

    def names(self, item: str) -> list[str]:
        return sorted(self.memory.files.get(item, {}))

    def plant(self, item: str, name: str, data: bytes) -> None:
        self.memory.store(item, name, data)

    def delete(self, item: str, name: str) -> None:
        del self.memory.files[item][name]

    def leftovers(self) -> list[str]:
        return sorted(f"{item}/{name}" for item, folder in self.memory.files.items()
                      for name in folder if is_temporary(name))


@pytest.fixture
def local_store(tmp_path: Path) -> Store:
    """The local backend's factory."""
    return LocalStore(tmp_path / "archive")


@pytest.fixture
def moto_store(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Store:
    """The S3 backend's factory on moto."""
    return S3Store(new_bucket("moto", moto_endpoint, monkeypatch))


@pytest.fixture
def seaweedfs_store(seaweedfs_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Store:
    """The S3 backend's factory on SeaweedFS."""
    return S3Store(new_bucket("seaweedfs", seaweedfs_endpoint, monkeypatch))


@pytest.fixture
def memory_store() -> Store:
    """The in-memory backend's factory."""
    return MemoryStore()


@pytest.fixture(params=["local", "moto", "seaweedfs", "memory"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    """Each backend from its factory, opened (and closed after the test)."""
    chosen: Store = request.getfixturevalue(f"{request.param}_store")
    await chosen.archive.open()
    try:
        yield chosen
    finally:
        await chosen.archive.close()


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


async def write(writer: Any, name: str, data: bytes, chunk: int = CHUNK) -> dict[str, Any]:
    """Write *data* into a sink as the downloader does; returns what commit() returned."""
    sink = await writer.open_file(name)
    try:
        for start in range(0, len(data), chunk):
            await sink.write(data[start:start + chunk])
        return dict(await sink.commit(len(data), sha256(data)))
    except BaseException:
        await sink.abort()
        raise


async def commit_item(store: Store, item: str, files: dict[str, bytes]) -> list[FileRecord]:
    """Archive *item* with *files* as the transaction does; the records of its files."""
    writer = store.backend.item(item)
    records = [FileRecord(name, len(data), sha256(data), "https://example.test/" + name,
                          await write(writer, name, data)) for name, data in files.items()]
    await writer.put_small("info.json", b"{}\n")
    await writer.put_small("SHA256SUMS", "".join(f"{r.sha256}  {r.name}\n"
                                                 for r in records).encode())
    record = {"format": 1, "id": item, "label": None, "archived_at": "2026-01-01T00:00:00Z",
              "archiver_version": "test", "video_status": 3, "create_time": None,
              "expires_at": None, "files": [r.to_json() for r in records]}
    assert await writer.commit(json.dumps(record).encode(),
                               expect=[*files, "info.json", "SHA256SUMS"])
    return records


def sizes(*names: str) -> Any:
    """Parametrise over sizes named relative to the part size P: "P-1", "2P+1"..."""
    return pytest.mark.parametrize("size", names)


def size_of(name: str, part_size: int) -> int:
    """The number of bytes *name* ("0", "P", "3P+1") means for *part_size*."""
    times, p, offset = name.partition("P")
    if not p:
        return int(name)
    return int(times or 1) * part_size + int(offset or 0)


# ------------------------------------------------------------------------ writing

@sizes("0", "1", "P-1", "P", "P+1", "2P+1")
async def test_sizes_round_trip(store, size):
    """Files of 0, 1, P-1, P, P+1, 2P+1 bytes come back byte-identical after commit."""
    data = os.urandom(size_of(size, store.part_size))
    writer = store.backend.item(ID1)
    await write(writer, "video.mp4", data)
    await writer.commit(b"{}\n")

    assert store.read(ID1, "video.mp4") == data
    assert store.names(ID1) == ["archive.json", "video.mp4"]
    assert store.leftovers() == []


@sizes("P-1", "P", "3P+1")
async def test_downloaded_sizes_record_sha256(store, downloader, standin, base_url, size):
    """Through the downloader: the recorded sha256 is the served file's, bytes identical."""
    size = size_of(size, store.part_size)
    standin.add_job(ID1, video_size=size)
    writer = store.backend.item(ID1)
    record = await downloader.fetch(RemoteFile("video.mp4", url(base_url, ID1)), writer)
    await writer.commit(b"{}\n")
    served = standin.file_bytes(ID1, "video.mp4")
    assert record.size == size == len(served)
    assert record.sha256 == sha256(served) == standin.file_sha256(ID1, "video.mp4")
    assert store.read(ID1, "video.mp4") == served
    assert store.leftovers() == []


async def test_small_chunks_many_parts(store):
    """4 KiB chunks across several parts still assemble into the exact file."""
    data = os.urandom(3 * store.part_size + 12345)
    writer = store.backend.item(ID1)
    await write(writer, "video.mp4", data, chunk=4096)
    await writer.commit(b"{}\n")
    assert store.read(ID1, "video.mp4") == data
    assert store.leftovers() == []


async def test_source_dies_mid_stream(store, downloader, standin, base_url):
    """A download cut after 2P bytes: nothing under the final name, nothing left open."""
    standin.add_job(ID1, video_size=4 * store.part_size, file_faults={"video": ["truncate"]})
    writer = store.backend.item(ID1)
    with pytest.raises(DownloadError):
        await downloader.fetch(RemoteFile("video.mp4", url(base_url, ID1)), writer)
    assert store.read(ID1, "video.mp4") is None
    if not store.backend.capabilities.resumable:  # local keeps .video.mp4.part to resume
        assert store.leftovers() == []
    await writer.abort()
    assert store.names(ID1) == []
    assert store.leftovers() == []


async def test_retry_after_dying_source_restarts_cleanly(store, standin, base_url):
    """A retried download starts from zero; the stored file is whole, no upload left open."""
    standin.add_job(ID1, video_size=4 * store.part_size, file_faults={"video": ["truncate"]})
    config = DownloadConfig(chunk_size=CHUNK, allow_private=True,  # the stand-in: loopback
                            retries={"attempts": 2, "wait_initial": 0.01})
    writer = store.backend.item(ID1)
    async with Downloader(config) as retrying:
        record = await retrying.fetch(RemoteFile("video.mp4", url(base_url, ID1)), writer)
    await writer.commit(b"{}\n")
    assert record.sha256 == standin.file_sha256(ID1, "video.mp4")
    assert sha256(store.read(ID1, "video.mp4") or b"") == record.sha256
    assert store.leftovers() == []


async def test_abort_after_partial_writes(store):
    """An aborted writer leaves no open upload or temporary; S3 keeps what it made final."""
    P = store.part_size
    writer = store.backend.item(ID1)
    done = await writer.open_file("video.mp4")
    data = os.urandom(P + 10)
    await done.write(data)
    await done.commit(len(data), sha256(data))
    await writer.put_small("info.json", b"{}")
    open_sink = await writer.open_file("no_caption.mp4")
    for _ in range(3):
        await open_sink.write(os.urandom(P // 2 + 1))  # a part or more is in S3 by now
    assert store.leftovers()
    await writer.abort()
    await open_sink.abort()  # twice is fine
    kept = ["info.json", "video.mp4"] if store.abort_keeps_final else []
    assert store.names(ID1) == kept
    assert store.leftovers() == []
    assert await store.archive.archived([ID1]) == set()  # never looks archived


async def test_commit_with_wrong_size_fails_and_cleans_up(store):
    """commit() with a size other than what was written raises and keeps nothing."""
    writer = store.backend.item(ID1)
    sink = await writer.open_file("video.mp4")
    data = os.urandom(2 * store.part_size)
    await sink.write(data)
    with pytest.raises(StorageError):
        await sink.commit(len(data) + 1, sha256(data))
    await sink.abort()  # after a failed commit: allowed, and a no-op
    assert store.read(ID1, "video.mp4") is None
    assert store.leftovers() == []


async def test_record_waits_for_every_expected_file(store):
    """archive.json is refused while a file the record names is missing: not archived."""
    writer = store.backend.item(ID1)
    await write(writer, "video.mp4", b"....ftypvideo")
    with pytest.raises(StorageError, match=r"original\.srt"):
        await writer.commit(b"{}\n", expect=["video.mp4", "original.srt"])
    await writer.abort()
    assert await store.archive.archived([ID1]) == set()
    assert store.read(ID1, RECORD_NAME) is None
    assert store.names(ID1) == (["video.mp4"] if store.abort_keeps_final else [])


async def test_cancelled_mid_stream_leaves_nothing(store, downloader, standin, base_url):
    """A download cancelled (twice) while the source stalls: no object, no open upload."""
    P = store.part_size
    standin.add_job(ID1, video_size=4 * P, file_faults={"video": ["stall"]})
    writer = store.backend.item(ID1)

    async def archive_one() -> None:
        try:
            await downloader.fetch(RemoteFile("video.mp4", url(base_url, ID1)), writer)
        finally:
            await writer.abort()  # as the scheduler does, also when cancelled

    task = asyncio.create_task(archive_one())
    for _ in range(500):  # until half the file has arrived and some of it is stored
        await asyncio.sleep(0.02)
        if standin.file_bytes_sent[(ID1, "video.mp4")] >= 2 * P and store.leftovers():
            break
    assert store.leftovers(), "nothing in progress to cancel"  # S3: an open upload
    task.cancel()
    await asyncio.sleep(0)
    task.cancel()  # a second Ctrl-C while the clean-up runs
    with pytest.raises(asyncio.CancelledError):
        await task
    await store.archive.close()  # waits for clean-up handed to threads
    assert store.read(ID1, "video.mp4") is None
    assert store.leftovers() == []
    assert store.names(ID1) == []
    await store.archive.open()


async def test_second_commit_of_an_id(store):
    """A second archive.json for one id succeeds and keeps the first (write-once record)."""
    for n, record in enumerate((b'{"run": 1}\n', b'{"run": 2}\n')):
        writer = store.backend.item(ID1)
        await write(writer, "video.mp4", b"same bytes")
        assert await writer.commit(record) is (n == 0)  # the second: not this writer's
        await writer.abort()  # after commit: must not remove the committed item
    # Local: a hard link that fails if the record exists; S3: If-None-Match: *.
    assert store.read(ID1, "archive.json") == b'{"run": 1}\n'
    assert store.read(ID1, "video.mp4") == b"same bytes"
    assert await store.archive.archived([ID1]) == {ID1}


# ------------------------------------------------------------------------ reading

async def test_listing_entries(store):
    """list: each folder's entries with kind, size and the store's time; only= and all."""
    files = {"video.mp4": os.urandom(store.part_size + 3), "original.srt": b"1\n"}
    await commit_item(store, ID1, files)
    store.plant(ID2, "notes.txt", b"not ours")
    full = await store.backend.listing([ID1, ID2, ID3])
    assert sorted(full.folders) == [ID1, ID2]
    assert sorted(full.folders[ID1]) == sorted(
        [*files, "info.json", "SHA256SUMS", RECORD_NAME])
    for name, data in files.items():
        entry = full.folders[ID1][name]
        assert (entry.kind, entry.size) == (Kind.FILE, len(data))
        assert abs(entry.mtime - full.now) < 60 and entry.tag
    marked = await store.backend.listing([ID1, ID2, ID3], only=RECORD_NAME)
    assert RECORD_NAME in marked.folders[ID1] and marked.folders[ID2]
    assert ID3 not in marked.folders
    everything = await store.backend.listing(None)
    assert {ID1, ID2} <= set(everything.folders)
    assert await store.backend.read(ID1, "original.srt") == b"1\n"
    assert await store.backend.read(ID3, "original.srt") is None


async def test_digest_of_stored_files(store):
    """digest: the re-hashed SHA-256 always; the store's own checksum where it keeps one."""
    [record] = await commit_item(store, ID1, {"video.mp4": os.urandom(2 * store.part_size)})
    rehashed = await store.backend.digest(ID1, record, rehash=True)
    assert rehashed.sha256 == record.sha256
    if store.backend.capabilities.server_checksums:
        checked = await store.backend.digest(ID1, record, rehash=False)
        assert checked.reported is not None and checked.reported == checked.recorded
    store.delete(ID1, "video.mp4")
    with pytest.raises(StorageError):
        await store.backend.digest(ID1, record, rehash=True)


async def test_remove_only_what_is_unchanged(store):
    """remove: an entry rewritten since it was listed stays, and so does a committed
    folder's every entry."""
    store.plant(ID2, "video.mp4", b"first attempt")
    store.plant(ID2, "info.json", b"{}")
    listed = (await store.backend.listing([ID2])).folders[ID2]
    await asyncio.sleep(1.1)  # S3 times have whole seconds: a rewrite is newer
    store.plant(ID2, "video.mp4", b"a run writing it again")
    removal = await store.backend.remove(ID2, list(listed.values()))
    assert [e.name for e in removal.removed] == ["info.json"] and removal.failures == []
    assert store.names(ID2) == ["video.mp4"]
    assert store.read(ID2, "video.mp4") == b"a run writing it again"
    listed = (await store.backend.listing([ID2])).folders[ID2]
    store.plant(ID2, RECORD_NAME, b"{}")  # committed meanwhile
    assert (await store.backend.remove(ID2, list(listed.values()))).removed == []
    assert store.names(ID2) == [RECORD_NAME, "video.mp4"]


async def test_archived_sees_committed_items_only(store):
    """An id counts as archived only once archive.json exists, not for its files alone."""
    for item, commit in ((ID1, True), (ID2, False)):
        writer = store.backend.item(item)
        await write(writer, "video.mp4", b"....ftypvideo")
        await writer.put_small("SHA256SUMS", f"{sha256(b'....ftypvideo')}  video.mp4\n".encode())
        if commit:
            await writer.commit(b'{"id": 1}\n')
    assert await store.archive.archived([ID1, ID2, ID3]) == {ID1}
    assert await store.archive.archived([]) == set()


async def test_rerun_skips_without_api_calls(store, standin, base_url, make_config):
    """The whole run twice: the second finds everything archived and asks Akool nothing."""
    P = store.part_size
    standin.add_job(ID1, video_size=2 * P + 7, files=("video", "original_srt"))
    standin.add_job(ID2, video_size=P)
    config = make_config()
    manifest = Manifest.from_ids([ID1, ID2])
    first = await archive(config, manifest, storage=store.archive)
    assert [i.outcome for i in first.items] == [Outcome.ARCHIVED] * 2
    calls = standin.api_calls
    second = await archive(config, manifest, storage=store.archive)
    assert [i.outcome for i in second.items] == [Outcome.ALREADY_ARCHIVED] * 2
    assert standin.api_calls == calls
    assert store.names(ID1) == sorted(
        ["SHA256SUMS", "archive.json", "info.json", "original.srt", "video.mp4"])
    sums = (store.read(ID1, "SHA256SUMS") or b"").decode()
    assert f"{standin.file_sha256(ID1, 'video.mp4')}  video.mp4\n" in sums
    record = json.loads(store.read(ID1, "archive.json") or b"")
    video = next(f for f in record["files"] if f["name"] == "video.mp4")
    assert video["sha256"] == standin.file_sha256(ID1, "video.mp4")
    # Reopen after close works (a long-lived library user may run several passes).
    await store.archive.open()


async def test_verify_and_status_read_back(store, standin, make_config):
    """verify finds every file intact, then the corrupted one; status tells the states."""
    P = store.part_size
    standin.add_job(ID1, video_size=2 * P + 7, files=("video", "original_srt"))
    standin.add_job(ID2, video_size=P // 2)
    result = await archive(make_config(), Manifest.from_ids([ID1, ID2]), storage=store.archive)
    assert result.exit_status == 0
    await store.archive.open()
    # Some bytes stored, never committed: two chunks (a file that arrives in one is
    # held until its item commits, on local disk).
    writer = store.backend.item(ID3)
    await write(writer, "video.mp4", b"....ftyp" + os.urandom(100), chunk=64)

    assert await store.archive.list_archived() == sorted([ID1, ID2])
    assert await store.archive.item_states([ID1, ID2, ID3, "nothing-here"]) == {
        ID1: "archived", ID2: "archived", ID3: "partial", "nothing-here": "absent"}
    assert (await store.archive.verify(None)).ok
    store.corrupt(ID1, "video.mp4")
    store.delete(ID1, "original.srt")
    store.plant(ID2, "notes.txt", b"not in the record")
    for deep in (False, True):
        found = await verify(store.backend, [ID1, ID2], deep=deep)
        assert [(p.id, p.file, p.kind) for p in found.problems] == [
            (ID1, "original.srt", "missing"), (ID1, "video.mp4", "corrupted"),
            (ID2, "notes.txt", "unexpected")]
    await writer.abort()


async def test_gc_removes_old_leftovers_of_uncommitted_ids_only(store):
    """gc, through the Archive layer: only names the archiver writes, only in folders
    without archive.json, only once every entry there is older than min_age."""
    await commit_item(store, ID1, {"video.mp4": b"....ftypcommitted"})
    store.plant(ID2, "video.mp4", b"a failed attempt")
    store.plant(ID2, "info.json", b"{}")
    store.plant(ID3, "notes.txt", b"not a name the archiver writes")
    young = await store.archive.collect_garbage(None, min_age=3600, dry_run=False)
    assert (young.removed, young.kept_recent) == ([], [ID2])
    await asyncio.sleep(1.1)  # S3 times have whole seconds
    dry = await store.archive.collect_garbage(None, min_age=0, dry_run=True)
    assert sorted(g.where.rpartition("/")[2] for g in dry.files) == ["info.json", "video.mp4"]
    assert store.names(ID2) == ["info.json", "video.mp4"]
    done = await store.archive.collect_garbage([ID1, ID2, ID3], min_age=0, dry_run=False)
    assert done.items == {ID2} and len(done.files) == 2 and done.failures == []
    assert store.names(ID2) == [] and store.names(ID3) == ["notes.txt"]
    assert (await store.archive.verify([ID1])).ok


async def test_run_lock_keeps_a_second_run_out(store):
    """While a run holds the storage's lock, a second is refused; once released it is free."""
    async with store.backend.run_lock("all", ttl=60, what="the archive"):
        with pytest.raises(LockHeld):
            async with store.backend.run_lock("all", ttl=60, what="the archive"):
                pass
        with pytest.raises(LockHeld):  # a shard of it: its ids overlap
            async with store.backend.run_lock("shard-0-of-2", ttl=60, what="shard 0/2"):
                pass
    async with store.backend.run_lock("all", ttl=60, what="the archive"):
        pass


async def test_publish_a_page_at_the_top(store):
    """publish: a page at the top of the archive, replaced whole, listed among the top's
    entries and never as an item; gc leaves it, however old."""
    await store.backend.publish("index.html", b"<p>first</p>", content_type="text/html")
    page = b"<!doctype html><p>second, longer</p>"
    await store.backend.publish("index.html", page, content_type="text/html")
    listing = await store.backend.listing(None)
    [entry] = [e for e in listing.strays if e.name == "index.html"]
    assert (entry.kind, entry.size) == (Kind.FILE, len(page))
    assert "index.html" not in listing.folders
    assert await store.archive.list_archived() == []
    result = await store.archive.collect_garbage(None, 0.0, False)
    assert result.removed == []
    assert [e.size for e in (await store.backend.listing(None)).strays
            if e.name == "index.html"] == [len(page)]
