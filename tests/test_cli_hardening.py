"""The real `archiver` process against hostile or broken surroundings (issue 9).

Absurd timestamps from Akool, report and metrics paths that cannot be written, terminal
escapes in Akool's text, a config file that shows its key to everyone, unknown statuses.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from archiver.config import Config, load_config

from .conftest import API_KEY, CLI_ENV, ID1, ID2, ID3, run_cli, write_yaml

ENV = CLI_ENV


def _edit_config(cwd: Path, **sections: dict) -> None:
    data = yaml.safe_load((cwd / "archiver.yaml").read_text())
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    write_yaml(cwd / "archiver.yaml", data)


def _when(condition: Callable[[], bool], then: Callable[[], None]) -> threading.Thread:
    """Run *then* in a thread as soon as *condition* holds (checked every few ms)."""

    def watch() -> None:
        limit = time.monotonic() + 30  # a hang guard, not a timing assertion
        while not condition() and time.monotonic() < limit:
            time.sleep(0.002)
        then()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


# ------------------------------------------------- point 8: absurd create_time

#: create_time values no clock can mean: far future, past float range, negative, not numbers.
GARBAGE = [10**17, 10**400, -5, True, 1.5e300, "tomorrow"]


def test_absurd_create_time_is_unknown_expiry_everywhere(served, workdir):
    """A nonsense create_time degrades to an unknown expiry; the run, report, metrics go on."""
    standin, cwd = served[0], workdir
    bad = [f"bad{n}" for n in range(len(GARBAGE))]
    standin.add_job(ID1)
    for job_id, garbage in zip(bad, GARBAGE, strict=True):
        standin.add_job(job_id, extra_fields={"create_time": garbage})
    write_yaml(cwd / "videos.yaml", [ID1, *bad])

    remote = run_cli("status", "--remote", "videos.yaml", cwd=cwd, env=ENV)
    assert remote.returncode == 0, remote.stderr
    lines = {line.split()[0]: line for line in remote.stdout.splitlines()}
    assert "expires" in lines[ID1]
    for job_id in bad:
        assert "done" in lines[job_id] and "expire" not in lines[job_id]

    result = run_cli("run", "videos.yaml", "--report", "out/report.json",
                     "--metrics-file", "out/archiver.prom", cwd=cwd, env=ENV)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no warning about an expiry nobody knows
    items = {i["id"]: i for i in json.loads((cwd / "out/report.json").read_text())["items"]}
    assert items[ID1]["expires_at"] is not None
    for job_id in bad:
        assert items[job_id]["outcome"] == "archived"
        assert items[job_id]["expires_at"] is None and items[job_id]["past_expiry"] is False
        record = json.loads((cwd / "archive" / job_id / "archive.json").read_text())
        assert record["expires_at"] is None
    assert "archiver_exit_status 0" in (cwd / "out/archiver.prom").read_text()


# ----------------------------------------- point 9: report / metrics not writable

def _unwritable(cwd: Path, how: str) -> str:
    """A path nobody can write, root included (permission bits do not stop root)."""
    if how == "parent-is-a-file":
        (cwd / "blocker").write_text("a file, not a folder\n")
        return "blocker/out/report.json"
    if how == "is-a-directory":
        (cwd / "adir").mkdir()
        return "adir"
    return "/proc/archiver-report.json"


@pytest.mark.parametrize(("flag", "how"), [
    ("--report", "parent-is-a-file"),
    ("--metrics-file", "is-a-directory"),
    ("--report", "under-proc"),
])
def test_unwritable_output_path_exits_2_before_any_api_call(served, workdir, flag, how):
    """An output path that cannot be written stops the run at once, naming the path."""
    standin, cwd = served[0], workdir
    standin.add_job(ID1)
    write_yaml(cwd / "videos.yaml", [ID1])
    path = _unwritable(cwd, how)

    result = run_cli("run", "videos.yaml", flag, path, cwd=cwd, env=ENV)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("archiver: error: ") and path in lines[0]
    assert standin.api_calls == 0
    assert not (cwd / "archive" / ID1).exists()


@pytest.mark.parametrize("flag", ["--report", "--metrics-file"])
def test_output_path_broken_mid_run_exits_74_with_the_archive_intact(served, workdir, flag):
    """The output folder turns into a file mid-run: exit 74, one line naming the path."""
    standin, cwd = served[0], workdir
    standin.add_job(ID1, outcome="never")  # held at "processing" until the folder is gone
    write_yaml(cwd / "videos.yaml", [ID1])
    out = cwd / "out"

    def break_the_folder() -> None:
        shutil.rmtree(out)
        out.write_text("now a file\n")
        standin.add_job(ID1)  # the next poll says done

    watcher = _when(lambda: standin.polls[ID1] >= 1, break_the_folder)
    result = run_cli("run", "videos.yaml", flag, "out/result", cwd=cwd, env=ENV)
    watcher.join()
    assert result.returncode == 74, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "out/result" in lines[0] and "archive is not affected" in lines[0]
    assert "internal error" not in result.stderr
    assert (cwd / "archive" / ID1 / "archive.json").exists()


# ------------------------------------------- point 11: terminal escapes from Akool

EVIL = "evil\n\x1b[2J\x1b]0;pwned\x07\x9b31m\x7fend"
SHOWN = "evil\\n\\x1b[2J\\x1b]0;pwned\\x07\\x9b31m\\x7fend"


def _no_controls(text: str) -> None:
    for char in ("\x1b", "\x07", "\x9b", "\x7f", "\r"):
        assert char not in text


def test_control_characters_from_akool_never_reach_the_terminal(served, workdir):
    """ESC/BEL/newline/C1 in error_reason: escaped in summary, logs, dry run; exact in report."""
    standin, cwd = served[0], workdir
    standin.add_job(ID1, outcome="failed", error_reason=EVIL)
    write_yaml(cwd / "videos.yaml", [ID1])

    result = run_cli("run", "videos.yaml", "--report", "report.json", cwd=cwd, env=ENV)
    assert result.returncode == 1
    for stream in (result.stdout, result.stderr):
        _no_controls(stream)
        assert SHOWN in stream
    text = (cwd / "report.json").read_text()
    _no_controls(text)  # escaped by JSON, C1 and DEL included ...
    assert EVIL in json.loads(text)["items"][0]["error"]["message"]  # ... and exact

    dry = run_cli("run", "--dry-run", "videos.yaml", cwd=cwd, env=ENV)
    _no_controls(dry.stdout + dry.stderr)
    assert SHOWN in dry.stdout


def test_json_logs_keep_the_text_but_escape_every_control(served, workdir):
    """JSON log lines decode to the exact text, with no raw C1/DEL byte on the wire."""
    standin, cwd = served[0], workdir
    standin.add_job(ID1, outcome="failed", error_reason=EVIL)
    write_yaml(cwd / "videos.yaml", [ID1])

    result = run_cli("run", "videos.yaml", "--log-format", "json", cwd=cwd, env=ENV)
    _no_controls(result.stderr)
    messages = [json.loads(line)["message"] for line in result.stderr.splitlines()]
    assert any(EVIL in m for m in messages)


# --------------------------------------- point 12: a readable config holding a key

def test_key_in_a_config_others_can_read_is_warned_once(workdir):
    """A literal key in a world-readable config: one warning naming file, mode, fix; no key."""
    cwd = workdir
    _edit_config(cwd, api={"api_key": API_KEY})
    os.chmod(cwd / "archiver.yaml", 0o644)
    write_yaml(cwd / "videos.yaml", [ID1])

    result = run_cli("status", "videos.yaml", cwd=cwd, env=ENV)
    assert result.returncode == 0, result.stderr
    assert API_KEY not in result.stderr + result.stdout
    warnings = [line for line in result.stderr.splitlines() if "archiver.yaml" in line]
    assert len(warnings) == 1
    assert "0644" in warnings[0] and "chmod 600 archiver.yaml" in warnings[0]
    assert "${AKOOL_API_KEY}" in warnings[0]


@pytest.mark.parametrize(("api", "mode", "warned"), [
    ({"api_key": API_KEY}, 0o640, True),
    ({"token": "bearer-token-in-plain-text"}, 0o604, True),
    ({"api_key": "${TEST_AKOOL_KEY:-" + API_KEY + "}"}, 0o644, True),
    ({"api_key": API_KEY}, 0o600, False),
    ({"api_key": "${TEST_AKOOL_KEY}"}, 0o644, False),
    ({"token": "${TEST_AKOOL_KEY}"}, 0o777, False),
    ({"client_secret": "plain-text-client-secret", "client_id": "${TEST_AKOOL_KEY}"}, 0o644,
     True),
    ({"client_secret": "${TEST_AKOOL_KEY}", "client_id": "id-written-in-the-file"}, 0o644,
     False),
], ids=["key-0640", "token-0604", "env-default-0644", "key-0600", "env-0644", "env-token-0777",
        "client-secret-0644", "env-client-secret-0644"])
def test_only_a_literal_secret_others_can_read_is_warned(tmp_path, monkeypatch, api, mode,
                                                         warned):
    """Group or other read + a secret written in the file (a default counts) -> a warning."""
    monkeypatch.setenv("TEST_AKOOL_KEY", API_KEY)
    path = write_yaml(tmp_path / "archiver.yaml", {"api": api})
    os.chmod(path, mode)
    # Caught at the source: the CLI's logging setup stops propagation to pytest's handler.
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("archiver.config")
    logger.addHandler(handler)
    try:
        load_config(path)
    finally:
        logger.removeHandler(handler)
    assert len(records) == (1 if warned else 0)
    for record in records:
        message = record.getMessage()
        assert f"{mode:04o}" in message and f"api.{next(iter(api))}" in message
        assert API_KEY not in message and "plain-text" not in message


# --------------------------------------------- point 14: unknown video_status

def test_unknown_video_status_is_warned_once_per_id(served, workdir):
    """video_status 99 on every poll: one warning for that id, not one per poll."""
    standin, cwd = served[0], workdir
    standin.add_job(ID1, extra_fields={"video_status": 99})
    standin.add_job(ID2, extra_fields={"video_status": 98})
    standin.add_job(ID3)
    write_yaml(cwd / "videos.yaml", [ID1, ID2, ID3])

    def finish() -> None:
        standin.add_job(ID1)
        standin.add_job(ID2)

    watcher = _when(lambda: min(standin.polls[ID1], standin.polls[ID2]) >= 4, finish)
    result = run_cli("run", "videos.yaml", cwd=cwd, env=ENV)
    watcher.join()
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "unknown video_status" in line]
    assert len([w for w in warnings if ID1 in w]) == 1
    assert len([w for w in warnings if ID2 in w]) == 1
    assert len(warnings) == 2


def test_a_signed_url_in_akool_words_reaches_no_output(served, workdir):
    """Akool's error text may quote a signed result URL: the summary, the logs, -q's
    lines and the report show it without its query (the signature), for every family."""
    standin, cwd = served[0], workdir
    signed = "https://cdn.example/r/video.mp4?Expires=9&Signature=SeCrEt&Key-Pair-Id=K"
    standin.add_job(ID1, outcome="failed", error_reason=f"render failed, see {signed}")
    standin.add_job(ID2, family="faceswap", outcome="failed", error_reason=f"see {signed}")
    (cwd / "videos.yaml").write_text(f"videos: [{ID1}]\nfaceswaps: [{ID2}]\n")
    for flags in ((), ("-q",)):
        result = run_cli("run", "videos.yaml", *flags, "--report", "report.json", cwd=cwd,
                         env=ENV)
        assert result.returncode == 1
        report = (cwd / "report.json").read_text()
        for text in (result.stdout, result.stderr, report):
            assert "SeCrEt" not in text and "Expires" not in text
        assert report.count("https://cdn.example/r/video.mp4") == 2


def test_client_credentials_are_masked_in_log_lines(capsys):
    """api.client_id and api.client_secret join the secrets no log line shows, as the
    API key and the webhook's pair do (a message of Akool's quoting one included)."""
    from archiver.cli.logs import install_secret_filter, setup_logging

    logger = logging.getLogger("archiver")
    saved = (logger.handlers[:], logger.propagate, logger.level)
    try:
        setup_logging(quiet=False, verbose=False, debug=False, log_format="text")
        install_secret_filter(Config(api={"client_id": "client-id-0123456789",
                                          "client_secret": "client-secret-abcdefghij"}))
        logging.getLogger("archiver.akool.client").warning(
            "getToken refused client-id-0123456789 / client-secret-abcdefghij")
    finally:
        logger.handlers[:], logger.propagate, logger.level = saved
    said = capsys.readouterr().err
    assert "getToken refused" in said
    assert "client-id-0123456789" not in said and "client-secret-abcdefghij" not in said
