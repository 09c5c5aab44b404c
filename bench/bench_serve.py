"""Workload 7, `archiver serve`: accepted callbacks per second, accept and archive latency.

    python bench/bench_serve.py [--jobs 2000] [--concurrency 64] [--rate 500]
                                [--low-rate 50] [--paced-seconds 6] [--rounds 3] [--quick]

The Akool stand-in (its own process) holds JOBS finished jobs with one 16 KiB video each.
`archiver serve` runs as its own process (default concurrency, the journal on local disk
next to the archive, synchronous=FULL). This script plays Akool: it signs and encrypts
every callback beforehand (``archiver.testing.callbacks``), then, per round, with a fresh
archive and journal and the stand-in reset:

- **burst**: JOBS callbacks, CONCURRENCY in flight at once, as fast as the server answers:
  accepted callbacks/s (200s over the wall time of the burst), the accept latency (POST
  to 200) p50 / p99, and archived jobs/s (first POST to last job archived);
- **paced at RATE/s** (open loop, 500/s by default: the target) for PACED_SECONDS: the
  accept latency p50 / p99 and the callback-to-archived latency p50 / p99, read from the
  journal (``done_at - received_at``, both stamped by the server); when RATE is above
  what the worker archives per second, the backlog shows in the latter;
- **paced at LOW_RATE/s** (50/s) for twice as long: callback-to-archived latency when
  the worker keeps up.

Targets (issue 12): >= 500 accepted callbacks/s on this 2-core machine, accept p99
<= 50 ms. The client, the server and the stand-in share the same two cores.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from _common import BenchServer, free_port, machine, median

from archiver.testing.callbacks import signed_body

KEY = "bench-key-not-secret"
CLIENT_ID = "bench-client-id!"            # 16 bytes
CLIENT_SECRET = "bench-client-secret-24b!"  # 24 bytes


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Serve:
    """`archiver serve` in its own process, on a fresh archive and journal."""

    def __init__(self, work: Path, base_url: str) -> None:
        self.root = work / f"archive-{time.monotonic_ns()}"
        self.port = free_port()
        config = work / f"serve-{self.port}.yaml"
        config.write_text(yaml.safe_dump({
            "api": {"base_url": base_url, "api_key": KEY},
            "polling": {"interval": 0.05, "max_interval": 0.2, "deadline": 600},
            "downloads": {"allow_private": True},
            "storage": {"backend": "local", "local": {"root": str(self.root)}},
            "webhook": {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                        "listen": f"127.0.0.1:{self.port}", "repoll_interval": 60},
        }))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "archiver", "serve", "-c", str(config), "-q"],
            cwd="/", stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "listening on " not in line:
            raise RuntimeError("archiver serve did not start")
        self.url = line.split("listening on ", 1)[1].strip()
        self.journal = self.root / ".archiver-journal.sqlite3"

    def done_latencies(self) -> tuple[int, list[float]]:
        """(rows done, done_at - received_at of each archived row)."""
        db = sqlite3.connect(self.journal, timeout=30)
        try:
            rows = db.execute("SELECT state, outcome, done_at - received_at FROM jobs").fetchall()
        finally:
            db.close()
        done = [r for r in rows if r[0] == "done"]
        return len(done), [r[2] for r in done if r[1] == "archived"]

    def wait_done(self, count: int, timeout: float = 600) -> float:
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if self.journal.exists() and self.done_latencies()[0] >= count:
                return time.monotonic() - start
            time.sleep(0.05)
        raise RuntimeError(f"not all {count} jobs archived within {timeout}s")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)


def bodies(ids: list[str], base_url: str) -> list[dict[str, Any]]:
    return [signed_body({"_id": i, "status": 3, "type": 2,
                         "url": f"{base_url}/files/{i}/video.mp4"}, CLIENT_ID, CLIENT_SECRET)
            for i in ids]


async def post_all(url: str, payloads: list[dict[str, Any]], concurrency: int,
                   rate: float | None) -> tuple[float, list[float], int]:
    """POST every payload; returns (wall, accept latencies, count of 200s)."""
    latencies: list[float] = []
    ok = 0
    slots = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:
        async def one(body: dict[str, Any]) -> None:
            nonlocal ok
            async with slots:
                start = time.perf_counter()
                async with http.post(url, json=body) as resp:
                    await resp.read()
                    latencies.append(time.perf_counter() - start)
                    ok += resp.status == 200

        start = time.perf_counter()
        tasks = []
        for n, body in enumerate(payloads):
            if rate is not None:
                delay = start + n / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(body)))
        await asyncio.gather(*tasks)
        return time.perf_counter() - start, latencies, ok


def load_average() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def paced_round(work: Path, server: BenchServer, ids: list[str], rate: float,
                concurrency: int) -> tuple[list[float], list[float], int]:
    """RATE callbacks/s (open loop): (accept latencies, callback-to-archived, accepted)."""
    server.reset()
    serve = Serve(work, server.base_url)
    try:
        payloads = bodies(ids, server.base_url)
        _, lat, ok = asyncio.run(post_all(serve.url, payloads, concurrency, rate))
        serve.wait_done(len(ids))
        _, done = serve.done_latencies()
    finally:
        serve.stop()
    return lat, done, ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000, help="callbacks in the burst")
    parser.add_argument("--concurrency", type=int, default=64,
                        help="callbacks in flight at most (burst and paced)")
    parser.add_argument("--rate", type=float, default=500.0, help="paced rate (target)")
    parser.add_argument("--low-rate", type=float, default=50.0,
                        help="a rate the worker keeps up with: callback-to-archived latency")
    parser.add_argument("--paced-seconds", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="300 jobs, 1 round, 2 s paced")
    args = parser.parse_args()
    if args.quick:
        args.jobs, args.rounds, args.paced_seconds = 300, 1, 2.0
    fast_count = int(args.rate * args.paced_seconds)
    slow_count = int(args.low_rate * args.paced_seconds * 2)

    print(f"machine: {machine()}; load average before: {load_average()}")
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        work = Path(tmp)
        server = BenchServer(work, jobs=max(args.jobs, fast_count, slow_count), api_key=KEY,
                             video_size=16 * 1024)
        try:
            ids = server.ids()
            results: dict[str, list[float]] = {}

            def add(name: str, value: float) -> None:
                results.setdefault(name, []).append(value)

            for round_no in range(args.rounds):
                server.reset()
                serve = Serve(work, server.base_url)
                try:
                    wall, lat, ok = asyncio.run(post_all(
                        serve.url, bodies(ids[:args.jobs], server.base_url),
                        args.concurrency, None))
                    assert ok == args.jobs, f"only {ok} of {args.jobs} accepted"
                    drain = serve.wait_done(args.jobs)
                finally:
                    serve.stop()
                add("burst: accepted callbacks/s", ok / wall)
                add("burst: accept p50 ms", percentile(lat, 0.5) * 1000)
                add("burst: accept p99 ms", percentile(lat, 0.99) * 1000)
                add("burst: archived jobs/s (first POST to last archived)",
                    args.jobs / (wall + drain))

                lat, done, ok = paced_round(work, server, ids[:fast_count], args.rate,
                                            args.concurrency)
                assert ok == fast_count
                add(f"{args.rate:g}/s: accept p50 ms", percentile(lat, 0.5) * 1000)
                add(f"{args.rate:g}/s: accept p99 ms", percentile(lat, 0.99) * 1000)
                add(f"{args.rate:g}/s: callback-to-archived p50 ms", percentile(done, 0.5) * 1000)
                add(f"{args.rate:g}/s: callback-to-archived p99 ms",
                    percentile(done, 0.99) * 1000)

                lat, done, ok = paced_round(work, server, ids[:slow_count], args.low_rate,
                                            args.concurrency)
                assert ok == slow_count
                add(f"{args.low_rate:g}/s: accept p99 ms", percentile(lat, 0.99) * 1000)
                add(f"{args.low_rate:g}/s: callback-to-archived p50 ms",
                    percentile(done, 0.5) * 1000)
                add(f"{args.low_rate:g}/s: callback-to-archived p99 ms",
                    percentile(done, 0.99) * 1000)
                print(f"round {round_no + 1} done; load average {load_average()}", flush=True)
        finally:
            server.close()

    print(f"\nworkload 7: `archiver serve`; a burst of {args.jobs} callbacks "
          f"({args.concurrency} in flight), then {fast_count} paced at {args.rate:g}/s and "
          f"{slow_count} at {args.low_rate:g}/s; one 16 KiB video per job; journal on local "
          f"disk (WAL, synchronous=FULL); {args.rounds} round(s), medians\n")
    print("| measure | median | each round |")
    print("|---|---|---|")
    for name, values in results.items():
        print(f"| {name} | {median(values):.1f} | {', '.join(f'{v:.1f}' for v in values)} |")
    rate = median(results["burst: accepted callbacks/s"])
    p99 = median(results[f"{args.rate:g}/s: accept p99 ms"])
    print(f"\ntargets: >= 500 accepted callbacks/s: {'met' if rate >= 500 else 'MISSED'} "
          f"({rate:.0f}/s); accept p99 <= 50 ms at {args.rate:g}/s: "
          f"{'met' if p99 <= 50 else 'MISSED'} ({p99:.1f} ms)")
    print(f"load average after: {load_average()}; the client, the server and the stand-in "
          f"share {os.cpu_count()} cores (with other work on the machine)")


if __name__ == "__main__":
    main()
