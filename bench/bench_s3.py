"""Archiving to S3 against a plain boto3 ``upload_file`` of the same bytes, same run.

    python bench/bench_s3.py [--server moto|seaweedfs] [--jobs 8] [--size-mib 64]
                             [--rounds 5] [--parts-in-flight N]

Everything runs on loopback, in separate processes: the S3 server (moto's, pure Python,
or SeaweedFS's ``weed server``, a real store in Go started as the tests start it), the
Akool stand-in
(serving JOBS videos of SIZE), and each measured command. Per round, alternating which
goes first:

- ``archiver run`` to S3 with default settings (8 downloads, 8 MiB parts; only
  ``--parts-in-flight`` overrides one), i.e. poll, download and stream into S3;
- a process that uploads the same bytes, already on local disk, with boto3's
  ``upload_file`` (default TransferConfig), 8 files at a time as the archiver does;
- ``archiver run`` to local disk, for reference.

Each gets a fresh bucket (or folder). Wall time, the process's own peak RSS and CPU
(wait4) and the CPU the S3 server and the stand-in used meanwhile are measured; the
medians and the ratio archiver/upload_file (per round too) are printed. Targets: the
ratio <= 1.2 (the archiver's time includes the download) and peak RSS <= 200 MiB.
See bench/README.md for results.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import yaml
from botocore.config import Config as BotoConfig

sys.path.insert(0, str(Path(__file__).parent))
from _common import StandIn, free_port, machine, median

# SeaweedFS is started exactly as the tests start it (ports, volumes, teardown).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.s3server import aws_env, seaweedfs_server

KEY = "bench-key-not-secret"
MiB = 1024 * 1024
#: Dummy credentials, no host configuration (the tests'; both servers accept any).
AWS_ENV = aws_env()

# The comparison: boto3's managed upload of local files, default TransferConfig, as many
# files at once as the archiver downloads. Run as its own process, like the archiver.
UPLOADER = r"""
import sys
from concurrent.futures import ThreadPoolExecutor
import boto3
from botocore.config import Config
endpoint, bucket, workers, *paths = sys.argv[1:]
client = boto3.session.Session().client(
    "s3", endpoint_url=endpoint, config=Config(s3={"addressing_style": "path"}))
def upload(path):
    client.upload_file(path, bucket, "upload/" + path.rsplit("/", 1)[-1])
with ThreadPoolExecutor(int(workers)) as pool:
    list(pool.map(upload, paths))
"""


@dataclass
class Measure:
    """One measured process: wall time, its own peak RSS and CPU, and the servers' CPU."""

    wall: float
    max_rss_mib: float
    cpu: float
    #: CPU seconds moto's server and the stand-in spent meanwhile (Linux only, else 0).
    servers_cpu: float


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a running process (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(cmd: list[str], servers: list[int]) -> Measure:
    """Run *cmd*; its wall time, peak RSS and CPU (wait4), and the servers' CPU meanwhile."""
    before = sum(cpu_seconds(pid) for pid in servers)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{cmd[:4]} failed with exit status {code}")
    servers_cpu = sum(cpu_seconds(pid) for pid in servers) - before
    return Measure(wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime, servers_cpu)


@dataclass
class Server:
    url: str
    pid: int


@contextlib.contextmanager
def moto(log: Path) -> Iterator[Server]:
    """moto_server on a free loopback port (S3's real 5 MiB part minimum)."""
    port = free_port()
    script = Path(sys.executable).parent / "moto_server"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "moto.server"]
    with open(log, "ab") as out:
        proc = subprocess.Popen([*cmd, "-H", "127.0.0.1", "-p", str(port)], stdout=out,
                                stderr=subprocess.STDOUT,
                                env={**os.environ, "MOTO_RECORDER_FILEPATH": os.devnull})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/moto-api/data.json", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.05)
        yield Server(url, proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def seaweedfs(data: Path) -> Iterator[Server]:
    """``weed server`` (master, volume, filer, S3) on loopback, as the tests run it."""
    with seaweedfs_server(data) as url:
        yield Server(url, _child_named("weed"))


def _child_named(name: str) -> int:
    """The pid of this process's child whose command is *name* (Linux /proc; else 0)."""
    me = str(os.getpid())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm, rest = stat[stat.index("(") + 1:stat.rindex(")")], stat.rsplit(")", 1)[1]
        if comm == name and rest.split()[1] == me:
            return int(entry.name)
    return 0


class Bucket:
    """A fresh bucket per measurement, emptied and deleted afterwards (moto keeps RAM)."""

    def __init__(self, client: object) -> None:
        self.client = client
        self.name = f"bench-{uuid.uuid4().hex[:12]}"
        client.create_bucket(Bucket=self.name)  # type: ignore[attr-defined]

    def list_keys(self) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(  # type: ignore[attr-defined]
            Bucket=self.name)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]

    def drop(self) -> None:
        for key in self.list_keys():
            self.client.delete_object(Bucket=self.name, Key=key)  # type: ignore[attr-defined]
        self.client.delete_bucket(Bucket=self.name)  # type: ignore[attr-defined]


def archiver_config(path: Path, base_url: str, storage: dict[str, object]) -> Path:
    """Default settings, except fast polling (the stand-in's jobs are done at once)."""
    data = {
        "api": {"base_url": base_url, "api_key": KEY},
        "polling": {"interval": 0.05, "max_interval": 0.2, "deadline": 600},
        "downloads": {"allow_private": True},  # the stand-in is on loopback
        "storage": storage,
    }
    path.write_text(yaml.safe_dump(data))
    return path


def fetch_sources(base_url: str, ids: list[str], folder: Path) -> list[Path]:
    """The exact bytes the archiver will download, as local files for upload_file."""
    folder.mkdir()
    paths = []
    for job in ids:
        path = folder / f"{job}.mp4"
        with urllib.request.urlopen(f"{base_url}/files/{job}/video.mp4") as resp, \
                open(path, "wb") as out:
            shutil.copyfileobj(resp, out, 1 * MiB)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", choices=("moto", "seaweedfs"), default="moto",
                        help="the S3 server on loopback (default: moto)")
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--downloads", type=int, default=8,
                        help="files at once, for both (the archiver's default is 8)")
    parser.add_argument("--parts-in-flight", type=int,
                        help="storage.s3.parts_in_flight (default: the archiver's default)")
    args = parser.parse_args()
    size = args.size_mib * MiB

    with tempfile.TemporaryDirectory(prefix="bench-s3-") as tmp:
        work = Path(tmp)
        start = moto(work / "moto.log") if args.server == "moto" else \
            seaweedfs(work / "seaweedfs")
        with start as s3_server:
            # After the start: SeaweedFS given keys in its environment turns on auth.
            os.environ.update(AWS_ENV)
            server = StandIn(work, jobs=args.jobs, video_size=size, api_key=KEY)
            try:
                results = run_rounds(args, work, s3_server, server)
            finally:
                server.close()
    report(args, size, results)


def run_rounds(args: argparse.Namespace, work: Path, s3_server: Server,
               server: StandIn) -> dict[str, list[Measure]]:
    endpoint = s3_server.url
    servers = [pid for pid in (s3_server.pid, server.proc.pid) if pid]
    client = boto3.session.Session().client(
        "s3", endpoint_url=endpoint, config=BotoConfig(s3={"addressing_style": "path"}))
    ids = server.ids()
    sources = fetch_sources(server.base_url, ids, work / "src")
    concurrency = {"concurrency": {"downloads": args.downloads}}
    results: dict[str, list[Measure]] = {"archiver -> S3": [], "upload_file": [],
                                         "archiver -> local": []}

    def archive_s3() -> None:
        bucket = Bucket(client)
        s3: dict[str, object] = {"bucket": bucket.name, "prefix": "akool/",
                                 "endpoint_url": endpoint, "region": "us-east-1",
                                 "addressing_style": "path"}
        if args.parts_in_flight is not None:
            s3["parts_in_flight"] = args.parts_in_flight
        config = archiver_config(work / "s3.yaml", server.base_url,
                                 {"backend": "s3", "s3": s3})
        data = yaml.safe_load(config.read_text())
        config.write_text(yaml.safe_dump({**data, **concurrency}))
        m = measure([sys.executable, "-m", "archiver", "run", str(server.manifest), "-c",
                     str(config), "-q"], servers)
        records = [k for k in bucket.list_keys() if k.endswith("/archive.json")]
        assert len(records) == len(ids), records
        bucket.drop()
        results["archiver -> S3"].append(m)

    def upload() -> None:
        bucket = Bucket(client)
        m = measure([sys.executable, "-c", UPLOADER, endpoint, bucket.name,
                     str(args.downloads), *map(str, sources)], servers)
        assert len(bucket.list_keys()) == len(ids)
        bucket.drop()
        results["upload_file"].append(m)

    def archive_local() -> None:
        root = work / "archive"
        config = archiver_config(work / "local.yaml", server.base_url,
                                 {"backend": "local", "local": {"root": str(root)}})
        data = yaml.safe_load(config.read_text())
        config.write_text(yaml.safe_dump({**data, **concurrency}))
        m = measure([sys.executable, "-m", "archiver", "run", str(server.manifest), "-c",
                     str(config), "-q"], servers)
        assert all((root / i / "archive.json").is_file() for i in ids)
        shutil.rmtree(root)
        results["archiver -> local"].append(m)

    for n in range(args.rounds):
        # Alternate the order so neither side always runs on a warmer machine.
        order = (archive_s3, upload, archive_local) if n % 2 == 0 else \
            (upload, archive_s3, archive_local)
        for step in order:
            step()
        s3_wall = results["archiver -> S3"][-1].wall
        up_wall = results["upload_file"][-1].wall
        print(f"round {n + 1}: archiver->S3 {s3_wall:.2f}s, upload_file {up_wall:.2f}s, "
              f"ratio {s3_wall / up_wall:.2f}", file=sys.stderr)
    return results


def report(args: argparse.Namespace, size: int, results: dict[str, list[Measure]]) -> None:
    total = args.jobs * size / MiB
    print(f"machine: {machine()}")
    pif = "default" if args.parts_in_flight is None else args.parts_in_flight
    print(f"S3 server: {args.server}; {args.jobs} files x {args.size_mib} MiB, "
          f"{args.downloads} at a time, parts_in_flight {pif}, {args.rounds} rounds "
          "alternating, medians")
    print(f"{'':<18} {'wall s':>7} {'MiB/s':>6} {'peak RSS MiB':>13} {'CPU s':>6} "
          f"{'servers CPU s':>14}")
    for name, runs in results.items():
        wall = median([m.wall for m in runs])
        rss = max(m.max_rss_mib for m in runs)
        cpu = median([m.cpu for m in runs])
        servers = median([m.servers_cpu for m in runs])
        print(f"{name:<18} {wall:>7.2f} {total / wall:>6.0f} {rss:>13.0f} {cpu:>6.2f} "
              f"{servers:>14.2f}")
    ratios = [a.wall / b.wall for a, b in zip(results["archiver -> S3"],
                                              results["upload_file"], strict=True)]
    ratio = median(ratios)
    print(f"archiver->S3 / upload_file wall time per round: "
          f"{', '.join(f'{r:.2f}' for r in ratios)}")
    print(f"archiver->S3 / upload_file wall time: {ratio:.2f} median, "
          f"{min(ratios):.2f}-{max(ratios):.2f} (target <= 1.2); "
          f"peak RSS is the maximum over rounds (target <= 200 MiB)")
    print(f"CPU s: the measured process (user+sys); servers CPU s: {args.server} + the stand-in "
          f"meanwhile; load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
