"""Workload 10, ``archiver index`` of a big archive: 100,000 records into static pages.

    python bench/bench_index.py [--items 100000] [--rounds 5] [--quick]

Builds an archive of ``--items`` committed items in the in-memory backend
(:mod:`archiver.testing.memory`: the storage contract, no disk, so what is measured is the
index's own work), each record with a label and three files (``video.mp4``,
``original.srt``, ``no_caption.mp4``), then per round, in rotating order, in this process:

- index: :func:`archiver.archive.index.write_index` - list, read and parse every
  ``archive.json``, sort, render the pages (1,000 items each), publish them;
- render: :func:`archiver.pages.index.render` alone, of the items already read;
- json.dumps: ``json.dumps`` of the same records as one list (``indent=None``), the floor
  for turning them into any text at all;
- json.loads: ``json.loads`` of every stored ``archive.json``, the floor for reading them.

Prints the medians and the ratios (median of per-round ratios) index / (json.loads +
json.dumps) and render / json.dumps, and the pages' sizes: what a browser opens is one
page, so its size (not the archive's) is what must stay small.

Target: 100,000 items indexed in <= 10 s (2 cores); every page <= 2 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine

from archiver.archive.index import collect_items, write_index
from archiver.archive.record import ArchiveRecord
from archiver.models import FileRecord
from archiver.pages.index import render
from archiver.testing.memory import MemoryBackend


def build(count: int) -> tuple[MemoryBackend, list[dict[str, object]]]:
    backend = MemoryBackend()
    records = []
    for n in range(count):
        item_id = f"{n:024x}"
        record = ArchiveRecord(
            id=item_id, label=f"campaign {n % 97} / take {n}",
            archived_at=f"2026-{1 + n * 12 // count:02d}-{1 + n % 28:02d}T"
                        f"{n % 24:02d}:{n % 60:02d}:{(n * 7) % 60:02d}Z",
            archiver_version="0.1.0", video_status=3, create_time=1_764_000_000_000 + n,
            expires_at="2026-12-01T00:00:00Z",
            files=(FileRecord("video.mp4", 40_000_000 + n, f"{n:064x}",
                              f"https://cdn.example/{item_id}/video.mp4"),
                   FileRecord("original.srt", 2_000 + n % 100, f"{n + 1:064x}",
                              f"https://cdn.example/{item_id}/original.srt"),
                   FileRecord("no_caption.mp4", 39_000_000 + n, f"{n + 2:064x}",
                              f"https://cdn.example/{item_id}/no_caption.mp4")))
        backend.store(item_id, "archive.json", record.to_bytes())
        records.append(record.to_json())
    return backend, records


def timed(fn: Callable[[], object]) -> float:
    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="10,000 items, 2 rounds")
    args = parser.parse_args()
    if args.quick:
        args.items, args.rounds = 10_000, 2
    print(machine())
    backend, records = build(args.items)
    items, _ = asyncio.run(collect_items(backend))
    raws = [backend.files[i]["archive.json"].data for i in sorted(backend.files)]
    work: dict[str, Callable[[], object]] = {
        "index": lambda: asyncio.run(write_index(backend)),
        "render": lambda: render(items, generated_at="2026-12-01T00:00:00Z"),
        "json.dumps": lambda: json.dumps(records),
        "json.loads": lambda: [json.loads(r) for r in raws],
    }
    times: dict[str, list[float]] = {name: [] for name in work}
    names = list(work)
    for round_ in range(args.rounds):
        for name in names[round_ % len(names):] + names[:round_ % len(names)]:
            times[name].append(timed(work[name]))
    med = {name: statistics.median(t) for name, t in times.items()}
    floor = [times["json.loads"][r] + times["json.dumps"][r] for r in range(args.rounds)]
    index_ratio = statistics.median(i / f for i, f in zip(times["index"], floor, strict=True))
    render_ratio = statistics.median(
        r / d for r, d in zip(times["render"], times["json.dumps"], strict=True))
    pages = {name: len(s.data) for name, s in backend.top.items()}
    print(f"{args.items:,} items, {args.rounds} rounds (medians):")
    for name, value in med.items():
        print(f"  {name:<11} {value:8.3f} s")
    print(f"  index / (json.loads + json.dumps)  {index_ratio:.2f}x")
    print(f"  render / json.dumps                {render_ratio:.2f}x")
    print(f"  pages: {len(pages)}, first {pages['index.html'] / 1e6:.2f} MB, largest "
          f"{max(pages.values()) / 1e6:.2f} MB, all {sum(pages.values()) / 1e6:.1f} MB; "
          f"json.dumps of all records {len(json.dumps(records)) / 1e6:.1f} MB")
    ok = med["index"] <= 10 and max(pages.values()) <= 2_000_000
    print(f"target (index <= 10 s, every page <= 2 MB): {'met' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()
