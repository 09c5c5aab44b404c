"""The commands: each takes the parsed arguments and returns what it did.

:func:`main` parses, sets up logging, dispatches, and maps what escapes a command to
one line on stderr and an :class:`~archiver.exitstatus.ExitStatus`. The commands load
their inputs (configuration, manifest) before anything touches the network or the
archive, and print through :mod:`.summary` - or, with ``--json``, hand :func:`main`
one document (:mod:`.documents`) to print on stdout once the exit status is final.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import (
    DEFAULT_CONFIG_PATH,
    SECTIONS,
    STDIN,
    Config,
    LocalStorageConfig,
    StorageConfig,
    load_config,
    require_credentials,
)
from ..errors import ArchiverError, FatalRunError, ItemError, LeaseLost, UsageError
from ..events import Observer
from ..exitstatus import ExitStatus
from ..lock import LockHeld
from ..manifest import Manifest, ManifestItem
from ..models import Outcome, RunResult
from ..report import STDOUT, OutputFile, build_report, json_text, write_report
from ..run import archive
from ..shard import Shard, parse_shard
from ..sources import load_manifest_from
from . import documents
from .logs import install_secret_filter, route_logs, say, say_line, setup_logging
from .outputs import (
    OutputPathError,
    check_outputs,
    save,
    summary_stream,
    write_failure_report,
    write_metrics_file,
)
from .parsing import DEFAULT_JOURNAL, CommandLineError, build_parser
from .summary import describe_remote, format_dry_run, format_summary, human_bytes, printable

if TYPE_CHECKING:
    from ..archive.index import IndexResult
    from ..serve import Server

log = logging.getLogger("archiver")

#: What a run ended with before --metrics-file is written; only these become IOERR when
#: it cannot be (a usage error or a signal says more than "the metrics are missing").
_RUN_OVER = (ExitStatus.OK, ExitStatus.FAILED, ExitStatus.PENDING)


@dataclass(slots=True)
class Done:
    """What a command did: its exit status and, for ``--json``, its document."""

    status: int
    document: dict[str, Any] | None = None
    #: The run's result (``run`` only): the metrics file needs it.
    result: RunResult | None = None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
    except CommandLineError as exc:
        return _refused(exc, list(sys.argv[1:] if argv is None else argv))
    setup_logging(quiet=args.quiet, verbose=args.verbose, debug=args.debug,
                  log_format=args.log_format)
    args.json = getattr(args, "json", False)
    done: Done | None = None
    status: int | None = None
    fatal: str | None = None  # why the command could not run, for --json
    metrics_ok = True  # False once the metrics path is known to be unwritable
    try:
        done = _COMMANDS[args.command](args)
        status = done.status
    except KeyboardInterrupt:
        fatal, status = "interrupted", ExitStatus.INTERRUPTED
        say(fatal, label="archiver: ", exit_status=status)
    except (LockHeld, LeaseLost) as exc:
        fatal, status = str(exc), ExitStatus.TEMPFAIL
        say(fatal, label="archiver: ", exit_status=status)
    except OutputPathError as exc:
        fatal, status = str(exc), ExitStatus.USAGE
        say(fatal, exit_status=status)
        metrics_ok = exc.path != getattr(args, "metrics_file", None)
    except (UsageError, FatalRunError) as exc:
        # Akool's own words may be in it (a credentials error quotes its msg).
        fatal, status = str(exc), ExitStatus.USAGE
        say(fatal, exit_status=status)
    except ArchiverError as exc:  # pragma: no cover - per-id errors never get here
        fatal, status = str(exc), ExitStatus.FAILED
        say(fatal, exit_status=status)
    except Exception as exc:
        if args.debug:
            raise
        fatal = f"internal error: {type(exc).__name__} (run with --debug for details)"
        status = ExitStatus.SOFTWARE
        say(fatal, label="archiver: ", exit_status=status)
    finally:
        # Metrics say how the run ended, whatever ended it (even a config error).
        metrics_file = getattr(args, "metrics_output", None) or \
            getattr(args, "metrics_file", None)
        if args.json and metrics_file is not None and (
                metrics_file.is_stdout if isinstance(metrics_file, OutputFile)
                else str(metrics_file) == STDOUT):
            metrics_ok = False  # refused: stdout is the JSON document's
        if metrics_file is not None and status is not None and metrics_ok:
            written = write_metrics_file(metrics_file, done.result if done else None, status,
                                         getattr(args, "resolved_shard", None))
            if not written and status in _RUN_OVER:
                status = ExitStatus.IOERR
    assert status is not None
    if args.json:
        document = done.document if done is not None and done.document is not None else \
            documents.fatal(args.command, status, fatal or "no document",
                            _shard_text(getattr(args, "resolved_shard", None)))
        document["exit_status"] = int(status)
        if not _print_document(document) and status in _RUN_OVER:
            status = ExitStatus.IOERR
    # Only the process's status: the report, the JSON document and the metrics keep the
    # run's 3 (its pending ids are not archived; the last-success time must not say so).
    if status == ExitStatus.PENDING and getattr(args, "pending_ok", False):
        status = ExitStatus.OK
    return status


def _refused(exc: CommandLineError, argv: list[str]) -> int:
    """argparse refused *argv*: its usage and message (or one JSON line), exit 2."""
    if _json_logs_asked(argv):
        setup_logging(log_format="json")
        say(str(exc), label="", exit_status=ExitStatus.USAGE)
    else:
        sys.stderr.write(exc.text)
    if "--json" in argv:
        command = next((a for a in argv if a in _COMMANDS), None) or "archiver"
        _print_document(documents.fatal(command, ExitStatus.USAGE, str(exc)))
    return ExitStatus.USAGE


def _json_logs_asked(argv: list[str]) -> bool:
    """``--log-format json`` (or ``=json``) is on a command line argparse refused."""
    return "--log-format=json" in argv or any(a == "--log-format" and b == "json"
                                              for a, b in itertools.pairwise(argv))


def _print_document(document: dict[str, Any]) -> bool:
    """Print a ``--json`` document on stdout; False (one line said why) if it could not."""
    output = OutputFile(STDOUT)
    return save(output, "JSON document", lambda: output.write(json_text(document, indent=2)
                                                              + "\n"))


def _shard_text(shard: Shard | None) -> str | None:
    return str(shard) if shard is not None else None


def _resolve_shard(args: argparse.Namespace) -> Shard | None:
    """The shard --shard names (kept on *args* for the metrics), or None."""
    spec = getattr(args, "shard", None)
    shard = parse_shard(spec) if spec else None
    args.resolved_shard = shard
    return shard


# ------------------------------------------------------------- inputs

def _load_config(args: argparse.Namespace, uses: frozenset[str] = SECTIONS,
                 root: Path | None = None) -> Config:
    """The configuration *args* name, reading only the sections in *uses*.

    With *root* (``--root DIR``), the storage is that local folder, and without ``-c``
    a missing ``./archiver.yaml`` is no error: a local archive needs no configuration.
    """
    path = args.config
    if path is None:
        path = DEFAULT_CONFIG_PATH
        if root is not None and not path.exists():
            return _at_root(Config(), root)
        if args.command in ("verify", "status", "gc", "index") and not path.exists():
            raise UsageError(f"{path}: configuration file not found (use -c PATH, or give "
                             "a local archive root: DIR or --root DIR)")
    if str(path) == STDIN and getattr(args, "manifest", None) == STDIN:
        raise UsageError("-c - and MANIFEST - both want standard input: give one of them "
                         "as a file")
    if root is not None:
        uses = uses - {"storage"}
    config = load_config(path, unused=SECTIONS - uses, needed_by=f"archiver {args.command}")
    install_secret_filter(config)
    return _at_root(config, root) if root is not None else config


def _config_source(args: argparse.Namespace) -> str:
    """The configuration's name in messages (--root may have done without one)."""
    path = args.config or DEFAULT_CONFIG_PATH
    if str(path) == STDIN:
        return "<stdin>"
    return str(path) if args.config is not None or path.exists() else f"{path} (not found)"


def _at_root(config: Config, root: Path) -> Config:
    storage = StorageConfig(backend="local", local=LocalStorageConfig(root=root))
    return config.model_copy(update={"storage": storage})


def _target(args: argparse.Namespace) -> tuple[str | None, Path | None]:
    """(MANIFEST, archive root) of verify, status and gc: the positional argument may
    be either (a folder is an archive root: no manifest is a folder)."""
    spec: str | None = args.manifest
    root: Path | None = args.root
    if spec is not None and spec != STDIN and "://" not in spec and Path(spec).is_dir():
        if root is not None:
            raise UsageError(f"{spec} is a folder (an archive root) and so is --root {root}: "
                             "give the archive root once")
        root, spec = Path(spec), None
    if root is not None and not root.is_dir():
        raise UsageError(f"--root {root}: no such folder (an archive root is the folder "
                         "that holds one folder per archived id)")
    args.manifest = spec
    return spec, root


def _load_manifest(spec: str, config: Config, shard: Shard | None = None) -> Manifest:
    manifest = load_manifest_from(spec, s3=config.storage.s3)
    return shard.select(manifest) if shard is not None else manifest


# ------------------------------------------------------------- the terminal

def _progress_display(args: argparse.Namespace
                      ) -> contextlib.AbstractContextManager[Observer | None]:
    """Live progress for a person at a terminal; None under cron and in pipelines."""
    if not sys.stderr.isatty() or args.quiet or args.json or args.log_format != "text":
        return contextlib.nullcontext()
    from ..progress import ConsoleHandler, ProgressDisplay

    display = ProgressDisplay()
    route_logs(ConsoleHandler(display.console))
    return display


def _stop_on_signals(loop: asyncio.AbstractEventLoop,
                     first: Callable[[signal.Signals], None],
                     display: Observer | None = None) -> Callable[[], None]:
    """Call *first* on the first SIGINT / SIGTERM; exit at once on the second.

    Returns the function that removes the handlers again.
    """
    received: list[signal.Signals] = []

    def on_signal(signum: signal.Signals) -> None:
        if received:
            # The user insists: go now. Partial files keep their temporary names.
            abandon = getattr(display, "abandon", None)
            if abandon is not None:
                abandon()  # the cursor the live display hid, shown again
            os.write(2, say_line("second signal, exiting at once", level="error",
                                 label="archiver: ").encode())
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

def _run(args: argparse.Namespace) -> Done:
    # Both inputs are checked before anything touches the network or the archive.
    shard = _resolve_shard(args)
    # `run` does not read webhook: (serve's), except for the journal's default path.
    default_journal = args.from_journal == DEFAULT_JOURNAL
    config = _load_config(args, SECTIONS if default_journal else SECTIONS - {"webhook"})
    require_credentials(config, "archiver run", _config_source(args))
    manifest = _manifest_or_journal(args, config, shard)
    # Found now, not after an hour of downloads: outputs that cannot be written.
    check_outputs(args)
    with _progress_display(args) as display:
        status, result, report = asyncio.run(_run_async(args, config, manifest, display))
    if args.quiet:
        _say_failures(result)
    return Done(status, report if args.json else None, result)


async def _run_async(args: argparse.Namespace, config: Config, manifest: Manifest,
                     observer: Observer | None
                     ) -> tuple[int, RunResult, dict[str, Any] | None]:
    interrupt = asyncio.Event()
    received: list[signal.Signals] = []

    def on_first_signal(signum: signal.Signals) -> None:
        received.append(signum)
        log.warning("received %s: finishing up (send it again to exit at once)", signum.name)
        interrupt.set()

    remove_handlers = _stop_on_signals(asyncio.get_running_loop(), on_first_signal, observer)
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
    report = None
    if output is not None or args.json:
        report = build_report(result, status, received[0].name if received else None)
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
        await _refresh_index(config, args)
    return status, result, report


def _say_failures(result: RunResult) -> None:
    """``-q``: one line per failed or expired id - what cron mails. Pending is no
    failure (the exit status, 3, says it), nor is an id archived."""
    for item in result.items:
        if item.outcome in (Outcome.FAILED, Outcome.EXPIRED):
            say(f"{item.id}: {item.outcome.value}: {item.error}", label="archiver: ",
                id=item.id, outcome=item.outcome.value,
                error={"kind": item.error_kind, "code": item.error_code,
                       "message": item.error})


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

def _serve(args: argparse.Namespace) -> Done:
    from ..serve import Server

    config = _load_config(args)
    require_credentials(config, "archiver serve", _config_source(args))
    if config.webhook is None:
        raise UsageError(f"{_config_source(args)}: archiver serve needs a webhook: section "
                         "(client_id, client_secret)")
    return Done(asyncio.run(_serve_async(Server(config, args.listen))))


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
        say(f"serve stopped: it lost its lease ({server.lease_lost}); unfinished jobs stay "
            "pending in the journal", label="archiver: ", exit_status=ExitStatus.TEMPFAIL)
        return ExitStatus.TEMPFAIL
    # A stop on request is the normal end of a server: whatever was not finished is
    # pending in the journal, and the next start resumes it.
    return ExitStatus.OK


# ----------------------------------------------------------------------- demo

def _demo(args: argparse.Namespace) -> Done:
    from ..demo import run_demo, run_demo_serve

    def progress_line(text: str) -> None:
        say(text, level="info", label="archiver demo: ")

    tell = None if args.quiet else progress_line
    if args.serve:
        served = run_demo_serve(args.dir, say=tell, on_config=install_secret_filter)
        if not args.quiet and not args.json:
            for row in served.rows:
                detail = f": {printable(row.error)}" if row.error else ""
                print(f"  {row.id}  {row.outcome}{detail}")
            print(f"Journal: {served.journal}. Archive: {args.dir}/. One job fails on "
                  "Akool's side on purpose.")
        return Done(served.status, documents.demo_serve(served) if args.json else None)
    with _progress_display(args) as display:
        demo = run_demo(args.dir, say=tell, observer=display, on_config=install_secret_filter)
    if not args.quiet and not args.json:
        print(format_summary(demo.result))
        print(demo.notes)
    document = documents.demo(demo, build_report(demo.result, demo.status)) \
        if args.json else None
    return Done(demo.status, document)


# -------------------------------------------------------------- verify, status

def _verify(args: argparse.Namespace) -> Done:
    from ..archive import Archive
    from ..archive.verify import VerifyResult

    shard = _resolve_shard(args)
    spec, root = _target(args)
    config = _load_config(args, frozenset({"storage"}), root)
    ids = [i.id for i in _load_manifest(spec, config, shard)] if spec else None

    async def go() -> tuple[VerifyResult, str]:
        archive = Archive.from_config(config.storage)
        await archive.open(readonly=True)
        try:
            targets = ids
            if targets is None and shard is not None:
                targets = [i for i in await archive.list_archived() if shard.owns(i)]
            return await archive.verify(targets, deep=args.deep), archive.description
        finally:
            await archive.close()

    result, where = asyncio.run(go())
    for problem in result.problems:
        say(str(problem), label="archiver: ", id=problem.id, file=problem.file,
            kind=problem.kind, detail=problem.detail)
    status = ExitStatus.OK if result.ok else ExitStatus.FAILED
    if args.json:
        return Done(status, documents.verify(result, storage=where, shard=_shard_text(shard),
                                             deep=args.deep))
    if not args.quiet:
        verdict = "OK" if result.ok else f"{len(result.problems)} problem(s)"
        print(f"archiver verify: {result.items} item(s), {result.files} file(s), "
              f"{human_bytes(result.bytes)} checked: {verdict}")
    return Done(status)


def _status(args: argparse.Namespace) -> Done:
    from ..api import AkoolClient
    from ..archive import Archive

    shard = _resolve_shard(args)
    spec, root = _target(args)
    uses = {"storage"} | ({"api", "concurrency"} if args.remote else set())
    config = _load_config(args, frozenset(uses), root)
    if args.remote:
        require_credentials(config, "archiver status --remote", _config_source(args))
    manifest = _load_manifest(spec, config, shard) if spec else None
    remote: dict[str, documents.Remote] = {}

    async def go() -> tuple[list[ManifestItem], dict[str, str], str]:
        archive = Archive.from_config(config.storage)
        await archive.open(readonly=True)
        try:
            if manifest is not None:
                items = list(manifest)
                states: dict[str, str] = dict(await archive.item_states([i.id for i in items]))
            else:
                # Without a manifest: every id the archive holds (archive.json).
                archived = [i for i in await archive.list_archived()
                            if shard is None or shard.owns(i)]
                items = [ManifestItem(i) for i in archived]
                states = dict.fromkeys(archived, "archived")
            where = archive.description
        finally:
            await archive.close()
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
                            remote[item_id] = str(exc)
                            return
                        remote[item_id] = (info.status, info.expires_at)

                await asyncio.gather(*(ask(i.id) for i in items
                                       if states.get(i.id) != "archived"))
        return items, states, where

    items, states, where = asyncio.run(go())
    if args.json:
        return Done(ExitStatus.OK, documents.status(
            items, states, remote if args.remote else None, storage=where,
            manifest=manifest.source if manifest is not None else None,
            shard=_shard_text(shard)))
    width = max((len(i.id) for i in items), default=10)
    for item in items:
        line = f"{item.id:<{width}}  {states.get(item.id, 'absent'):<8}"
        if args.remote:
            answer = remote.get(item.id)
            line += "  " + ("-" if answer is None else f"error: {answer}"
                            if isinstance(answer, str) else describe_remote(*answer))
        if item.label:
            line += f"  ({item.label})"
        print(printable(line))
    counts = {s: sum(1 for i in items if states.get(i.id, "absent") == s)
              for s in ("archived", "partial", "absent")}
    if not args.quiet:
        say(f"{len(items)} id(s): {counts['archived']} archived, {counts['partial']} partial, "
            f"{counts['absent']} absent", level="info", label="archiver status: ")
    return Done(ExitStatus.OK)


# ---------------------------------------------------------------------- index

async def _publish_index(storage: StorageConfig, per_page: int) -> IndexResult:
    from ..archive import Archive

    archive = Archive.from_config(storage)
    await archive.open(readonly=True)  # reads, then writes its pages only: no probe
    try:
        return await archive.write_index(per_page=per_page)
    finally:
        await archive.close()


def _say_index_warnings(result: IndexResult) -> None:
    for item_id in result.unreadable:
        say(f"{item_id}/archive.json cannot be read as a record: the index shows it so "
            "(archiver verify tells more)", level="warning", label="archiver: warning: ",
            id=item_id)
    for failure in result.failures:
        say(failure, level="warning", label="archiver: warning: ")


async def _refresh_index(config: Config, args: argparse.Namespace) -> None:
    """``run --index``: the run's outcome is the archive's, not the page's - a page
    that cannot be written is a warning, and the exit status stays the run's."""
    try:
        result = await _publish_index(config.storage, 1000)
    except ArchiverError as exc:
        say(f"the index was not refreshed: {exc}", level="warning",
            label="archiver: warning: ")
        return
    _say_index_warnings(result)
    if args.verbose:
        say(f"index refreshed: {result.location} ({result.items} item(s))", level="info",
            label="archiver: ")


def _index(args: argparse.Namespace) -> Done:
    root: Path | None = args.dir
    if root is not None and not root.is_dir():
        raise UsageError(f"{root}: no such folder (an archive root is the folder that "
                         "holds one folder per archived id)")
    config = _load_config(args, frozenset({"storage"}), root)
    result = asyncio.run(_publish_index(config.storage, args.per_page))
    _say_index_warnings(result)
    if args.json:
        return Done(ExitStatus.OK, documents.index(result, per_page=args.per_page))
    if not args.quiet:
        print(f"archiver index: {result.items} item(s) on {len(result.pages)} page(s), "
              f"{human_bytes(result.bytes)}: {result.location}")
    return Done(ExitStatus.OK)


# ------------------------------------------------------------------------- gc

def _gc(args: argparse.Namespace) -> Done:
    from ..archive.gc import check_min_age, collect, default_min_age, parse_duration

    spec, root = _target(args)
    config = _load_config(args, frozenset({"storage", "run", "downloads"}), root)
    min_age = parse_duration(args.min_age) if args.min_age else default_min_age(config)
    check_min_age(min_age, config)  # before reading the manifest or touching storage
    ids = [i.id for i in _load_manifest(spec, config)] if spec else None
    result = asyncio.run(collect(config, ids, min_age=min_age, dry_run=args.dry_run))
    for failure in result.failures:
        say(failure, label="archiver: ")
    status = ExitStatus.FAILED if result.failures else ExitStatus.OK
    if args.json:
        return Done(status, documents.gc(result, dry_run=args.dry_run, min_age=min_age))
    verb = "would remove" if args.dry_run else "removed"
    if (args.verbose or args.dry_run) and not args.quiet:
        for found in result.removed:
            size = f" ({human_bytes(found.size)})" if found.kind == "file" else ""
            print(f"  {verb} {found.where}{size}")
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
    return Done(status)


_COMMANDS: dict[str, Callable[[argparse.Namespace], Done]] = {
    "run": _run, "verify": _verify, "status": _status, "gc": _gc, "index": _index,
    "serve": _serve, "demo": _demo,
}
