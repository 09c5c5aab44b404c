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

from .conftest import ID1


async def test_one_chunk_file_costs_two_thread_hops(standin, make_config, tmp_path,
                                                    monkeypatch: pytest.MonkeyPatch):
    """A file that arrives in one chunk: storage hops to a thread twice per item (open,
    commit), no more; and it is stored byte-exact, durable, under its final name."""
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
    assert item == {"LocalFileSink._open_sync": 1, "_commit_sync": 1}, hops
    folder = tmp_path / "archive" / ID1
    data = (folder / "video.mp4").read_bytes()
    assert data == standin.file_bytes(ID1, "video")
    record = json.loads((folder / "archive.json").read_text())
    assert record["files"][0]["sha256"] == hashlib.sha256(data).hexdigest()
    assert sorted(p.name for p in folder.iterdir()) == [
        "SHA256SUMS", "archive.json", "info.json", "video.mp4"]
