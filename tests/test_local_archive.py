"""From the demo to real use (issue 20, points 3 and 4), with real processes: commands
that do not call Akool need no key, a local archive needs no configuration, and the
inputs that tripped people up are read as written or refused with the cause."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from archiver.manifest import load_manifest

from .conftest import API_KEY, CLI_ENV, ID1, ID2, ID3, run_cli, write_yaml

ENV = CLI_ENV


def _no_akool_env() -> dict[str, str]:
    """The environment without any Akool variable: nothing to find a key in."""
    return {k: v for k, v in os.environ.items() if "AKOOL" not in k}


def _run_bare(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "archiver", *args], cwd=cwd,
                          env=_no_akool_env(), input=stdin, capture_output=True, text=True,
                          timeout=60, check=False)


# --------------------------------------------------------- point 3: the demo

def test_the_demo_archive_is_checked_without_configuration(tmp_path):
    """After `archiver demo`: verify and status on its folder, no config, no key; the
    demo's manifest is beside the items and `status` shows the failed job absent."""
    demo = _run_bare("demo", cwd=tmp_path)
    assert demo.returncode == 0, demo.stderr
    assert "  archiver verify demo-archive\n" in demo.stdout
    assert "  archiver status demo-archive/manifest.yaml --root demo-archive\n" in demo.stdout
    assert not (tmp_path / "archiver.yaml").exists()

    manifest = load_manifest(tmp_path / "demo-archive" / "manifest.yaml")
    archived = sorted(p.parent.name for p in (tmp_path / "demo-archive").glob("*/archive.json"))
    assert len(manifest) == 6 and set(archived) < {i.id for i in manifest}
    [failed] = [i.id for i in manifest if i.id not in archived]

    verify = _run_bare("verify", "demo-archive", cwd=tmp_path)
    assert verify.returncode == 0, verify.stderr
    # One item of each family: 4 video files, 3 images, 1 audio, 1 face swap, 3 of
    # image-to-video.
    assert verify.stdout.startswith("archiver verify: 5 item(s), 12 file(s), ")
    assert {i.family for i in manifest} == {"video", "image", "audio", "faceswap",
                                            "image2video"}
    assert verify.stdout.endswith(" checked: OK\n")

    status = _run_bare("status", "demo-archive/manifest.yaml", "--root", "demo-archive",
                       cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    table = {line.split()[0]: line.split()[1] for line in status.stdout.splitlines()}
    assert table == {**dict.fromkeys(archived, "archived"), failed: "absent"}
    assert status.stderr == "archiver status: 6 id(s): 5 archived, 0 partial, 1 absent\n"


def test_status_without_a_manifest_lists_every_archived_id(served, workdir):
    """`status` with no MANIFEST: every id the archive holds (a shard's, with --shard)."""
    standin, cwd = served[0], workdir
    for job in (ID1, ID2, ID3):
        standin.add_job(job)
    write_yaml(cwd / "videos.yaml", [ID1, ID2, ID3])
    assert run_cli("run", "videos.yaml", cwd=cwd, env=ENV).returncode == 0
    every = run_cli("status", cwd=cwd, env=ENV)
    assert every.returncode == 0, every.stderr
    assert every.stdout == "".join(f"{i}  archived\n" for i in sorted((ID1, ID2, ID3)))
    shards = [run_cli("status", "archive", "--shard", f"{k}/2", cwd=cwd).stdout
              for k in (0, 1)]
    assert sorted("".join(shards).splitlines()) == every.stdout.splitlines()


def test_root_mistakes_are_named(tmp_path):
    """A root that is not a folder, or two of them: one line, exit 2."""
    (tmp_path / "archive").mkdir()
    missing = _run_bare("verify", "--root", "nope", cwd=tmp_path)
    assert missing.returncode == 2
    assert missing.stderr.startswith("archiver: error: --root nope: no such folder")
    twice = _run_bare("status", "archive", "--root", "archive", cwd=tmp_path)
    assert twice.returncode == 2 and "give the archive root once" in twice.stderr
    none = _run_bare("verify", cwd=tmp_path)
    assert none.returncode == 2
    assert none.stderr == ("archiver: error: archiver.yaml: configuration file not found "
                           "(use -c PATH, or give a local archive root: DIR or --root DIR)\n")


# ------------------------------------------------- point 3: credentials

def _config_without_variables(cwd: Path) -> None:
    """archiver.yaml whose key and webhook secrets name variables nobody set."""
    data = yaml.safe_load((cwd / "archiver.yaml").read_text())
    data["api"]["api_key"] = "${UNSET_AKOOL_KEY}"
    data["webhook"] = {"client_id": "${UNSET_CLIENT_ID}", "client_secret": "${UNSET_SECRET}"}
    write_yaml(cwd / "archiver.yaml", data)


def test_commands_that_do_not_call_akool_need_no_key(served, workdir):
    """verify, status and gc run with a key (and webhook secrets) whose variables are
    unset; run and status --remote say which command needs which variable, and call
    nothing."""
    standin, cwd = served[0], workdir
    standin.add_job(ID1)
    write_yaml(cwd / "videos.yaml", [ID1])
    assert run_cli("run", "videos.yaml", cwd=cwd, env=ENV).returncode == 0
    _config_without_variables(cwd)
    calls = standin.api_calls

    for args in (["verify"], ["status", "videos.yaml"], ["gc", "--dry-run"]):
        result = _run_bare(*args, cwd=cwd)
        assert result.returncode == 0, (args, result.stderr)
    run = _run_bare("run", "videos.yaml", cwd=cwd)
    assert run.returncode == 2
    assert run.stderr == ("archiver: error: archiver.yaml:2: api.api_key: environment variable "
                          "UNSET_AKOOL_KEY is not set (archiver run needs it)\n")
    remote = _run_bare("status", "--remote", "videos.yaml", cwd=cwd)
    assert remote.returncode == 2
    assert "UNSET_AKOOL_KEY is not set (archiver status needs it)" in remote.stderr
    assert standin.api_calls == calls


def test_run_needs_no_webhook_secret_and_says_when_it_lacks_a_key(served, workdir):
    """`run` ignores serve's webhook section; with no key written at all, the message
    names the command and the key to set."""
    standin, cwd = served[0], workdir
    standin.add_job(ID1)
    write_yaml(cwd / "videos.yaml", [ID1])
    data = yaml.safe_load((cwd / "archiver.yaml").read_text())
    data["webhook"] = {"client_id": "${UNSET_CLIENT_ID}", "client_secret": "${UNSET_SECRET}"}
    write_yaml(cwd / "archiver.yaml", data)
    assert run_cli("run", "videos.yaml", cwd=cwd, env=ENV).returncode == 0

    del data["api"]["api_key"]
    write_yaml(cwd / "archiver.yaml", data)
    calls = standin.api_calls
    result = _run_bare("run", "videos.yaml", cwd=cwd)
    assert result.returncode == 2
    assert result.stderr == (
        "archiver: error: archiver.yaml: archiver run calls Akool's API and needs its key: "
        "set api.api_key (e.g. api_key: ${AKOOL_API_KEY}, with the key in the environment) "
        "or api.token\n")
    serve = _run_bare("serve", cwd=cwd)
    assert serve.returncode == 2 and "archiver.yaml:" in serve.stderr
    assert standin.api_calls == calls


def test_configuration_from_stdin(served, workdir):
    """`-c -` reads the configuration from standard input; with MANIFEST - too, refused."""
    standin, cwd = served[0], workdir
    standin.add_job(ID1)
    write_yaml(cwd / "videos.yaml", [ID1])
    text = (cwd / "archiver.yaml").read_text().replace("${TEST_AKOOL_KEY}", API_KEY)
    (cwd / "archiver.yaml").unlink()
    result = _run_bare("run", "-c", "-", "videos.yaml", cwd=cwd, stdin=text)
    assert result.returncode == 0, result.stderr
    assert (cwd / "archive" / ID1 / "archive.json").exists()
    both = _run_bare("run", "-c", "-", "-", cwd=cwd, stdin=text)
    assert both.returncode == 2 and "both want standard input" in both.stderr


# --------------------------------------------------- point 4: inputs as written

def test_an_all_digit_id_is_archived_under_its_own_name(served, workdir):
    """An unquoted 000...0 id is archived as that id, not refused as the number 0."""
    standin, cwd = served[0], workdir
    zeros = "000000000000000000000000"
    standin.add_job(zeros)
    standin.add_job(ID1)
    (cwd / "videos.yaml").write_text(f"videos:\n  - {zeros}\n  - id: {ID1}\n    label: 007\n")
    result = run_cli("run", "videos.yaml", "--report", "r.json", cwd=cwd, env=ENV)
    assert result.returncode == 0, result.stderr
    assert json.loads((cwd / "archive" / zeros / "archive.json").read_text())["id"] == zeros
    labels = {i["id"]: i["label"] for i in json.loads((cwd / "r.json").read_text())["items"]}
    assert labels == {zeros: None, ID1: "007"}


def test_an_unclosed_reference_is_named_not_sent(served, workdir):
    """`${TEST_AKOOL_KEY` (no brace) stops the run naming the fix: no "plain text key"
    warning about it, no call to Akool with the literal text as the key."""
    standin, cwd = served[0], workdir
    standin.add_job(ID1)
    write_yaml(cwd / "videos.yaml", [ID1])
    path = cwd / "archiver.yaml"
    path.write_text(path.read_text().replace("${TEST_AKOOL_KEY}", "${TEST_AKOOL_KEY"))
    os.chmod(path, 0o644)  # readable by others: the plain-text-key check looks at it
    result = run_cli("run", "videos.yaml", cwd=cwd, env=ENV)
    assert result.returncode == 2
    assert result.stderr == (
        "archiver: error: archiver.yaml:2: api.api_key: ${TEST_AKOOL_KEY has no closing '}' "
        "and would be taken literally: write ${TEST_AKOOL_KEY}\n")
    assert standin.api_calls == 0


def test_a_shell_style_reference_is_named_not_sent(served, workdir):
    """`$TEST_AKOOL_KEY` (no braces) stops the run with the fix, instead of Akool
    rejecting the literal text as a key."""
    standin, cwd = served[0], workdir
    standin.add_job(ID1)
    write_yaml(cwd / "videos.yaml", [ID1])
    path = cwd / "archiver.yaml"
    path.write_text(path.read_text().replace("${TEST_AKOOL_KEY}", "$TEST_AKOOL_KEY"))
    result = run_cli("run", "videos.yaml", cwd=cwd, env=ENV)
    assert result.returncode == 2
    assert result.stderr == (
        "archiver: error: archiver.yaml:2: api.api_key: $TEST_AKOOL_KEY would be taken "
        "literally (only ${TEST_AKOOL_KEY}, with braces, is replaced): write "
        "${TEST_AKOOL_KEY}\n")
    assert standin.api_calls == 0
