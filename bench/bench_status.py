"""Workload 11, serve's status page on a big journal: what reading it costs, and what it
costs the callbacks' commits.

    python bench/bench_status.py [--jobs 100000] [--pending 0.1] [--rounds 5]

Builds a journal of ``--jobs`` jobs (a fraction ``--pending`` pending, the rest done,
one in seven failed; payloads with signed result URLs, as Akool sends them). Per round,
in rotating order:

- overview: :func:`archiver.service.overview.read_overview` (what the page reads), on a
  connection of its own, in a thread, as the page runs it;
- stats: ``Journal.stats()``, what /metrics reads on the journal's thread (the baseline);
- commits alone / commits during overview / commits during the same overview on the
  journal's thread: 50 one-row fsynced commits each (``check_writable``, what a
  callback's commit costs), alone, while overviews run on their own connection, and
  while the same reads run on the journal's own thread (the design not taken). Median
  and largest commit wait.

Prints medians and the ratios; the point of the design is that the second commit column
stays near the first, where the third holds each commit back for a whole read.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from archiver.service.journal import Journal
from archiver.service.overview import _overview, read_overview

LIMIT, WINDOW = 50, 3600.0


def build(path: Path, jobs: int, pending: float) -> None:
    asyncio.run(_create(path))
    now = time.time()
    every = max(1, round(1 / pending)) if pending else jobs + 1
    rows = []
    for i in range(jobs):
        job = f"{i:024x}"
        done = i % every != 0
        url = (f"https://d1.cloudfront.net/files/{job}/video.mp4?Expires=1&Signature="
               f"{'a' * 40}&Key-Pair-Id=K")
        payload = json.dumps({"_id": job, "status": 3, "type": "talking photo", "url": url})
        failed = done and i % 7 == 0
        rows.append((job, 3, url, payload, now - 600_000 + i * 5, now,
                     "done" if done else "pending",
                     ("failed" if failed else "archived") if done else None,
                     "Akool job failed: x" if failed else None, 1, now,
                     now - 600_000 + i * 5 + 30 if done else None))
    db = sqlite3.connect(path)
    with db:
        db.executemany("INSERT INTO jobs (id, status, url, payload, received_at, updated_at, "
                       "state, outcome, error, attempts, next_attempt, done_at) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    db.close()


async def _create(path: Path) -> None:
    async with Journal(path):
        pass


def median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


async def commits(journal: Journal, n: int = 50) -> list[float]:
    waits = []
    for _ in range(n):
        started = time.perf_counter()
        await journal.check_writable()
        waits.append(time.perf_counter() - started)
    return waits


async def round_(path: Path, journal: Journal, order: int) -> dict[str, float]:
    since = time.time() - WINDOW
    out: dict[str, float] = {}

    async def overview() -> None:
        started = time.perf_counter()
        await asyncio.to_thread(read_overview, path, LIMIT, since)
        out["overview"] = time.perf_counter() - started

    async def stats() -> None:
        started = time.perf_counter()
        await journal.stats()
        out["stats"] = time.perf_counter() - started

    async def alone() -> None:
        waits = await commits(journal)
        out["commit alone"], out["commit alone max"] = median(waits), max(waits)

    async def beside(name: str, read: object) -> None:
        stop = asyncio.Event()

        async def reads() -> None:
            while not stop.is_set():
                await read()  # type: ignore[operator]

        task = asyncio.create_task(reads())
        waits = await commits(journal)
        stop.set()
        await task
        out[name], out[name + " max"] = median(waits), max(waits)

    async def on_own() -> None:
        await beside("commit, overview on its own connection",
                     lambda: asyncio.to_thread(read_overview, path, LIMIT, since))

    async def on_thread() -> None:
        await beside("commit, overview on the journal thread",
                     lambda: journal._call(_overview, journal._connection(), LIMIT, since))

    steps = [overview, stats, alone, on_own, on_thread]
    for step in steps[order % len(steps):] + steps[:order % len(steps)]:
        await step()
    return out


async def main_async(args: argparse.Namespace, path: Path) -> None:
    async with Journal(path) as journal:
        rounds = [await round_(path, journal, i) for i in range(args.rounds)]
    names = list(rounds[0])
    print(f"journal: {args.jobs} jobs, {args.pending:.0%} pending; {args.rounds} rounds")
    print(f"{'measure':<48} {'median ms':>10}")
    for name in names:
        print(f"{name:<48} {median([r[name] for r in rounds]) * 1000:>10.1f}")
    print(f"overview / stats: {median([r['overview'] / r['stats'] for r in rounds]):.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--pending", type=float, default=0.1)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-status-") as tmp:
        path = Path(tmp) / "journal.sqlite3"
        build(path, args.jobs, args.pending)
        asyncio.run(main_async(args, path))


if __name__ == "__main__":
    main()
