"""Two hosts, one S3 prefix: a run whose item fails must never delete what the other commits.

Two real ``python -m archiver run`` processes share one stand-in and one moto bucket and
prefix, each with its own lock file (as two hosts would). Host A gives up on an item
quickly (``item_timeout``), host B retries patiently; for every id both stall once on
``no_caption.mp4``, so A fails the item while B - which has already uploaded
``video.mp4`` under the same key - is still waiting to retry, then commits it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from archiver.testing.standin import AkoolStandIn

from .conftest import API_KEY, config_dict, run_cli, write_yaml
from .s3server import (  # noqa: F401 - fixtures: moto_endpoint, s3
    S3Fixture,
    aws_env,
    moto_endpoint_fixture,
    s3_fixture,
)

ROUNDS = 2
IDS_PER_ROUND = 8
FILES = ("video", "no_caption")


def host_config(tmp_path: Path, url: str, s3: S3Fixture, host: str,
                downloads: dict[str, Any]) -> Path:
    """One host's archiver.yaml: the shared bucket and prefix, its own lock file."""
    data = config_dict(url, tmp_path / "unused",
                       polling={"interval": 0.05, "max_interval": 0.1, "deadline": 60},
                       concurrency={"polls": 16, "downloads": 16},
                       downloads=downloads,
                       run={"lock_file": str(tmp_path / f"{host}.lock")})
    data["api"]["api_key"] = "${TEST_AKOOL_KEY}"
    data["storage"] = {"backend": "s3", "s3": {
        "bucket": s3.bucket, "prefix": "akool/", "endpoint_url": s3.endpoint,
        "region": "us-east-1", "addressing_style": "path"}}
    return write_yaml(tmp_path / f"{host}.yaml", data)


def start(tmp_path: Path, config: Path, manifest: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "TEST_AKOOL_KEY": API_KEY, **aws_env(tmp_path)}
    return subprocess.Popen(
        [sys.executable, "-m", "archiver", "run", str(manifest), "-c", str(config), "-v"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_locks(procs: list[subprocess.Popen[str]], locks: list[Path]) -> None:
    """Until both runs hold their lock: storage checked, polling about to start."""
    deadline = time.monotonic() + 60
    while not all(p.exists() and p.read_text().strip() for p in locks):
        assert time.monotonic() < deadline, "the runs did not start"
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        time.sleep(0.02)


def test_failed_item_never_deletes_what_another_host_commits(tmp_path, served, s3):
    """Many races: host A's failed items leave host B's committed objects alone."""
    standin: AkoolStandIn
    standin, url = served
    fragile = host_config(tmp_path, url, s3, "a", {
        "item_timeout": 1.5, "read_timeout": 30,
        "retries": {"attempts": 1, "wait_initial": 0.01, "wait_max": 0.01}})
    patient = host_config(tmp_path, url, s3, "b", {
        "item_timeout": 30, "read_timeout": 1,
        "retries": {"attempts": 3, "wait_initial": 1.2, "wait_max": 1.2}})
    every_id: list[str] = []
    failures_a = 0
    for round_no in range(ROUNDS):
        ids = [f"race{round_no}x{n:02d}" for n in range(IDS_PER_ROUND)]
        every_id += ids
        for item in ids:  # "processing" until both runs are polling: a common start
            standin.add_job(item, outcome="never", files=FILES)
        manifest = write_yaml(tmp_path / f"round{round_no}.yaml", ids)
        locks = [tmp_path / "a.lock", tmp_path / "b.lock"]
        for lock in locks:
            lock.unlink(missing_ok=True)
        procs = [start(tmp_path, fragile, manifest), start(tmp_path, patient, manifest)]
        try:
            wait_for_locks(procs, locks)
            time.sleep(0.3)
            for item in ids:
                # Each run's first request for no_caption.mp4 stalls: A gives up on the
                # item, B retries after its read timeout and a pause, and commits.
                standin.add_job(item, files=FILES,
                                file_faults={"no_caption": ["stall", "stall"]})
            out_a, err_a = procs[0].communicate(timeout=60)
            _, err_b = procs[1].communicate(timeout=60)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.communicate()
        assert "Traceback" not in err_a + err_b
        assert procs[1].returncode == 0, err_b
        assert procs[0].returncode in (0, 1), err_a
        failures_a += sum(1 for i in ids if f"failed: {i}:" in out_a)

    assert failures_a > 0, "no race happened: host A failed no item"
    keys = set(s3.list_keys("akool/"))
    assert {f"akool/{i}/archive.json" for i in every_id} <= keys
    write_yaml(tmp_path / "all.yaml", every_id)
    verify = run_cli("verify", "all.yaml", "-c", str(patient), cwd=tmp_path,
                     env={"TEST_AKOOL_KEY": API_KEY, **aws_env(tmp_path)})
    assert verify.returncode == 0, verify.stderr
    assert f"{len(every_id)} item(s)" in verify.stdout
