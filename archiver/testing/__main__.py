"""Run an Akool stand-in from the command line.

Example (a benchmark's server process)::

    python -m archiver.testing --port 0 --api-key KEY --jobs 1000 --latency 0.02

The first line printed is the base URL; then come the job ids, one per line,
unless ``--ids-file`` writes them as a YAML manifest (``videos: [...]``) instead.
``--family image`` (``audio``, ``faceswap``, ``image2video``) makes the generated jobs
of another result family. ``--samples`` serves the sample jobs of every family instead
(see ``sample_jobs``) and prints, for each, ``<id> <family> <method> <lookup URL>``
and, for a POST lookup, its JSON body.
``--requests-per-second R`` limits lookups account-wide as Akool does (code 1005 above
it), to try several archiver processes against one account.
With ``--webhook-url URL`` it then plays Akool's webhook: one signed, encrypted callback
per job (status 3, or 4 with ``--outcome failed``) POSTed to URL, e.g. an
``archiver serve`` to test end to end.
The server runs until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from pathlib import Path

from archiver.testing.media import AUDIO_FORMATS, IMAGE_FORMATS
from archiver.testing.standin import (
    FAMILIES,
    FAMILY_NAMES,
    AkoolStandIn,
    JobScenario,
    generated_job_id,
    sample_jobs,
)

_KINDS = {family.name: tuple(family.files) for family in FAMILIES}


def _file_kinds(value: str) -> tuple[str, ...]:
    kinds = tuple(k.strip() for k in value.split(",") if k.strip())
    if not kinds:
        raise argparse.ArgumentTypeError("expected a comma-separated list of file kinds")
    return kinds


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser (public so that docs and tests can reuse it)."""
    parser = argparse.ArgumentParser(
        prog="python -m archiver.testing",
        description="Serve a stand-in for Akool's result API and CDN with generated jobs.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port; 0 picks a free one")
    parser.add_argument("--api-key", default="test-key", help="accepted x-api-key")
    parser.add_argument("--token", default="test-token", help="accepted Bearer token")
    parser.add_argument("--client-id", default="standin-clientid", help="getToken clientId")
    parser.add_argument(
        "--client-secret", default="standin-client-secret-24", help="getToken clientSecret"
    )
    parser.add_argument("--jobs", type=int, default=10, help="number of generated jobs")
    parser.add_argument(
        "--latency", type=float, default=0.0, help="seconds added to every API answer"
    )
    parser.add_argument(
        "--requests-per-second", type=float, metavar="R",
        help="account-wide limit on result lookups: above it, answer code 1005 "
        "(operation too frequent); the count is printed to stderr on exit",
    )
    parser.add_argument(
        "--burst", type=float, metavar="B",
        help="lookups the limit lets through at once (default: R, at least 1)",
    )
    parser.add_argument(
        "--video-size", type=int, default=64 * 1024, help="size in bytes of each video file"
    )
    parser.add_argument(
        "--polls-until-done", type=int, default=1, help="polls until a job reaches its final status"
    )
    parser.add_argument("--outcome", choices=("success", "failed", "never"), default="success")
    parser.add_argument(
        "--family", choices=FAMILY_NAMES, default="video",
        help="result family of the generated jobs (default video)",
    )
    parser.add_argument(
        "--files",
        type=_file_kinds,
        help="comma-separated file kinds per job, from the family's: "
        + "; ".join(f"{name}: {','.join(kinds)}" for name, kinds in _KINDS.items())
        + " (default: its usual result)",
    )
    parser.add_argument("--image-size", type=int, default=16 * 1024,
                        help="size in bytes of each image")
    parser.add_argument("--audio-size", type=int, default=32 * 1024,
                        help="size in bytes of each audio file")
    parser.add_argument("--image-format", choices=IMAGE_FORMATS, default=IMAGE_FORMATS[0])
    parser.add_argument("--audio-format", choices=AUDIO_FORMATS, default=AUDIO_FORMATS[0])
    parser.add_argument(
        "--samples", action="store_true",
        help="serve the sample jobs of every family instead of generated ones, and print "
        "how to look each up",
    )
    parser.add_argument(
        "--ids-file",
        type=Path,
        help="write the ids as a YAML manifest here instead of printing them",
    )
    parser.add_argument("--namespace", default="standin", help="seed of the deterministic job ids")
    parser.add_argument(
        "--webhook-url",
        help="once serving, POST each job's final callback there, signed and encrypted "
        "with --client-id / --client-secret (as Akool calls a job's webhookUrl)",
    )
    return parser


def write_manifest(path: Path, ids: list[str]) -> None:
    """Write ``ids`` as a YAML manifest ``videos: [...]``."""
    # Quoted: an all-digit hex id (or one like "1e5...") would otherwise load
    # as a YAML number.
    lines = ["videos:"] + [f'  - "{job_id}"' for job_id in ids]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


async def _serve(args: argparse.Namespace) -> None:
    standin = AkoolStandIn(
        api_key=args.api_key,
        token=args.token,
        client_id=args.client_id,
        client_secret=args.client_secret,
        latency=args.latency,
        requests_per_second=args.requests_per_second,
        burst=args.burst,
    )
    if args.samples:
        jobs = sample_jobs(FAMILY_NAMES)
    else:
        scenario = _scenario(args)
        jobs = {generated_job_id(i, args.namespace): scenario for i in range(args.jobs)}
    standin.add_jobs(jobs)
    ids = list(jobs)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # Windows
            loop.add_signal_handler(sig, stop.set)

    async with standin.serve(args.host, args.port) as base_url:
        if args.ids_file is not None:
            write_manifest(args.ids_file, ids)
        # Flushed at once: a parent process reads the URL to know the port.
        print(base_url, flush=True)
        if args.samples:
            for job_id, scenario in jobs.items():
                print(_how_to_look_up(standin, base_url, job_id, scenario.family), flush=True)
        elif args.ids_file is None:
            print("\n".join(ids), flush=True)
        if args.webhook_url:
            await _deliver_all(standin, args.webhook_url, ids)
        try:
            await stop.wait()
        finally:
            if standin.requests_per_second is not None:
                print(f"answered {standin.throttled} lookup(s) with code 1005 "
                      f"(over {standin.requests_per_second:g}/s)", file=sys.stderr, flush=True)


def _scenario(args: argparse.Namespace) -> JobScenario:
    """The one scenario of every generated job."""
    scenario = JobScenario(
        family=args.family,
        polls_until_done=args.polls_until_done,
        outcome=args.outcome,
        video_size=args.video_size,
        no_caption_size=args.video_size,
        image_size=args.image_size,
        audio_size=args.audio_size,
        image_format=args.image_format,
        audio_format=args.audio_format,
    )
    if args.files is not None:
        scenario.files = args.files
    return scenario


def _how_to_look_up(standin: AkoolStandIn, base_url: str, job_id: str, family_name: str) -> str:
    """``<id> <family> <method> <URL>[ <JSON body>]``: one job's lookup."""
    family = standin.families[family_name]
    url = base_url + family.path
    if family.method == "GET":
        return f"{job_id} {family_name} GET {url}?{family.id_param}={job_id}"
    body = json.dumps({family.id_param: job_id}, separators=(",", ":"))
    return f"{job_id} {family_name} POST {url} {body}"


async def _deliver_all(standin: AkoolStandIn, url: str, ids: list[str]) -> None:
    """One callback per job, all at once; each answer goes to stderr."""
    async with standin.callbacks(url) as sender:
        answers = await asyncio.gather(*(standin.deliver(sender, i) for i in ids),
                                       return_exceptions=True)
    for job_id, answer in zip(ids, answers, strict=True):
        status = answer if isinstance(answer, BaseException) else answer.status
        print(f"callback {job_id}: {status}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m archiver.testing``; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.jobs < 0 or args.polls_until_done < 1 or args.video_size < 0:
        print("--jobs and --video-size must be >= 0, --polls-until-done >= 1", file=sys.stderr)
        return 2
    unknown = sorted(set(args.files or ()) - set(_KINDS[args.family]))
    if unknown:
        print(f"python -m archiver.testing: --files {','.join(unknown)}: not a file kind of "
              f"the {args.family} family ({','.join(_KINDS[args.family])})", file=sys.stderr)
        return 2
    try:
        # The family's own checks (kinds, sizes its formats allow), before serving.
        AkoolStandIn().add_job(generated_job_id(0), _scenario(args))
    except ValueError as exc:
        print(f"python -m archiver.testing: {exc}", file=sys.stderr)
        return 2
    if (args.requests_per_second is not None and args.requests_per_second <= 0) or (
        args.burst is not None and (args.requests_per_second is None or args.burst < 1)
    ):
        print("--requests-per-second must be > 0; --burst needs it and must be >= 1",
              file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
