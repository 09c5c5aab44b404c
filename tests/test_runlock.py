"""One run lock for `run`, `serve` and `gc`, on local disk and on S3 (real processes).

Before, `serve` and `gc` took a local file lock while `run` took the storage's (the S3
lease), and a local shard's lock never met `serve`'s: a `serve` and a `run` on one
prefix both proceeded. Now every command goes through :func:`archiver.archive.runlock.hold`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from archiver.fleet.shard import shard_of
from archiver.testing.standin import AkoolStandIn
from tests.conftest import API_KEY, config_dict, write_yaml

from .s3server import (  # noqa: F401 - fixtures: moto_endpoint, s3
    S3Fixture,
    aws_env,
    moto_endpoint_fixture,
    s3_fixture,
)

PREFIX = "archive/"
SECRET = "standin-client-secret-24"


def env_for(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "TEST_AKOOL_KEY": API_KEY, "TEST_WEBHOOK_SECRET": SECRET,
            "PYTHONFAULTHANDLER": "1", **aws_env(tmp_path)}


def write_config(folder: Path, url: str, storage: dict[str, Any], **run: Any) -> Path:
    """archiver.yaml in *folder*: the stand-in at *url*, a webhook: section for serve."""
    folder.mkdir(parents=True, exist_ok=True)
    data = config_dict(url, folder / "archive",
                       polling={"interval": 0.05, "max_interval": 0.1, "deadline": 60},
                       run={"shutdown_grace": 0.5, **run})
    data["api"]["api_key"] = "${TEST_AKOOL_KEY}"
    data["storage"] = storage
    data["webhook"] = {"client_id": "standin-clientid",
                       "client_secret": "${TEST_WEBHOOK_SECRET}",
                       "journal": str(folder / "journal.sqlite3")}
    return write_yaml(folder / "archiver.yaml", data)


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """The storage section of each backend the lock must work on."""
    if request.param == "local":
        return {"backend": "local", "local": {"root": str(tmp_path / "archive")}}
    return request.getfixturevalue("s3").storage(PREFIX)


class Process:
    """A long-running `archiver` command (`serve`, or a `run` that keeps polling)."""

    def __init__(self, cwd: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "archiver", *args], cwd=cwd, env=env_for(cwd),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def finish(self, sig: int = signal.SIGTERM) -> tuple[int, str, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            out, err = self.proc.communicate(timeout=120)  # a hang guard
        except subprocess.TimeoutExpired:
            # PYTHONFAULTHANDLER (env_for) makes SIGABRT print every thread's stack.
            self.proc.send_signal(signal.SIGABRT)
            out, err = self.proc.communicate()
            raise AssertionError(f"archiver {self.proc.args[3]} did not end: "
                                 f"{err[-6000:]}") from None
        return self.proc.returncode, out, err


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for process in started:
        if process.proc.poll() is None:
            process.proc.kill()
            process.proc.communicate(timeout=30)


def cli(cwd: Path, *args: str, config: str = "archiver.yaml") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "archiver", *args, "-c", config], cwd=cwd,
                          env=env_for(cwd), capture_output=True, text=True, timeout=120,
                          check=False)


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout  # a hang guard, not a timing assertion
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def held(result: subprocess.CompletedProcess[str], holder: str) -> None:
    """*result* is a command turned away by the lock, naming who holds it."""
    assert result.returncode == 75, result.stderr
    assert holder in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


# ------------------------------------------------------------- across commands

def test_serve_keeps_run_shards_and_gc_out(tmp_path, served, storage, processes):
    """While `serve` runs: `run`, `run --shard`, and `gc` each exit 75 naming serve."""
    standin, url = served
    ids = [f"lockserve{n:02d}" for n in range(6)]
    for item in ids:
        standin.add_job(item)
    write_config(tmp_path, url, storage)
    write_yaml(tmp_path / "videos.yaml", ids)
    serve = Process(tmp_path, "serve", "-c", "archiver.yaml", "--listen", "127.0.0.1:0")
    processes.append(serve)
    assert serve.proc.stdout is not None
    assert "listening on" in serve.proc.stdout.readline(), serve.finish()

    held(cli(tmp_path, "run", "videos.yaml"), "archiver serve")
    held(cli(tmp_path, "run", "videos.yaml", "--shard", "1/2"), "archiver serve")
    held(cli(tmp_path, "gc"), "archiver serve")
    assert standin.api_calls == 0  # none of them polled anything

    status, _, err = serve.finish()
    assert status == 0, err
    # Once serve is gone, the same run goes through.
    done = cli(tmp_path, "run", "videos.yaml")
    assert done.returncode == 0, done.stderr


def test_a_sharded_run_keeps_serve_gc_and_other_layouts_out(tmp_path, served, storage,
                                                            processes):
    """While `run --shard 0/2` runs: serve, gc, an unsharded run and `--shard 1/4` exit
    75; `--shard 1/2` (same layout, other ids) runs beside it."""
    standin, url = served
    ids = [f"lockshard{n:02d}" for n in range(16)]
    mine = [i for i in ids if shard_of(i, 2) == 0]
    for item in ids:
        # Shard 0's jobs never finish: its run keeps polling (and holding) until stopped.
        standin.add_job(item, outcome="never" if item in mine else "success")
    write_config(tmp_path, url, storage)
    write_yaml(tmp_path / "videos.yaml", ids)
    holder = Process(tmp_path, "run", "videos.yaml", "-c", "archiver.yaml", "--shard", "0/2")
    processes.append(holder)
    wait_until(lambda: all(standin.polls[i] >= 1 for i in mine), "shard 0/2 to poll")

    serve = subprocess.run(
        [sys.executable, "-m", "archiver", "serve", "-c", "archiver.yaml", "--listen",
         "127.0.0.1:0"], cwd=tmp_path, env=env_for(tmp_path), capture_output=True,
        text=True, timeout=120, check=False)
    held(serve, "archiver run")
    held(cli(tmp_path, "gc"), "archiver run")
    held(cli(tmp_path, "run", "videos.yaml"), "archiver run")
    held(cli(tmp_path, "run", "videos.yaml", "--shard", "1/4"), "archiver run")
    beside = cli(tmp_path, "run", "videos.yaml", "--shard", "1/2")
    assert beside.returncode == 0, beside.stderr
    assert all(standin.file_requests[(i, "video.mp4")] == 1 for i in ids if i not in mine)

    status, _, err = holder.finish(signal.SIGINT)
    assert status == 130, err


# -------------------------------------------------------------------- fencing

def test_run_frozen_past_its_lease_starts_nothing_after_waking(tmp_path, served, s3):
    """SIGSTOP a run longer than its lease TTL, let another run take the prefix over,
    SIGCONT: the frozen run starts no poll, download or commit, and exits 75.

    The two runs use two stand-ins (same jobs), so every request the frozen run makes is
    seen by its own stand-in alone. Before fencing it started new downloads on waking,
    before its renewal thread noticed the takeover.
    """
    fast, fast_url = served
    slow = AkoolStandIn(api_key=API_KEY, file_rate=96 * 1024)  # ~1.4 s per file
    ids = [f"fence{n:02d}" for n in range(12)]
    for standin in (slow, fast):
        for item in ids:
            standin.add_job(item, video_size=128 * 1024)
    with slow.run_in_thread() as slow_url:
        frozen_dir, other_dir = tmp_path / "frozen", tmp_path / "other"
        write_config(frozen_dir, slow_url, s3.storage(PREFIX), lease_ttl=3)
        write_config(other_dir, fast_url, s3.storage(PREFIX), lease_ttl=3)
        for folder in (frozen_dir, other_dir):
            write_yaml(folder / "videos.yaml", ids)
        config = {"concurrency": {"polls": 4, "downloads": 2}}
        _merge(frozen_dir / "archiver.yaml", config)

        frozen = Process(frozen_dir, "run", "videos.yaml", "-c", "archiver.yaml",
                         "--report", "report.json")
        try:
            wait_until(lambda: _committed(s3) >= 2, "the first run to archive two ids")
            frozen.proc.send_signal(signal.SIGSTOP)
            # The other run is turned away (75) until the frozen run's lease expires.
            deadline = time.monotonic() + 60
            while True:
                other = cli(other_dir, "run", "videos.yaml")
                if other.returncode != 75:
                    break
                assert time.monotonic() < deadline, other.stderr
                time.sleep(0.5)
            assert other.returncode == 0, other.stderr
            assert "took over the expired lease" in other.stderr, other.stderr
            before = (slow.api_calls, sum(slow.file_requests.values()))
            frozen.proc.send_signal(signal.SIGCONT)
            status, _, err = frozen.finish(0)
        finally:
            if frozen.proc.poll() is None:
                frozen.proc.send_signal(signal.SIGCONT)
                frozen.proc.kill()
                frozen.proc.communicate()
        after = (slow.api_calls, sum(slow.file_requests.values()))
    assert after == before, \
        f"the frozen run started work after waking: {before} -> {after}\n{err}"
    assert status == 75, err
    assert "lost the lease" in err
    report = _report(frozen_dir)
    assert report["lease_lost"] is True
    outcomes = {i["id"]: i["outcome"] for i in report["items"]}
    assert set(outcomes.values()) <= {"archived", "pending"}, outcomes
    assert _committed(s3) == len(ids)  # the other run archived the rest
    verify = cli(other_dir, "verify", "--deep")
    assert verify.returncode == 0, verify.stderr


def _merge(path: Path, extra: dict[str, Any]) -> None:
    import yaml

    data = yaml.safe_load(path.read_text())
    for key, values in extra.items():
        data[key] = {**data.get(key, {}), **values}
    write_yaml(path, data)


def _committed(s3: S3Fixture) -> int:
    return sum(1 for key in s3.list_keys(PREFIX) if key.endswith("/archive.json"))


def _report(folder: Path) -> dict[str, Any]:
    import json

    report: dict[str, Any] = json.loads((folder / "report.json").read_text())
    return report


# ------------------------------------------------------------ already archived

async def test_an_id_committed_by_another_run_meanwhile_is_already_archived(
        tmp_path, storage):
    """Two runs that do not exclude each other (each its own run.lock_file) archive one
    id; the one that commits second keeps the first's record and says already_archived."""
    import asyncio

    from archiver.config import Config
    from archiver.manifest import Manifest
    from archiver.models import Outcome
    from archiver.run import archive

    slow = AkoolStandIn(api_key=API_KEY, file_rate=64 * 1024)  # ~4 s for the file
    fast = AkoolStandIn(api_key=API_KEY)
    item = "meanwhile0001"
    for standin in (slow, fast):
        standin.add_job(item, video_size=256 * 1024)
    async with slow.serve() as slow_url, fast.serve() as fast_url:
        def config(url: str, name: str) -> Config:
            data = config_dict(url, tmp_path / "archive")
            data["storage"] = storage
            data["run"] = {"lock_file": str(tmp_path / f"{name}.lock")}
            return Config.model_validate(data)

        manifest = Manifest.from_ids([item])
        first = asyncio.create_task(archive(config(slow_url, "slow"), manifest))
        while not slow.file_requests[(item, "video.mp4")]:
            await asyncio.sleep(0.01)
        second = await archive(config(fast_url, "fast"), manifest)
        late = await first
    # Usually the fast run commits first; whichever did, the other found its record at
    # its own commit (it polled and downloaded: not the skip check) and kept it.
    results = {r.outcome: r for r in (second.items[0], late.items[0])}
    assert set(results) == {Outcome.ARCHIVED, Outcome.ALREADY_ARCHIVED}, results
    beaten = results[Outcome.ALREADY_ARCHIVED]
    assert beaten.polls == 1 and beaten.files == []
