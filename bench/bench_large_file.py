"""One large file: archiver's peak RSS and throughput against `curl -o`, same URL, same run.

    python bench/bench_large_file.py [--size-mib 1024] [--rounds 5]

Starts the Akool stand-in in its own process serving one job with a SIZE video, then
alternates `archiver run` (fresh archive each round) and `curl -o FILE` on the same URL.
Prints medians, the ratio and the archiver's peak RSS.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import StandIn, machine, measure, median, write_config

KEY = "bench-key-not-secret"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    size = args.size_mib * 1024 * 1024

    with tempfile.TemporaryDirectory(prefix="bench-large-") as tmp:
        work = Path(tmp)
        server = StandIn(work, jobs=1, video_size=size, api_key=KEY)
        try:
            [job] = server.ids()
            url = f"{server.base_url}/files/{job}/video.mp4"
            config = write_config(work / "cfg.yaml", server.base_url, KEY, work / "archive")
            ours, curls = [], []
            for _ in range(args.rounds):
                shutil.rmtree(work / "archive", ignore_errors=True)
                m = measure([sys.executable, "-m", "archiver", "run", str(server.manifest),
                             "-c", str(config), "-q"])
                assert m.returncode == 0, m
                assert (work / "archive" / job / "video.mp4").stat().st_size == size
                ours.append(m)
                out = work / "curl.out"
                c = measure(["curl", "-s", "-o", str(out), url])
                assert c.returncode == 0 and out.stat().st_size == size
                out.unlink()
                curls.append(c)
        finally:
            server.close()

    a_wall = median([m.wall for m in ours])
    c_wall = median([m.wall for m in curls])
    mib = size / 2**20
    print(f"machine: {machine()}")
    print(f"one {args.size_mib} MiB file, {args.rounds} rounds alternating, medians")
    print(f"{'':<10} {'wall s':>8} {'MiB/s':>8} {'peak RSS MiB':>13}")
    print(f"{'archiver':<10} {a_wall:>8.2f} {mib / a_wall:>8.0f} "
          f"{max(m.max_rss_mib for m in ours):>13.1f}")
    print(f"{'curl -o':<10} {c_wall:>8.2f} {mib / c_wall:>8.0f} "
          f"{max(m.max_rss_mib for m in curls):>13.1f}")
    print(f"archiver throughput = {c_wall / a_wall:.2f} x curl's")


if __name__ == "__main__":
    main()
