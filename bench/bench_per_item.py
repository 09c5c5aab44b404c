"""Workload 8, per-item overhead: `archiver run` against the tightest bare loop (issue 13).

    python bench/bench_per_item.py [--jobs 10000] [--rounds 3] [--latency 0.02] [--quick]

JOBS ids, each done after 3 polls (statuses 1, 2, 3) with one 64 KiB video; the Akool
stand-in (its own process) adds LATENCY seconds to every API answer. Per round,
alternating which goes first, the stand-in reset before each and a fresh folder each:

- ``archiver run`` with 64 polls and 16 downloads in flight, ``polling.interval: 0.001``;
- ``bench/_bare_archive_tight.py``: 64 ids in flight under one semaphore, each polled
  back to back, its video fetched hashing while receiving, then ONE thread hop for the
  whole durable commit (file fsync + rename, ``info.json`` and ``SHA256SUMS`` atomic and
  fsynced, folder fsync, ``archive.json`` the same way, folder fsync).

Target: archiver wall <= 1.3 x the bare loop's.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import (
    BENCH_DIR,
    BenchServer,
    Measure,
    archiver_cmd,
    machine,
    measure,
    median,
    rows_table,
    settle,
    verdict,
    write_config,
)

KEY = "bench-key-not-secret"
POLLS = 3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--video-kib", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="2,000 ids, 1 round: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.jobs, args.rounds = 2000, 1

    with tempfile.TemporaryDirectory(prefix="bench-per-item-") as tmp:
        work = Path(tmp)
        server = BenchServer(work, jobs=args.jobs, api_key=KEY, polls_until_done=POLLS,
                             video_size=args.video_kib * 1024, latency=args.latency)
        try:
            results = run_rounds(args, work, server)
        finally:
            server.close()
    report(args, results)


def run_rounds(args: argparse.Namespace, work: Path, server: BenchServer
               ) -> dict[str, list[Measure]]:
    jobs = args.jobs
    root = work / "archive"
    config = write_config(
        work / "cfg.yaml", server.base_url, KEY, root,
        polling={"interval": 0.001, "max_interval": 0.01, "deadline": 3600},
        concurrency={"polls": 64, "downloads": 16})
    report_path = work / "report.json"

    def checked(m: Measure) -> Measure:
        stats = server.stats()
        assert stats["api_calls"] == POLLS * jobs and stats["file_requests"] == jobs, stats
        return m

    def archiver() -> Measure:
        shutil.rmtree(root, ignore_errors=True)
        server.reset()
        settle()
        m = measure(archiver_cmd(server.manifest, config, report_path))
        totals = json.loads(report_path.read_text())["totals"]
        assert m.returncode == 0 and totals["archived"] == jobs, (m, totals)
        shutil.rmtree(root, ignore_errors=True)
        return checked(m)

    def bare() -> Measure:
        bare_root = work / "bare"
        shutil.rmtree(bare_root, ignore_errors=True)
        server.reset()
        settle()
        m = measure([sys.executable, str(BENCH_DIR / "_bare_archive_tight.py"),
                     server.base_url, KEY, str(server.manifest), str(bare_root)],
                    stdout=subprocess.DEVNULL)
        assert m.returncode == 0, m
        shutil.rmtree(bare_root, ignore_errors=True)
        return checked(m)

    results: dict[str, list[Measure]] = {"archiver": [], "tight bare loop": []}
    for n in range(args.rounds):
        order = [("archiver", archiver), ("tight bare loop", bare)]
        for name, run in order if n % 2 == 0 else reversed(order):
            results[name].append(run())
        print(f"round {n + 1}: archiver {results['archiver'][-1].wall:.2f}s, "
              f"bare {results['tight bare loop'][-1].wall:.2f}s", file=sys.stderr, flush=True)
    return results


def report(args: argparse.Namespace, results: dict[str, list[Measure]]) -> None:
    rows = [[name, f"{median([m.wall for m in runs]):.2f}", f"{median([m.cpu for m in runs]):.2f}",
             f"{max(m.max_rss_mib for m in runs):.0f}"] for name, runs in results.items()]
    a = median([m.wall for m in results["archiver"]])
    b = median([m.wall for m in results["tight bare loop"]])
    print(f"machine: {machine()}")
    print(f"workload 8: {args.jobs} ids x ({POLLS} polls + one {args.video_kib} KiB video), "
          f"API latency {args.latency * 1000:.0f} ms, 64 polls / 16 downloads (bare: 64 ids) "
          f"in flight; {args.rounds} rounds alternating, medians (peak RSS: the largest)")
    print(rows_table(["", "wall s", "CPU s", "peak RSS MiB"], rows))
    print(f"archiver / tight bare loop wall = {a / b:.2f} "
          f"(target <= 1.30: {verdict(a / b <= 1.3)})")
    print("per-round ratios: " + ", ".join(
        f"{x.wall / y.wall:.2f}"
        for x, y in zip(results["archiver"], results["tight bare loop"], strict=True)))


if __name__ == "__main__":
    main()
