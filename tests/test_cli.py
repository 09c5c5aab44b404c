"""The `archiver` command as cron runs it: a real process, real exit statuses."""

from __future__ import annotations

import json

import pytest
import yaml

from .conftest import API_KEY, CLI_ENV, ID1, ID2, all_files, run_cli, summary, write_yaml


@pytest.fixture
def setup(served, workdir):
    """The stand-in and a working folder with archiver.yaml."""
    return served[0], workdir


ENV = CLI_ENV


def test_run_archives_and_rerun_is_free(setup):
    """Exit 0 with a summary; the second run makes zero API calls."""
    standin, cwd = setup
    standin.add_job(ID1, files=("video", "original_srt", "translated_srt", "no_caption"))
    standin.add_job(ID2, polls_until_done=2)
    write_yaml(cwd / "videos.yaml", {"videos": [ID1, {"id": ID2, "label": "onboarding-es"}]})

    first = run_cli("run", "videos.yaml", cwd=cwd, env=ENV)
    assert first.returncode == 0, first.stderr
    assert summary(first.stdout)["archived"] == "2"
    record = json.loads((cwd / "archive" / ID2 / "archive.json").read_text())
    assert record["label"] == "onboarding-es"
    calls = standin.api_calls

    second = run_cli("run", "videos.yaml", "-c", "archiver.yaml", cwd=cwd, env=ENV)
    assert second.returncode == 0, second.stderr
    assert summary(second.stdout)["already archived"] == "2"
    assert standin.api_calls == calls


def test_exit_statuses_failed_and_pending(setup):
    """1 when any id failed (even with others pending); 3 when some are only pending."""
    standin, cwd = setup
    standin.add_job(ID1, outcome="never")
    standin.add_job(ID2, outcome="failed")
    data = yaml.safe_load((cwd / "archiver.yaml").read_text())
    data["polling"]["deadline"] = 0.2
    write_yaml(cwd / "archiver.yaml", data)

    write_yaml(cwd / "both.yaml", [ID1, ID2])
    assert run_cli("run", "both.yaml", cwd=cwd, env=ENV).returncode == 1
    write_yaml(cwd / "pending.yaml", [ID1])
    result = run_cli("run", "pending.yaml", cwd=cwd, env=ENV)
    assert result.returncode == 3
    assert summary(result.stdout)["pending"] == "1"


def test_bad_credentials_exit_2_and_write_nothing(setup):
    """A wrong key: exit 2, a one-line message, no archived file, no key echoed."""
    standin, cwd = setup
    ids = [f"job{n}" for n in range(50)]
    for i in ids:
        standin.add_job(i)
    write_yaml(cwd / "videos.yaml", ids)
    result = run_cli("run", "videos.yaml", cwd=cwd, env={"TEST_AKOOL_KEY": "wrong-key-123"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "archiver: error: Akool rejected the credentials (code 1101: invalid authorization)")
    assert "Traceback" not in result.stderr
    assert standin.api_calls <= 4
    assert all_files(cwd / "archive") == []


@pytest.mark.parametrize(("manifest", "expected"), [
    ("videos:\n  - good-id\n  - ../etc\n",
     "videos.yaml:3: videos[1]: invalid video_model_id '../etc'"),
    ("videos: [unclosed\n", "videos.yaml:2: invalid YAML"),
    ("hello\n", "videos.yaml: expected a list of video_model_ids"),
])
def test_bad_manifest_exit_2_before_any_call(setup, manifest, expected):
    """An invalid manifest stops the run before any network call, naming the position."""
    standin, cwd = setup
    (cwd / "videos.yaml").write_text(manifest)
    result = run_cli("run", "videos.yaml", cwd=cwd, env=ENV)
    assert result.returncode == 2
    assert result.stderr.startswith(f"archiver: error: {expected}")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert standin.api_calls == 0


def test_bad_config_exit_2_names_key(setup):
    """A typo'd config key: exit 2, file and line and key in one line."""
    standin, cwd = setup
    (cwd / "archiver.yaml").write_text("api:\n  api_key: x\nconcurency:\n  polls: 3\n")
    write_yaml(cwd / "videos.yaml", [ID1])
    result = run_cli("run", "videos.yaml", cwd=cwd, env=ENV)
    assert result.returncode == 2
    assert result.stderr.strip() == "archiver: error: archiver.yaml:3: concurency: unknown key"
    assert standin.api_calls == 0


def test_missing_config_and_usage(tmp_path):
    """No config file, or no command at all: exit 2 with a message, no traceback."""
    write_yaml(tmp_path / "videos.yaml", [ID1])
    result = run_cli("run", "videos.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert "archiver.yaml: configuration file not found" in result.stderr
    assert run_cli(cwd=tmp_path).returncode == 2


def test_key_never_printed_even_in_debug(setup):
    """With --debug logging, neither stdout nor stderr nor the archive holds the key."""
    standin, cwd = setup
    standin.add_job(ID1, api_faults=[500, "html"], polls_until_done=2)
    standin.add_job(ID2, outcome="failed")
    write_yaml(cwd / "videos.yaml", [ID1, ID2, "unknown-id"])
    result = run_cli("run", "videos.yaml", "--debug", cwd=cwd, env=ENV)
    assert result.returncode == 1
    assert "DEBUG" in result.stderr or "WARNING" in result.stderr
    assert API_KEY not in result.stdout + result.stderr
    for path in all_files(cwd):
        if path.name != "archiver.yaml":
            assert API_KEY.encode() not in path.read_bytes(), path


def test_demo_runs_twice(tmp_path):
    """`archiver demo DIR` archives the sample jobs; the second run skips them all."""
    first = run_cli("demo", "out", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert summary(first.stdout)["archived"] == "5"
    records = list((tmp_path / "out").glob("*/archive.json"))
    assert len(records) == 5
    second = run_cli("demo", "out", cwd=tmp_path)
    assert second.returncode == 0
    assert summary(second.stdout)["already archived"] == "5"
