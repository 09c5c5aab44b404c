"""The deploy/ examples and the Dockerfile use the archiver exactly as it is defined:
every container's args parse with the real argument parser, --shard agrees with the
Job's completions, -c names the mounted ConfigMap, whose configuration is valid; what
the archiver writes is on a writable volume; the systemd units pass `systemd-analyze
verify` and are the README's; and what the deploy files rely on works in a real
process: `run --pending-ok`, and a read-only root stopping the run at once."""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from archiver.cli.parsing import build_parser
from archiver.config import Config, parse_config
from archiver.fleet.shard import parse_shard

from .conftest import API_KEY, ID1, ID2, config_dict, run_cli, summary, write_yaml
from .s3server import (  # noqa: F401 - fixtures: moto_endpoint, s3
    S3Fixture,
    aws_env,
    moto_endpoint_fixture,
    s3_fixture,
)

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"


def documents() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(DEPLOY.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def pod_specs() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(job spec, pod spec) of every Job and CronJob."""
    found = []
    for doc in documents():
        if doc["kind"] == "CronJob":
            job = doc["spec"]["jobTemplate"]["spec"]
        elif doc["kind"] == "Job":
            job = doc["spec"]
        else:
            continue
        found.append((job, job["template"]["spec"]))
    return found


def config_maps() -> dict[str, dict[str, str]]:
    return {d["metadata"]["name"]: d["data"] for d in documents() if d["kind"] == "ConfigMap"}


def test_there_is_a_cronjob_and_an_indexed_job():
    """The two shapes the README documents: one host, and N shards."""
    kinds = sorted((d["kind"], d["spec"].get("completionMode")) for d in documents()
                   if d["kind"] in ("Job", "CronJob"))
    assert kinds == [("CronJob", None), ("Job", "Indexed")]


def container_config(pod: dict[str, Any], container: dict[str, Any],
                     monkeypatch: pytest.MonkeyPatch) -> Config:
    """The configuration the container's -c names, from the ConfigMap mounted there."""
    args = build_parser().parse_args(container["args"])
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    config_dir, name = str(args.config.parent), args.config.name
    volume = next(v for v in pod["volumes"] if v["name"] == mounts[config_dir])
    text = config_maps()[volume["configMap"]["name"]][name]
    for variable in {e["name"] for e in container["env"]}:
        monkeypatch.setenv(variable, "sk-example-key-0000")
    return parse_config(text, source=f"ConfigMap {volume['configMap']['name']}")


@pytest.mark.parametrize(("job", "pod"), pod_specs())
def test_container_args_parse_and_match_the_job(job, pod, monkeypatch):
    """args parse with build_parser(); --shard auto/N fits completions; -c is mounted."""
    for container in pod["containers"]:
        args = build_parser().parse_args(container["args"])
        if job.get("completionMode") == "Indexed":
            for index in range(job["completions"]):
                shard = parse_shard(args.shard, {"JOB_COMPLETION_INDEX": str(index)})
                assert shard.count == job["completions"] == job["parallelism"]
        else:
            assert args.shard is None
        container_config(pod, container, monkeypatch)


def written_paths(args: argparse.Namespace, config: Config) -> list[PurePosixPath]:
    """Every path a run with *args* and *config* writes to (its temporary files too)."""
    paths = [p for p in (args.report, args.metrics_file) if p is not None and str(p) != "-"]
    if config.run.lock_file is not None:
        paths.append(config.run.lock_file)
    if config.storage.backend == "local":
        paths.append(config.storage.local.root)
    else:
        # Without spool_dir the spool goes to the system's temporary directory.
        paths.append(config.storage.s3.spool_dir or Path("/tmp/spool"))
    return [PurePosixPath(p) for p in paths]


@pytest.mark.parametrize(("job", "pod"), pod_specs())
def test_what_the_archiver_writes_is_on_a_writable_volume(job, pod, monkeypatch):
    """With readOnlyRootFilesystem, the report, the metrics, the spool, the lock and a
    local archive each lie under a mounted emptyDir or claim that is not read-only: on
    the root they would fail (the spool: every file over 64 MiB, before this test)."""
    volumes = {v["name"]: v for v in pod["volumes"]}
    for container in pod["containers"]:
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        writable = [PurePosixPath(m["mountPath"]) for m in container["volumeMounts"]
                    if not m.get("readOnly")
                    and {"emptyDir", "persistentVolumeClaim"} & set(volumes[m["name"]])]
        args = build_parser().parse_args(container["args"])
        config = container_config(pod, container, monkeypatch)
        assert config.storage.backend != "s3" or config.storage.s3.spool_dir is not None
        for path in written_paths(args, config):
            assert path.is_absolute(), path
            assert any(path.is_relative_to(mount) for mount in writable), \
                f"{path} is on the read-only root of {container['name']}"


def image_user() -> tuple[int, int]:
    """(uid, gid) the final stage's USER runs as, checked against the user it creates."""
    final = (ROOT / "Dockerfile").read_text().split("\nFROM ")[-1]
    final = "\n".join(line for line in final.splitlines() if not line.startswith("#"))
    user = next(line.split()[1] for line in final.splitlines() if line.startswith("USER "))
    uid, gid = (int(n) for n in user.split(":"))
    created_uid = re.search(r"useradd [^&]*--uid (\d+)", final)
    user_gid = re.search(r"useradd [^&]*--gid (\d+)", final)
    group_gid = re.search(r"groupadd [^&]*--gid (\d+)", final)
    assert created_uid and user_gid and group_gid, "the user and its group are created"
    assert (int(created_uid[1]), int(user_gid[1]), int(group_gid[1])) == (uid, gid, gid)
    assert "--user-group" not in final  # a group with the next free gid, not gid
    return uid, gid


@pytest.mark.parametrize(("job", "pod"), pod_specs())
def test_pods_run_as_the_images_user_and_group(job, pod):
    """runAsUser / runAsGroup are the uid and gid the image creates and runs as."""
    uid, gid = image_user()
    context = pod["securityContext"]
    assert (context["runAsUser"], context["runAsGroup"]) == (uid, gid)
    assert context["runAsNonRoot"] is True


def test_dockerfile_runs_the_console_script_as_a_user():
    """ENTRYPOINT is the console script pyproject defines; the final stage is not root."""
    text = (ROOT / "Dockerfile").read_text()
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    final = text.split("\nFROM ")[-1]
    assert f'ENTRYPOINT ["{next(iter(scripts))}"]' in final
    assert "-slim" in final.splitlines()[0] and " AS " not in final.splitlines()[0]
    user = next(line.split()[1] for line in final.splitlines() if line.startswith("USER "))
    assert user.split(":")[0] not in ("0", "root")
    assert "COPY --from=builder" in final and "pip wheel" not in final


# ----------------------------------------------------------- pending as a success

def test_pending_ok_exits_0_when_ids_are_only_pending(workdir, served):
    """--pending-ok (cronjob.yaml): 0 instead of 3; the report and metrics still say 3,
    and no last-success time is written for a run that left ids pending."""
    standin, _ = served
    standin.add_job(ID1, outcome="never")
    data = yaml.safe_load((workdir / "archiver.yaml").read_text())
    data["polling"]["deadline"] = 0.2
    write_yaml(workdir / "archiver.yaml", data)
    write_yaml(workdir / "videos.yaml", [ID1])
    env = {"TEST_AKOOL_KEY": API_KEY}

    plain = run_cli("run", "videos.yaml", cwd=workdir, env=env)
    assert plain.returncode == 3, plain.stderr
    result = run_cli("run", "videos.yaml", "--pending-ok", "--report", "report.json",
                     "--metrics-file", "archiver.prom", cwd=workdir, env=env)
    assert result.returncode == 0, result.stderr
    assert summary(result.stdout)["pending"] == "1"
    report = json.loads((workdir / "report.json").read_text())
    assert report["exit_status"] == 3
    assert [item["outcome"] for item in report["items"]] == ["pending"]
    metrics = (workdir / "archiver.prom").read_text()
    assert "archiver_exit_status 3" in metrics
    assert "archiver_last_success_timestamp_seconds" not in metrics


def test_pending_ok_keeps_failures_failures(workdir, served):
    """A failed id is still 1 with --pending-ok: only "run later" becomes a success."""
    standin, _ = served
    standin.add_job(ID1, outcome="never")
    standin.add_job(ID2, outcome="failed")
    data = yaml.safe_load((workdir / "archiver.yaml").read_text())
    data["polling"]["deadline"] = 0.2
    write_yaml(workdir / "archiver.yaml", data)
    write_yaml(workdir / "videos.yaml", [ID1, ID2])
    result = run_cli("run", "videos.yaml", "--pending-ok", cwd=workdir,
                     env={"TEST_AKOOL_KEY": API_KEY})
    assert result.returncode == 1, result.stderr


# ------------------------------------------------ a read-only root, for real

def _can_unshare_mounts() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount --bind / /mnt"],
                           capture_output=True, check=False)
    return probe.returncode == 0


#: Runs "$@" as in a container with readOnlyRootFilesystem: the temporary directories and
#: the working directory read-only (in a private mount namespace, so even root cannot
#: write there); with $SPOOL set, a writable tmpfs there, as the Job's emptyDir.
READ_ONLY_ROOT = """
for d in /tmp /var/tmp /usr/tmp "$PWD"; do
  if [ -d "$d" ]; then mount --bind "$d" "$d" && mount -o remount,bind,ro "$d" || exit 99; fi
done
if [ -n "$SPOOL" ]; then mount -t tmpfs -o size=64m tmpfs "$SPOOL" || exit 99; fi
exec "$@"
"""


@pytest.mark.skipif(not _can_unshare_mounts(),
                    reason="needs `unshare -m` and mount (root or CAP_SYS_ADMIN)")
@pytest.mark.parametrize("spool", [False, True], ids=["no-spool-dir", "mounted-spool-dir"])
def test_read_only_root(spool, tmp_path, served, s3: S3Fixture):
    """No writable temporary directory and no storage.s3.spool_dir: exit 2 with one line
    naming the key, before any API call - not a failure of every segmented file hours
    later. With spool_dir on a writable mount (the Job's emptyDir) the same run works."""
    standin, url = served
    standin.add_job(ID1, video_size=3 * 1024 * 1024)
    data = config_dict(url, tmp_path / "unused",
                       downloads={"segment_threshold": 1024 * 1024, "segments": 4})
    data["api"]["api_key"] = "${TEST_AKOOL_KEY}"
    data["storage"] = {"backend": "s3", "s3": {
        "bucket": s3.bucket, "prefix": "akool/", "endpoint_url": s3.endpoint,
        "region": "us-east-1", "addressing_style": "path"}}
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    if spool:
        data["storage"]["s3"]["spool_dir"] = str(spool_dir)
    write_yaml(tmp_path / "archiver.yaml", data)
    write_yaml(tmp_path / "videos.yaml", [ID1])
    env = {name: value for name, value in os.environ.items()
           if name not in ("TMPDIR", "TEMP", "TMP")}
    env.update(TEST_AKOOL_KEY=API_KEY, SPOOL=str(spool_dir) if spool else "",
               **aws_env(tmp_path))
    result = subprocess.run(
        ["unshare", "-m", "sh", "-c", READ_ONLY_ROOT, "sh",
         sys.executable, "-m", "archiver", "run", "videos.yaml", "-c", "archiver.yaml"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 99, result.stderr
    if spool:
        assert result.returncode == 0, result.stderr
        assert s3.read(f"akool/{ID1}/archive.json")
        return
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.splitlines() == [
        "archiver: error: storage.s3.spool_dir is not set and no temporary directory is "
        "writable ($TMPDIR, /tmp, /var/tmp, the working directory): set it to a writable "
        "folder"]
    assert standin.api_calls == 0


# ------------------------------------------------------------ systemd and the docs

README = ROOT / "README.md"
DOCS = ROOT / "docs"


def docs_text() -> str:
    """The README and every page of the documentation site (docs/), one after the other:
    the snippets below may live on any of them (the units on operations.md and
    webhooks.md, the cron lines and the backup script on operations.md)."""
    pages = [README, *sorted(DOCS.glob("*.md"))]
    return "\n".join(page.read_text() for page in pages)

UNITS = sorted(p for p in (DEPLOY / "systemd").iterdir()
               if p.suffix in (".service", ".timer"))


def fenced_blocks(text: str, language: str) -> list[str]:
    """The contents of the ```LANGUAGE blocks of *text*."""
    return re.findall(rf"^```{language}\n(.*?)^```$", text, flags=re.M | re.S)


def headings(text: str) -> set[str]:
    """The headings of *text* (not the # comments inside code blocks)."""
    found, fenced = set(), False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (match := re.match(r"#{1,6} (.+)", line)):
            found.add(match[1].strip())
    return found


def exec_start(unit: str) -> list[str]:
    """ExecStart's command line, continuation lines joined."""
    joined = unit.replace("\\\n", " ")
    return shlex.split(next(line for line in joined.splitlines()
                            if line.startswith("ExecStart="))[len("ExecStart="):])


def test_there_are_the_units_the_readme_describes():
    assert [u.name for u in UNITS] == [
        "akool-archiver-serve.service", "akool-archiver.service", "akool-archiver.timer"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed")
def test_units_pass_systemd_analyze_verify(tmp_path):
    """No warning at all: systemd ignores a value it cannot parse (a `# comment` after
    TimeoutStopSec=60 made it "Failed to parse time value") and still exits 0. The
    ExecStart binary must exist for verify: the copies point at this venv's archiver."""
    archiver = Path(sys.executable).with_name("archiver")
    assert archiver.exists(), "pip install -e . puts the console script beside python"
    for unit in UNITS:
        text = unit.read_text().replace("/usr/local/bin/archiver", str(archiver))
        (tmp_path / unit.name).write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", "--generators=no",
         *(str(tmp_path / u.name) for u in UNITS)],
        capture_output=True, text=True, timeout=60, check=False)
    # Complaints about the machine's own units (a container's) are not ours.
    ours = [line for line in (result.stdout + result.stderr).splitlines()
            if "akool-archiver" in line or str(tmp_path) in line]
    assert result.returncode == 0 and ours == [], result.stdout + result.stderr


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_the_readme_shows_each_unit_as_it_is(unit):
    """The docs and deploy/systemd/ cannot drift: each unit is one of their ```ini blocks."""
    assert unit.read_text() in fenced_blocks(docs_text(), "ini")


@pytest.mark.parametrize("unit", [u for u in UNITS if u.suffix == ".service"],
                         ids=lambda u: u.name)
def test_units_run_the_archiver_with_arguments_it_accepts(unit):
    argv = exec_start(unit.read_text())
    assert argv[0] == "/usr/local/bin/archiver"
    build_parser().parse_args(argv[1:])
    # systemd has no comments after a value: "60  # ..." is the value, and
    # EnvironmentFile=/etc/x.env  # ... a file of that name (verify misses that one).
    assert not re.search(r"^[A-Za-z]+=.*[ \t]#", unit.read_text(), flags=re.M)


def test_readme_command_snippets_parse():
    """The cron lines and the docker run of the docs use arguments the archiver
    accepts; docker run runs as the caller, who can write the mounted folder."""
    text = docs_text()
    cron = [line for block in fenced_blocks(text, "cron") for line in block.splitlines()
            if line and not line.startswith("#")]
    docker = [" ".join(block.replace("\\\n", " ").split()) for block in
              fenced_blocks(text, "sh") if "docker run" in block]
    commands = [shlex.split(line)[shlex.split(line).index("archiver") + 1:]
                for line in cron]
    for line in docker:
        words = shlex.split(line.split("docker run", 1)[1])
        assert "--user" in words and words[words.index("--user") + 1] == "$(id -u):$(id -g)"
        commands.append(words[words.index("akool-archiver") + 1:])
    assert len(commands) >= 3
    for argv in commands:
        build_parser().parse_args(argv)
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert '--user "$(id -u):$(id -g)" -v "$PWD:/work" -w /work' in dockerfile


def test_readme_references_in_deploy_name_existing_sections():
    """Every README mention in the comments of deploy/ and the Dockerfile names a
    heading, as
    README ("Heading"), and that heading exists in the README or a page of docs/."""
    existing = headings(docs_text())
    files = [*sorted(p for p in DEPLOY.rglob("*") if p.is_file()), ROOT / "Dockerfile"]
    mentions = 0
    for path in files:
        for line in path.read_text().splitlines():
            if "README" not in line or not line.lstrip().startswith("#"):
                continue  # COPY README.md is not a reference
            names = re.findall(r'README \("([^"]+)"\)', line)
            assert names, f"{path.name}: a README mention without a section: {line!r}"
            for name in names:
                assert name in existing, f"{path.name}: no README section {name!r}"
                mentions += 1
    assert mentions


@pytest.mark.parametrize(("outcome", "says"), [
    ("success", "archive complete and intact"),
    ("never", "some jobs still processing at Akool; the next run will get them"),
    ("failed", f"{ID1}: Akool job failed: face not detected in the source image"),
])
def test_readme_backup_script_runs_as_written(outcome, says, workdir, served):
    """The documented backup script (docs/operations.md), run by sh with the archiver on
    PATH, takes the branch of each exit status it is written for (0, 3, and 1 with its jq
    over the report)."""
    if shutil.which("jq") is None and outcome == "failed":
        pytest.skip("jq is not installed")
    script = next(b for b in fenced_blocks(docs_text(), "sh")
                  if b.startswith("#!/bin/sh"))
    (workdir / "backup.sh").write_text(script)
    standin, _ = served
    standin.add_job(ID1, outcome=outcome)
    data = yaml.safe_load((workdir / "archiver.yaml").read_text())
    data["polling"]["deadline"] = 0.2
    write_yaml(workdir / "archiver.yaml", data)
    write_yaml(workdir / "videos.yaml", [ID1])
    env = {**os.environ, "TEST_AKOOL_KEY": API_KEY,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(["sh", "backup.sh"], cwd=workdir, env=env, capture_output=True,
                            text=True, timeout=60, check=False)
    assert says in result.stdout + result.stderr, result.stdout + result.stderr
    assert result.returncode == (1 if outcome == "failed" else 0)
