"""Workload 9, per-item overhead: `archiver run` against the tightest bare loop (issue 13).

    python bench/bench_per_item.py [--jobs 10000] [--rounds 3] [--latency 0.02] [--quick]
                                   [--before DIR]

JOBS ids, each done after 3 polls (statuses 1, 2, 3) with one 64 KiB video; the Akool
stand-in (its own process) adds LATENCY seconds to every API answer. Per round,
alternating which goes first, the stand-in reset before each and a fresh folder each:

- ``archiver run`` with 64 polls and 16 downloads in flight, ``polling.interval: 0.001``;
- ``bench/_bare_archive_tight.py``: 64 ids in flight under one semaphore, each polled
  back to back, its video fetched hashing while receiving, then ONE thread hop for the
  whole durable commit (file fsync + rename, ``info.json`` and ``SHA256SUMS`` atomic and
  fsynced, folder fsync, ``archive.json`` the same way, folder fsync).

With ``--before DIR`` (a copy of another version's ``archiver`` package, e.g.
``git archive OLD archiver | tar -x -C DIR``), that version runs in the same rounds too.

Target: archiver wall <= 1.3 x the bare loop's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
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
    report_totals,
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
    parser.add_argument("--before", type=Path, help="also run the archiver package in DIR")
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

    def archiver(path: Path | None = None) -> Measure:
        shutil.rmtree(root, ignore_errors=True)
        server.reset()
        settle()
        env = None if path is None else {**os.environ, "PYTHONPATH": str(path.resolve())}
        m = measure(archiver_cmd(server.manifest, config, report_path), env=env)
        totals = report_totals(report_path)
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

    order: list[tuple[str, Callable[[], Measure]]] = [
        ("archiver", archiver), ("tight bare loop", bare)]
    if args.before is not None:
        order.append(("archiver before", lambda: archiver(args.before)))
    results: dict[str, list[Measure]] = {name: [] for name, _ in order}
    for n in range(args.rounds):
        for name, run in order[n % len(order):] + order[:n % len(order)]:
            results[name].append(run())
        print(f"round {n + 1}: " + ", ".join(f"{name} {runs[-1].wall:.2f}s"
                                             for name, runs in results.items()),
              file=sys.stderr, flush=True)
    return results


def report(args: argparse.Namespace, results: dict[str, list[Measure]]) -> None:
    rows = [[name, f"{median([m.wall for m in runs]):.2f}", f"{median([m.cpu for m in runs]):.2f}",
             f"{max(m.max_rss_mib for m in runs):.0f}"] for name, runs in results.items()]
    a = median([m.wall for m in results["archiver"]])
    b = median([m.wall for m in results["tight bare loop"]])
    print(f"machine: {machine()}")
    print(f"workload 9: {args.jobs} ids x ({POLLS} polls + one {args.video_kib} KiB video), "
          f"API latency {args.latency * 1000:.0f} ms, 64 polls / 16 downloads (bare: 64 ids) "
          f"in flight; {args.rounds} rounds alternating, medians (peak RSS: the largest)")
    print(rows_table(["", "wall s", "CPU s", "peak RSS MiB"], rows))
    print(f"archiver / tight bare loop wall = {a / b:.2f} "
          f"(target <= 1.30: {verdict(a / b <= 1.3)})")
    if "archiver before" in results:
        c = median([m.wall for m in results["archiver before"]])
        print(f"archiver before / tight bare loop wall = {c / b:.2f}")
    print("per-round ratios: " + ", ".join(
        f"{x.wall / y.wall:.2f}"
        for x, y in zip(results["archiver"], results["tight bare loop"], strict=True)))


if __name__ == "__main__":
    main()
