"""A whole life on SeaweedFS with real ``archiver`` processes: run, re-run, verify, gc.

SeaweedFS is an S3-compatible store that keeps keys in a directory tree; the storage
contract and the lease tests run on it too (test_storage_contract.py, test_lease.py).
Here the CLI does what cron would, on one bucket: archive eight ids (one in a multipart
upload, with SSE-S3), archive them again (every id skipped without asking Akool
anything: on SeaweedFS 4.48, ``StartAfter=<prefix><id>`` skips the folder
``<prefix><id>/``, and a skip check relying on it polled an id again), verify by S3's
checksums and by re-hashing, and collect a failed attempt's leftovers - by SeaweedFS's
clock, which also dates multipart uploads truly (moto dates them all in 2010).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import run_cli, summary, write_yaml
from .s3server import (  # noqa: F401 - fixtures: moto_endpoint, seaweedfs_endpoint, s3
    SECRETS,
    S3Fixture,
    moto_endpoint_fixture,
    s3_fixture,
    seaweedfs_endpoint_fixture,
)
from .test_lease import PREFIX, cli_env, s3_config

MiB = 1024 * 1024
#: Eight ids like Akool's (24 hex digits).
IDS = [f"64dd92c1f0b6684651e91{n:03x}" for n in range(8)]
#: An id a failed attempt left objects (and an upload) of, never committed.
LEFTOVER = "64dd92c1f0b6684651e91fff"


def archiver(tmp_path: Path, *args: str) -> Any:
    return run_cli(*args, "-c", "archiver.yaml", cwd=tmp_path, env=cli_env(tmp_path),
                   timeout=120)


@pytest.mark.parametrize("s3", ["seaweedfs"], indirect=True)
def test_run_rerun_verify_gc(tmp_path, served, s3: S3Fixture):
    """run -> re-run (no request to Akool) -> verify, verify --deep -> gc -> verify."""
    standin, url = served
    standin.add_job(IDS[0], video_size=11 * MiB)  # 3 parts of 5 MiB: composite checksum
    standin.add_job(IDS[1], files=("video", "original_srt", "translated_srt"))
    for item in IDS[2:]:
        standin.add_job(item, video_size=200_000 + len(item))
    config = yaml.safe_load(s3_config(tmp_path, url, s3, lease_ttl=30).read_text())
    config["storage"]["s3"].update(part_size=5 * MiB, sse="AES256")
    write_yaml(tmp_path / "archiver.yaml", config)
    write_yaml(tmp_path / "videos.yaml", IDS)

    first = archiver(tmp_path, "run", "videos.yaml")
    assert first.returncode == 0, first.stderr
    assert summary(first.stdout)["archived"] == "8"
    archived = s3.list_keys(PREFIX)
    assert sum(k.endswith("/archive.json") for k in archived) == 8
    record = json.loads(s3.read(f"{PREFIX}{IDS[0]}/archive.json"))
    [video] = record["files"]
    assert video["s3"]["checksum_type"] == "COMPOSITE" and video["s3"]["parts"] == 3
    assert video["s3"]["checksum_verified"] is True  # SeaweedFS reported it
    # Encrypted, though SeaweedFS's CompleteMultipartUpload answer does not say so (so
    # archive.json cannot either); HEAD does.
    head = s3.client.head_object(Bucket=s3.bucket, Key=video["s3"]["key"])
    assert head["ServerSideEncryption"] == "AES256"

    # The re-run finds every id archived without a single request to Akool.
    calls, files = standin.api_calls, sum(standin.file_requests.values())
    second = archiver(tmp_path, "run", "videos.yaml")
    assert second.returncode == 0, second.stderr
    assert summary(second.stdout)["already archived"] == "8"
    assert (standin.api_calls, sum(standin.file_requests.values())) == (calls, files)
    assert s3.list_keys(PREFIX) == archived

    for deep in ((), ("--deep",)):
        checked = archiver(tmp_path, "verify", *deep)
        assert checked.returncode == 0, checked.stdout + checked.stderr

    # A failed attempt's leftovers: objects of an id nobody committed, and an upload.
    for name in ("video.mp4", "info.json"):
        s3.client.put_object(Bucket=s3.bucket, Key=f"{PREFIX}{LEFTOVER}/{name}", Body=b"x")
    s3.client.create_multipart_upload(Bucket=s3.bucket, Key=f"{PREFIX}{LEFTOVER}/video.mp4")
    time.sleep(2.2)  # older than --min-age 1s by SeaweedFS's whole-second clock
    # No run is going on now: items time out after 1 s, so gc may take --min-age 1s.
    config["downloads"]["item_timeout"] = 1
    write_yaml(tmp_path / "archiver.yaml", config)
    collected = archiver(tmp_path, "gc", "-v", "--min-age", "1s")
    assert collected.returncode == 0, collected.stderr
    removed = re.findall(r"removed (.*?)(?: \(|$)", collected.stdout, re.M)
    assert sorted(removed) == sorted([
        f"s3://{s3.bucket}/{PREFIX}{LEFTOVER}/video.mp4",
        f"s3://{s3.bucket}/{PREFIX}{LEFTOVER}/info.json",
        f"multipart upload of s3://{s3.bucket}/{PREFIX}{LEFTOVER}/video.mp4"]), \
        collected.stdout
    assert s3.list_keys(PREFIX) == archived and s3.open_uploads() == []

    after = archiver(tmp_path, "verify", "--deep")
    assert after.returncode == 0, after.stdout + after.stderr
    for result in (first, second, checked, collected, after):
        for secret in SECRETS:
            assert secret not in result.stdout + result.stderr

