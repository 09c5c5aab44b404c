"""The ``archiver`` command: parse, load, run, map errors to messages and exit statuses.

Exit statuses: 0 all archived (now or before), 3 some pending and none failed,
1 some failed or expired, 2 usage / configuration / manifest / credential / storage
error, 75 another run holds the lock, 130 / 143 stopped by SIGINT / SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import stamina

from . import __version__
from .config import DEFAULT_CONFIG_PATH, Config, load_config, os_reason
from .errors import ArchiverError, FatalRunError, UsageError
from .lock import LockHeld
from .manifest import Manifest, load_manifest
from .models import Outcome, RunResult
from .report import build_report, write_report
from .run import archive

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_PENDING = 3
EXIT_INTERNAL = 70
EXIT_LOCKED = 75  # EX_TEMPFAIL: cron will simply try again next time
EXIT_INTERRUPTED = 130

log = logging.getLogger("archiver")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="archiver",
        description="Archive Akool generation results before they expire (7 days).",
    )
    parser.add_argument("--version", action="version", version=f"archiver {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="archive the jobs of a manifest")
    run.add_argument("manifest", type=Path, metavar="MANIFEST", help="YAML list of video_model_ids")
    run.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG_PATH,
                     help=f"configuration file (default: ./{DEFAULT_CONFIG_PATH})")
    run.add_argument("--report", type=Path, metavar="PATH",
                     help="write a JSON report of the run (each id's outcome, files, errors)")
    _add_output_flags(run)

    demo = commands.add_parser(
        "demo", help="archive sample jobs from a built-in Akool stand-in (no account needed)")
    demo.add_argument("dir", nargs="?", type=Path, default=Path("demo-archive"),
                      help="where to put the archive (default: ./demo-archive)")
    _add_output_flags(demo)
    return parser


def _add_output_flags(parser: argparse.ArgumentParser) -> None:
    level = parser.add_mutually_exclusive_group()
    level.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    level.add_argument("-v", "--verbose", action="store_true", help="print more detail")
    parser.add_argument("--debug", action="store_true",
                        help="debug logging, and tracebacks for unexpected errors")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    setup_logging(quiet=args.quiet, verbose=args.verbose, debug=args.debug)
    try:
        if args.command == "demo":
            from .demo import run_demo

            return run_demo(args.dir, quiet=args.quiet)
        return _run(args)
    except KeyboardInterrupt:
        print("archiver: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except LockHeld as exc:
        print(f"archiver: {exc}", file=sys.stderr)
        return EXIT_LOCKED
    except (UsageError, FatalRunError) as exc:
        print(f"archiver: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ArchiverError as exc:  # pragma: no cover - per-id errors never get here
        print(f"archiver: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:
        if args.debug:
            raise
        print(f"archiver: internal error: {type(exc).__name__} (run with --debug for details)",
              file=sys.stderr)
        return EXIT_INTERNAL


def _run(args: argparse.Namespace) -> int:
    # Both inputs are checked before anything touches the network or the archive.
    config = load_config(args.config)
    install_secret_filter(config)
    manifest = load_manifest(args.manifest)
    return asyncio.run(_run_async(args, config, manifest))


async def _run_async(args: argparse.Namespace, config: Config, manifest: Manifest) -> int:
    interrupt = asyncio.Event()
    received: list[int] = []
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if received:
            # The user insists: go now. Partial files keep their temporary names.
            os.write(2, b"archiver: second signal, exiting at once\n")
            os._exit(128 + signum)
        received.append(signum)
        log.warning("received %s: finishing up (send it again to exit at once)",
                    signal.Signals(signum).name)
        interrupt.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        result = await archive(config, manifest, interrupt=interrupt)
    except (UsageError, FatalRunError) as exc:
        if args.report:
            _write_failure_report(args.report, exc)
        raise
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    status = 128 + received[0] if received else result.exit_status
    if args.report:
        signame = signal.Signals(received[0]).name if received else None
        write_report(args.report, build_report(result, status, signame))
    if not args.quiet:
        print(format_summary(result))
    return status


def _write_failure_report(path: Path, exc: ArchiverError) -> None:
    report = {"schema": 1, "archiver_version": __version__, "exit_status": EXIT_USAGE,
              "fatal_error": str(exc), "items": [], "totals": None}
    try:
        write_report(path, report)
    except OSError as err:
        log.error("cannot write the report %s: %s", path, os_reason(err))


def format_summary(result: RunResult) -> str:
    """The small table printed at the end of a run."""
    rows = [
        ("archived", result.count(Outcome.ARCHIVED)),
        ("already archived", result.count(Outcome.ALREADY_ARCHIVED)),
        ("pending", result.count(Outcome.PENDING)),
        ("failed", result.count(Outcome.FAILED)),
        ("expired", result.count(Outcome.EXPIRED)),
    ]
    lines = [f"  {name:<17} {count:>7}" for name, count in rows]
    lines.append(f"  {'bytes archived':<17} {_human_bytes(result.bytes_archived):>7}")
    lines.append(f"  {'time':<17} {result.duration:>6.1f}s")
    failed = [i for i in result.items if i.outcome in (Outcome.FAILED, Outcome.EXPIRED)]
    for item in failed[:20]:
        lines.append(f"  {item.outcome.value}: {item.id}: {item.error}")
    if len(failed) > 20:
        lines.append(f"  ... and {len(failed) - 20} more failed")
    return f"archiver: {len(result.items)} id(s)\n" + "\n".join(lines)


def _human_bytes(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{value:.1f}TiB"  # pragma: no cover


# ------------------------------------------------------------------- logging

class SecretFilter(logging.Filter):
    """Defence in depth: replace any configured secret that reaches a log line."""

    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__()
        self._secrets = [s for s in secrets if len(s) >= 4]

    def filter(self, record: logging.LogRecord) -> bool:
        if self._secrets:
            message = record.getMessage()
            if any(s in message for s in self._secrets):
                for secret in self._secrets:
                    message = message.replace(secret, "***")
                record.msg, record.args = message, None
        return True


def setup_logging(*, quiet: bool = False, verbose: bool = False, debug: bool = False) -> None:
    # A person at a terminal sees what happens; cron (no terminal) only hears of problems.
    chatty = verbose or sys.stderr.isatty()
    level = logging.ERROR if quiet else logging.DEBUG if debug else \
        logging.INFO if chatty else logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s",
                                           datefmt="%Y-%m-%dT%H:%M:%S"))
    # stamina would log every retry as a warning; the archiver logs its own retries at
    # INFO, so that a transient hiccup that was retried away does not wake up cron.
    stamina.instrumentation.set_on_retry_hooks([])
    root = logging.getLogger("archiver")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def install_secret_filter(config: Config) -> None:
    secrets = [s.get_secret_value() for s in (config.api.api_key, config.api.token) if s]
    for handler in logging.getLogger("archiver").handlers:
        handler.filters[:] = [SecretFilter(secrets)]
