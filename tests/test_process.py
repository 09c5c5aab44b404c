"""The archiver as a process: signals, the run lock, the report, secrets in everything written."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import (
    API_KEY,
    CLI_ENV,
    ID1,
    ID2,
    ID3,
    all_files,
    config_dict,
    run_cli,
    write_yaml,
)

MiB = 1024 * 1024
ENV = CLI_ENV


def start(cwd: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "archiver", "run", *args], cwd=cwd,
                            env={**os.environ, **ENV}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for(condition: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------- 6. interruption

@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_mid_download_then_next_run_completes(served, workdir, signum, status):
    """A signal mid-download: exit 130/143, report written, only temp names; next run resumes."""
    standin, _ = served
    size = 4 * MiB
    standin.add_job(ID1, video_size=size, file_faults={"video": ["stall"]})
    standin.add_job(ID2, outcome="never")
    write_yaml(workdir / "videos.yaml", [ID1, ID2])
    proc = start(workdir, "videos.yaml", "--report", "report.json")
    part = workdir / "archive" / ID1 / ".video.mp4.part"
    wait_for(lambda: part.exists() and part.stat().st_size > 0)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == status, err
    assert "Traceback" not in err

    report = json.loads((workdir / "report.json").read_text())
    assert report["exit_status"] == status
    assert report["interrupted_by"] == signal.Signals(signum).name
    outcomes = {i["id"]: i for i in report["items"]}
    assert outcomes[ID1]["outcome"] == "pending"
    assert outcomes[ID1]["error"]["kind"] == "interrupted"
    # Nothing under a final name; the partial bytes wait under their temporary name.
    assert [p.name for p in all_files(workdir / "archive")
            if not p.name.startswith(".")] == []
    kept = part.stat().st_size
    assert kept > 0

    sent_before = standin.file_bytes_sent[(ID1, "video.mp4")]
    write_yaml(workdir / "videos.yaml", [ID1])
    again = run_cli("run", "videos.yaml", cwd=workdir, env=ENV)
    assert again.returncode == 0, again.stderr
    video = workdir / "archive" / ID1 / "video.mp4"
    assert sha256(video) == standin.file_sha256(ID1, "video.mp4")
    assert standin.file_bytes_sent[(ID1, "video.mp4")] - sent_before == size - kept  # resumed
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=video.parent,
                           capture_output=True, check=False)
    assert check.returncode == 0


def test_second_signal_exits_at_once(served, workdir):
    """With a long grace period, a second SIGINT ends the process immediately."""
    standin, url = served
    data = config_dict(url, workdir / "archive", run={"shutdown_grace": 60})
    data["api"]["api_key"] = "${TEST_AKOOL_KEY}"
    write_yaml(workdir / "archiver.yaml", data)
    standin.add_job(ID1, video_size=4 * MiB, file_faults={"video": ["stall"]})
    write_yaml(workdir / "videos.yaml", [ID1])
    proc = start(workdir, "videos.yaml")
    part = workdir / "archive" / ID1 / ".video.mp4.part"
    wait_for(lambda: part.exists() and part.stat().st_size > 0)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    assert proc.poll() is None  # still in its grace period
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=10)
    assert time.monotonic() - started < 5
    assert proc.returncode == 130
    assert "second signal" in err
    assert not (workdir / "archive" / ID1 / "video.mp4").exists()


# ------------------------------------------------------------ 7. overlapping runs

def test_overlapping_run_exits_75(served, workdir):
    """A run started while another holds the lock exits at once with 75 and one line."""
    standin, _ = served
    standin.add_job(ID1, video_size=MiB, file_faults={"video": ["stall"]})
    write_yaml(workdir / "videos.yaml", [ID1])
    first = start(workdir, "videos.yaml")
    part = workdir / "archive" / ID1 / ".video.mp4.part"
    wait_for(lambda: part.exists())
    try:
        started = time.monotonic()
        second = run_cli("run", "videos.yaml", cwd=workdir, env=ENV)
        assert second.returncode == 75
        assert time.monotonic() - started < 10
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1
        assert f"another archiver run holds {workdir / 'archive' / '.archiver.lock'}" in lines[0]
        assert f"pid {first.pid}" in lines[0]
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=30)


def test_lock_of_a_killed_run_does_not_block(served, workdir):
    """A run killed with SIGKILL leaves its lock file, which does not block the next run."""
    standin, _ = served
    standin.add_job(ID1, video_size=MiB, file_faults={"video": ["stall"]})
    write_yaml(workdir / "videos.yaml", [ID1])
    first = start(workdir, "videos.yaml")
    wait_for(lambda: (workdir / "archive" / ID1 / ".video.mp4.part").exists())
    first.kill()
    first.communicate(timeout=10)
    assert (workdir / "archive" / ".archiver.lock").exists()
    again = run_cli("run", "videos.yaml", cwd=workdir, env=ENV)
    assert again.returncode == 0, again.stderr
    assert sha256(workdir / "archive" / ID1 / "video.mp4") == standin.file_sha256(
        ID1, "video.mp4")


# ------------------------------------------------------------ report and secrets

def test_report_has_every_outcome_and_no_secret(served, workdir):
    """The JSON report lists each id's outcome, files and errors; no key, no signed query."""
    standin, _ = served
    standin.add_job(ID1, files=("video", "original_srt", "translated_srt", "no_caption"),
                    api_faults=[500])
    standin.add_job(ID2, outcome="failed", error_code=1015, error_reason="face not detected")
    standin.add_job(ID3, create_time=int(time.time() * 1000) - 8 * 86400_000, expired=True)
    write_yaml(workdir / "videos.yaml", [ID1, ID2, ID3, "unknown-id"])
    result = run_cli("run", "videos.yaml", "--report", "out/report.json", "-v", cwd=workdir,
                     env=ENV)
    assert result.returncode == 1
    report = json.loads((workdir / "out" / "report.json").read_text())
    items = {i["id"]: i for i in report["items"]}
    assert items[ID1]["outcome"] == "archived"
    assert {f["name"] for f in items[ID1]["files"]} == {
        "video.mp4", "original.srt", "translated.srt", "no_caption.mp4"}
    assert items[ID1]["files"][0]["sha256"] == standin.file_sha256(ID1, "video.mp4")
    assert items[ID2]["outcome"] == "failed"
    assert items[ID2]["error"] == {"kind": "job_failed", "code": 1015,
                                   "message": "Akool job failed: face not detected "
                                              "(error_code 1015)"}
    assert items[ID3]["outcome"] == "expired" and items[ID3]["past_expiry"] is True
    assert items["unknown-id"]["error"]["code"] == 1008
    assert report["totals"]["archived"] == 1 and report["totals"]["expired"] == 1
    assert report["totals"]["bytes_archived"] == sum(f["size"] for f in items[ID1]["files"])

    # Neither the key nor any signed query string, anywhere the run wrote or printed.
    # (info.json alone keeps the API's answer as it came, signed URLs included.)
    written = {p.name: p.read_bytes() for p in all_files(workdir) if p.name != "archiver.yaml"}
    written |= {"stdout": result.stdout.encode(), "stderr": result.stderr.encode()}
    assert "report.json" in written and "archive.json" in written
    for name, blob in written.items():
        assert API_KEY.encode() not in blob, name
        if name != "info.json":
            assert b"Signature=" not in blob and b"Expires=" not in blob, name
