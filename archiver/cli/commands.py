"""The commands: each takes the parsed arguments and returns an exit status.

:func:`main` parses, sets up logging, dispatches, and maps what escapes a command to
one line on stderr and an :class:`~archiver.exitstatus.ExitStatus`. The commands load
their inputs (configuration, manifest) before anything touches the network or the
archive, and print through :mod:`.summary`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ..archive.run import archive
from ..config import Config, load_config
from ..errors import ArchiverError, FatalRunError, ItemError, LeaseLost, UsageError
from ..events import Observer
from ..exitstatus import ExitStatus
from ..lock import LockHeld
from ..manifest import Manifest
from ..models import RunResult
from ..report import build_report, write_report
from ..shard import Shard, parse_shard
from ..sources import load_manifest_from
from .logs import install_secret_filter, route_logs, setup_logging
from .outputs import (
    OutputPathError,
    check_outputs,
    save,
    summary_stream,
    write_failure_report,
    write_metrics_file,
)
from .parsing import DEFAULT_JOURNAL, build_parser
from .summary import describe_remote, format_dry_run, format_summary, human_bytes, printable

if TYPE_CHECKING:
    from ..serve import Server

log = logging.getLogger("archiver")

#: What a run ended with before --metrics-file is written; only these become IOERR when
#: it cannot be (a usage error or a signal says more than "the metrics are missing").
_RUN_OVER = (ExitStatus.OK, ExitStatus.FAILED, ExitStatus.PENDING)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    setup_logging(quiet=args.quiet, verbose=args.verbose, debug=args.debug,
                  log_format=args.log_format)
    status: int | None = None
    result: RunResult | None = None
    metrics_ok = True  # False once the metrics path is known to be unwritable
    try:
        if args.command == "run":
            status, result = _run(args)
        else:
            status = _COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("archiver: interrupted", file=sys.stderr)
        status = ExitStatus.INTERRUPTED
    except (LockHeld, LeaseLost) as exc:
        print(f"archiver: {printable(str(exc))}", file=sys.stderr)
        status = ExitStatus.TEMPFAIL
    except OutputPathError as exc:
        print(f"archiver: error: {printable(str(exc))}", file=sys.stderr)
        status = ExitStatus.USAGE
        metrics_ok = exc.path != getattr(args, "metrics_file", None)
    except (UsageError, FatalRunError) as exc:
        # Akool's own words may be in it (a credentials error quotes its msg).
        print(f"archiver: error: {printable(str(exc))}", file=sys.stderr)
        status = ExitStatus.USAGE
    except ArchiverError as exc:  # pragma: no cover - per-id errors never get here
        print(f"archiver: error: {printable(str(exc))}", file=sys.stderr)
        status = ExitStatus.FAILED
    except Exception as exc:
        if args.debug:
            raise
        print(f"archiver: internal error: {type(exc).__name__} (run with --debug for details)",
              file=sys.stderr)
        status = ExitStatus.SOFTWARE
    finally:
        # Metrics say how the run ended, whatever ended it (even a config error).
        metrics_file = getattr(args, "metrics_output", None) or \
            getattr(args, "metrics_file", None)
        if metrics_file is not None and status is not None and metrics_ok:
            written = write_metrics_file(metrics_file, result, status,
                                         getattr(args, "resolved_shard", None))
            if not written and status in _RUN_OVER:
                status = ExitStatus.IOERR
    return status


def _resolve_shard(args: argparse.Namespace) -> Shard | None:
    """The shard --shard names (kept on *args* for the metrics), or None."""
    spec = getattr(args, "shard", None)
    shard = parse_shard(spec) if spec else None
    args.resolved_shard = shard
    return shard


def _load_config(args: argparse.Namespace) -> Config:
    config = load_config(args.config)
    install_secret_filter(config)
    return config


def _load_manifest(spec: str, config: Config, shard: Shard | None = None) -> Manifest:
    manifest = load_manifest_from(spec, s3=config.storage.s3)
    return shard.select(manifest) if shard is not None else manifest


def _progress_display(args: argparse.Namespace
                      ) -> contextlib.AbstractContextManager[Observer | None]:
    """Live progress for a person at a terminal; None under cron and in pipelines."""
    if not sys.stderr.isatty() or args.quiet or args.log_format != "text":
        return contextlib.nullcontext()
    from ..progress import ConsoleHandler, ProgressDisplay

    display = ProgressDisplay()
    route_logs(ConsoleHandler(display.console))
    return display


def _stop_on_signals(loop: asyncio.AbstractEventLoop,
                     first: Callable[[signal.Signals], None]) -> Callable[[], None]:
    """Call *first* on the first SIGINT / SIGTERM; exit at once on the second.

    Returns the function that removes the handlers again.
    """
    received: list[signal.Signals] = []

    def on_signal(signum: signal.Signals) -> None:
        if received:
            # The user insists: go now. Partial files keep their temporary names.
            os.write(2, b"archiver: second signal, exiting at once\n")
            os._exit(ExitStatus.for_signal(signum))
        received.append(signum)
        first(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)

    def remove() -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)

    return remove


# ----------------------------------------------------------------------- run

def _run(args: argparse.Namespace) -> tuple[int, RunResult]:
    # Both inputs are checked before anything touches the network or the archive.
    shard = _resolve_shard(args)
    config = _load_config(args)
    manifest = _manifest_or_journal(args, config, shard)
    # Found now, not after an hour of downloads: outputs that cannot be written.
    check_outputs(args)
    with _progress_display(args) as display:
        return asyncio.run(_run_async(args, config, manifest, display))


async def _run_async(args: argparse.Namespace, config: Config, manifest: Manifest,
                     observer: Observer | None) -> tuple[int, RunResult]:
    interrupt = asyncio.Event()
    received: list[signal.Signals] = []

    def on_first_signal(signum: signal.Signals) -> None:
        received.append(signum)
        log.warning("received %s: finishing up (send it again to exit at once)", signum.name)
        interrupt.set()

    remove_handlers = _stop_on_signals(asyncio.get_running_loop(), on_first_signal)
    try:
        result = await archive(config, manifest, observer=observer, interrupt=interrupt,
                               dry_run=args.dry_run, shard=args.resolved_shard)
    except (UsageError, FatalRunError, LockHeld) as exc:
        if args.report_output is not None:
            write_failure_report(args.report_output, exc, args.resolved_shard)
        raise
    finally:
        remove_handlers()
    status = ExitStatus.for_signal(received[0]) if received else result.exit_status
    output = args.report_output
    if output is not None:
        signame = received[0].name if received else None
        report = build_report(result, status, signame)
        if not save(output, "report", lambda: write_report(output, report)) \
                and not received:
            status = ExitStatus.IOERR
    if not args.quiet:
        print(format_dry_run(result) if args.dry_run else format_summary(result),
              file=summary_stream(args))
    return status, result


def _manifest_or_journal(args: argparse.Namespace, config: Config,
                         shard: Shard | None) -> Manifest:
    if args.from_journal is None:
        if args.manifest is None:
            raise UsageError("run needs a MANIFEST (or --from-journal)")
        return _load_manifest(args.manifest, config, shard)
    if args.manifest is not None:
        raise UsageError("give either a MANIFEST or --from-journal, not both")
    from ..archive import Archive
    from ..journal import pending_ids
    from ..serve import journal_path

    path = args.from_journal
    if path == DEFAULT_JOURNAL:
        path = journal_path(config, Archive.from_config(config.storage))
    ids = asyncio.run(pending_ids(path))
    log.info("%s: %d pending id(s)", path, len(ids))
    manifest = Manifest.from_ids(ids, source=str(path))
    return shard.select(manifest) if shard is not None else manifest


# ---------------------------------------------------------------------- serve

def _serve(args: argparse.Namespace) -> ExitStatus:
    from ..serve import Server

    config = _load_config(args)
    if config.webhook is None:
        raise UsageError(f"{args.config}: archiver serve needs a webhook: section "
                         "(client_id, client_secret)")
    return asyncio.run(_serve_async(Server(config, args.listen)))


async def _serve_async(server: Server) -> ExitStatus:
    def on_first_signal(signum: signal.Signals) -> None:
        log.warning("received %s: no new callbacks; finishing work in flight (send it "
                    "again to exit at once)", signum.name)
        server.stop.set()

    remove_handlers = _stop_on_signals(asyncio.get_running_loop(), on_first_signal)
    try:
        await server.serve_until_stopped()
    finally:
        remove_handlers()
    if server.lease_lost is not None:
        # Another run took the archive over: what was not finished is pending in the
        # journal; a supervisor restarting the server gets 75 until the other one ends.
        print(f"archiver: serve stopped: it lost its lease ({printable(server.lease_lost)}); "
              "unfinished jobs stay pending in the journal", file=sys.stderr)
        return ExitStatus.TEMPFAIL
    # A stop on request is the normal end of a server: whatever was not finished is
    # pending in the journal, and the next start resumes it.
    return ExitStatus.OK


# ----------------------------------------------------------------------- demo

def _demo(args: argparse.Namespace) -> ExitStatus:
    from ..demo import run_demo, run_demo_serve

    if args.serve:
        return run_demo_serve(args.dir, quiet=args.quiet, on_config=install_secret_filter)
    with _progress_display(args) as display:
        demo = run_demo(args.dir, quiet=args.quiet, observer=display,
                        on_config=install_secret_filter)
    if not args.quiet:
        print(format_summary(demo.result))
        print(demo.notes)
    return demo.status


# -------------------------------------------------------------- verify, status

def _verify(args: argparse.Namespace) -> ExitStatus:
    from ..archive import Archive
    from ..archive.verify import VerifyResult

    shard = _resolve_shard(args)
    config = _load_config(args)
    ids = [i.id for i in _load_manifest(args.manifest, config, shard)] \
        if args.manifest else None

    async def go() -> VerifyResult:
        archive = Archive.from_config(config.storage)
        await archive.open(readonly=True)
        try:
            targets = ids
            if targets is None and shard is not None:
                targets = [i for i in await archive.list_archived() if shard.owns(i)]
            return await archive.verify(targets, deep=args.deep)
        finally:
            await archive.close()

    result = asyncio.run(go())
    for problem in result.problems:
        print(f"archiver: {printable(str(problem))}", file=sys.stderr)
    if not args.quiet:
        verdict = "OK" if result.ok else f"{len(result.problems)} problem(s)"
        print(f"archiver verify: {result.items} item(s), {result.files} file(s), "
              f"{human_bytes(result.bytes)} checked: {verdict}")
    return ExitStatus.OK if result.ok else ExitStatus.FAILED


def _status(args: argparse.Namespace) -> ExitStatus:
    from ..api import AkoolClient
    from ..archive import Archive

    shard = _resolve_shard(args)
    config = _load_config(args)
    manifest = _load_manifest(args.manifest, config, shard)
    ids = [i.id for i in manifest]

    async def go() -> tuple[dict[str, str], dict[str, str]]:
        archive = Archive.from_config(config.storage)
        await archive.open(readonly=True)
        try:
            states: dict[str, str] = dict(await archive.item_states(ids))
        finally:
            await archive.close()
        remote: dict[str, str] = {}
        if args.remote:
            # With --shard K/N, N of these may run at once: each takes its 1/N of the budget.
            async with AkoolClient(config.api, limit=config.concurrency.polls,
                                   shares=shard.count if shard is not None else 1) as client:
                slots = asyncio.Semaphore(config.concurrency.polls)

                async def ask(item_id: str) -> None:
                    async with slots:
                        try:
                            info = await client.video_info(item_id)
                        except ItemError as exc:
                            remote[item_id] = f"error: {exc}"
                            return
                        remote[item_id] = describe_remote(info.status, info.expires_at)

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
    return ExitStatus.OK


# ------------------------------------------------------------------------- gc

def _gc(args: argparse.Namespace) -> ExitStatus:
    from ..archive.gc import check_min_age, collect, default_min_age, parse_duration

    config = _load_config(args)
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
    return ExitStatus.FAILED if result.failures else ExitStatus.OK


#: Every command but ``run`` (whose result the metrics file also needs).
_COMMANDS: dict[str, Callable[[argparse.Namespace], ExitStatus]] = {
    "verify": _verify, "status": _status, "gc": _gc, "serve": _serve, "demo": _demo,
}
