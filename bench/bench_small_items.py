"""Workload 4, many small items and the re-run: `archiver run` against a bare archiving loop.

    python bench/bench_small_items.py [--jobs 10000] [--rounds 5] [--rerun-rounds 5] [--quick]

JOBS ids, each done after 3 polls (statuses 1, 2, 3) with one small video (64 KiB).
The Akool stand-in (its own process, no added latency) serves the API and the files.
Per round, alternating which goes first, with the stand-in reset before each and a fresh
archive folder for each:

- ``archiver run`` with its default concurrency (16 polls, 8 downloads) and
  ``polling.interval: 0.001``;
- ``bench/_bare_archive.py``, the same work the plain way at the same concurrency and
  interval: poll; download with SHA-256 into a temporary file, fsync, rename; then
  ``info.json``, ``SHA256SUMS``, ``archive.json`` last (each atomic and fsynced).

Then the re-run: ``archiver run`` on the same manifest and the archive the last round
left, RERUN_ROUNDS times; the stand-in counts the API and file requests it receives.

With ``--s3``, the same re-run against S3: moto's server on loopback (wrapped by
``bench/_moto_counting.py`` to count requests by operation) is filled by one
``archiver run`` to S3, then the re-run is measured RERUN_ROUNDS times, counting the
ListObjectsV2 and HeadObject requests. (Filling moto takes a few minutes for 10,000 ids.)

Targets: archiver wall <= 1.3 x the bare loop's; peak RSS <= 150 MiB; the re-run
<= 2 s in all (process start to exit) with zero API calls; on S3 about one
ListObjectsV2 page per 1,000 ids and no per-id HEAD.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).parent))
from _common import (
    BENCH_DIR,
    BenchServer,
    Measure,
    archiver_cmd,
    free_port,
    machine,
    measure,
    median,
    report_totals,
    rows_table,
    settle,
    verdict,
    write_config,
)

KEY = "bench-key-not-secret"
POLLS = 3
INTERVAL = 0.001


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--video-kib", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rerun-rounds", type=int, default=5)
    parser.add_argument("--s3", action="store_true",
                        help="also measure the re-run against S3 (moto)")
    parser.add_argument("--quick", action="store_true",
                        help="2,000 ids, 3 rounds, 3 re-runs: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.jobs, args.rounds, args.rerun_rounds = 2000, 3, 3

    with tempfile.TemporaryDirectory(prefix="bench-small-") as tmp:
        work = Path(tmp)
        server = BenchServer(work, jobs=args.jobs, api_key=KEY, polls_until_done=POLLS,
                             video_size=args.video_kib * 1024)
        try:
            results, reruns = run_rounds(args, work, server)
            s3 = run_s3(args, work, server) if args.s3 else None
        finally:
            server.close()
    report(args, results, reruns)
    if s3 is not None:
        report_s3(args, *s3)


def run_rounds(args: argparse.Namespace, work: Path, server: BenchServer
               ) -> tuple[dict[str, list[Measure]], list[tuple[Measure, dict[str, int]]]]:
    jobs = args.jobs
    root = work / "archive"
    config = write_config(
        work / "cfg.yaml", server.base_url, KEY, root,
        polling={"interval": INTERVAL, "max_interval": 0.01, "deadline": 3600})
    report_path = work / "report.json"

    def archiver() -> Measure:
        shutil.rmtree(root, ignore_errors=True)
        server.reset()
        settle()
        before = server.cpu()
        m = measure(archiver_cmd(server.manifest, config, report_path))
        m.server_cpu = server.cpu() - before
        totals = report_totals(report_path)
        assert m.returncode == 0 and totals["archived"] == jobs, (m, totals)
        stats = server.stats()
        assert stats["api_calls"] == POLLS * jobs and stats["file_requests"] == jobs, stats
        return m

    def bare() -> Measure:
        bare_root = work / "bare"
        shutil.rmtree(bare_root, ignore_errors=True)
        server.reset()
        settle()
        before = server.cpu()
        m = measure([sys.executable, str(BENCH_DIR / "_bare_archive.py"), server.base_url, KEY,
                     str(server.manifest), str(bare_root), "--polls", "16", "--downloads", "8",
                     "--interval", str(INTERVAL)], stdout=subprocess.DEVNULL)
        m.server_cpu = server.cpu() - before
        assert m.returncode == 0, m
        stats = server.stats()
        assert stats["api_calls"] == POLLS * jobs and stats["file_requests"] == jobs, stats
        shutil.rmtree(bare_root, ignore_errors=True)
        return m

    results: dict[str, list[Measure]] = {"archiver": [], "bare archiving loop": []}
    for n in range(args.rounds):
        # The archiver goes last in the last round: the re-run uses its archive.
        order = [("archiver", archiver), ("bare archiving loop", bare)]
        if (args.rounds - 1 - n) % 2 == 0:
            order.reverse()
        for name, run in order:
            results[name].append(run())
        print(f"round {n + 1}: archiver {results['archiver'][-1].wall:.2f}s, "
              f"bare {results['bare archiving loop'][-1].wall:.2f}s", file=sys.stderr,
              flush=True)

    reruns = []
    for n in range(args.rerun_rounds):
        server.reset()
        settle()
        m = measure(archiver_cmd(server.manifest, config, report_path))
        totals = report_totals(report_path)
        assert m.returncode == 0 and totals["already_archived"] == jobs, (m, totals)
        reruns.append((m, server.stats()))
        print(f"re-run {n + 1}: {m.wall:.2f}s, {reruns[-1][1]}", file=sys.stderr, flush=True)
    return results, reruns


def report(args: argparse.Namespace, results: dict[str, list[Measure]],
           reruns: list[tuple[Measure, dict[str, int]]]) -> None:
    rows = []
    for name, runs in results.items():
        rows.append([name, f"{median([m.wall for m in runs]):.2f}",
                     f"{median([m.cpu for m in runs]):.2f}",
                     f"{max(m.max_rss_mib for m in runs):.0f}",
                     f"{median([m.server_cpu for m in runs]):.2f}"])
    runs = [m for m, _ in reruns]
    rows.append(["archiver re-run", f"{median([m.wall for m in runs]):.2f}",
                 f"{median([m.cpu for m in runs]):.2f}",
                 f"{max(m.max_rss_mib for m in runs):.0f}", "-"])
    a = median([m.wall for m in results["archiver"]])
    b = median([m.wall for m in results["bare archiving loop"]])
    rss = max(m.max_rss_mib for m in results["archiver"] + runs)
    rerun = median([m.wall for m in runs])
    rerun_max = max(m.wall for m in runs)
    api_calls = max(s["api_calls"] for _, s in reruns)
    file_requests = max(s["file_requests"] for _, s in reruns)
    print(f"machine: {machine()}")
    print(f"workload 4: {args.jobs} ids x ({POLLS} polls + one {args.video_kib} KiB video), "
          f"16 polls / 8 downloads at once, no added latency; {args.rounds} rounds "
          f"alternating + {args.rerun_rounds} re-runs, medians (peak RSS: the largest)")
    print(rows_table(["", "wall s", "CPU s", "peak RSS MiB", "stand-in CPU s"], rows))
    print(f"archiver / bare wall = {a / b:.2f} (target <= 1.30: {verdict(a / b <= 1.3)}); "
          f"peak RSS {rss:.0f} MiB (target <= 150: {verdict(rss <= 150)})")
    print(f"re-run: median {rerun:.2f} s, slowest {rerun_max:.2f} s (target <= 2 s: "
          f"{verdict(rerun_max <= 2.0)}); API calls {api_calls}, file requests {file_requests} "
          f"(target 0: {verdict(api_calls == 0 and file_requests == 0)})")
    print("per-round ratios: " + ", ".join(
        f"{x.wall / y.wall:.2f}"
        for x, y in zip(results["archiver"], results["bare archiving loop"], strict=True)))



# ------------------------------------------------------------------------------ S3 re-run

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "AKIABENCHMARK0000000",
    "AWS_SECRET_ACCESS_KEY": "bench-secret-not-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}


def _json(url: str, method: str = "GET") -> dict[str, int]:
    req = urllib.request.Request(url, method=method)
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def run_s3(args: argparse.Namespace, work: Path, server: BenchServer
           ) -> tuple[Measure, list[tuple[Measure, dict[str, int], dict[str, int]]]]:
    import boto3  # only needed here

    os.environ.update(AWS_ENV)
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    moto = subprocess.Popen([sys.executable, str(BENCH_DIR / "_moto_counting.py"), str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert moto.stdout is not None
        assert moto.stdout.readline().strip() == endpoint
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bench")
        config = work / "s3.yaml"
        config.write_text(yaml.safe_dump({
            "api": {"base_url": server.base_url, "api_key": KEY},
            "polling": {"interval": INTERVAL, "max_interval": 0.01, "deadline": 3600},
            "downloads": {"allow_private": True},  # the stand-in is on loopback
            "storage": {"backend": "s3", "s3": {
                "bucket": "bench", "prefix": "archive/", "endpoint_url": endpoint,
                "region": "us-east-1", "addressing_style": "path"}},
        }))
        report_path = work / "s3-report.json"
        server.reset()
        start = time.monotonic()
        fill = measure(archiver_cmd(server.manifest, config, report_path))
        totals = report_totals(report_path)
        assert fill.returncode == 0 and totals["archived"] == args.jobs, (fill, totals)
        print(f"S3 filled in {time.monotonic() - start:.0f}s", file=sys.stderr, flush=True)
        reruns = []
        for n in range(args.rerun_rounds):
            server.reset()
            _json(f"{endpoint}/_bench/s3reset", "POST")
            m = measure(archiver_cmd(server.manifest, config, report_path))
            totals = report_totals(report_path)
            assert m.returncode == 0 and totals["already_archived"] == args.jobs, (m, totals)
            reruns.append((m, server.stats(), _json(f"{endpoint}/_bench/s3stats")))
            print(f"S3 re-run {n + 1}: {m.wall:.2f}s, {reruns[-1][2]}", file=sys.stderr,
                  flush=True)
        return fill, reruns
    finally:
        moto.terminate()
        moto.wait(10)


def report_s3(args: argparse.Namespace, fill: Measure,
              reruns: list[tuple[Measure, dict[str, int], dict[str, int]]]) -> None:
    runs = [m for m, _, _ in reruns]
    lists = max(s3.get("ListObjectsV2", 0) for _, _, s3 in reruns)
    heads = max(s3.get("HeadObject", 0) for _, _, s3 in reruns)
    api_calls = max(stats["api_calls"] for _, stats, _ in reruns)
    per_1000 = lists / (args.jobs / 1000)
    print(f"re-run on S3 (moto, {args.jobs} ids archived by one archiver run in "
          f"{fill.wall:.0f} s; {args.rerun_rounds} re-runs):")
    rows = [["archiver re-run, S3", f"{median([m.wall for m in runs]):.2f}",
             f"{median([m.cpu for m in runs]):.2f}", f"{max(m.max_rss_mib for m in runs):.0f}",
             str(lists), f"{per_1000:.1f}", str(heads), str(api_calls)]]
    print(rows_table(["", "wall s", "CPU s", "peak RSS MiB", "ListObjectsV2",
                      "per 1,000 ids", "HeadObject", "API calls"], rows))
    print(f"ListObjectsV2 pages per 1,000 ids: {per_1000:.1f} (target about 1: "
          f"{verdict(per_1000 <= 1.5)}); HeadObject {heads} (target: no per-id HEAD: "
          f"{verdict(heads < args.jobs / 100)}); API calls {api_calls} "
          f"(target 0: {verdict(api_calls == 0)})")
    print("all S3 requests of the last re-run: " + json.dumps(reruns[-1][2], sort_keys=True))


if __name__ == "__main__":
    main()
