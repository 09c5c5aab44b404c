"""Run one workload against two versions of the archiver, alternating, in the same minutes.

    python bench/compare.py --before DIR [--rounds 3] -- bench/bench_bulk.py --jobs 16

DIR holds another version's ``archiver`` package (``git archive REV archiver | tar -x
-C DIR``). Each round runs the workload script once with ``--rounds 1`` per version,
the order alternating (before first in odd rounds), the before version put first on
``PYTHONPATH`` (so its stand-in and its ``python -m archiver`` are used). Every line
the script prints is echoed, prefixed with the version and round; at the end, the
lines with a ratio ("x the", " / ") of every run, grouped by version, for the medians.
On a shared machine the ratio to the script's own baseline (measured in the same run)
is the figure to compare, not the raw wall time.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
RATIO = re.compile(r"( / |x the|ratio)", re.IGNORECASE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True,
                        help="folder holding the other version's archiver package")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--same-standin", action="store_true",
                        help="serve both versions from this checkout's Akool stand-in "
                             "(bench/_common.py's StandIn and BenchServer), so that only "
                             "the archiver differs; by default each version brings its own")
    parser.add_argument("workload", nargs=argparse.REMAINDER,
                        help="-- SCRIPT [ARGS...] (the script gets --rounds 1 added)")
    args = parser.parse_args()
    workload = [a for a in args.workload if a != "--"]
    if not workload:
        parser.error("name the workload script after --")
    if not (args.before / "archiver" / "__init__.py").is_file():
        parser.error(f"{args.before}: no archiver package there")
    if args.same_standin:
        os.environ["ARCHIVER_BENCH_STANDIN_PATH"] = str(BENCH_DIR.parent)
    ratios: dict[str, list[str]] = {"before": [], "after": []}
    for n in range(1, args.rounds + 1):
        order = ("before", "after") if n % 2 else ("after", "before")
        for version in order:
            ratios[version] += _run(version, n, workload, args.before)
    print(f"\n{' '.join(workload)}: {args.rounds} rounds per version, order alternating; "
          f"load average {os.getloadavg()[0]:.1f} at the end")
    for version, lines in ratios.items():
        print(f"\n{version}:")
        for line in lines:
            print(f"  {line}")


def _run(version: str, n: int, workload: list[str], before: Path) -> list[str]:
    env = dict(os.environ)
    if version == "before":
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(before.resolve()),
                                                          env.get("PYTHONPATH")]))
    script, *rest = workload
    command = [sys.executable, str(Path(script).resolve()), *rest, "--rounds", "1"]
    started = time.monotonic()
    # Not from the checkout: `python -m archiver` would import ./archiver before PYTHONPATH.
    with tempfile.TemporaryDirectory(prefix="archiver-compare-") as cwd:
        done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True,
                              check=False)
    for line in done.stdout.splitlines():
        print(f"[{version} {n}] {line}")
    if done.returncode != 0:
        sys.exit(f"{version} round {n}: {script} failed ({done.returncode}):\n{done.stderr}")
    print(f"[{version} {n}] ({time.monotonic() - started:.0f} s)", flush=True)
    return [f"round {n}: {line.strip()}" for line in done.stdout.splitlines()
            if RATIO.search(line)]


if __name__ == "__main__":
    main()
