"""The ``archiver`` command: parse, load, run, map errors to messages and exit statuses.

Exit statuses: 0 all archived (now or before), 3 some pending and none failed,
1 some failed or expired (verify: a problem found), 2 usage / configuration / manifest /
credential / storage error, 74 the run is done but its report or metrics file could not
be written, 75 another run holds the lock (or lease) or took this run's lease over,
130 / 143 stopped by SIGINT / SIGTERM. ``serve`` ends with 0 on SIGINT / SIGTERM: the
normal end of a server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import logging
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import stamina

from . import __version__
from .config import DEFAULT_CONFIG_PATH, Config, load_config, os_reason
from .errors import ArchiverError, FatalRunError, ItemError, UsageError
from .events import Observer
from .lock import LockHeld
from .manifest import Manifest
from .models import Outcome, RunResult, iso_utc
from .report import build_report, check_writable, json_text, write_report
from .run import archive
from .shard import Shard, parse_shard
from .sources import load_manifest_from

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_PENDING = 3
EXIT_INTERNAL = 70
#: EX_IOERR: the run is over and the archive consistent, but --report / --metrics-file
#: could not be written; a pipeline reading them must not take a stale file for this run.
EXIT_IOERR = 74
EXIT_LOCKED = 75  # EX_TEMPFAIL: cron will simply try again next time
EXIT_INTERRUPTED = 130

log = logging.getLogger("archiver")
#: --from-journal without a path: the journal `archiver serve` uses for this configuration.
_DEFAULT_JOURNAL = Path("\0default-journal")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="archiver",
        description="Archive Akool generation results before they expire (7 days).",
    )
    parser.add_argument("--version", action="version", version=f"archiver {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="archive the jobs of a manifest")
    run.add_argument("manifest", metavar="MANIFEST", nargs="?", help=_MANIFEST_HELP)
    run.add_argument("--from-journal", nargs="?", const=_DEFAULT_JOURNAL, type=Path,
                     metavar="JOURNAL",
                     help="instead of a manifest: the ids `archiver serve` accepted and has "
                          "not finished (default: its journal for this configuration)")
    _add_config_flag(run)
    _add_shard_flag(run)
    run.add_argument("--report", type=Path, metavar="PATH",
                     help="write a JSON report of the run (each id's outcome, files, errors)")
    run.add_argument("--metrics-file", type=Path, metavar="PATH",
                     help="write Prometheus metrics for node_exporter's textfile collector")
    run.add_argument("--dry-run", action="store_true",
                     help="poll and report what would be downloaded; write nothing")
    _add_output_flags(run)

    verify = commands.add_parser(
        "verify", help="check archived files against their records (size, SHA-256)")
    verify.add_argument("manifest", nargs="?", metavar="MANIFEST",
                        help="only these ids (default: everything archived)")
    _add_config_flag(verify)
    _add_shard_flag(verify)
    verify.add_argument("--deep", action="store_true",
                        help="S3: download and re-hash every object instead of comparing "
                             "S3's own checksums")
    _add_output_flags(verify)

    status = commands.add_parser(
        "status", help="which ids are archived, partially downloaded or absent")
    status.add_argument("manifest", metavar="MANIFEST", help=_MANIFEST_HELP)
    _add_config_flag(status)
    _add_shard_flag(status)
    status.add_argument("--remote", action="store_true",
                        help="also ask the API for each job's current status")
    _add_output_flags(status)

    gc = commands.add_parser(
        "gc", help="remove files left by attempts that never committed (old enough only)")
    gc.add_argument("manifest", nargs="?", metavar="MANIFEST",
                    help="only these ids (default: every id in the archive)")
    _add_config_flag(gc)
    gc.add_argument("--min-age", metavar="DURATION",
                    help="only ids whose every file is older than this (e.g. 36h, 2d; "
                         "default 24h; at least downloads.item_timeout)")
    gc.add_argument("--dry-run", action="store_true",
                    help="list what would be removed; remove nothing")
    _add_output_flags(gc)

    serve = commands.add_parser(
        "serve", help="receive Akool's webhooks and archive each job as it finishes")
    _add_config_flag(serve)
    serve.add_argument("--listen", metavar="HOST:PORT",
                       help="address to listen on (default: webhook.listen, 127.0.0.1:8080)")
    _add_output_flags(serve)

    demo = commands.add_parser(
        "demo", help="archive sample jobs from a built-in Akool stand-in (no account needed)")
    demo.add_argument("dir", nargs="?", type=Path, default=Path("demo-archive"),
                      help="where to put the archive (default: ./demo-archive)")
    demo.add_argument("--serve", action="store_true",
                      help="show `archiver serve`: the stand-in sends signed webhooks")
    _add_output_flags(demo)
    return parser


_MANIFEST_HELP = ("YAML list of video_model_ids: a file, - (standard input), "
                  "s3://BUCKET/KEY or an https:// URL")


def _add_shard_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shard", metavar="K/N",
                        help="only the ids of shard K of N (0-based; auto/N: K from "
                             "JOB_COMPLETION_INDEX, AWS_BATCH_JOB_ARRAY_INDEX or "
                             "CLOUD_RUN_TASK_INDEX)")


def _resolve_shard(args: argparse.Namespace) -> Shard | None:
    """The shard --shard names (kept on *args* for the metrics), or None."""
    spec = getattr(args, "shard", None)
    args.resolved_shard = parse_shard(spec) if spec else None
    return args.resolved_shard  # type: ignore[no-any-return]


def _load_manifest(spec: str, config: Config, shard: Shard | None = None) -> Manifest:
    manifest = load_manifest_from(spec, s3=config.storage.s3)
    return shard.select(manifest) if shard is not None else manifest


def _add_config_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG_PATH,
                        help=f"configuration file (default: ./{DEFAULT_CONFIG_PATH})")


def _add_output_flags(parser: argparse.ArgumentParser) -> None:
    level = parser.add_mutually_exclusive_group()
    level.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    level.add_argument("-v", "--verbose", action="store_true", help="print more detail")
    parser.add_argument("--log-format", choices=("text", "json"), default="text",
                        help="json: one JSON object per log line")
    parser.add_argument("--debug", action="store_true",
                        help="debug logging, and tracebacks for unexpected errors")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    setup_logging(quiet=args.quiet, verbose=args.verbose, debug=args.debug,
                  log_format=args.log_format)
    status: int | None = None
    result: RunResult | None = None
    metrics_ok = True  # False once the metrics path is known to be unwritable
    try:
        if args.command == "demo" and args.serve:
            from .demo import run_demo_serve

            status = run_demo_serve(args.dir, quiet=args.quiet)
        elif args.command == "demo":
            from .demo import run_demo

            display = _progress_display(args)
            with display if display is not None else contextlib.nullcontext():
                status = run_demo(args.dir, quiet=args.quiet, observer=display)
        elif args.command == "verify":
            status = _verify(args)
        elif args.command == "status":
            status = _status(args)
        elif args.command == "gc":
            status = _gc(args)
        elif args.command == "serve":
            status = _serve(args)
        else:
            status, result = _run(args)
    except KeyboardInterrupt:
        print("archiver: interrupted", file=sys.stderr)
        status = EXIT_INTERRUPTED
    except LockHeld as exc:
        print(f"archiver: {printable(str(exc))}", file=sys.stderr)
        status = EXIT_LOCKED
    except _OutputPathError as exc:
        print(f"archiver: error: {printable(str(exc))}", file=sys.stderr)
        status = EXIT_USAGE
        metrics_ok = exc.path != getattr(args, "metrics_file", None)
    except (UsageError, FatalRunError) as exc:
        # Akool's own words may be in it (a credentials error quotes its msg).
        print(f"archiver: error: {printable(str(exc))}", file=sys.stderr)
        status = EXIT_USAGE
    except ArchiverError as exc:  # pragma: no cover - per-id errors never get here
        print(f"archiver: error: {printable(str(exc))}", file=sys.stderr)
        status = EXIT_FAILED
    except Exception as exc:
        if args.debug:
            raise
        print(f"archiver: internal error: {type(exc).__name__} (run with --debug for details)",
              file=sys.stderr)
        status = EXIT_INTERNAL
    finally:
        # Metrics say how the run ended, whatever ended it (even a config error).
        metrics_file = getattr(args, "metrics_file", None)
        if metrics_file is not None and status is not None and metrics_ok:
            written = _write_metrics(metrics_file, result, status,
                                     getattr(args, "resolved_shard", None))
            if not written and status in (EXIT_OK, EXIT_FAILED, EXIT_PENDING):
                status = EXIT_IOERR
    return status


# ----------------------------------------------------------------------- run

def _run(args: argparse.Namespace) -> tuple[int, RunResult]:
    # Both inputs are checked before anything touches the network or the archive.
    shard = _resolve_shard(args)
    config = load_config(args.config)
    install_secret_filter(config)
    manifest = _manifest_or_journal(args, config, shard)
    # Found now, not after an hour of downloads: outputs that cannot be written.
    _check_output(args.report, "report")
    _check_output(args.metrics_file, "metrics file")
    display = _progress_display(args)
    with display if display is not None else contextlib.nullcontext():
        return asyncio.run(_run_async(args, config, manifest, display))


def _progress_display(args: argparse.Namespace) -> Observer | None:
    """Live progress for a person at a terminal; None under cron and in pipelines."""
    if not sys.stderr.isatty() or args.quiet or args.log_format != "text":
        return None
    from .progress import ConsoleHandler, ProgressDisplay

    display = ProgressDisplay()
    _route_logs(ConsoleHandler(display.console))
    return display


async def _run_async(args: argparse.Namespace, config: Config, manifest: Manifest,
                     observer: Observer | None) -> tuple[int, RunResult]:
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
        result = await archive(config, manifest, observer=observer, interrupt=interrupt,
                               dry_run=args.dry_run, shard=args.resolved_shard)
    except (UsageError, FatalRunError, LockHeld) as exc:
        if args.report:
            _write_failure_report(args.report, exc, args.resolved_shard)
        raise
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    status = 128 + received[0] if received else result.exit_status
    if args.report:
        signame = signal.Signals(received[0]).name if received else None
        if not _save(args.report, "report", lambda: write_report(
                args.report, build_report(result, status, signame))) and not received:
            status = EXIT_IOERR
    if not args.quiet:
        print(format_dry_run(result) if args.dry_run else format_summary(result))
    return status, result


def _manifest_or_journal(args: argparse.Namespace, config: Config,
                         shard: Shard | None) -> Manifest:
    if args.from_journal is None:
        if args.manifest is None:
            raise UsageError("run needs a MANIFEST (or --from-journal)")
        return _load_manifest(args.manifest, config, shard)
    if args.manifest is not None:
        raise UsageError("give either a MANIFEST or --from-journal, not both")
    from .journal import pending_ids
    from .serve import journal_path
    from .storage import make_storage

    path = args.from_journal
    if path == _DEFAULT_JOURNAL:
        path = journal_path(config, make_storage(config.storage))
    ids = asyncio.run(pending_ids(path))
    log.info("%s: %d pending id(s)", path, len(ids))
    manifest = Manifest.from_ids(ids, source=str(path))
    return shard.select(manifest) if shard is not None else manifest


# ---------------------------------------------------------------------- serve

def _serve(args: argparse.Namespace) -> int:
    from .serve import Server

    config = load_config(args.config)
    install_secret_filter(config)
    if config.webhook is None:
        raise UsageError(f"{args.config}: archiver serve needs a webhook: section "
                         "(client_id, client_secret)")
    server = Server(config, args.listen)
    loop_status = asyncio.run(_serve_async(server))
    return loop_status


async def _serve_async(server: Any) -> int:
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if server.stop.is_set():
            os.write(2, b"archiver: second signal, exiting at once\n")
            os._exit(128 + signum)
        log.warning("received %s: no new callbacks; finishing work in flight (send it "
                    "again to exit at once)", signal.Signals(signum).name)
        server.stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        await server.serve_until_stopped()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    # A stop on request is the normal end of a server: whatever was not finished is
    # pending in the journal, and the next start resumes it.
    return EXIT_OK


class _OutputPathError(UsageError):
    """--report / --metrics-file names a path that cannot be written."""

    def __init__(self, message: str, path: Path) -> None:
        super().__init__(message)
        self.path = path


def _check_output(path: Path | None, what: str) -> None:
    if path is None:
        return
    try:
        check_writable(path)
    except OSError as err:
        raise _OutputPathError(f"cannot write the {what} {path}: {os_reason(err)}",
                               path) from None


def _save(path: Path, what: str, write: Callable[[], None]) -> bool:
    """Run *write*; on an OS error print one line naming *path* and return False."""
    try:
        write()
    except OSError as err:
        print(printable(f"archiver: error: cannot write the {what} {path}: {os_reason(err)} "
                        "(the archive is not affected; only this file is missing)"),
              file=sys.stderr)
        return False
    return True


def _write_failure_report(path: Path, exc: ArchiverError, shard: Shard | None) -> None:
    status = EXIT_LOCKED if isinstance(exc, LockHeld) else EXIT_USAGE
    report = {"schema": 1, "archiver_version": __version__, "exit_status": status,
              "fatal_error": str(exc), "shard": str(shard) if shard is not None else None,
              "items": [], "totals": None}
    _save(path, "report", lambda: write_report(path, report))


def _write_metrics(path: Path, result: RunResult | None, status: int,
                   shard: Shard | None = None) -> bool:
    from .metrics import write_metrics

    return _save(path, "metrics file", lambda: write_metrics(path, result, status, shard=shard))


def format_summary(result: RunResult) -> str:
    """The small table printed at the end of a run."""
    rows = [
        ("archived", str(result.count(Outcome.ARCHIVED))),
        ("already archived", str(result.count(Outcome.ALREADY_ARCHIVED))),
        ("pending", str(result.count(Outcome.PENDING))),
        ("failed", str(result.count(Outcome.FAILED))),
        ("expired", str(result.count(Outcome.EXPIRED))),
        ("bytes archived", human_bytes(result.bytes_archived)),
        ("time", f"{result.duration:.1f}s"),
    ]
    lines = [f"  {name:<17} {value:>9}" for name, value in rows]
    failed = [i for i in result.items if i.outcome in (Outcome.FAILED, Outcome.EXPIRED)]
    for item in failed[:20]:
        lines.append(f"  {item.outcome.value}: {item.id}: {printable(str(item.error))}")
    if len(failed) > 20:
        lines.append(f"  ... and {len(failed) - 20} more (see --report)")
    if result.interrupted:
        lines.append("  interrupted: unfinished ids are pending; partial downloads are kept")
    if result.lease_lost:
        lines.append("  lease lost: another run took this shard over; unfinished ids are "
                     "pending (exit status 75)")
    of_shard = f" of shard {result.shard}" if result.shard else ""
    return f"archiver: {len(result.items)} id(s){of_shard}\n" + "\n".join(lines)


def format_dry_run(result: RunResult) -> str:
    """What a dry run found: per ready id its files and sizes."""
    lines = ["archiver: dry run, nothing written"]
    for item in result.items:
        if item.outcome is Outcome.READY:
            sizes = ", ".join(f"{f.name} {human_bytes(f.size) if f.size is not None else '?'}"
                              for f in item.files)
            lines.append(f"  would archive {item.id}: {sizes}")
        elif item.outcome is not Outcome.ALREADY_ARCHIVED:
            detail = f": {printable(item.error)}" if item.error else ""
            lines.append(f"  {item.outcome.value} {item.id}{detail}")
    ready = [i for i in result.items if i.outcome is Outcome.READY]
    known = sum(f.size or 0 for i in ready for f in i.files)
    lines.append(f"  {len(ready)} to archive ({human_bytes(known)} announced), "
                 f"{result.count(Outcome.ALREADY_ARCHIVED)} already archived, "
                 f"{result.count(Outcome.PENDING)} pending, {result.count(Outcome.FAILED)} failed")
    return "\n".join(lines)


def human_bytes(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


# -------------------------------------------------------------- verify, status

def _verify(args: argparse.Namespace) -> int:
    from .storage import make_storage
    from .verify import verify

    shard = _resolve_shard(args)
    config = load_config(args.config)
    install_secret_filter(config)
    ids = [i.id for i in _load_manifest(args.manifest, config, shard)] \
        if args.manifest else None

    async def go() -> Any:
        storage = make_storage(config.storage)
        await storage.open(readonly=True)
        try:
            targets = ids
            if targets is None and shard is not None:
                targets = [i for i in await storage.list_archived()  # type: ignore[attr-defined]
                           if shard.owns(i)]
            return await verify(storage, targets, deep=args.deep)  # type: ignore[arg-type]
        finally:
            await storage.close()

    result = asyncio.run(go())
    for problem in result.problems:
        print(f"archiver: {printable(str(problem))}", file=sys.stderr)
    if not args.quiet:
        verdict = "OK" if result.ok else f"{len(result.problems)} problem(s)"
        print(f"archiver verify: {result.items} item(s), {result.files} file(s), "
              f"{human_bytes(result.bytes)} checked: {verdict}")
    return EXIT_OK if result.ok else EXIT_FAILED


def _status(args: argparse.Namespace) -> int:
    from .api import AkoolClient
    from .storage import make_storage

    shard = _resolve_shard(args)
    config = load_config(args.config)
    install_secret_filter(config)
    manifest = _load_manifest(args.manifest, config, shard)
    ids = [i.id for i in manifest]

    async def go() -> tuple[dict[str, str], dict[str, str]]:
        storage = make_storage(config.storage)
        await storage.open(readonly=True)
        try:
            states = await storage.item_states(ids)  # type: ignore[attr-defined]
        finally:
            await storage.close()
        remote: dict[str, str] = {}
        if args.remote:
            async with AkoolClient(config.api, limit=config.concurrency.polls) as client:
                slots = asyncio.Semaphore(config.concurrency.polls)

                async def ask(item_id: str) -> None:
                    async with slots:
                        try:
                            info = await client.video_info(item_id)
                        except ItemError as exc:
                            remote[item_id] = f"error: {exc}"
                            return
                        remote[item_id] = _describe_remote(info.status, info.expires_at)

                await asyncio.gather(*(ask(i) for i in ids if states.get(i) != "archived"))
        return states, remote

    states, remote = asyncio.run(go())
    width = max((len(i) for i in ids), default=10)
    for item in manifest:
        line = f"{item.id:<{width}}  {states.get(item.id, 'absent'):<8}"
        if args.remote:
            line += f"  {remote.get(item.id, '-')}"
        if item.label:
            line += f"  ({item.label})"
        print(printable(line))
    counts = {s: sum(1 for v in states.values() if v == s) for s in ("archived", "partial",
                                                                     "absent")}
    if not args.quiet:
        print(f"archiver status: {len(ids)} id(s): {counts['archived']} archived, "
              f"{counts['partial']} partial, {counts['absent']} absent", file=sys.stderr)
    return EXIT_OK


def _gc(args: argparse.Namespace) -> int:
    from .gc import check_min_age, collect, default_min_age, parse_duration

    config = load_config(args.config)
    install_secret_filter(config)
    min_age = parse_duration(args.min_age) if args.min_age else default_min_age(config)
    check_min_age(min_age, config)  # before reading the manifest or touching storage
    ids = [i.id for i in _load_manifest(args.manifest, config)] if args.manifest else None
    result = asyncio.run(collect(config, ids, min_age=min_age, dry_run=args.dry_run))
    verb = "would remove" if args.dry_run else "removed"
    if (args.verbose or args.dry_run) and not args.quiet:
        for found in result.removed:
            size = f" ({human_bytes(found.size)})" if found.kind == "file" else ""
            print(f"  {verb} {found.where}{size}")
    for failure in result.failures:
        print(f"archiver: {failure}", file=sys.stderr)
    if not args.quiet:
        line = (f"archiver gc: {len(result.files)} object(s) of {len(result.items)} "
                f"uncommitted item(s), {human_bytes(result.bytes)} "
                f"{'would be removed' if args.dry_run else 'removed'}")
        if result.uploads:
            line += f"; {len(result.uploads)} stale multipart upload(s) " + \
                ("to abort" if args.dry_run else "aborted")
        if result.kept_recent:
            line += f"; {len(result.kept_recent)} item(s) newer than --min-age kept"
        if result.failures:
            line += f"; {len(result.failures)} failure(s)"
        print(line)
    return EXIT_FAILED if result.failures else EXIT_OK


def _describe_remote(status: int, expires_at: float | None) -> str:
    name = {1: "queued", 2: "processing", 3: "done", 4: "failed"}.get(status, f"status {status}")
    when = iso_utc(expires_at)
    if expires_at is None or when is None:
        return name
    left = expires_at - time.time()
    return f"{name}, {'expired' if left < 0 else 'expires'} {when[:10]} {when[11:16]}Z"


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


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_NAMED_CONTROL = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str) -> str:
    """*text* safe to show on a terminal: C0, DEL and C1 characters as visible escapes.

    Akool's texts (``error_reason``, ``msg``) reach log lines and the summary; an ESC
    in them could clear the screen, retitle the window or hide lines, a newline could
    forge a log line. ``"a\\nb\\x1b[2J"`` comes out as ``a\\nb\\x1b[2J``, printable text.
    """
    return _CONTROL.sub(lambda m: _NAMED_CONTROL.get(m[0], f"\\x{ord(m[0]):02x}"), text)


class TextFormatter(logging.Formatter):
    """The human log format; every control character in a message is escaped."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = printable(record.message)
        return super().formatMessage(record)

    def formatException(self, ei: Any) -> str:
        # A traceback keeps its lines, but an exception's text may quote Akool.
        return "\n".join(printable(line) for line in super().formatException(ei).split("\n"))


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json_text(entry)


def setup_logging(*, quiet: bool = False, verbose: bool = False, debug: bool = False,
                  log_format: str = "text") -> None:
    # A person at a terminal sees what happens; cron (no terminal) only hears of problems.
    chatty = verbose or sys.stderr.isatty()
    level = logging.ERROR if quiet else logging.DEBUG if debug else \
        logging.INFO if chatty else logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter(
        "%(asctime)s %(levelname)-7s %(message)s", datefmt="%Y-%m-%dT%H:%M:%S"))
    # stamina would log every retry as a warning; the archiver logs its own retries at
    # INFO, so that a transient hiccup that was retried away does not wake up cron.
    stamina.instrumentation.set_on_retry_hooks([])
    root = logging.getLogger("archiver")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def _route_logs(handler: logging.Handler) -> None:
    """Send log lines through *handler*, keeping the formatter and secret filter."""
    root = logging.getLogger("archiver")
    old = root.handlers[0]
    handler.setFormatter(old.formatter)  # type: ignore[arg-type]
    handler.filters[:] = old.filters
    root.handlers[:] = [handler]


def install_secret_filter(config: Config) -> None:
    secrets = [s.get_secret_value() for s in (config.api.api_key, config.api.token) if s]
    if config.webhook is not None:
        secrets += [config.webhook.client_secret.get_secret_value(),
                    config.webhook.client_id.get_secret_value()]
    for handler in logging.getLogger("archiver").handlers:
        handler.filters[:] = [SecretFilter(secrets)]
