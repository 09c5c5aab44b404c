"""Fixtures: a real Akool stand-in on loopback and configurations that point at it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from archiver.config import Config
from archiver.testing.standin import AkoolStandIn

#: A key distinctive enough to grep for in everything a run writes.
API_KEY = "sk-test-9f3c1e7a5b2d4c6e8f0a1b3c5d7e9f10"

# 24-hex ids like Akool's.
ID1 = "64dd92c1f0b6684651e90e09"
ID2 = "64dd92c1f0b6684651e90e0a"
ID3 = "64dd92c1f0b6684651e90e0b"


@pytest.fixture
def standin() -> AkoolStandIn:
    return AkoolStandIn(api_key=API_KEY, token="bearer-token-for-tests-31337")


@pytest.fixture
async def base_url(standin: AkoolStandIn) -> AsyncIterator[str]:
    async with standin.serve() as url:
        yield url


def config_dict(base_url: str, root: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """A configuration with fast polling and retries, as plain data."""
    data: dict[str, Any] = {
        "api": {"base_url": base_url, "api_key": API_KEY,
                "retries": {"attempts": 4, "wait_initial": 0.01, "wait_max": 0.05}},
        "polling": {"interval": 0.01, "max_interval": 0.05, "deadline": 10},
        "concurrency": {"polls": 4, "downloads": 4},
        # The stand-in serves on 127.0.0.1, which downloads refuse by default.
        "downloads": {"chunk_size": 65536, "read_timeout": 5, "allow_private": True,
                      "retries": {"attempts": 3, "wait_initial": 0.01, "wait_max": 0.05}},
        "storage": {"backend": "local", "local": {"root": str(root)}},
    }
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return data


@pytest.fixture
def make_config(base_url: str, tmp_path: Path) -> Callable[..., Config]:
    def make(**sections: dict[str, Any]) -> Config:
        return Config.model_validate(config_dict(base_url, tmp_path / "archive", **sections))

    return make


#: The environment a CLI run gets: the key comes from it, as in production.
CLI_ENV = {"TEST_AKOOL_KEY": API_KEY}


@pytest.fixture
def served() -> Iterator[tuple[AkoolStandIn, str]]:
    """A stand-in serving from its own thread, for runs of the real `archiver` process."""
    standin = AkoolStandIn(api_key=API_KEY)
    with standin.run_in_thread() as url:
        yield standin, url


@pytest.fixture
def workdir(tmp_path: Path, served: tuple[AkoolStandIn, str]) -> Path:
    """A folder with ./archiver.yaml (key from $TEST_AKOOL_KEY) and ./archive as root."""
    _, url = served
    data = config_dict(url, tmp_path / "archive", run={"shutdown_grace": 0.5})
    data["api"]["api_key"] = "${TEST_AKOOL_KEY}"
    write_yaml(tmp_path / "archiver.yaml", data)
    return tmp_path


def write_yaml(path: Path, data: object) -> Path:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``python -m archiver`` as a real process, as cron would."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "archiver", *args], cwd=cwd, env=full_env,
        capture_output=True, text=True, timeout=timeout, check=False,
    )


def all_files(root: Path) -> list[Path]:
    """Every file under *root* except the run lock (the one file a run may always write)."""
    if not root.exists():
        return []
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != ".archiver.lock")


def summary(stdout: str) -> dict[str, str]:
    """The end-of-run summary table as {row name: value}."""
    rows = {}
    for line in stdout.splitlines():
        match = re.match(r"^  ([a-z][a-z ]+?)\s{2,}(\S+)$", line)
        if match:
            rows[match.group(1)] = match.group(2)
    return rows
