"""What scripts and cron read (issue 20, points 1 and 2): ``-q``'s one line per failed id,
``--json``'s one document per command, and JSON on every stderr line under
``--log-format json``. Real ``archiver`` processes against the stand-in."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from archiver import __version__

from .conftest import API_KEY, CLI_ENV, ID1, ID2, ID3, run_cli, write_yaml

ENV = CLI_ENV
ID4 = "64dd92c1f0b6684651e90e0c"
#: The keys every --json document starts with.
HEADER = ["schema", "command", "archiver_version", "exit_status", "fatal_error"]


def _set_deadline(cwd: Path, seconds: float) -> None:
    data = yaml.safe_load((cwd / "archiver.yaml").read_text())
    data["polling"]["deadline"] = seconds
    write_yaml(cwd / "archiver.yaml", data)


def _mixed_jobs(standin: Any, cwd: Path) -> None:
    """One job of each fate: archived, failed at Akool, expired, still processing."""
    standin.add_job(ID1)
    standin.add_job(ID2, outcome="failed", error_code=1015, error_reason="face not detected")
    standin.add_job(ID3, create_time=int(time.time() * 1000) - 8 * 86400_000, expired=True)
    standin.add_job(ID4, outcome="never")
    _set_deadline(cwd, 0.3)
    write_yaml(cwd / "videos.yaml", [ID1, ID2, ID3, ID4])


def _document(stdout: str, command: str, status: int) -> dict[str, Any]:
    """The one JSON document on stdout, with the header every command's has."""
    document = json.loads(stdout)  # one document: json.loads refuses anything after it
    assert list(document)[:len(HEADER)] == HEADER
    assert document["schema"] == 1
    assert document["command"] == command
    assert document["archiver_version"] == __version__
    assert document["exit_status"] == status
    return document


def _json_lines(stderr: str) -> list[dict[str, Any]]:
    """Every line of *stderr*, each of which must be one JSON log object."""
    entries = [json.loads(line) for line in stderr.splitlines()]
    for entry in entries:
        assert {"time", "level", "logger", "message"} <= set(entry), entry
    return entries


# ------------------------------------------------------------------ point 1: -q

def test_quiet_run_prints_one_line_per_failed_or_expired_id(served, workdir):
    """`run -q`: nothing on stdout; on stderr exactly one line per failed or expired id,
    none for the archived or the pending one."""
    standin, cwd = served[0], workdir
    _mixed_jobs(standin, cwd)
    result = run_cli("run", "-q", "videos.yaml", "--report", "report.json", cwd=cwd, env=ENV)
    assert result.returncode == 1
    assert result.stdout == ""
    items = {i["id"]: i for i in json.loads((cwd / "report.json").read_text())["items"]}
    assert [items[i]["outcome"] for i in (ID1, ID2, ID3, ID4)] == [
        "archived", "failed", "expired", "pending"]
    assert result.stderr == (
        f"archiver: {ID2}: failed: Akool job failed: face not detected (error_code 1015)\n"
        f"archiver: {ID3}: expired: {items[ID3]['error']['message']}\n")


def test_quiet_run_with_json_logs_names_each_failure_as_an_object(served, workdir):
    """`-q --log-format json`: the same lines, as JSON objects carrying id and error."""
    standin, cwd = served[0], workdir
    _mixed_jobs(standin, cwd)
    result = run_cli("run", "-q", "--log-format", "json", "videos.yaml", cwd=cwd, env=ENV)
    assert result.returncode == 1 and result.stdout == ""
    entries = _json_lines(result.stderr)
    assert [(e["level"], e["id"], e["outcome"]) for e in entries] == [
        ("error", ID2, "failed"), ("error", ID3, "expired")]
    assert entries[0]["error"] == {"kind": "job_failed", "code": 1015, "message":
                                   "Akool job failed: face not detected (error_code 1015)"}


def test_quiet_run_says_nothing_when_only_pending_or_archived(served, workdir):
    """Pending is not a failure: `-q` prints nothing, the exit status (3) says it."""
    standin, cwd = served[0], workdir
    standin.add_job(ID1)
    standin.add_job(ID4, outcome="never")
    _set_deadline(cwd, 0.2)
    write_yaml(cwd / "videos.yaml", [ID1, ID4])
    result = run_cli("run", "-q", "videos.yaml", cwd=cwd, env=ENV)
    assert (result.returncode, result.stdout, result.stderr) == (3, "", "")


def test_quiet_run_still_prints_a_fatal_error(served, workdir):
    """A run that cannot start says why in one line under `-q` too."""
    cwd = workdir
    write_yaml(cwd / "videos.yaml", ["bad/id"])
    result = run_cli("run", "-q", "videos.yaml", cwd=cwd, env=ENV)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == ("archiver: error: videos.yaml:1: item 0: invalid video_model_id "
                             "'bad/id': must be 1-128 characters of A-Z a-z 0-9 _ -\n")


# ------------------------------------------------------------ point 2: --json

def test_run_json_is_the_run_report_on_stdout(served, workdir):
    """`run --json`: stdout is one document, the run report (as --report writes it);
    no summary, no progress, and the exit status inside is the process's."""
    standin, cwd = served[0], workdir
    _mixed_jobs(standin, cwd)
    result = run_cli("run", "--json", "videos.yaml", "--report", "report.json", cwd=cwd,
                     env=ENV)
    assert result.returncode == 1
    document = _document(result.stdout, "run", 1)
    assert document == json.loads((cwd / "report.json").read_text())
    assert document["fatal_error"] is None
    assert document["totals"]["archived"] == 1 and document["totals"]["failed"] == 1
    assert {i["id"]: i["outcome"] for i in document["items"]} == {
        ID1: "archived", ID2: "failed", ID3: "expired", ID4: "pending"}
    assert "\x1b[" not in result.stderr


def test_report_holds_one_item_per_line(served, workdir):
    """The report (file and --json alike) is indented, but each item is one line: a
    report of 100,000 ids reads with grep, and is written by the C encoder."""
    standin, cwd = served[0], workdir
    _mixed_jobs(standin, cwd)
    result = run_cli("run", "--json", "videos.yaml", "--report", "report.json", cwd=cwd,
                     env=ENV)
    for text in (result.stdout, (cwd / "report.json").read_text()):
        lines = text.splitlines()
        assert lines[:2] == ["{", '  "schema": 1,'] and lines[-2:] == ["  ]", "}"]
        items = [json.loads(line.strip().rstrip(",")) for line in lines
                 if line.startswith('    {"id": ')]
        assert items == json.loads(text)["items"] and len(items) == 4


def test_run_json_carries_a_fatal_error(served, workdir):
    """A run that cannot start still prints its document: exit_status and fatal_error."""
    cwd = workdir
    (cwd / "archiver.yaml").write_text("api:\n  api_key: k\nconcurency:\n  polls: 3\n")
    write_yaml(cwd / "videos.yaml", [ID1])
    result = run_cli("run", "--json", "videos.yaml", cwd=cwd, env=ENV)
    assert result.returncode == 2
    document = _document(result.stdout, "run", 2)
    assert document["fatal_error"] == "archiver.yaml:3: concurency: unknown key"
    assert document["items"] == [] and document["totals"] is None
    assert result.stderr == "archiver: error: archiver.yaml:3: concurency: unknown key\n"


@pytest.mark.parametrize("flag", ["--report", "--metrics-file"])
def test_run_json_and_another_output_on_stdout_is_a_usage_error(served, workdir, flag):
    """--json owns stdout: --report - or --metrics-file - with it is refused at once."""
    standin, cwd = served[0], workdir
    write_yaml(cwd / "videos.yaml", [ID1])
    result = run_cli("run", "--json", "videos.yaml", flag, "-", cwd=cwd, env=ENV)
    assert result.returncode == 2
    document = _document(result.stdout, "run", 2)
    assert f"{flag} - cannot go there too" in document["fatal_error"]
    assert standin.api_calls == 0


def test_verify_json_lists_every_problem(served, workdir):
    """`verify --json`: totals and one entry per problem; exit 1, ok false."""
    standin, cwd = served[0], workdir
    standin.add_job(ID1, files=("video", "original_srt"))
    standin.add_job(ID2)
    write_yaml(cwd / "videos.yaml", [ID1, ID2])
    assert run_cli("run", "videos.yaml", cwd=cwd, env=ENV).returncode == 0
    (cwd / "archive" / ID1 / "original.srt").unlink()
    (cwd / "archive" / ID2 / "stray.txt").write_text("?")

    result = run_cli("verify", "--json", cwd=cwd, env=ENV)
    assert result.returncode == 1
    document = _document(result.stdout, "verify", 1)
    assert document["ok"] is False and document["deep"] is False
    assert document["storage"] == str(cwd / "archive")
    assert document["totals"]["items"] == 2 and document["totals"]["problems"] == 2
    assert document["problems"] == [
        {"id": ID1, "file": "original.srt", "kind": "missing",
         "detail": "listed in archive.json"},
        {"id": ID2, "file": "stray.txt", "kind": "unexpected", "detail": "not in archive.json"},
    ]

    only = run_cli("verify", "--json", "--root", "archive", cwd=cwd)  # no configuration
    assert _document(only.stdout, "verify", 1)["problems"] == document["problems"]


def test_status_json_with_and_without_the_api(served, workdir):
    """`status --json`: each id's state, and with --remote Akool's view of the others."""
    standin, cwd = served[0], workdir
    standin.add_job(ID1)
    standin.add_job(ID2, outcome="never")
    _set_deadline(cwd, 0.1)
    write_yaml(cwd / "videos.yaml", [ID1, {"id": ID2, "label": "later"}])
    run_cli("run", "videos.yaml", cwd=cwd, env=ENV)

    local = run_cli("status", "--json", "videos.yaml", cwd=cwd, env=ENV)
    assert local.returncode == 0 and local.stderr == ""
    document = _document(local.stdout, "status", 0)
    assert document["manifest"] == "videos.yaml" and document["remote"] is False
    assert document["totals"] == {"ids": 2, "archived": 1, "partial": 0, "absent": 1}
    assert document["items"] == [
        {"id": ID1, "label": None, "state": "archived", "remote": None},
        {"id": ID2, "label": "later", "state": "absent", "remote": None}]

    remote = _document(run_cli("status", "--json", "--remote", "videos.yaml", cwd=cwd,
                               env=ENV).stdout, "status", 0)
    items = {i["id"]: i for i in remote["items"]}
    assert items[ID1]["remote"] is None  # archived: not asked
    assert items[ID2]["remote"]["status"] == 2
    assert items[ID2]["remote"]["state"] == "processing"
    assert items[ID2]["remote"]["expires_at"].endswith("Z")


def test_gc_json_lists_what_it_would_remove(served, workdir):
    """`gc --json --dry-run`: what would go, with totals; nothing removed."""
    cwd = workdir
    folder = cwd / "archive" / ID1
    folder.mkdir(parents=True)
    part = folder / ".video.mp4.part"
    part.write_bytes(b"x" * 1000)
    old = time.time() - 3 * 86400
    os.utime(part, (old, old))
    result = run_cli("gc", "--json", "--dry-run", cwd=cwd, env=ENV)
    assert result.returncode == 0, result.stderr
    document = _document(result.stdout, "gc", 0)
    assert document["dry_run"] is True and document["min_age_s"] == 86400
    assert document["totals"]["files"] == 1 and document["totals"]["bytes"] == 1000
    assert document["removed"][0]["item"] == ID1
    assert document["removed"][0]["where"].endswith(".video.mp4.part")
    assert part.exists()


def test_demo_json_is_its_run_report(tmp_path):
    """`demo --json`: the demo's run report, command "demo", where its manifest is."""
    result = run_cli("demo", "--json", "out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    document = _document(result.stdout, "demo", 0)
    assert document["totals"]["archived"] == 5 and document["totals"]["failed"] == 1
    assert document["demo"]["manifest"] == "out/manifest.yaml"
    assert document["demo"]["as_expected"] is True
    [failing] = document["demo"]["failing_on_purpose"]
    assert {i["id"]: i["outcome"] for i in document["items"]}[failing] == "failed"


def test_a_command_line_argparse_refuses_is_json_too(tmp_path):
    """Even argparse's refusals: a JSON line on stderr, a document on stdout with --json."""
    result = run_cli("verify", "--json", "--log-format", "json", "--no-such-flag",
                     cwd=tmp_path)
    assert result.returncode == 2
    [entry] = _json_lines(result.stderr)
    assert "unrecognized arguments: --no-such-flag" in entry["message"]
    assert _document(result.stdout, "verify", 2)["fatal_error"] == entry["message"]
    # serve has no --json (see README): refused, and a script that asked for JSON gets it.
    plain = run_cli("serve", "--json", cwd=tmp_path)
    assert plain.returncode == 2
    assert plain.stderr.splitlines()[-1] == \
        "archiver: error: unrecognized arguments: --json"
    assert _document(plain.stdout, "serve", 2)["fatal_error"] == \
        "archiver: unrecognized arguments: --json"


# ---------------------------------------- point 2: every stderr line is JSON

def test_every_stderr_line_is_json_under_json_logs(served, workdir):
    """--log-format json: failures, verify's problems, fatal errors, a lock held,
    status's summary line - each a JSON object, none plain text."""
    standin, cwd = served[0], workdir
    _mixed_jobs(standin, cwd)
    run = run_cli("run", "-v", "--log-format", "json", "videos.yaml", cwd=cwd, env=ENV)
    assert run.returncode == 1
    assert any(e.get("id") is None and ID2 in e["message"] for e in _json_lines(run.stderr))

    (cwd / "archive" / ID1 / "video.mp4").write_bytes(b"changed")
    verify = run_cli("verify", "--log-format", "json", cwd=cwd, env=ENV)
    assert verify.returncode == 1
    [problem] = _json_lines(verify.stderr)
    assert (problem["level"], problem["id"], problem["file"], problem["kind"]) == (
        "error", ID1, "video.mp4", "corrupted")

    status = run_cli("status", "--log-format", "json", "videos.yaml", cwd=cwd, env=ENV)
    assert status.returncode == 0
    [summary] = _json_lines(status.stderr)
    assert summary["level"] == "info" and summary["message"].startswith("4 id(s): ")

    (cwd / "bad.yaml").write_text("api:\n  api_key: k\npolling:\n  intervall: 5\n")
    fatal = run_cli("run", "-c", "bad.yaml", "--log-format", "json", "videos.yaml", cwd=cwd)
    assert fatal.returncode == 2
    [entry] = _json_lines(fatal.stderr)
    assert (entry["level"], entry["exit_status"]) == ("error", 2)
    assert entry["message"] == "bad.yaml:4: polling.intervall: unknown key"

    usage = run_cli("verify", "--log-format", "json", "--shard", "9/2", cwd=cwd, env=ENV)
    assert usage.returncode == 2 and len(_json_lines(usage.stderr)) == 1


def test_lock_held_is_one_json_line(served, workdir):
    """A run that finds the lock taken (75) says so as one JSON line."""
    standin, cwd = served[0], workdir
    standin.add_job(ID1, video_size=1024 * 1024, file_faults={"video": ["stall"]})
    write_yaml(cwd / "videos.yaml", [ID1])
    first = subprocess.Popen([sys.executable, "-m", "archiver", "run", "videos.yaml"], cwd=cwd,
                             env={**os.environ, **ENV}, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        part = cwd / "archive" / ID1 / ".video.mp4.part"
        limit = time.monotonic() + 30  # a hang guard
        while not part.exists() and time.monotonic() < limit:
            time.sleep(0.02)
        second = run_cli("run", "--json", "--log-format", "json", "videos.yaml", cwd=cwd,
                         env=ENV)
        assert second.returncode == 75
        [entry] = _json_lines(second.stderr)
        assert "holds" in entry["message"] and entry["exit_status"] == 75
        assert _document(second.stdout, "run", 75)["fatal_error"] == entry["message"]
    finally:
        first.terminate()
        first.communicate(timeout=30)
    assert API_KEY not in second.stdout + second.stderr
