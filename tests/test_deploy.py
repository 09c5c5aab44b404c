"""The deploy/ examples and the Dockerfile use the archiver exactly as it is defined:
every container's args parse with the real argument parser, --shard agrees with the
Job's completions, -c names the mounted ConfigMap, whose configuration is valid."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from archiver.cli.parsing import build_parser
from archiver.config import parse_config
from archiver.shard import parse_shard

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
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        config_dir, name = str(args.config.parent), args.config.name
        volume = next(v for v in pod["volumes"] if v["name"] == mounts[config_dir])
        text = config_maps()[volume["configMap"]["name"]][name]
        env = {e["name"] for e in container["env"]}
        for variable in env:
            monkeypatch.setenv(variable, "sk-example-key-0000")
        parse_config(text, source=f"ConfigMap {volume['configMap']['name']}")


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
