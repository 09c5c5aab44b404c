"""Workload 6, a big manifest: reading, checking and skip-checking 200,000 ids.

    python bench/bench_manifest.py [--ids 200000] [--committed 0.1] [--rounds 5] [--quick]

Generates two manifests of the same ids (24 hex characters, like Akool's): bare ids
(``videos: [id, ...]``, 5.5 MiB) and ``{id, label}`` entries (10.4 MiB), and a local
archive where a fraction of the ids (``--committed``, 10% by default) is committed, i.e.
has ``<id>/archive.json``. Each measurement is a fresh process (this script with
``--child``), so each pays its own interpreter start and imports and has its own peak
RSS. Per round, in rotating order, for each manifest:

- archiver: ``load_manifest(path)`` (parse and validate every id) and
  ``Archive(LocalBackend(root)).archived(ids)``, the skip check a run starts with;
- yaml.load: ``yaml.load(text, Loader=yaml.CSafeLoader)`` of the same file, the bare cost
  of reading it with libyaml (no validation, no skip check);
- regex + stat: ids read with a regular expression and one ``os.path.isfile`` each, the
  floor for doing the archiver's job in Python.

Prints medians of the wall time (process start to exit), of the work alone (timed in
the child, imports excluded), the largest peak RSS (``wait4``), and the ratios
archiver / yaml.load (median of per-round ratios).

Target: the archiver reads, checks and skip-checks 200,000 ids (either shape) in
<= 5 s wall and <= 250 MiB peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import Measure, machine, measure, median, rows_table, verdict

SIDES = ("archiver", "yaml.load", "regex + stat")
SHAPES = ("ids", "entries")


# ----------------------------------------------------------------- in the child

def child(side: str, manifest: str, root: str, out: str) -> None:
    """One measurement: do *side*'s work, write its time and counts as JSON to *out*."""
    work: Callable[[], tuple[int, int]]
    if side == "archiver":
        import asyncio

        from archiver.manifest import load_manifest

        try:  # the Archive layer over a backend (issue 19); bench/compare.py runs older too
            from archiver.archive import Archive
            from archiver.storage.local import LocalBackend

            def skip_check(ids: Iterable[str]) -> set[str]:
                return asyncio.run(Archive(LocalBackend(root)).archived(ids))
        except ImportError:
            from archiver.storage.local import LocalStorage

            def skip_check(ids: Iterable[str]) -> set[str]:
                return asyncio.run(LocalStorage(root).archived(ids))

        def work() -> tuple[int, int]:
            items = load_manifest(manifest)
            done = skip_check(i.id for i in items)
            return len(items), len(done)
    elif side == "yaml.load":
        import yaml

        def work() -> tuple[int, int]:
            with open(manifest, encoding="utf-8") as f:
                data = yaml.load(f.read(), Loader=yaml.CSafeLoader)
            return len(data["videos"]), 0
    else:
        import re

        def work() -> tuple[int, int]:
            with open(manifest, encoding="utf-8") as f:
                ids = re.findall(r"^\s*-\s+(?:id:\s+)?([A-Za-z0-9_-]+)\s*$", f.read(), re.M)
            isfile = os.path.isfile
            return len(ids), sum(1 for i in ids if isfile(f"{root}/{i}/archive.json"))

    start = time.perf_counter()
    items, archived = work()
    seconds = time.perf_counter() - start
    Path(out).write_text(json.dumps({"seconds": seconds, "items": items, "archived": archived}))


# ------------------------------------------------------------------ in the parent

def generate(work: Path, count: int, committed: float) -> tuple[dict[str, Path], Path]:
    rng = random.Random(9)
    ids: list[str] = []
    while len(ids) < count:
        i = f"{rng.getrandbits(96):024x}"
        if not i.isdigit():  # all digits would be a YAML number, which the archiver refuses
            ids.append(i)
    files = {"ids": work / "ids.yaml", "entries": work / "entries.yaml"}
    files["ids"].write_text("videos:\n" + "".join(f"  - {i}\n" for i in ids))
    files["entries"].write_text("videos:\n" + "".join(
        f"  - id: {i}\n    label: onboarding-{n}\n" for n, i in enumerate(ids)))
    root = work / "archive"
    for i in rng.sample(ids, int(count * committed)):
        (root / i).mkdir(parents=True)
        (root / i / "archive.json").write_text("{}")
    return files, root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", type=int, default=200_000)
    parser.add_argument("--committed", type=float, default=0.1,
                        help="fraction of the ids already archived")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="20,000 ids, 3 rounds: a smoke run")
    parser.add_argument("--child", nargs=4, metavar=("SIDE", "MANIFEST", "ROOT", "OUT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    if args.quick:
        args.ids, args.rounds = 20_000, 3

    with tempfile.TemporaryDirectory(prefix="bench-manifest-") as tmp:
        work = Path(tmp)
        files, root = generate(work, args.ids, args.committed)
        sizes = {shape: path.stat().st_size for shape, path in files.items()}
        results = run_rounds(args, work, files, root)
    report(args, results, sizes)


Results = dict[tuple[str, str], list[tuple[Measure, float]]]


def run_rounds(args: argparse.Namespace, work: Path, files: dict[str, Path],
               root: Path) -> Results:
    out = work / "child.json"
    expected_archived = int(args.ids * args.committed)

    def run(side: str, shape: str) -> tuple[Measure, float]:
        out.unlink(missing_ok=True)
        m = measure([sys.executable, str(Path(__file__).resolve()), "--child", side,
                     str(files[shape]), str(root), str(out)])
        assert m.returncode == 0, (side, shape, m)
        got = json.loads(out.read_text())
        assert got["items"] == args.ids, (side, shape, got)
        if side != "yaml.load":
            assert got["archived"] == expected_archived, (side, shape, got)
        return m, got["seconds"]

    runs = [(side, shape) for shape in SHAPES for side in SIDES]
    results: Results = {key: [] for key in runs}
    for n in range(args.rounds):
        shift = n % len(runs)
        for key in runs[shift:] + runs[:shift]:
            results[key].append(run(*key))
        print(f"round {n + 1}: " + ", ".join(
            f"{side} {shape} {results[(side, shape)][-1][0].wall:.2f}s" for side, shape in runs),
            file=sys.stderr, flush=True)
    return results


def report(args: argparse.Namespace, results: Results, sizes: dict[str, int]) -> None:
    rows = []
    for (side, shape), runs in results.items():
        rows.append([f"{side}, {shape}", f"{median([m.wall for m, _ in runs]):.2f}",
                     f"{median([s for _, s in runs]):.2f}",
                     f"{median([m.cpu for m, _ in runs]):.2f}",
                     f"{max(m.max_rss_mib for m, _ in runs):.0f}"])
    shown = ", ".join(f"{shape} {sizes[shape] / 2**20:.1f} MiB" for shape in SHAPES)
    print(f"machine: {machine()}")
    print(f"workload 6: {args.ids} ids ({shown}), {args.committed:.0%} committed; "
          f"{args.rounds} rounds, order rotating, medians (peak RSS: the largest)")
    print(rows_table(["", "wall s", "work s", "CPU s", "peak RSS MiB"], rows))
    for shape in SHAPES:
        mine, bare = results[("archiver", shape)], results[("yaml.load", shape)]
        wall = median([m.wall for m, _ in mine])
        rss = max(m.max_rss_mib for m, _ in mine)
        ratios = [a.wall / b.wall for (a, _), (b, _) in zip(mine, bare, strict=True)]
        print(f"{shape}: archiver {wall:.2f} s (target <= 5: {verdict(wall <= 5)}), "
              f"peak RSS {rss:.0f} MiB (target <= 250: {verdict(rss <= 250)}); "
              f"archiver / yaml.load wall = {median(ratios):.2f}; per-round ratios: "
              + ", ".join(f"{r:.2f}" for r in ratios))


if __name__ == "__main__":
    main()
