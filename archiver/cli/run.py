"""``archiver run``: one pass over a manifest (or the journal's pending ids)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from typing import Any

from ..config import SECTIONS, Config, require_credentials
from ..errors import FatalRunError, UsageError
from ..events import Observer
from ..exitstatus import ExitStatus
from ..fleet.lock import LockHeld
from ..fleet.shard import Shard
from ..manifest import Manifest
from ..models import Outcome, RunResult
from ..report import build_report, write_report
from ..run import archive
from .context import Done, config_source, load_config_for, load_manifest
from .index import refresh_index
from .logs import say_line, say_lines
from .outputs import check_outputs, save, summary_stream, write_failure_report
from .parsing import DEFAULT_JOURNAL
from .summary import format_dry_run, format_summary
from .terminal import progress_display, stop_on_signals

log = logging.getLogger("archiver")


def run(args: argparse.Namespace, shard: Shard | None) -> Done:
    # Both inputs are checked before anything touches the network or the archive.
    # `run` does not read webhook: (serve's), except for the journal's default path.
    default_journal = args.from_journal == DEFAULT_JOURNAL
    config = load_config_for(args, SECTIONS if default_journal else SECTIONS - {"webhook"})
    require_credentials(config, "archiver run", config_source(args))
    manifest = _manifest_or_journal(args, config, shard)
    # Found now, not after an hour of downloads: outputs that cannot be written.
    check_outputs(args)
    with progress_display(args) as display:
        status, result, report = asyncio.run(_run_async(args, config, manifest, shard, display))
    if args.quiet:
        _say_failures(result)
    return Done(status, report if args.json else None, result)


async def _run_async(args: argparse.Namespace, config: Config, manifest: Manifest,
                     shard: Shard | None, observer: Observer | None
                     ) -> tuple[int, RunResult, dict[str, Any] | None]:
    interrupt = asyncio.Event()
    received: list[signal.Signals] = []

    def on_first_signal(signum: signal.Signals) -> None:
        received.append(signum)
        log.warning("received %s: finishing up (send it again to exit at once)", signum.name)
        interrupt.set()

    remove_handlers = stop_on_signals(asyncio.get_running_loop(), on_first_signal, observer)
    try:
        result = await archive(config, manifest, observer=observer, interrupt=interrupt,
                               dry_run=args.dry_run, shard=shard)
    except (UsageError, FatalRunError, LockHeld) as exc:
        if args.report_output is not None:
            write_failure_report(args.report_output, exc, shard)
        raise
    finally:
        remove_handlers()
    status = ExitStatus.for_signal(received[0]) if received else result.exit_status
    output = args.report_output
    report = None
    if output is not None or args.json:
        # Only written (no --json): items built one by one as the file is written.
        report = build_report(result, status, received[0].name if received else None,
                              lazy_items=not args.json)
    if output is not None:
        assert report is not None
        written = report
        if not save(output, "report", lambda: write_report(output, written)) \
                and not received:
            status = ExitStatus.IOERR
    if not args.quiet and not args.json:
        print(format_dry_run(result) if args.dry_run else format_summary(result),
              file=summary_stream(args))
    if getattr(args, "index", False) and not args.dry_run and not received:
        await refresh_index(config, args)
    return status, result, report


def _say_failures(result: RunResult) -> None:
    """``-q``: one line per failed or expired id - what cron mails. Pending is no
    failure (the exit status, 3, says it), nor is an id archived."""
    say_lines(say_line(f"{item.id}: {item.outcome.value}: {item.error}",
                       label="archiver: ", id=item.id, outcome=item.outcome.value,
                       error={"kind": item.error_kind, "code": item.error_code,
                              "message": item.error})
              for item in result.items if item.outcome in (Outcome.FAILED, Outcome.EXPIRED))


def _manifest_or_journal(args: argparse.Namespace, config: Config,
                         shard: Shard | None) -> Manifest:
    if args.from_journal is None:
        if args.manifest is None:
            raise UsageError("run needs a MANIFEST (or --from-journal)")
        return load_manifest(args.manifest, config, shard)
    if args.manifest is not None:
        raise UsageError("give either a MANIFEST or --from-journal, not both")
    from ..archive import Archive
    from ..service.journal import pending_ids
    from ..service.probe import with_families
    from ..service.serve import journal_path

    path = args.from_journal
    if path == DEFAULT_JOURNAL:
        path = journal_path(config, Archive.from_config(config.storage))
    pending = asyncio.run(pending_ids(path))
    log.info("%s: %d pending id(s)", path, len(pending))
    if shard is not None:  # before asking Akool about any: each pod its own ids
        pending = [(job_id, family) for job_id, family in pending if shard.owns(job_id)]
    items = asyncio.run(with_families(config.api, pending, limit=config.concurrency.polls))
    return Manifest.from_ids(items, source=str(path))
