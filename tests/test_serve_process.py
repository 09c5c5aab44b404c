"""`archiver serve` as a real process: SIGKILL mid-way loses nothing, SIGTERM exits 0."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import yaml

from archiver.service.journal import Journal
from archiver.service.serve import JOURNAL_NAME
from archiver.testing.callbacks import CallbackSender, hostile_bodies
from archiver.testing.standin import AkoolStandIn, generated_job_id
from tests.conftest import API_KEY, CLI_ENV, config_dict, run_cli, write_yaml

SECRET_ENV = {"TEST_WEBHOOK_SECRET": "standin-client-secret-24"}
#: Every command reading a configuration with a webhook: section needs its variables.
ENV = {**CLI_ENV, **SECRET_ENV}


@pytest.fixture
def serve_dir(workdir: Path) -> Path:
    """workdir's archiver.yaml plus a webhook: section (secret from the environment)."""
    path = workdir / "archiver.yaml"
    data = yaml.safe_load(path.read_text())
    data["webhook"] = {"client_id": "standin-clientid",
                       "client_secret": "${TEST_WEBHOOK_SECRET}", "repoll_interval": 0.5}
    data["concurrency"] = {"polls": 16, "downloads": 8}
    write_yaml(path, data)
    return workdir


class ServeProcess:
    """A running `archiver serve`, its webhook URL read from its first stdout line."""

    def __init__(self, cwd: Path, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "archiver", "serve", "-c", "archiver.yaml",
             "--listen", "127.0.0.1:0", *extra],
            cwd=cwd, env={**os.environ, **ENV},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert "listening on " in line, self.finish()
        self.url = line.split("listening on ", 1)[1].strip()

    def finish(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        _, err = self.proc.communicate(timeout=60)
        return self.proc.returncode, err


@pytest.fixture
def processes() -> Iterator[list[ServeProcess]]:
    started: list[ServeProcess] = []
    yield started
    for proc in started:
        if proc.proc.poll() is None:
            proc.proc.kill()
            proc.proc.wait(timeout=30)


async def journal_rows(root: Path) -> dict[str, str]:
    async with Journal(root / JOURNAL_NAME) as journal:
        return {r.id: r.outcome or r.state for r in await journal.jobs()}


async def wait_all_archived(root: Path, ids: list[str]) -> None:
    deadline = time.monotonic() + 90  # hang guard
    while True:
        if (root / JOURNAL_NAME).exists():
            found = await journal_rows(root)
            if all(found.get(i) in ("archived", "already_archived") for i in ids):
                return
        assert time.monotonic() < deadline, "not all archived before the hang guard"
        await asyncio.sleep(0.05)


async def test_sigkill_mid_way_then_restart_loses_nothing(
        served: tuple[AkoolStandIn, str], serve_dir: Path,
        processes: list[ServeProcess]) -> None:
    """Every callback answered 200 before a SIGKILL is archived after the restart."""
    standin, _ = served
    standin.latency = 0.01  # keep the worker busy when the kill comes
    jobs = [generated_job_id(i, "kill") for i in range(300)]
    for job in jobs:
        standin.add_job(job, video_size=2048)
    first = ServeProcess(serve_dir)
    processes.append(first)
    accepted: list[str] = []

    async def deliver(sender: object, job: str) -> None:
        try:
            answer = await standin.deliver(sender, job)  # type: ignore[arg-type]
        except Exception:  # the connection died with the server: Akool will retry
            return
        if answer.status == 200:
            accepted.append(job)

    async with standin.callbacks(first.url, connections=20) as sender:
        tasks = [asyncio.create_task(deliver(sender, j)) for j in jobs]
        while len(accepted) < 100:
            assert not all(t.done() for t in tasks), "the server stopped answering early"
            await asyncio.sleep(0.005)
        first.proc.kill()
        await asyncio.gather(*tasks)
    first.proc.wait(timeout=30)
    root = serve_dir / "archive"
    archived_before = [j for j in jobs if (root / j / "archive.json").exists()]
    assert len(archived_before) < len(jobs)  # the kill did come mid-way
    # Every 200 is in the journal, whatever the kill interrupted.
    assert set(accepted) <= set(await journal_rows(root))

    second = ServeProcess(serve_dir)
    processes.append(second)
    async with standin.callbacks(second.url) as sender:
        # Akool retries what got no 200; the rest comes from the journal alone.
        for job in set(jobs) - set(accepted):
            assert (await standin.deliver(sender, job)).status == 200
        await wait_all_archived(root, jobs)
    status, _ = second.finish()
    assert status == 0
    verify = run_cli("verify", "-c", "archiver.yaml", cwd=serve_dir, env=ENV)
    assert verify.returncode == 0, verify.stdout + verify.stderr


async def test_sigterm_exits_0_and_logs_no_secret(
        served: tuple[AkoolStandIn, str], serve_dir: Path,
        processes: list[ServeProcess]) -> None:
    """SIGTERM ends the server with 0; JSON log lines name the callback, never a secret."""
    standin, _ = served
    job = generated_job_id(1, "term")
    standin.add_job(job, video_size=2048)
    proc = ServeProcess(serve_dir, "-v", "--log-format", "json")
    processes.append(proc)
    async with standin.callbacks(proc.url) as sender:
        assert (await standin.deliver(sender, job)).status == 200
        assert (await sender.post(sender.tampered(sender.body(job)))).status == 401
        await wait_all_archived(serve_dir / "archive", [job])
    status, err = proc.finish(signal.SIGTERM)
    assert status == 0, err
    lines = [json.loads(line) for line in err.splitlines()]
    messages = " ".join(line["message"] for line in lines)
    assert f"callback: {job} status 3, video (new)" in messages and "bad_signature" in messages
    for secret in ("standin-client-secret-24", API_KEY):
        assert secret not in err


async def test_hostile_bodies_get_4xx_and_one_json_log_line_each(
        served: tuple[AkoolStandIn, str], serve_dir: Path,
        processes: list[ServeProcess]) -> None:
    """A real server answers each body built to crash it with its 4xx and reason, logs one
    JSON line per body (no traceback, no body) and counts them on /metrics; exit 0."""
    client_id, secret = "standin-clientid", SECRET_ENV["TEST_WEBHOOK_SECRET"]
    proc = ServeProcess(serve_dir, "--log-format", "json")
    processes.append(proc)
    cases = hostile_bodies(client_id, secret)
    async with CallbackSender(proc.url, client_id, secret) as sender:
        for name, (body, status, reason) in cases.items():
            answer = await sender.post(body)
            assert (answer.status, answer.text.split(":")[0]) == (status, reason), name
    async with aiohttp.ClientSession() as http, \
            http.get(proc.url.rsplit("/", 2)[0] + "/metrics") as resp:
        metrics = await resp.text()
    status, err = proc.finish(signal.SIGTERM)
    assert status == 0, err
    lines = [json.loads(line) for line in err.splitlines()]  # every line is one JSON object
    refused = [line for line in lines if " refused (" in line["message"]]
    assert len(refused) == len(cases), err
    assert all(line["level"] == "warning" and "exception" not in line for line in refused)
    assert not [line for line in lines if line["level"] == "error"], err
    assert "Traceback" not in err and "7777777777" not in err
    assert f"archiver_webhook_received_total {len(cases)}" in metrics
    assert 'reason="internal_error"' not in metrics


async def test_run_from_journal_archives_what_serve_left_pending(
        served: tuple[AkoolStandIn, str], serve_dir: Path,
        processes: list[ServeProcess]) -> None:
    """`run --from-journal` takes the journal's pending ids; exit 75 while serve holds the lock."""
    standin, _ = served
    job = generated_job_id(1, "cron")
    standin.add_job(job, outcome="never")
    proc = ServeProcess(serve_dir)
    processes.append(proc)
    async with standin.callbacks(proc.url) as sender:
        assert (await sender.notify(job, 2)).status == 200
    locked = run_cli("run", "--from-journal", "-c", "archiver.yaml", cwd=serve_dir, env=ENV)
    assert locked.returncode == 75, locked.stderr
    assert proc.finish()[0] == 0
    standin.add_job(job, video_size=2048)  # the job finished; its callback was lost
    done = run_cli("run", "--from-journal", "-c", "archiver.yaml", cwd=serve_dir, env=ENV)
    assert done.returncode == 0, done.stderr
    assert (serve_dir / "archive" / job / "archive.json").is_file()
    both = run_cli("run", "x.yaml", "--from-journal", "-c", "archiver.yaml", cwd=serve_dir, env=ENV)
    assert both.returncode == 2 and "not both" in both.stderr


def test_demo_serve_shows_the_whole_loop_offline(tmp_path: Path) -> None:
    """`archiver demo --serve` archives the sample jobs from signed callbacks, exit 0."""
    result = run_cli("demo", "--serve", "out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "out").glob("*/archive.json"))) == 5
    assert "forged signature -> HTTP 401" in result.stderr
    assert "the same body sent again -> HTTP 200" in result.stderr
    assert "failed: Akool job failed" in result.stdout
    # One callback of each family, each archived under it; image-to-video's has no type.
    for family in ("video", "image", "audio", "faceswap", "image2video"):
        assert f"({family}, type " in result.stderr
        assert re.search(rf"^  [0-9a-f]{{24}}  {family} +archived$", result.stdout, re.M), \
            result.stdout
    assert "(image2video, type none: found by asking each family) -> HTTP 200" \
        in result.stderr


def test_serve_usage_errors_are_one_line_exit_2(serve_dir: Path) -> None:
    """No webhook section, a short client id, a journal of a newer schema, a bad --listen,
    a busy port: exit 2, one line."""
    import socket

    data = yaml.safe_load((serve_dir / "archiver.yaml").read_text())
    bad_id = {**data, "webhook": {**data["webhook"], "client_id": "short"}}
    write_yaml(serve_dir / "bad-id.yaml", bad_id)
    write_yaml(serve_dir / "no-webhook.yaml", {k: v for k, v in data.items() if k != "webhook"})
    import sqlite3
    newer = sqlite3.connect(serve_dir / "newer.sqlite3")
    newer.execute("PRAGMA user_version=99")  # a journal from a future archiver
    newer.close()
    write_yaml(serve_dir / "newer-journal.yaml",
               {**data, "webhook": {**data["webhook"], "journal": "newer.sqlite3"}})
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cases = {
            ("-c", "no-webhook.yaml"): "needs a webhook: section",
            ("-c", "bad-id.yaml"): "webhook.client_id must be at least 16 bytes",
            ("-c", "newer-journal.yaml"): "newer.sqlite3 has schema version 99",
            ("-c", "archiver.yaml", "--listen", "nowhere"): "--listen",
            ("-c", "archiver.yaml", "--listen", f"127.0.0.1:{port}"): "cannot listen on",
        }
        for args, words in cases.items():
            result = run_cli("serve", *args, cwd=serve_dir, env=ENV)
            assert result.returncode == 2, (args, result.stderr)
            assert words in result.stderr and len(result.stderr.splitlines()) == 1, result.stderr
            assert "standin-client-secret-24" not in result.stderr


async def test_standin_cli_plays_akool_and_sigterm_mid_work_resumes(tmp_path: Path) -> None:
    """`python -m archiver.testing --webhook-url` feeds a real server; SIGTERM mid-work
    exits 0 and a restart archives the rest from the journal."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = config_dict(f"http://127.0.0.1:{port}", tmp_path / "archive",
                         run={"shutdown_grace": 0.5})
    config["api"]["api_key"] = "${TEST_AKOOL_KEY}"
    config["webhook"] = {"client_id": "standin-clientid",
                         "client_secret": "${TEST_WEBHOOK_SECRET}"}
    write_yaml(tmp_path / "archiver.yaml", config)
    first = ServeProcess(tmp_path)
    standin = subprocess.Popen(
        [sys.executable, "-m", "archiver.testing", "--port", str(port), "--api-key", API_KEY,
         "--jobs", "40", "--latency", "0.05", "--video-size", "2048",
         "--ids-file", str(tmp_path / "ids.yaml"), "--webhook-url", first.url],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        root = tmp_path / "archive"
        deadline = time.monotonic() + 60  # hang guard
        while not (root / JOURNAL_NAME).exists() or len(await journal_rows(root)) < 40:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        status, err = first.finish(signal.SIGTERM)
        assert status == 0, err
        ids = [str(i) for i in yaml.safe_load((tmp_path / "ids.yaml").read_text())["videos"]]
        second = ServeProcess(tmp_path)
        try:
            await wait_all_archived(root, ids)
        finally:
            assert second.finish(signal.SIGTERM)[0] == 0
    finally:
        standin.terminate()
        standin.wait(timeout=30)
