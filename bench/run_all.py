"""Run the benchmark workloads 1-4 one after the other and print all their tables.

    python bench/run_all.py [--quick] [--s3] [--only bulk,large,polling,small] [--out FILE]

Each workload is its own script (see bench/README.md); this runs them in order with the
same flags, prints each one's output as it finishes, and at the end all the tables
together with the machine, the load average and the command lines, ready to paste into
bench/README.md (``--out`` also writes that summary to FILE). Workload 5 (S3) is
``bench/bench_s3.py``, run on its own.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import BENCH_DIR, machine

SCRIPTS = {
    "bulk": "bench_bulk.py",
    "large": "bench_large_file.py",
    "polling": "bench_polling.py",
    "small": "bench_small_items.py",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke runs (about 2 minutes)")
    parser.add_argument("--s3", action="store_true", help="workload 4: also the S3 re-run")
    parser.add_argument("--only", default=",".join(SCRIPTS),
                        help=f"comma-separated subset of {','.join(SCRIPTS)}")
    parser.add_argument("--out", type=Path, help="also write the summary here")
    args = parser.parse_args()

    outputs = []
    for name in args.only.split(","):
        cmd = [sys.executable, str(BENCH_DIR / SCRIPTS[name])]
        if args.quick:
            cmd.append("--quick")
        if args.s3 and name == "small":
            cmd.append("--s3")
        shown = "python bench/" + " ".join([SCRIPTS[name], *cmd[2:]])
        print(f"=== {shown}", flush=True)
        load = os.getloadavg()[0]
        start = time.monotonic()
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
        took = time.monotonic() - start
        print(proc.stdout, flush=True)
        if proc.returncode != 0:
            print(f"{shown} failed with status {proc.returncode}", file=sys.stderr)
        # The machine line is printed once, in the summary.
        body = "\n".join(line for line in proc.stdout.splitlines()
                         if not line.startswith("machine: "))
        outputs.append(f"`{shown}` ({took:.0f} s; load average before: {load:.2f})\n\n"
                       f"{body}\n")

    summary = f"machine: {machine()}\n\n" + "\n".join(outputs)
    print("=== summary\n")
    print(summary)
    if args.out is not None:
        args.out.write_text(summary)


if __name__ == "__main__":
    main()
