"""Operating it from cron and pipelines: verify, metrics, logs, progress, dry run, status,
expiry-first order and rate limits - against the stand-in on loopback."""

from __future__ import annotations

import io
import json
import os
import time

from archiver.events import Observer
from archiver.manifest import Manifest
from archiver.models import Outcome
from archiver.run import archive

from .conftest import CLI_ENV, ID1, ID2, ID3, all_files, run_cli, write_yaml

ALL_FILES = ("video", "original_srt", "translated_srt", "no_caption")
ENV = CLI_ENV
DAY_MS = 24 * 3600 * 1000


# ------------------------------------------------------------------------ verify

def test_verify_catches_flipped_byte_missing_and_unexpected_files(served, workdir):
    """verify exits 0 on an intact archive and 1 naming a corrupted, a missing and a stray file."""
    standin, _ = served
    for job in (ID1, ID2):
        standin.add_job(job, files=ALL_FILES)
    write_yaml(workdir / "videos.yaml", [ID1, ID2])
    assert run_cli("run", "videos.yaml", cwd=workdir, env=ENV).returncode == 0

    clean = run_cli("verify", cwd=workdir, env=ENV)
    assert clean.returncode == 0, clean.stderr
    assert "2 item(s), 8 file(s)" in clean.stdout and clean.stdout.rstrip().endswith("OK")

    video = workdir / "archive" / ID1 / "video.mp4"
    data = bytearray(video.read_bytes())
    data[1000] ^= 0x01  # same size, one bit different
    video.write_bytes(bytes(data))
    (workdir / "archive" / ID2 / "translated.srt").unlink()
    (workdir / "archive" / ID2 / "notes.txt").write_text("who put this here?")

    broken = run_cli("verify", "videos.yaml", cwd=workdir, env=ENV)
    assert broken.returncode == 1
    assert f"{ID1}/video.mp4: corrupted: sha256 " in broken.stderr
    assert f"{ID2}/translated.srt: missing" in broken.stderr
    assert f"{ID2}/notes.txt: unexpected" in broken.stderr
    assert "3 problem(s)" in broken.stdout


# ----------------------------------------------------------------------- metrics

def test_metrics_file_for_node_exporter(served, workdir):
    """--metrics-file writes Prometheus text: items by outcome, bytes, timestamps, exit status."""
    standin, _ = served
    standin.add_job(ID1, video_size=10_000)
    standin.add_job(ID2, outcome="failed")
    write_yaml(workdir / "ok.yaml", [ID1])
    write_yaml(workdir / "bad.yaml", [ID1, ID2])
    metrics = workdir / "textfile" / "archiver.prom"

    assert run_cli("run", "ok.yaml", "--metrics-file", str(metrics), cwd=workdir,
                   env=ENV).returncode == 0
    first = _parse_prom(metrics.read_text())
    assert first['archiver_items{outcome="archived",family="video"}'] == 1
    assert first['archiver_items{outcome="archived",family="faceswap"}'] == 0
    assert first["archiver_bytes_archived"] == 10_000
    assert first["archiver_exit_status"] == 0
    success = first["archiver_last_success_timestamp_seconds"]
    assert abs(success - time.time()) < 60

    assert run_cli("run", "bad.yaml", "--metrics-file", str(metrics), cwd=workdir,
                   env=ENV).returncode == 1
    second = _parse_prom(metrics.read_text())
    assert second['archiver_items{outcome="already_archived",family="video"}'] == 1
    assert second['archiver_items{outcome="failed",family="video"}'] == 1
    assert second["archiver_exit_status"] == 1
    assert second["archiver_last_success_timestamp_seconds"] == success  # carried over
    assert second["archiver_last_run_timestamp_seconds"] >= success
    assert [p.name for p in metrics.parent.iterdir()] == ["archiver.prom"]  # no temp left

    (workdir / "archiver.yaml").write_text("api: {api_key: k}\nbogus: 1\n")
    assert run_cli("run", "ok.yaml", "--metrics-file", str(metrics), cwd=workdir).returncode == 2
    assert _parse_prom(metrics.read_text())["archiver_exit_status"] == 2


def _parse_prom(text: str) -> dict[str, float]:
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


# ------------------------------------------------------------------ logs, progress

def test_cron_output_is_quiet_and_json_logs_parse(served, workdir):
    """Without a terminal: no progress noise on success; --log-format json gives JSON lines."""
    standin, _ = served
    standin.add_job(ID1)
    standin.add_job(ID2, api_faults=[500], outcome="failed")
    write_yaml(workdir / "one.yaml", [ID1])
    quiet = run_cli("run", "one.yaml", "-q", cwd=workdir, env=ENV)
    assert quiet.returncode == 0 and quiet.stdout == "" and quiet.stderr == ""

    write_yaml(workdir / "two.yaml", [ID1, ID2])
    logged = run_cli("run", "two.yaml", "-v", "--log-format", "json", cwd=workdir, env=ENV)
    assert logged.returncode == 1
    entries = [json.loads(line) for line in logged.stderr.splitlines()]
    assert entries, "expected log lines"
    assert {"time", "level", "logger", "message"} <= set(entries[0])
    assert any(e["level"] == "warning" and ID2 in e["message"] for e in entries)
    assert "\r" not in logged.stderr and "\x1b[" not in logged.stderr  # no progress bars


async def test_progress_display_draws_items_and_transfers(standin, make_config):
    """The terminal progress display follows items and bytes of active downloads."""
    from rich.console import Console

    from archiver.progress import ProgressDisplay

    standin.add_job(ID1, files=ALL_FILES, video_size=300_000)
    standin.add_job(ID2, outcome="failed")
    buffer = io.StringIO()
    display = ProgressDisplay(Console(file=buffer, force_terminal=True, width=100))
    with display:
        result = await archive(make_config(), Manifest.from_ids([ID1, ID2]), observer=display)
        items = display._progress.tasks[0]
        assert (items.completed, items.total) == (2, 2)
        received = display._bytes.tasks[0]
        assert received.completed == result.bytes_archived
        assert display._files == {}  # every transfer's bar was removed when it ended
    assert "items" in buffer.getvalue()


# ---------------------------------------------------------------------- dry run

def test_dry_run_reports_and_writes_nothing(served, workdir):
    """--dry-run polls, lists what would be downloaded with sizes, and writes nothing at all."""
    standin, _ = served
    standin.add_job(ID1, files=ALL_FILES, video_size=123_456)
    standin.add_job(ID2, outcome="never")
    cfg = json.loads(json.dumps(__import__("yaml").safe_load(
        (workdir / "archiver.yaml").read_text())))
    cfg["polling"]["deadline"] = 0.2
    write_yaml(workdir / "archiver.yaml", cfg)
    write_yaml(workdir / "videos.yaml", [ID1, ID2])
    result = run_cli("run", "videos.yaml", "--dry-run", "--report", "report.json",
                     cwd=workdir, env=ENV)
    assert result.returncode == 3, result.stderr  # one pending
    assert f"would archive {ID1}: video.mp4 120.6KiB" in result.stdout
    assert f"pending {ID2}" in result.stdout
    assert not (workdir / "archive").exists()
    assert standin.file_requests[(ID1, "video.mp4")] == 1  # a HEAD, no download
    report = json.loads((workdir / "report.json").read_text())
    [ready] = [i for i in report["items"] if i["id"] == ID1]
    assert ready["outcome"] == "ready"
    assert {f["name"]: f["size"] for f in ready["files"]}["video.mp4"] == 123_456
    assert all(f["sha256"] is None for f in ready["files"])


# ----------------------------------------------------------------------- status

def test_status_without_and_with_the_api(served, workdir):
    """status shows archived / partial / absent without API calls; --remote adds job state."""
    standin, _ = served
    standin.add_job(ID1)
    standin.add_job(ID2, video_size=2_000_000, file_faults={"video": ["truncate"] * 5})
    standin.add_job(ID3, outcome="never")
    write_yaml(workdir / "videos.yaml", [ID1, ID2, {"id": ID3, "label": "later"}])
    cfg = __import__("yaml").safe_load((workdir / "archiver.yaml").read_text())
    cfg["polling"]["deadline"] = 0.1
    write_yaml(workdir / "archiver.yaml", cfg)
    run_cli("run", "videos.yaml", cwd=workdir, env=ENV)

    calls = standin.api_calls
    local = run_cli("status", "videos.yaml", cwd=workdir, env=ENV)
    assert local.returncode == 0
    table = {line.split()[0]: line.split()[1:] for line in local.stdout.splitlines()}
    assert table[ID1][0] == "archived"
    assert table[ID2][0] == "partial"
    assert table[ID3] == ["absent", "(later)"]
    assert standin.api_calls == calls  # no API call without --remote

    remote = run_cli("status", "videos.yaml", "--remote", cwd=workdir, env=ENV)
    lines = {line.split()[0]: line for line in remote.stdout.splitlines()}
    assert "processing" in lines[ID3] and "expires" in lines[ID3]
    assert "done" in lines[ID2]
    assert standin.api_calls == calls + 2  # archived ids are not asked about


# ------------------------------------------------------------------ expiry first

async def test_jobs_closest_to_expiry_download_first(standin, make_config):
    """Among ready jobs, the oldest (closest to its 7-day expiry) is downloaded first."""
    now_ms = int(time.time() * 1000)
    # `blocker` is ready first and occupies the only download worker (its transfer stalls)
    # while the others become ready. FIFO would then take `middle` and `young`, ready one
    # poll before `oldest`.
    standin.add_job("blocker", create_time=now_ms, file_faults={"video": ["stall"]})
    standin.add_job("middle", create_time=now_ms - 3 * DAY_MS, polls_until_done=2)
    standin.add_job("oldest", create_time=now_ms - 6 * DAY_MS + 3_600_000, polls_until_done=3)
    standin.add_job("young", create_time=now_ms - 1 * DAY_MS, polls_until_done=2)
    order: list[str] = []

    class Record(Observer):
        def item_started(self, item_id: str, files: int) -> None:
            order.append(item_id)

    config = make_config(concurrency={"polls": 4, "downloads": 1},
                         downloads={"read_timeout": 0.5})
    result = await archive(config, Manifest.from_ids(["blocker", "middle", "oldest", "young"]),
                           observer=Record())
    assert result.exit_status == 0
    assert order == ["blocker", "oldest", "middle", "young"]


# ----------------------------------------------------------------------- limits

async def test_requests_per_second_caps_the_whole_run(standin, make_config):
    """api.requests_per_second is a run-wide token bucket, however many workers poll."""
    for n in range(16):
        standin.add_job(f"job{n}", polls_until_done=1)
    config = make_config(api={"requests_per_second": 20}, concurrency={"polls": 16})
    result = await archive(config, Manifest.from_ids([f"job{n}" for n in range(16)]))
    assert result.count(Outcome.ARCHIVED) == 16
    assert standin.api_calls == 16  # within one burst: no wait at all
    slow = make_config(api={"requests_per_second": 10}, concurrency={"polls": 16})
    for n in range(16):
        standin.add_job(f"slow{n}")
    started = time.monotonic()
    await archive(slow, Manifest.from_ids([f"slow{n}" for n in range(16)]))
    # 10 at once (the burst), then 6 more at 10/s: at least 0.6 s, however fast the machine.
    assert time.monotonic() - started >= 0.55


async def test_bandwidth_limit_caps_download_throughput(standin, make_config, tmp_path):
    """limits.bandwidth caps bytes per second across all transfers."""
    size = 400_000
    for job in (ID1, ID2):
        standin.add_job(job, video_size=size)
    config = make_config(limits={"bandwidth": "500KB/s"}, concurrency={"downloads": 2})
    started = time.monotonic()
    result = await archive(config, Manifest.from_ids([ID1, ID2]))
    assert result.count(Outcome.ARCHIVED) == 2
    # 800 kB at 500 kB/s with a 1 s burst: at least 0.6 s, however fast the machine.
    assert time.monotonic() - started >= 0.55
    assert all_files(tmp_path / "archive")


def test_bad_limit_values_are_named(tmp_path):
    """A bandwidth that is not a rate stops the run with the key named."""
    (tmp_path / "archiver.yaml").write_text(
        "api: {api_key: k}\nlimits:\n  bandwidth: lots\n")
    write_yaml(tmp_path / "v.yaml", [ID1])
    result = run_cli("run", "v.yaml", cwd=tmp_path, env=dict(os.environ))
    assert result.returncode == 2
    assert "archiver.yaml:3: limits.bandwidth: 'lots' is not a rate" in result.stderr
