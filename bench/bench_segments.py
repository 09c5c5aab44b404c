"""Workload 8, one large file over several connections: archiver vs aria2c -x 8 vs curl.

    python bench/bench_segments.py [--size-mib 1024] [--rate 50m] [--rounds 3]
                                   [--segments 8] [--quick]

The Akool stand-in (its own process) answers the API for one job whose video is SIZE,
served by nginx from a folder. Two phases, each alternating the order of its commands
round by round (``sync`` before each; medians; peak RSS from wait4):

1. nginx caps each connection at ``--rate`` (``limit_rate``, as CDNs do):
   ``archiver run`` with ``downloads.segments: N`` (``--segments``, default 8: as many
   connections as aria2c gets), the archiver with its default (4), ``aria2c -x 8 -s 8``
   and ``curl -o`` (one connection).
2. nginx without a cap: the archiver with ``downloads.segments: 1`` (one stream, as
   before segments existed) against its default.

The archiver also hashes (SHA-256), checks the MP4 boxes and fsyncs before it commits;
aria2c and curl do none of that.

Targets: phase 1, archiver (N = 8) wall <= 1.1 x aria2c's and peak RSS <= 150 MiB;
phase 2, the default no slower than one stream.

With ``--s3``, instead: into S3 (moto_server, a fresh bucket per run), nginx capped at
``--rate`` per connection, ``downloads.segments: N`` (through the local spool) against
``downloads.segments: 1`` (one stream, parts straight from memory). moto keeps objects
in RAM: ``--size-mib`` defaults to 256 there.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from archiver.config import DownloadConfig

sys.path.insert(0, str(Path(__file__).parent))
from _common import (
    BenchServer,
    Measure,
    MiB,
    Nginx,
    archiver_cmd,
    free_port,
    machine,
    measure,
    median,
    rows_table,
    settle,
    verdict,
    write_config,
)

KEY = "bench-key-not-secret"
#: The archiver's own default (``downloads.segments``), as installed.
DEFAULT_SEGMENTS = DownloadConfig().segments


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rate", default="50m", help="nginx limit_rate per connection")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--segments", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="256 MiB, 1 round: a smoke run")
    parser.add_argument("--s3", action="store_true",
                        help="segments=N vs 1 into S3 (moto_server) instead, capped rate")
    args = parser.parse_args()
    if args.quick:
        args.size_mib, args.rounds = 256, 1
    if args.s3 and "--size-mib" not in sys.argv:
        args.size_mib = 256
    size = args.size_mib * MiB
    if args.s3:
        s3_main(args, size)
        return

    with tempfile.TemporaryDirectory(prefix="bench-segments-") as tmp:
        work = Path(tmp)
        port = free_port()
        server = BenchServer(work, jobs=1, api_key=KEY, video_size=size,
                             export_dir=work / "www", public_base_url=f"http://127.0.0.1:{port}")
        try:
            capped = phase(args, work, server, size, port, args.rate, capped=True)
            free = phase(args, work, server, size, port, None, capped=False)
        finally:
            server.close()
    report(args, capped, free)


def phase(args: argparse.Namespace, work: Path, server: BenchServer, size: int, port: int,
          rate: str | None, *, capped: bool) -> dict[str, list[Measure]]:
    nginx = Nginx(work, work / "www", port=port, limit_rate=rate)
    try:
        commands = commands_for(args, work, server, nginx, size, capped=capped)
        results: dict[str, list[Measure]] = {name: [] for name in commands}
        names = list(commands)
        for n in range(args.rounds):
            order = names[n % len(names):] + names[:n % len(names)]  # rotate who goes first
            for name in order:
                results[name].append(commands[name]())
            print(f"{'capped' if capped else 'uncapped'} round {n + 1}: " + ", ".join(
                f"{name} {results[name][-1].wall:.2f}s" for name in names),
                file=sys.stderr, flush=True)
        return results
    finally:
        nginx.close()


def commands_for(args: argparse.Namespace, work: Path, server: BenchServer, nginx: Nginx,
                 size: int, *, capped: bool) -> dict[str, Callable[[], Measure]]:
    [job] = server.ids()
    url = f"{nginx.base_url}/files/{job}/video.mp4"

    def archiver(segments: int) -> Callable[[], Measure]:
        root = work / f"archive-{segments}"
        config = write_config(work / f"cfg-{segments}.yaml", server.base_url, KEY, root,
                              downloads={"allow_private": True, "segments": segments})
        report_path = work / "report.json"

        def run() -> Measure:
            server.reset()
            settle()
            m = measure(archiver_cmd(server.manifest, config, report_path))
            assert m.returncode == 0, m
            assert json.loads(report_path.read_text())["totals"]["archived"] == 1
            stored = root / job / "video.mp4"
            assert stored.stat().st_size == size
            stored.unlink()  # free the disk before the next command
            (root / job / "archive.json").unlink()
            return m
        return run

    def tool(cmd: list[str], out: Path) -> Callable[[], Measure]:
        def run() -> Measure:
            out.unlink(missing_ok=True)
            settle()
            m = measure(cmd)
            assert m.returncode == 0 and out.stat().st_size == size, m
            out.unlink()
            return m
        return run

    if not capped:  # the cost of more connections where they bring nothing
        return {"archiver segments=1": archiver(1),
                f"archiver segments={DEFAULT_SEGMENTS}": archiver(DEFAULT_SEGMENTS),
                **({f"archiver segments={args.segments}": archiver(args.segments)}
                   if args.segments not in (1, DEFAULT_SEGMENTS) else {})}
    aria_dir = work / "aria"
    aria_dir.mkdir(exist_ok=True)
    commands = {f"archiver segments={args.segments}": archiver(args.segments)}
    if args.segments != DEFAULT_SEGMENTS:
        commands[f"archiver segments={DEFAULT_SEGMENTS}"] = archiver(DEFAULT_SEGMENTS)
    commands["aria2c -x 8 -s 8"] = tool(
        ["aria2c", "-x", "8", "-s", "8", "-q", "--file-allocation=none",
         "--allow-overwrite=true", "--auto-file-renaming=false", "-d", str(aria_dir),
         "-o", "video.mp4", url], aria_dir / "video.mp4")
    commands["curl -o"] = tool(["curl", "-s", "-o", str(work / "curl.out"), url],
                               work / "curl.out")
    return commands


def table(results: dict[str, list[Measure]], mib: int) -> str:
    rows = []
    for name, runs in results.items():
        wall = median([m.wall for m in runs])
        rows.append([name, f"{wall:.2f}", f"{mib / wall:.0f}",
                     f"{median([m.cpu for m in runs]):.2f}",
                     f"{max(m.max_rss_mib for m in runs):.0f}"])
    return rows_table(["", "wall s", "MiB/s", "CPU s", "peak RSS MiB"], rows)


def report(args: argparse.Namespace, capped: dict[str, list[Measure]],
           free: dict[str, list[Measure]]) -> None:
    mib = args.size_mib
    print(f"machine: {machine()}")
    print(f"workload 8: one {mib} MiB file from nginx; {args.rounds} rounds, order rotated, "
          "medians (peak RSS: the largest)")
    print(f"\nphase 1: limit_rate {args.rate} per connection")
    print(table(capped, mib))
    ours = f"archiver segments={args.segments}"
    a = median([m.wall for m in capped[ours]])
    x = median([m.wall for m in capped["aria2c -x 8 -s 8"]])
    rss = max(m.max_rss_mib for m in capped[ours])
    print(f"{ours}: wall = {a / x:.2f} x aria2c's (target <= 1.10: {verdict(a / x <= 1.1)}); "
          f"peak RSS {rss:.0f} MiB (target <= 150: {verdict(rss <= 150)})")
    for name in capped:
        if name.startswith("archiver"):
            ratios = [p.wall / q.wall for p, q in zip(capped[name], capped["aria2c -x 8 -s 8"],
                                                      strict=True)]
            print(f"{name} / aria2c wall, per round: " + ", ".join(f"{r:.2f}" for r in ratios)
                  + f" (median {median(ratios):.2f})")
    print("\nphase 2: no rate limit")
    print(table(free, mib))
    for name in free:
        if name != "archiver segments=1":
            ratios = [p.wall / q.wall for p, q in zip(free[name], free["archiver segments=1"],
                                                      strict=True)]
            print(f"{name} / one stream wall, per round: "
                  + ", ".join(f"{r:.2f}" for r in ratios) + f" (median {median(ratios):.2f})"
                  + (f" (target <= 1.00 within noise: {verdict(median(ratios) <= 1.05)})"
                     if name.endswith(f"={DEFAULT_SEGMENTS}") else ""))


def s3_main(args: argparse.Namespace, size: int) -> None:
    """--s3: the archiver into S3 with N segments and with one, nginx capped per connection."""
    import os

    import boto3
    from bench_s3 import AWS_ENV, Bucket, moto
    from botocore.config import Config as BotoConfig

    os.environ.update(AWS_ENV)
    with tempfile.TemporaryDirectory(prefix="bench-segments-s3-") as tmp:
        work = Path(tmp)
        port = free_port()
        server = BenchServer(work, jobs=1, api_key=KEY, video_size=size,
                             export_dir=work / "www", public_base_url=f"http://127.0.0.1:{port}")
        nginx = Nginx(work, work / "www", port=port, limit_rate=args.rate)
        try:
            with moto(work / "moto.log") as s3_server:
                client = boto3.session.Session().client(
                    "s3", endpoint_url=s3_server.url,
                    config=BotoConfig(s3={"addressing_style": "path"}))
                [job] = server.ids()

                def archiver(segments: int) -> Callable[[], Measure]:
                    def run() -> Measure:
                        bucket = Bucket(client)
                        config = write_config(
                            work / f"s3-{segments}.yaml", server.base_url, KEY, work / "x",
                            downloads={"allow_private": True, "segments": segments},
                            storage={"backend": "s3", "s3": {
                                "bucket": bucket.name, "prefix": "akool/",
                                "endpoint_url": s3_server.url, "region": "us-east-1",
                                "addressing_style": "path"}})
                        server.reset()
                        settle()
                        m = measure(archiver_cmd(server.manifest, config, work / "r.json"))
                        assert m.returncode == 0, m
                        head = client.head_object(Bucket=bucket.name,
                                                  Key=f"akool/{job}/video.mp4")
                        assert head["ContentLength"] == size
                        bucket.drop()  # moto keeps objects in RAM
                        return m
                    return run

                commands = {f"archiver segments={args.segments} -> S3": archiver(args.segments),
                            "archiver segments=1 -> S3": archiver(1)}
                results: dict[str, list[Measure]] = {name: [] for name in commands}
                names = list(commands)
                for n in range(args.rounds):
                    for name in names[n % 2:] + names[:n % 2]:
                        results[name].append(commands[name]())
                    print(f"s3 round {n + 1}: " + ", ".join(
                        f"{name} {results[name][-1].wall:.2f}s" for name in names),
                        file=sys.stderr, flush=True)
        finally:
            nginx.close()
            server.close()
    print(f"machine: {machine()}")
    print(f"one {args.size_mib} MiB file from nginx (limit_rate {args.rate} per connection) "
          f"into S3 (moto_server); {args.rounds} rounds, order alternated, medians")
    print(table(results, args.size_mib))
    seg = median([m.wall for m in results[names[0]]])
    one = median([m.wall for m in results[names[1]]])
    print(f"segments={args.segments}: wall = {seg / one:.2f} x one stream's")


if __name__ == "__main__":
    main()
