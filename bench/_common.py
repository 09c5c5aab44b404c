"""Shared helpers for the benchmark scripts: servers on loopback, timing, peak RSS."""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Measure:
    wall: float
    max_rss_mib: float
    returncode: int


def measure(cmd: Sequence[str], **kwargs: object) -> Measure:
    """Run *cmd*, return wall time and the child's own peak RSS (from wait4)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, **kwargs)  # type: ignore[call-overload]
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Measure(wall, usage.ru_maxrss / 1024, proc.returncode)


class StandIn:
    """The Akool stand-in in its own process, so its memory is not counted as ours."""

    def __init__(self, workdir: Path, *, jobs: int, video_size: int, api_key: str,
                 files: str = "video", extra: Sequence[str] = ()) -> None:
        self.manifest = workdir / "manifest.yaml"
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "archiver.testing", "--port", str(self.port),
             "--api-key", api_key, "--jobs", str(jobs), "--video-size", str(video_size),
             "--files", files, "--ids-file", str(self.manifest), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self.proc.stdout is not None
        self.proc.stdout.readline()  # the base URL: the server is up
        deadline = time.monotonic() + 10
        while not self.manifest.exists() and time.monotonic() < deadline:
            time.sleep(0.05)

    def ids(self) -> list[str]:
        return list(yaml.safe_load(self.manifest.read_text())["videos"])

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def write_config(path: Path, base_url: str, api_key: str, root: Path, **extra: object) -> Path:
    data = {
        "api": {"base_url": base_url, "api_key": api_key},
        "polling": {"interval": 0.05, "max_interval": 0.2, "deadline": 600},
        "storage": {"backend": "local", "local": {"root": str(root)}},
        **extra,
    }
    path.write_text(yaml.safe_dump(data))
    return path


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, Python {sys.version.split()[0]}"
