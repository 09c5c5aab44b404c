"""Shared helpers for the benchmark scripts: servers on loopback, timing, peak RSS."""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
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
    #: The child's own user + system CPU seconds (from wait4).
    cpu: float = 0.0
    #: CPU seconds the Akool stand-in used meanwhile (where the script measures it).
    server_cpu: float = 0.0


def measure(cmd: Sequence[str], **kwargs: object) -> Measure:
    """Run *cmd*, return wall time and the child's own peak RSS and CPU (from wait4).

    The child runs in ``/`` unless told otherwise, so that ``python -m archiver`` imports
    the installed package (or the one on ``PYTHONPATH``), never a checkout that happens
    to be the current directory.
    """
    kwargs.setdefault("cwd", "/")
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, **kwargs)  # type: ignore[call-overload]
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Measure(wall, usage.ru_maxrss / 1024, proc.returncode,
                   usage.ru_utime + usage.ru_stime)


def standin_env() -> dict[str, str]:
    """The environment of a stand-in process: with ``bench/compare.py --same-standin``,
    this checkout's stand-in for both versions, so that only the archiver differs."""
    env = dict(os.environ)
    if os.environ.get("ARCHIVER_BENCH_STANDIN_PATH"):
        env["PYTHONPATH"] = os.environ["ARCHIVER_BENCH_STANDIN_PATH"]
    return env


class StandIn:
    """The Akool stand-in in its own process, so its memory is not counted as ours."""

    def __init__(self, workdir: Path, *, jobs: int, video_size: int, api_key: str,
                 files: str = "video", extra: Sequence[str] = ()) -> None:
        self.manifest = workdir / "manifest.yaml"
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        env = standin_env()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "archiver.testing", "--port", str(self.port),
             "--api-key", api_key, "--jobs", str(jobs), "--video-size", str(video_size),
             "--files", files, "--ids-file", str(self.manifest), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
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
        "downloads": {"allow_private": True},  # the stand-in is on loopback
        "storage": {"backend": "local", "local": {"root": str(root)}},
        **extra,
    }
    path.write_text(yaml.safe_dump(data))
    return path


def report_totals(path: Path) -> dict[str, object]:
    """The ``totals`` of a run report, without loading its items (one per line, last).

    A benchmark's own memory must stay small: a child started by ``subprocess`` (vfork,
    then exec) starts with its parent's resident set as its peak, so wait4's peak RSS of
    every later child was at least what ``json.loads`` of a 100,000-item report had left
    in the parent (~180 MiB).
    """
    head = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line == '  "items": [\n':
                head.append('  "items": []\n}')
                break
            head.append(line)
    return json.loads("".join(head))["totals"]  # type: ignore[no-any-return]


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
    ram = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        ram = f", {kib / 2**20:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return (f"{os.cpu_count()} cores, {cpu}{ram}, {platform.system()} {platform.release()}, "
            f"Python {sys.version.split()[0]}")


# --------------------------------------------------------------------------------------
# Used by the workload scripts (bench_bulk, bench_large_file, bench_polling,
# bench_small_items).

BENCH_DIR = Path(__file__).resolve().parent
MiB = 1024 * 1024


class BenchServer:
    """``bench/_server.py`` in its own process: the stand-in with reset/stats endpoints.

    With ``export_dir`` the result files are also written there (``files/<id>/<name>``)
    for a static file server, whose URL ``public_base_url`` the API then hands out.
    """

    def __init__(self, workdir: Path, *, jobs: int, api_key: str, video_size: int = 64 * 1024,
                 no_caption_size: int | None = None, files: str = "video",
                 polls_until_done: int = 1, outcome: str = "success", latency: float = 0.0,
                 export_dir: Path | None = None, public_base_url: str | None = None,
                 file_rate: float | None = None) -> None:
        self.manifest = workdir / "manifest.yaml"
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, str(BENCH_DIR / "_server.py"), "--port", str(self.port),
               "--api-key", api_key, "--jobs", str(jobs), "--video-size", str(video_size),
               "--files", files, "--polls-until-done", str(polls_until_done),
               "--outcome", outcome, "--latency", str(latency),
               "--ids-file", str(self.manifest)]
        if no_caption_size is not None:
            cmd += ["--no-caption-size", str(no_caption_size)]
        if export_dir is not None:
            cmd += ["--export-dir", str(export_dir)]
        if public_base_url is not None:
            cmd += ["--public-base-url", public_base_url]
        if file_rate is not None:
            cmd += ["--file-rate", str(file_rate)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True,
                                     env=standin_env())
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()  # the base URL: the server is up
        if line != self.base_url:
            self.proc.kill()
            raise RuntimeError(f"bench server did not start (said {line!r})")

    def ids(self) -> list[str]:
        return [str(i) for i in yaml.safe_load(self.manifest.read_text())["videos"]]

    def _call(self, method: str, path: str) -> dict[str, int]:
        req = urllib.request.Request(self.base_url + path, method=method)
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())

    def reset(self) -> None:
        """Every job back to "never polled"; counters zeroed."""
        self._call("POST", "/_bench/reset")

    def stats(self) -> dict[str, int]:
        """``api_calls``, ``file_requests``, ``file_bytes`` since the last reset."""
        return self._call("GET", "/_bench/stats")

    def cpu(self) -> float:
        """CPU seconds (user + system) the server process has used so far."""
        return proc_cpu(self.proc.pid)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a live process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Nginx:
    """nginx (Debian package ``nginx``) serving *root* on a loopback port, one worker."""

    def __init__(self, workdir: Path, root: Path, *, port: int | None = None,
                 limit_rate: str | None = None) -> None:
        """*limit_rate* (nginx units, e.g. ``50m``) caps each connection, as CDNs do."""
        exe = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(exe).exists():
            raise RuntimeError("nginx not found: apt-get install -y nginx "
                               "(or pass --file-server standin)")
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        rate = f"limit_rate {limit_rate};" if limit_rate else ""
        prefix = workdir / "nginx"
        (prefix / "tmp").mkdir(parents=True, exist_ok=True)
        conf = prefix / "nginx.conf"
        user = "user root;" if os.geteuid() == 0 else ""
        conf.write_text(f"""
{user}
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    types {{ video/mp4 mp4; application/x-subrip srt; }}
    default_type application/octet-stream;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    server {{
        listen 127.0.0.1:{self.port};
        root {root};
        {rate}
    }}
}}
""")
        self.proc = subprocess.Popen([exe, "-p", str(prefix), "-c", str(conf)],
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"nginx did not start; see {prefix}/error.log") from None
                time.sleep(0.05)

    def close(self) -> None:
        self.proc.terminate()  # SIGTERM: fast shutdown
        self.proc.wait(10)


def archiver_cmd(manifest: Path, config: Path, report: Path | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "archiver", "run", str(manifest), "-c", str(config), "-q"]
    if report is not None:
        cmd += ["--report", str(report)]
    return cmd


def settle() -> None:
    """Before each measured command: flush dirty pages, so no side pays for the other's."""
    os.sync()


def rows_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table (it reads fine in a terminal too)."""
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + " |"

    out = [line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in cells[1:]]
    # Blank lines around it: in Markdown, a table must stand apart from the text.
    return "\n" + "\n".join(out) + "\n"


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"
