"""``archiver gc``: leftovers of ids nobody committed go, once old enough; nothing else.

Runs of the real ``python -m archiver gc`` against moto and against a local root. The
configurations set ``downloads.item_timeout`` to 1 s, so that ``--min-age`` may be that
short (gc refuses anything shorter than item_timeout).
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from pathlib import Path

import pytest

from archiver.archive import Archive
from archiver.archive.run import collect
from archiver.config import load_config
from archiver.errors import StorageError
from archiver.storage.local import LOCK_NAME, sidecar_name, temp_name
from archiver.storage.local.flock import RunLock
from archiver.storage.s3 import S3Backend

from .conftest import API_KEY, ID1, ID2, ID3, config_dict, run_cli, write_yaml
from .s3server import (  # noqa: F401 - fixtures: moto_endpoint, s3
    S3Fixture,
    aws_env,
    moto_endpoint_fixture,
    s3_fixture,
)

ID4 = "64dd92c1f0b6684651e90e0c"
ID5 = "64dd92c1f0b6684651e90e0e"
#: Older than every --min-age used here.
LONG_AGO = time.time() - 7 * 86400


def write_config(tmp_path: Path, storage: dict[str, object]) -> Path:
    data = config_dict("http://127.0.0.1:9", tmp_path / "archive",
                       downloads={"item_timeout": 1})
    if storage.get("backend") == "s3":
        data["run"] = {"lock_file": str(tmp_path / "s3.lock")}
    data["storage"] = storage
    return write_yaml(tmp_path / "archiver.yaml", data)


def gc(tmp_path: Path, *args: str):
    env = {"TEST_AKOOL_KEY": API_KEY, **aws_env(tmp_path)}
    return run_cli("gc", "-c", "archiver.yaml", *args, cwd=tmp_path, env=env)


# ---------------------------------------------------------------------------- S3

def put(s3: S3Fixture, key: str, body: bytes = b"x") -> None:
    s3.client.put_object(Bucket=s3.bucket, Key=key, Body=body)


async def test_gc_s3_removes_only_old_uncommitted_leftovers(tmp_path, s3):
    """Old objects of an uncommitted id, a stale upload and a probe go; the rest stays."""
    config = write_config(tmp_path, {"backend": "s3", "s3": {
        "bucket": s3.bucket, "prefix": "akool/", "endpoint_url": s3.endpoint,
        "region": "us-east-1", "addressing_style": "path"}})
    # ID1: a failed attempt's objects (and a file the archiver never writes).
    for name in ("video.mp4", "info.json", "notes.txt"):
        put(s3, f"akool/{ID1}/{name}", b"failed attempt")
    # ID2: committed, with a file its record does not list: never touched by gc.
    for name in ("video.mp4", "no_caption.mp4", "archive.json"):
        put(s3, f"akool/{ID2}/{name}")
    put(s3, "akool/.archiver-probe-0123456789abcdef", b"")
    put(s3, "akool/not-an-item.mp4")
    s3.client.create_multipart_upload(Bucket=s3.bucket, Key=f"akool/{ID3}/video.mp4")
    put(s3, f"akool/{ID5}/video.mp4", b"failed attempt")  # see below

    refused = gc(tmp_path, "--min-age", "0.5s")
    assert refused.returncode == 2
    assert "shorter than downloads.item_timeout (1s)" in refused.stderr
    assert "Traceback" not in refused.stderr
    time.sleep(3.2)  # S3 dates have whole seconds: > 3 s old by any rounding

    keys = s3.list_keys()
    dry = gc(tmp_path, "--min-age", "1s", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert sorted(re.findall(r"would remove (.*?)(?: \(|$)", dry.stdout, re.M)) == sorted([
        f"s3://{s3.bucket}/akool/{ID1}/video.mp4", f"s3://{s3.bucket}/akool/{ID1}/info.json",
        f"s3://{s3.bucket}/akool/{ID5}/video.mp4",
        f"s3://{s3.bucket}/akool/.archiver-probe-0123456789abcdef",
        f"multipart upload of s3://{s3.bucket}/akool/{ID3}/video.mp4"])
    assert s3.list_keys() == keys and len(s3.open_uploads()) == 1

    # ID5: a run writes to it again just after gc's first listing. gc looks again right
    # before deleting, sees a new object and leaves the id alone.
    storage = S3Backend(s3.bucket, "akool/", endpoint_url=s3.endpoint, region="us-east-1",
                        addressing_style="path")
    await storage.open(readonly=True)
    listed: list[str] = []

    def run_starts(**_: object) -> None:
        listed.append("list")
        if len(listed) == 1:
            put(s3, f"akool/{ID5}/video.mp4", b"failed attempt")

    storage.bucket.client.meta.events.register("after-call.s3.ListObjectsV2", run_starts)
    try:
        raced = await Archive(storage).collect_garbage([ID5], 1, dry_run=False)
    finally:
        await storage.close()
    assert (raced.removed, raced.failures) == ([], [])
    assert f"akool/{ID5}/video.mp4" in s3.list_keys() and len(listed) >= 2

    # ID3 and ID4: being archived right now (young objects). In-process, so that gc
    # lists them at once: a new process would take about min-age to start. (A young
    # upload cannot be shown here: moto reports the same Initiated date, in 2010, for
    # every upload.)
    put(s3, f"akool/{ID3}/info.json")
    put(s3, f"akool/{ID4}/video.mp4")
    keys = s3.list_keys()
    # 3 s: room for gc to take its lease and list before these turn "old" on a busy host.
    result = await collect(load_config(config), None, min_age=3)
    assert result.failures == []
    assert s3.list_keys() == sorted(set(keys) - {
        f"akool/{ID1}/video.mp4", f"akool/{ID1}/info.json",
        "akool/.archiver-probe-0123456789abcdef"})
    assert s3.open_uploads() == []
    assert (len(result.files), result.items, len(result.uploads)) == (3, {ID1}, 1)
    assert sorted(result.kept_recent) == [ID3, ID4, ID5]


async def test_s3_commit_refuses_a_record_with_a_vanished_file(s3):
    """A file deleted before archive.json is written (gc's last moment): not committed."""
    storage = S3Backend(s3.bucket, "akool/", endpoint_url=s3.endpoint, region="us-east-1",
                        addressing_style="path")
    await storage.open()
    try:
        writer = storage.item(ID1)
        sink = await writer.open_file("video.mp4")
        await sink.write(b"....ftypvideo")
        await sink.commit(13, hashlib.sha256(b"....ftypvideo").hexdigest())
        await writer.put_small("info.json", b"{}")
        s3.client.delete_object(Bucket=s3.bucket, Key=f"akool/{ID1}/video.mp4")
        with pytest.raises(StorageError, match=r"video\.mp4 vanished before archive\.json"):
            await writer.commit(b"{}")
        await writer.abort()
    finally:
        await storage.close()
    assert s3.list_keys() == [f"akool/{ID1}/info.json"]


# ------------------------------------------------------------------------- local

def make_file(path: Path, data: bytes = b"partial bytes", *, old: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if old:
        os.utime(path, (LONG_AGO, LONG_AGO))
    return path


def tree(path: Path) -> list[Path]:
    """Everything under *path* but the run lock (which gc and runs may create)."""
    return sorted(p for p in path.rglob("*") if p.name != LOCK_NAME)


def test_gc_local_removes_partials_of_uncommitted_ids(tmp_path):
    """Old temporaries of uncommitted ids go; committed, young, foreign and linked stay."""
    write_config(tmp_path, {"backend": "local",
                            "local": {"root": str(tmp_path / "archive")}})
    root = tmp_path / "archive"
    committed = [make_file(root / ID1 / "video.mp4"), make_file(root / ID1 / "archive.json"),
                 make_file(root / ID1 / temp_name("no_caption.mp4"))]
    garbage = [make_file(root / ID2 / temp_name("video.mp4")),
               make_file(root / ID2 / sidecar_name("video.mp4"), b"{}"),
               make_file(root / ID2 / ".SHA256SUMS.tmp")]
    young = make_file(root / ID3 / temp_name("video.mp4"), old=False)
    # ID4: a foreign file stays (so does the folder), a link named like a partial stays.
    outside = make_file(tmp_path / "outside" / temp_name("video.mp4"), b"not ours")
    foreign = make_file(root / ID4 / "notes.txt")
    link = root / ID4 / temp_name("no_caption.mp4")
    link.symlink_to(outside)
    os.utime(link, (LONG_AGO, LONG_AGO), follow_symlinks=False)
    make_file(root / ID4 / sidecar_name("no_caption.mp4"), b"{}")
    (root / "64dd92c1f0b6684651e90e0d").symlink_to(outside.parent, target_is_directory=True)
    before = tree(tmp_path)

    dry = gc(tmp_path, "--min-age", "1h", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert tree(tmp_path) == before
    assert all(f"would remove {p}" in dry.stdout for p in garbage)

    with RunLock(root / LOCK_NAME):  # a run on this root
        held = gc(tmp_path, "--min-age", "1h")
    assert held.returncode == 75, held.stderr
    assert tree(tmp_path) == before

    done = gc(tmp_path, "--min-age", "1h", "-v")
    assert done.returncode == 0, done.stderr
    assert not (root / ID2).exists()  # partials removed, then the empty folder
    assert all(p.exists() for p in [*committed, young, outside, foreign])
    assert (root / ID4 / temp_name("no_caption.mp4")).is_symlink()
    assert not (root / ID4 / sidecar_name("no_caption.mp4")).exists()
    assert outside.read_bytes() == b"not ours"
    assert "4 object(s) of 2 uncommitted item(s)" in done.stdout
    assert "1 item(s) newer than --min-age kept" in done.stdout
