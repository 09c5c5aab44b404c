"""The Akool stand-in as the benchmarks need it, in its own process.

    python bench/_server.py --port 0 --api-key KEY --jobs 32 --files video,no_caption \
        --video-size 16777216 --no-caption-size 8388608 --ids-file manifest.yaml \
        [--export-dir www --public-base-url http://127.0.0.1:PORT]

Differences from ``python -m archiver.testing``:

- ``--no-caption-size`` (the CLI serves no-caption videos at the video size);
- ``--file-rate`` paces each file response (bytes/s per connection, like nginx
  ``limit_rate``);
- ``--export-dir`` writes every result file to ``DIR/files/<id>/<name>`` (the same bytes
  the stand-in serves), so a static file server (nginx) can serve them, and
  ``--public-base-url`` makes the API answer with that server's URLs;
- ``POST /_bench/reset`` puts every job back to "never polled" and zeroes the counters,
  so one server serves several measured rounds;
- ``GET /_bench/stats`` answers ``{"api_calls": N, "file_requests": N, "file_bytes": N}``.

The first line printed is the base URL; the manifest is written before it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path

from aiohttp import web

from archiver.testing.__main__ import write_manifest
from archiver.testing.standin import (
    FILE_KINDS,
    FILE_NAMES,
    AkoolStandIn,
    JobScenario,
    generated_job_id,
)


class BenchStandIn(AkoolStandIn):
    """The stand-in plus two control endpoints for the benchmark driver."""

    def make_app(self) -> web.Application:
        app = super().make_app()
        app.router.add_post("/_bench/reset", self._handle_reset)
        app.router.add_get("/_bench/stats", self._handle_stats)
        return app

    async def _handle_reset(self, request: web.Request) -> web.Response:
        with self._lock:
            for state in self._jobs.values():
                state.answered = 0
        self.reset_counters()
        return web.json_response({"ok": True})

    async def _handle_stats(self, request: web.Request) -> web.Response:
        return web.json_response({
            "api_calls": self.api_calls,
            "file_requests": sum(self.file_requests.values()),
            "file_bytes": sum(self.file_bytes_sent.values()),
        })


def export(standin: AkoolStandIn, ids: list[str], files: tuple[str, ...], root: Path) -> None:
    for job_id in ids:
        folder = root / "files" / job_id
        folder.mkdir(parents=True, exist_ok=True)
        for kind in files:
            name = FILE_NAMES[kind]
            content = standin._file(job_id, name).content
            with open(folder / name, "wb") as out:
                for chunk in content.iter_chunks(chunk_size=4 * 1024 * 1024):
                    out.write(chunk)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--jobs", type=int, required=True)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--video-size", type=int, default=64 * 1024)
    parser.add_argument("--no-caption-size", type=int, default=None)
    parser.add_argument("--polls-until-done", type=int, default=1)
    parser.add_argument("--outcome", choices=("success", "failed", "never"), default="success")
    parser.add_argument("--files", default="video")
    parser.add_argument("--namespace", default="bench")
    parser.add_argument("--ids-file", type=Path, required=True)
    parser.add_argument("--export-dir", type=Path)
    parser.add_argument("--public-base-url")
    parser.add_argument("--file-rate", type=float, default=None,
                        help="bytes per second per file response (a CDN's per-connection "
                             "limit); default: unlimited")
    args = parser.parse_args()
    files = tuple(k for k in args.files.split(",") if k)
    assert set(files) <= set(FILE_KINDS), files

    standin = BenchStandIn(api_key=args.api_key, latency=args.latency,
                           public_base_url=args.public_base_url,
                           max_recorded_requests=16, file_rate=args.file_rate)
    scenario = JobScenario(
        polls_until_done=args.polls_until_done, outcome=args.outcome, files=files,
        video_size=args.video_size,
        no_caption_size=args.video_size if args.no_caption_size is None
        else args.no_caption_size,
    )
    ids = [generated_job_id(i, args.namespace) for i in range(args.jobs)]
    for job_id in ids:
        standin.add_job(job_id, scenario)
    if args.export_dir is not None:
        export(standin, ids, files, args.export_dir)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with standin.serve("127.0.0.1", args.port) as base_url:
            write_manifest(args.ids_file, ids)
            print(base_url, flush=True)
            await stop.wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    sys.exit(main())
