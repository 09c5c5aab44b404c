"""Scaling out: 1, 2 and 4 archiver processes (``--shard K/N``) on the same work, S3 (moto).

    python bench/bench_shards.py [--jobs 32] [--size-mib 2] [--rate-kib 1024]
                                 [--downloads 2] [--rounds 3] [--quick]

The Akool stand-in (``bench/_server.py``, its own process) serves JOBS videos of SIZE
and paces every file response to RATE per connection, as a CDN that limits each
connection does (nginx ``limit_rate``). Each archiver process downloads at most
DOWNLOADS files at once, so one process is bound by DOWNLOADS x RATE, whatever the
machine: what N processes add is N times that, as N pods or hosts would, each with its
own network share. Per round, and in an order that rotates from round to round, the
same work is archived into a fresh bucket of one moto server by

- one process (``archiver run``, no ``--shard``);
- 2 processes (``--shard 0/2``, ``--shard 1/2``), started together;
- 4 processes (``--shard 0/4`` .. ``3/4``), started together.

Wall time is from the first start to the last exit. Every configuration must archive
every id once: the stand-in counts file requests (exactly JOBS) and the bucket must hold
JOBS ``archive.json``. The ideal time is the busiest shard's bytes over DOWNLOADS x RATE
(the hash splits ids unevenly when there are few), plus start-up; the table shows both.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3
import yaml
from botocore.config import Config as BotoConfig

sys.path.insert(0, str(Path(__file__).parent))
from _common import BenchServer, machine, median, rows_table
from bench_s3 import AWS_ENV, KEY, Bucket, moto

from archiver.fleet.shard import shard_of

MiB = 1024 * 1024


def config(path: Path, base_url: str, endpoint: str, bucket: str, downloads: int) -> Path:
    data = {
        "api": {"base_url": base_url, "api_key": KEY},
        "polling": {"interval": 0.05, "max_interval": 0.2, "deadline": 600},
        "concurrency": {"downloads": downloads},
        "downloads": {"allow_private": True},  # the stand-in is on loopback
        "storage": {"backend": "s3", "s3": {
            "bucket": bucket, "prefix": "akool/", "endpoint_url": endpoint,
            "region": "us-east-1", "addressing_style": "path"}},
    }
    path.write_text(yaml.safe_dump(data))
    return path


def run_processes(count: int, manifest: Path, cfg: Path, workdir: Path) -> float:
    """Start *count* shard processes together; wall time until the last one exits."""
    env = {**os.environ, **AWS_ENV}
    base = [sys.executable, "-m", "archiver", "run", str(manifest), "-c", str(cfg), "-q"]
    commands = [base] if count == 1 else [[*base, "--shard", f"{k}/{count}"]
                                          for k in range(count)]
    start = time.perf_counter()
    procs = [subprocess.Popen(c, cwd="/", env=env, stderr=subprocess.PIPE, text=True)
             for c in commands]
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"a shard process failed ({proc.returncode}): {err}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=32)
    parser.add_argument("--size-mib", type=float, default=2.0)
    parser.add_argument("--rate-kib", type=float, default=1024.0,
                        help="per-connection rate of the stand-in's CDN, KiB/s")
    parser.add_argument("--downloads", type=int, default=2,
                        help="concurrency.downloads of each archiver process")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a smoke run (8 x 1 MiB, 1 round)")
    args = parser.parse_args()
    if args.quick:
        args.jobs, args.size_mib, args.rounds = 8, 1.0, 1
    size, rate = int(args.size_mib * MiB), args.rate_kib * 1024
    counts = (1, 2, 4)
    walls: dict[int, list[float]] = {n: [] for n in counts}

    with tempfile.TemporaryDirectory(prefix="bench-shards-") as tmp:
        workdir = Path(tmp)
        server = BenchServer(workdir, jobs=args.jobs, api_key=KEY, video_size=size,
                             files="video", file_rate=rate)
        with contextlib.ExitStack() as stack:
            stack.callback(server.close)
            s3 = stack.enter_context(moto(workdir / "moto.log"))
            client = boto3.session.Session(**{
                "aws_access_key_id": AWS_ENV["AWS_ACCESS_KEY_ID"],
                "aws_secret_access_key": AWS_ENV["AWS_SECRET_ACCESS_KEY"],
                "region_name": "us-east-1"}).client(
                    "s3", endpoint_url=s3.url, config=BotoConfig(s3={"addressing_style": "path"}))
            ids = server.ids()
            for round_no in range(args.rounds):
                order = counts[round_no % 3:] + counts[:round_no % 3]
                for n in order:
                    server.reset()
                    bucket = Bucket(client)
                    cfg = config(workdir / f"cfg-{n}.yaml", server.base_url, s3.url,
                                 bucket.name, args.downloads)
                    walls[n].append(run_processes(n, server.manifest, cfg, workdir))
                    stats = server.stats()
                    records = [k for k in bucket.list_keys() if k.endswith("/archive.json")]
                    assert stats["file_requests"] == len(ids), stats  # no file fetched twice
                    assert len(records) == len(ids), len(records)
                    bucket.drop()
                    print(f"round {round_no + 1}: {n} process(es): {walls[n][-1]:.1f}s",
                          file=sys.stderr)

    per_process = args.downloads * rate
    rows = []
    for n in counts:
        busiest = max(sum(1 for i in ids if shard_of(i, n) == k) for k in range(n))
        ideal = busiest * size / per_process
        wall = median(walls[n])
        rows.append((n, f"{wall:.1f}", f"{median(walls[1]) / wall:.2f}x", busiest,
                     f"{ideal:.1f}"))
    print(f"# bench_shards: {args.jobs} jobs x {args.size_mib:g} MiB, CDN "
          f"{args.rate_kib:g} KiB/s per connection, {args.downloads} downloads per process, "
          f"S3 on moto, median of {args.rounds} round(s)")
    print(f"# {machine()}")
    print(rows_table(("processes", "wall s", "speed-up", "ids in busiest shard",
                      "ideal s (busiest shard / per-process bandwidth)"), rows))


if __name__ == "__main__":
    main()
