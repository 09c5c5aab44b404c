"""Workload 3, polling at scale: `archiver run` against a bare aiohttp polling loop.

    python bench/bench_polling.py [--jobs 10000] [--latency 0.02] [--concurrency 64]
                                  [--rounds 5] [--quick]

JOBS ids whose jobs fail after 3 polls (statuses 1, 2, 4), so nothing is downloaded and
only the polling machinery is measured. The Akool stand-in (its own process) answers
every request after LATENCY seconds. Per round, alternating which goes first, with the
stand-in reset before each (every job back to "never polled"):

- ``archiver run`` with ``concurrency.polls: CONCURRENCY``, ``polling.interval: 0.001``;
- ``bench/_bare_poll.py``: CONCURRENCY aiohttp tasks on one queue, re-queueing a job
  that is not done after the same interval - the same 3 x JOBS requests.

The latency floor is JOBS x 3 x LATENCY / CONCURRENCY (9.4 s by default). Both sides'
request counts are checked on the stand-in. Targets (issue 21), as medians of the
per-round ratios: archiver wall <= 1.05 x the bare loop's, archiver CPU (user + sys,
from wait4, the interpreter's start included on both sides) <= 1.25 x, peak RSS <= 200
MiB (also at ``--jobs 100000``: the per-poll cost must stay the same).
"""

from __future__ import annotations

import argparse
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
    report_totals,
    rows_table,
    verdict,
    write_config,
)

KEY = "bench-key-not-secret"
POLLS = 3
INTERVAL = 0.001


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="2,000 ids, 3 rounds: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.jobs, args.rounds = 2000, 3

    with tempfile.TemporaryDirectory(prefix="bench-poll-") as tmp:
        work = Path(tmp)
        server = BenchServer(work, jobs=args.jobs, api_key=KEY, polls_until_done=POLLS,
                             outcome="failed", latency=args.latency)
        try:
            results = run_rounds(args, work, server)
        finally:
            server.close()
    report(args, results)


def run_rounds(args: argparse.Namespace, work: Path,
               server: BenchServer) -> dict[str, list[Measure]]:
    requests = args.jobs * POLLS
    config = write_config(
        work / "cfg.yaml", server.base_url, KEY, work / "archive",
        polling={"interval": INTERVAL, "max_interval": 0.01, "deadline": 3600},
        concurrency={"polls": args.concurrency, "downloads": 8})
    report_path = work / "report.json"

    def archiver() -> Measure:
        server.reset()
        before = server.cpu()
        m = measure(archiver_cmd(server.manifest, config, report_path))
        m.server_cpu = server.cpu() - before
        totals = report_totals(report_path)
        assert m.returncode == 1 and totals["failed"] == args.jobs, (m, totals)
        assert totals["api_requests"] == requests, totals
        assert server.stats()["api_calls"] == requests, server.stats()
        return m

    def bare() -> Measure:
        server.reset()
        before = server.cpu()
        m = measure([sys.executable, str(BENCH_DIR / "_bare_poll.py"), server.base_url, KEY,
                     str(server.manifest), "--concurrency", str(args.concurrency),
                     "--interval", str(INTERVAL)], stdout=subprocess.DEVNULL)
        m.server_cpu = server.cpu() - before
        assert m.returncode == 0, m
        assert server.stats()["api_calls"] == requests, server.stats()
        return m

    results: dict[str, list[Measure]] = {"archiver": [], "bare aiohttp loop": []}
    for n in range(args.rounds):
        order = (("archiver", archiver), ("bare aiohttp loop", bare))
        for name, run in order if n % 2 == 0 else reversed(order):
            results[name].append(run())
        print(f"round {n + 1}: archiver {results['archiver'][-1].wall:.2f}s, "
              f"bare {results['bare aiohttp loop'][-1].wall:.2f}s", file=sys.stderr, flush=True)
    return results


def report(args: argparse.Namespace, results: dict[str, list[Measure]]) -> None:
    polls = args.jobs * POLLS
    floor = polls * args.latency / args.concurrency
    rows = []
    for name, runs in results.items():
        cpu = median([m.cpu for m in runs])
        rows.append([name, f"{median([m.wall for m in runs]):.2f}", f"{cpu:.2f}",
                     f"{cpu / polls * 1000:.3f}", f"{max(m.max_rss_mib for m in runs):.0f}",
                     f"{median([m.server_cpu for m in runs]):.2f}"])
    a = median([m.wall for m in results["archiver"]])
    b = median([m.wall for m in results["bare aiohttp loop"]])
    cpu_ms = median([m.cpu for m in results["archiver"]]) / polls * 1000
    rss = max(m.max_rss_mib for m in results["archiver"])
    print(f"machine: {machine()}")
    print(f"workload 3: {args.jobs} ids x {POLLS} polls (statuses 1, 2, 4), {args.latency * 1000:g}"
          f" ms latency, {args.concurrency} polls at once; latency floor {floor:.1f} s; "
          f"{args.rounds} rounds alternating, medians (peak RSS: the largest)")
    print(rows_table(["", "wall s", "CPU s", "CPU ms/poll", "peak RSS MiB",
                      "stand-in CPU s"], rows))
    pairs = list(zip(results["archiver"], results["bare aiohttp loop"], strict=True))
    walls = [x.wall / y.wall for x, y in pairs]
    cpus = [x.cpu / y.cpu for x, y in pairs]
    wall_ratio, cpu_ratio = median(walls), median(cpus)
    print(f"archiver / bare wall = {wall_ratio:.2f} (median of rounds; target <= 1.05: "
          f"{verdict(wall_ratio <= 1.05)}); archiver / bare CPU = {cpu_ratio:.2f} (target "
          f"<= 1.25: {verdict(cpu_ratio <= 1.25)}); CPU {cpu_ms:.3f} ms/poll; peak RSS "
          f"{rss:.0f} MiB (target <= 200: {verdict(rss <= 200)})")
    print("per-round ratios, wall: " + ", ".join(f"{r:.2f}" for r in walls)
          + f" (ratio of the median walls {a / b:.2f})")
    print("per-round ratios, CPU: " + ", ".join(f"{r:.2f}" for r in cpus))


if __name__ == "__main__":
    main()
