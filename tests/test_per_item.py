"""Per-item overhead on local disk: what a small item costs in thread hops."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import Counter
from typing import Any

import pytest

from archiver.manifest import Manifest
from archiver.models import Outcome
from archiver.run import archive
from archiver.storage.local.partial import read_partial
from archiver.storage.local.writer import LocalItemWriter

from .conftest import ID1


async def test_one_chunk_file_costs_one_thread_hop(standin, make_config, tmp_path,
                                                   monkeypatch: pytest.MonkeyPatch):
    """A file that arrives in one chunk: storage hops to a thread once per item (the
    commit, which also creates the file), no more; and it is stored byte-exact, durable,
    under its final name."""
    hops: Counter[str] = Counter()
    real = asyncio.to_thread

    async def counting(func: Any, /, *args: Any, **kwargs: Any) -> Any:
        hops[getattr(func, "__qualname__", repr(func))] += 1
        return await real(func, *args, **kwargs)

    monkeypatch.setattr(asyncio, "to_thread", counting)
    standin.add_job(ID1, video_size=20_000)
    result = await archive(make_config(), Manifest.from_ids([ID1]))
    assert result.items[0].outcome is Outcome.ARCHIVED
    # Once per run, not per item: the write check and the skip check.
    item = {name: n for name, n in hops.items() if not name.startswith("LocalBackend.")}
    assert item == {"_commit_sync": 1}, hops
    folder = tmp_path / "archive" / ID1
    data = (folder / "video.mp4").read_bytes()
    assert data == standin.file_bytes(ID1, "video")
    record = json.loads((folder / "archive.json").read_text())
    assert record["files"][0]["sha256"] == hashlib.sha256(data).hexdigest()
    assert sorted(p.name for p in folder.iterdir()) == [
        "SHA256SUMS", "archive.json", "info.json", "video.mp4"]


async def test_one_chunk_kept_by_an_abort_is_resumable(tmp_path):
    """The file is created with its first bytes: an item ended with keep=True while its one
    chunk is still held in memory writes it, with its sidecar, for the next run."""
    writer = LocalItemWriter(tmp_path / ID1)
    sink = await writer.open_file("video.mp4", validator='"etag-1"', source="https://cdn/v")
    assert not (tmp_path / ID1).exists()  # nothing on disk before a byte is written
    await sink.write(b"....ftyp" + b"x" * 1000)
    await writer.abort(keep=True)
    partial = read_partial(tmp_path / ID1, "video.mp4")
    assert partial is not None and partial.size == 1008 and partial.validator == '"etag-1"'


async def test_one_chunk_dropped_by_an_abort_leaves_nothing(tmp_path):
    writer = LocalItemWriter(tmp_path / ID1)
    sink = await writer.open_file("video.mp4", validator='"etag-1"', source="https://cdn/v")
    await sink.write(b"....ftyp" + b"x" * 1000)
    await writer.abort(keep=False)
    assert not (tmp_path / ID1).exists()


async def test_a_fresh_file_written_by_position_from_many_threads_is_created_once(tmp_path):
    """Segments write by position from several threads at once into a file created with
    its first bytes: it is created once, and every segment's bytes are in it."""
    writer = LocalItemWriter(tmp_path / ID1)
    sink = await writer.open_file("video.mp4", validator='"etag-1"', source="https://cdn/v")
    parts = [bytes([n]) * 4096 for n in range(16)]
    await asyncio.gather(*(sink.write_at(n * 4096, part) for n, part in enumerate(parts)))
    data = b"".join(parts)
    await sink.commit(len(data), hashlib.sha256(data).hexdigest())
    assert await writer.commit(b"{}")
    assert (tmp_path / ID1 / "video.mp4").read_bytes() == data
