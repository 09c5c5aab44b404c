"""Proof on one machine: four real ``archiver run --shard K/4`` processes share one S3
prefix (moto) and one Akool stand-in. Every id is archived exactly once with no file
fetched twice; one process is killed with SIGKILL mid-run and a replacement for its shard
takes over once the lease it never released has expired; ``verify`` passes at the end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from archiver.fleet.shard import shard_of
from archiver.storage.s3.lease import LEASE_FOLDER
from archiver.testing.standin import AkoolStandIn

from .conftest import API_KEY, config_dict, write_yaml
from .s3server import (  # noqa: F401 - fixtures: moto_endpoint, s3
    S3Fixture,
    aws_env,
    moto_endpoint_fixture,
    s3_fixture,
)

N = 4
VICTIM = 2
PER_SHARD = 5
FILES = ("video", "original_srt")
NAMES = ("video.mp4", "original.srt")


def pick_ids() -> dict[int, list[str]]:
    """PER_SHARD ids for each shard (the hash decides which)."""
    shards: dict[int, list[str]] = {k: [] for k in range(N)}
    n = 0
    while any(len(v) < PER_SHARD for v in shards.values()):
        item = f"proof{n:04d}"
        owner = shard_of(item, N)
        if len(shards[owner]) < PER_SHARD:
            shards[owner].append(item)
        n += 1
    return shards


def start(tmp_path: Path, k: int, tag: str) -> subprocess.Popen[str]:
    env = {**os.environ, "TEST_AKOOL_KEY": API_KEY, **aws_env(tmp_path)}
    return subprocess.Popen(
        [sys.executable, "-m", "archiver", "run", "videos.yaml", "--shard", f"{k}/{N}",
         "--report", f"report-{tag}.json"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_until(condition, what: str, procs: list[subprocess.Popen[str]],
               timeout: float = 60.0) -> None:
    """A hang guard, not a timing assertion."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        for proc in procs:
            assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)


def test_four_processes_archive_each_id_once_and_survive_a_sigkill(tmp_path, served, s3):
    """4 shards, one SIGKILLed mid-run: a replacement takes over after the lease TTL."""
    standin: AkoolStandIn
    standin, url = served
    shards = pick_ids()
    every = [i for k in range(N) for i in shards[k]]
    victim_done, victim_waiting = shards[VICTIM][:2], shards[VICTIM][2:]
    for item in every:
        # The victim's last ids stay "processing" until it is killed, so it dies mid-run.
        standin.add_job(item, polls_until_done=2, files=FILES,
                        outcome="never" if item in victim_waiting else "success")
    data = config_dict(url, tmp_path / "unused",
                       polling={"interval": 0.05, "max_interval": 0.1, "deadline": 120},
                       run={"lease_ttl": 2, "shutdown_grace": 1})
    data["api"]["api_key"] = "${TEST_AKOOL_KEY}"
    data["storage"] = {"backend": "s3", "s3": {
        "bucket": s3.bucket, "prefix": "akool/", "endpoint_url": s3.endpoint,
        "region": "us-east-1", "addressing_style": "path"}}
    write_yaml(tmp_path / "archiver.yaml", data)
    write_yaml(tmp_path / "videos.yaml", list(reversed(every)))  # order is irrelevant

    procs = {k: start(tmp_path, k, str(k)) for k in range(N)}
    try:
        victim = procs[VICTIM]
        wait_until(lambda: all(f"akool/{i}/archive.json" in s3.list_keys(f"akool/{i}/")
                               for i in victim_done)
                   and all(standin.polls[i] >= 2 for i in victim_waiting),
                   "the victim to be mid-run", [victim])
        assert f"akool/{LEASE_FOLDER}shard-{VICTIM}-of-{N}" in s3.list_keys("akool/")
        victim.kill()  # SIGKILL: no clean-up, the lease stays behind
        victim.wait(timeout=30)
        for k, proc in procs.items():
            if k != VICTIM:
                _, err = proc.communicate(timeout=120)
                assert proc.returncode == 0, err
                assert "Traceback" not in err
        for item in victim_waiting:  # the jobs finish while nobody runs the shard
            standin.add_job(item, polls_until_done=1, files=FILES)

        deadline = time.monotonic() + 60
        while True:  # a pod restarted by its Job until the dead run's lease expires
            replacement = start(tmp_path, VICTIM, f"{VICTIM}-again")
            _, err = replacement.communicate(timeout=120)
            if replacement.returncode != 75:
                break
            assert f"shard {VICTIM}/{N}" in err and "expires at" in err, err
            assert time.monotonic() < deadline, "the dead run's lease never expired"
            time.sleep(0.3)
        assert replacement.returncode == 0, err
        assert f"took over the expired lease of shard {VICTIM}/{N}" in err
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()

    # Every id committed exactly once; no file fetched twice, even around the kill.
    keys = s3.list_keys("akool/")
    assert sorted(k.split("/")[1] for k in keys if k.endswith("/archive.json")) == sorted(every)
    assert not [k for k in keys if LEASE_FOLDER in k]  # released by the replacement
    assert {(i, n): standin.file_requests[(i, n)] for i in every for n in NAMES} == \
        {(i, n): 1 for i in every for n in NAMES}
    assert sum(standin.file_requests.values()) == len(every) * len(NAMES)
    # Zero duplicate polls: each id of a live shard was polled only as often as one
    # run needs (2); no other process ever asked about it.
    for k in range(N):
        if k != VICTIM:
            assert {i: standin.polls[i] for i in shards[k]} == {i: 2 for i in shards[k]}
            report = json.loads((tmp_path / f"report-{k}.json").read_text())
            assert report["shard"] == f"{k}/{N}"
            assert sorted(i["id"] for i in report["items"]) == sorted(shards[k])
    assert {i: standin.polls[i] for i in victim_done} == {i: 2 for i in victim_done}
    again = json.loads((tmp_path / f"report-{VICTIM}-again.json").read_text())
    outcomes = {i["id"]: i["outcome"] for i in again["items"]}
    assert outcomes == {**{i: "already_archived" for i in victim_done},
                        **{i: "archived" for i in victim_waiting}}

    verify = subprocess.run(
        [sys.executable, "-m", "archiver", "verify"], cwd=tmp_path,
        env={**os.environ, "TEST_AKOOL_KEY": API_KEY, **aws_env(tmp_path)},
        capture_output=True, text=True, timeout=120)
    assert verify.returncode == 0, verify.stderr
    assert f"archiver verify: {len(every)} item(s), {len(every) * len(NAMES)} file(s)" \
        in verify.stdout


# ------------------------------------------------------------ one account's budget

RATE = 40.0
IDS_PER_SHARD = 20  # x 2 polls x 4 shards = 160 lookups: ~3 s at 40/s after the burst


def test_four_shards_stay_within_the_accounts_budget(tmp_path):
    """4 shard processes with api.requests_per_second: 40 against a stand-in holding the
    account to 40/s: each takes 10/s (burst too), so none is ever answered code 1005.

    The stand-in's enforcement is the oracle, not a clock in the test. Its burst is two
    seconds' worth: the four shards together may start 40 lookups at once, and what a
    loaded machine delays on the way must not make them look faster than they are sent.
    Shards that each took the whole 40/s (4 x 40 at once, then 160/s) meet 1005 within
    the first second, however the four processes happen to start.
    """
    standin = AkoolStandIn(api_key=API_KEY, requests_per_second=RATE, burst=2 * RATE)
    shards: dict[int, list[str]] = {k: [] for k in range(N)}
    n = 0
    while any(len(v) < IDS_PER_SHARD for v in shards.values()):
        item = f"budget{n:04d}"
        if len(shards[shard_of(item, N)]) < IDS_PER_SHARD:
            shards[shard_of(item, N)].append(item)
        n += 1
    every = [i for k in range(N) for i in shards[k]]
    for item in every:
        standin.add_job(item, polls_until_done=2, video_size=1024)
    with standin.run_in_thread() as url:
        data = config_dict(url, tmp_path / "archive", api={"requests_per_second": RATE},
                           polling={"interval": 0.01, "max_interval": 0.05, "deadline": 60})
        data["api"]["api_key"] = "${TEST_AKOOL_KEY}"
        write_yaml(tmp_path / "archiver.yaml", data)
        write_yaml(tmp_path / "videos.yaml", every)
        env = {**os.environ, "TEST_AKOOL_KEY": API_KEY}
        procs = [subprocess.Popen(
            [sys.executable, "-m", "archiver", "run", "videos.yaml", "--shard", f"{k}/{N}",
             "--report", f"report-{k}.json", "-v"],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for k in range(N)]
        try:
            errors = [proc.communicate(timeout=120)[1] for proc in procs]
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.communicate()

    assert standin.throttled == 0
    assert [proc.returncode for proc in procs] == [0] * N, errors
    # Every id asked about exactly twice: no lookup was refused, none retried.
    assert {i: standin.polls[i] for i in every} == {i: 2 for i in every}
    for k in range(N):
        report = json.loads((tmp_path / f"report-{k}.json").read_text())
        assert (report["shard"], report["api_requests_per_second"]) == (f"{k}/{N}", RATE / N)
        assert {i["outcome"] for i in report["items"]} == {"archived"}
        said = [line for line in errors[k].splitlines() if "API requests/s" in line]
        assert len(said) == 1, errors[k]
        assert f"shard {k}/{N}: at most 10 API requests/s, 1/4 of api.requests_per_second" \
            in said[0]
