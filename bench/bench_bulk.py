"""Workload 1, bulk throughput to local disk: `archiver run` against `aria2c -j 16`.

    python bench/bench_bulk.py [--rounds 5] [--jobs 32] [--file-server nginx|standin] [--quick]

32 jobs, each with a 16 MiB video, an 8 MiB no-caption video and two SRTs (768 MiB in
all), finished at the first poll. The API is the Akool stand-in (its own process); the
result files come from nginx serving the same bytes from a folder (default), or from the
stand-in itself (``--file-server standin``, Python, sharing the 2 cores).

Per round, alternating which goes first, each into a fresh folder:

- ``archiver run`` with ``concurrency.downloads: 16`` (SHA-256, fsync, atomic renames,
  ``info.json``/``SHA256SUMS``/``archive.json``);
- ``aria2c -j 16`` on the list of the same 128 URLs (aria2c's defaults otherwise: it
  neither hashes nor fsyncs);
- for reference (``--no-bare`` leaves it out), ``bench/_bare_download.py --durable``: a
  plain aiohttp loop, 16 files at once, SHA-256, temporary file, fsync, rename.

``sync`` runs before each measured command, so neither pays for the other's dirty pages.
Target: archiver wall time <= 1.0 x aria2c's.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
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
    report_totals,
    rows_table,
    settle,
    verdict,
    write_config,
)

KEY = "bench-key-not-secret"
NAMES = ("video.mp4", "original.srt", "translated.srt", "no_caption.mp4")
BARE = "bare aiohttp loop (reference)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=32)
    parser.add_argument("--video-mib", type=int, default=16)
    parser.add_argument("--no-caption-mib", type=int, default=8)
    parser.add_argument("--parallel", type=int, default=16,
                        help="aria2c -j and the archiver's concurrency.downloads")
    parser.add_argument("--file-server", choices=("nginx", "standin"), default="nginx")
    parser.add_argument("--no-bare", action="store_true",
                        help="leave out the bare aiohttp loop (reference only)")
    parser.add_argument("--quick", action="store_true", help="8 jobs, 3 rounds: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.jobs, args.rounds = 8, 3
    if shutil.which("aria2c") is None:
        sys.exit("aria2c not found: apt-get install -y aria2")

    with tempfile.TemporaryDirectory(prefix="bench-bulk-") as tmp:
        work = Path(tmp)
        nginx = None
        if args.file_server == "nginx":
            www = work / "www"
            nginx = Nginx(work, www)
        server = BenchServer(
            work, jobs=args.jobs, api_key=KEY, files="video,original_srt,translated_srt,no_caption",
            video_size=args.video_mib * MiB, no_caption_size=args.no_caption_mib * MiB,
            export_dir=www if nginx else None,
            public_base_url=nginx.base_url if nginx else None)
        try:
            results, total = run_rounds(args, work, server, nginx)
        finally:
            server.close()
            if nginx:
                nginx.close()
    report(args, results, total)


def run_rounds(args: argparse.Namespace, work: Path, server: BenchServer,
               nginx: Nginx | None) -> tuple[dict[str, list[Measure]], int]:
    ids = server.ids()
    files_base = nginx.base_url if nginx else server.base_url
    url_list = work / "urls.txt"
    url_list.write_text("".join(
        f"{files_base}/files/{job}/{name}\n  dir={job}\n  out={name}\n"
        for job in ids for name in NAMES))
    bare_list = work / "bare-urls.txt"
    bare_list.write_text("".join(f"{files_base}/files/{job}/{name} {job}/{name}\n"
                                 for job in ids for name in NAMES))
    config = write_config(work / "cfg.yaml", server.base_url, KEY, work / "archive",
                          concurrency={"polls": 16, "downloads": args.parallel})
    report_path = work / "report.json"

    def archiver() -> Measure:
        shutil.rmtree(work / "archive", ignore_errors=True)
        server.reset()
        settle()
        m = measure(archiver_cmd(server.manifest, config, report_path))
        assert m.returncode == 0, m
        totals = report_totals(report_path)
        assert totals["archived"] == len(ids) and totals["files_archived"] == 4 * len(ids), totals
        return m

    def aria2c() -> Measure:
        out = work / "aria2"
        shutil.rmtree(out, ignore_errors=True)
        settle()
        m = measure(["aria2c", "-j", str(args.parallel), "-i", str(url_list), "-d", str(out),
                     "-q", "--allow-overwrite=true", "--auto-file-renaming=false"],
                    stdout=subprocess.DEVNULL)
        assert m.returncode == 0, m
        return m

    def bare() -> Measure:
        out = work / "bare"
        shutil.rmtree(out, ignore_errors=True)
        settle()
        m = measure([sys.executable, str(BENCH_DIR / "_bare_download.py"), str(bare_list),
                     str(out), "--parallel", str(args.parallel), "--durable"])
        assert m.returncode == 0, m
        shutil.rmtree(out, ignore_errors=True)
        return m

    # Warm-up (not measured): page cache, nginx, imports.
    aria2c()
    archiver()
    total = sum(p.stat().st_size for p in (work / "archive").rglob("*")
                if p.suffix in (".mp4", ".srt"))
    contestants = [("archiver", archiver), ("aria2c", aria2c)]
    if not args.no_bare:
        contestants.append((BARE, bare))
    results: dict[str, list[Measure]] = {name: [] for name, _ in contestants}
    for n in range(args.rounds):
        # Rotate the order, so that no side always runs first or last.
        for name, run in contestants[n % len(contestants):] + contestants[:n % len(contestants)]:
            results[name].append(run())
        print(f"round {n + 1}: " + ", ".join(f"{name} {runs[-1].wall:.2f}s"
                                             for name, runs in results.items()),
              file=sys.stderr, flush=True)
    return results, total


def report(args: argparse.Namespace, results: dict[str, list[Measure]], total: int) -> None:
    mib = total / MiB
    rows = []
    for name, runs in results.items():
        wall = median([m.wall for m in runs])
        rows.append([name, f"{wall:.2f}", f"{mib / wall:.0f}",
                     f"{median([m.cpu for m in runs]):.2f}",
                     f"{max(m.max_rss_mib for m in runs):.0f}"])
    a = median([m.wall for m in results["archiver"]])
    c = median([m.wall for m in results["aria2c"]])
    ratio = a / c
    print(f"machine: {machine()}")
    print(f"workload 1: {args.jobs} jobs x ({args.video_mib} MiB video + {args.no_caption_mib} "
          f"MiB no-caption + 2 SRTs) = {mib:.0f} MiB, {args.parallel} at once, files from "
          f"{args.file_server}; {args.rounds} rounds, order rotating, medians")
    print(rows_table(["", "wall s", "MiB/s", "CPU s", "peak RSS MiB"], rows))
    print(f"archiver / aria2c wall = {ratio:.2f} (target <= 1.00: {verdict(ratio <= 1.0)}); "
          f"per-round ratios: "
          + ", ".join(f"{x.wall / y.wall:.2f}"
                      for x, y in zip(results["archiver"], results["aria2c"], strict=True)))
    if BARE in results:
        bare = median([m.wall for m in results[BARE]])
        print(f"archiver / bare aiohttp loop wall = {a / bare:.2f}; "
              f"bare aiohttp loop / aria2c = {bare / c:.2f}")


if __name__ == "__main__":
    main()
