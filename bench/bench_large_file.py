"""Workload 2, one large file: archiver's throughput and peak RSS against `curl -o`, same URL.

    python bench/bench_large_file.py [--size-mib 2048] [--rounds 5]
                                     [--file-server nginx|standin] [--quick]

The Akool stand-in (its own process) answers the API for one job whose video is SIZE;
the video itself is served by nginx from a folder (default) or by the stand-in
(``--file-server standin``: Python, sharing the 2 cores with both clients). Per round,
in an order rotated round by round: ``archiver run`` at default settings (a file this
large goes over ``downloads.segments`` connections) into a fresh archive, the archiver
with ``downloads.segments: 1`` (one stream), a bare aiohttp loop
(``_bare_download.py --durable``: SHA-256, temp file, fsync, rename; one stream) and
``curl -s -o FILE URL`` on the same URL (``sync`` before each, so none pays for another's
dirty pages). Prints medians, the throughput ratio and each process's own peak RSS
(``ru_maxrss`` from wait4): the median and the largest over the rounds.

Targets: archiver throughput >= 0.90 x curl's; archiver peak RSS <= 100 MiB.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import (
    BENCH_DIR,
    BenchServer,
    Measure,
    MiB,
    Nginx,
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--file-server", choices=("nginx", "standin"), default="nginx")
    parser.add_argument("--quick", action="store_true", help="256 MiB, 3 rounds: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.size_mib, args.rounds = 256, 3
    size = args.size_mib * MiB

    with tempfile.TemporaryDirectory(prefix="bench-large-") as tmp:
        work = Path(tmp)
        nginx = Nginx(work, work / "www") if args.file_server == "nginx" else None
        server = BenchServer(work, jobs=1, api_key=KEY, video_size=size,
                             export_dir=work / "www" if nginx else None,
                             public_base_url=nginx.base_url if nginx else None)
        try:
            results = run_rounds(args, work, server, nginx, size)
        finally:
            server.close()
            if nginx:
                nginx.close()
    report(args, results)


def run_rounds(args: argparse.Namespace, work: Path, server: BenchServer, nginx: Nginx | None,
               size: int) -> dict[str, list[Measure]]:
    [job] = server.ids()
    url = f"{nginx.base_url if nginx else server.base_url}/files/{job}/video.mp4"
    config = write_config(work / "cfg.yaml", server.base_url, KEY, work / "archive")
    single = write_config(work / "cfg-1.yaml", server.base_url, KEY, work / "archive-1",
                          downloads={"allow_private": True, "segments": 1})
    url_list = work / "urls.txt"
    url_list.write_text(f"{url} video.mp4\n")
    report_path = work / "report.json"
    stored = work / "archive" / job / "video.mp4"
    out = work / "curl.out"

    def archiver() -> Measure:
        stored.unlink(missing_ok=True)
        (work / "archive" / job / "archive.json").unlink(missing_ok=True)
        server.reset()
        settle()
        m = measure(archiver_cmd(server.manifest, config, report_path))
        assert m.returncode == 0, m
        assert json.loads(report_path.read_text())["totals"]["archived"] == 1
        assert stored.stat().st_size == size
        stored.unlink()  # free the disk before the other side runs
        return m

    def one_stream() -> Measure:
        # The same run with downloads.segments: 1: what the segments cost in memory.
        root = work / "archive-1"
        (root / job / "video.mp4").unlink(missing_ok=True)
        (root / job / "archive.json").unlink(missing_ok=True)
        server.reset()
        settle()
        m = measure(archiver_cmd(server.manifest, single, report_path))
        assert m.returncode == 0, m
        assert (root / job / "video.mp4").stat().st_size == size
        (root / job / "video.mp4").unlink()
        return m

    def bare() -> Measure:
        dest = work / "bare"
        settle()
        m = measure([sys.executable, str(BENCH_DIR / "_bare_download.py"), str(url_list),
                     str(dest), "--parallel", "1", "--durable"])
        assert m.returncode == 0 and (dest / "video.mp4").stat().st_size == size, m
        (dest / "video.mp4").unlink()
        return m

    def curl() -> Measure:
        out.unlink(missing_ok=True)
        settle()
        m = measure(["curl", "-s", "-o", str(out), url])
        assert m.returncode == 0 and out.stat().st_size == size, m
        out.unlink()
        return m

    commands = {"archiver": archiver, "archiver segments=1": one_stream,
                "bare aiohttp": bare, "curl -o": curl}
    results: dict[str, list[Measure]] = {name: [] for name in commands}
    names = list(commands)
    for n in range(args.rounds):
        for name in names[n % len(names):] + names[:n % len(names)]:  # rotate who goes first
            results[name].append(commands[name]())
        print(f"round {n + 1}: " + ", ".join(
            f"{name} {results[name][-1].wall:.2f}s {results[name][-1].max_rss_mib:.0f}MiB"
            for name in names), file=sys.stderr, flush=True)
    return results


def report(args: argparse.Namespace, results: dict[str, list[Measure]]) -> None:
    mib = args.size_mib
    rows = []
    for name, runs in results.items():
        wall = median([m.wall for m in runs])
        rows.append([name, f"{wall:.2f}", f"{mib / wall:.0f}",
                     f"{median([m.cpu for m in runs]):.2f}",
                     f"{median([m.max_rss_mib for m in runs]):.0f}",
                     f"{max(m.max_rss_mib for m in runs):.0f}"])
    a = median([m.wall for m in results["archiver"]])
    c = median([m.wall for m in results["curl -o"]])
    rss = max(m.max_rss_mib for m in results["archiver"])
    print(f"machine: {machine()}")
    print(f"workload 2: one {mib} MiB file from {args.file_server}; {args.rounds} rounds, "
          "order rotated, medians")
    print(rows_table(["", "wall s", "MiB/s", "CPU s", "peak RSS MiB (median)",
                      "peak RSS MiB (largest)"], rows))
    one = median([m.wall for m in results["archiver segments=1"]])
    print(f"archiver (default) wall = {a / one:.2f} x the one stream's; peak RSS median "
          f"{median([m.max_rss_mib for m in results['archiver']]):.0f} MiB against "
          f"{median([m.max_rss_mib for m in results['archiver segments=1']]):.0f} MiB "
          "(one stream) and "
          f"{median([m.max_rss_mib for m in results['bare aiohttp']]):.0f} MiB (bare aiohttp)")
    print(f"archiver throughput = {c / a:.2f} x curl's (target >= 0.90: {verdict(c / a >= 0.9)});"
          f" archiver peak RSS {rss:.0f} MiB (target <= 100: {verdict(rss <= 100)})")
    pairs = zip(results["archiver"], results["curl -o"], strict=True)
    print("per-round throughput ratios: " + ", ".join(f"{y.wall / x.wall:.2f}" for x, y in pairs))


if __name__ == "__main__":
    main()
