"""The commands: each takes the parsed arguments and returns what it did.

:func:`main` parses, sets up logging, dispatches, and maps what escapes a command to
one line on stderr and an :class:`~archiver.exitstatus.ExitStatus`. The commands load
their inputs (configuration, manifest) before anything touches the network or the
archive, and print through :mod:`.summary` - or, with ``--json``, hand :func:`main`
one document (:mod:`.documents`) to print on stdout once the exit status is final.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import ArchiverError, FatalRunError, LeaseLost, UsageError
from ..exitstatus import ExitStatus
from ..fleet.lock import LockHeld
from ..fleet.shard import Shard
from ..report import STDOUT, OutputFile, document_text
from . import documents
from .context import Done, resolve_shard, shard_text
from .index import index
from .inspection import gc, status, verify
from .logs import say, setup_logging
from .outputs import OutputPathError, save, write_metrics_file
from .parsing import CommandLineError, build_parser
from .run import run
from .service import demo, serve

#: What a run ended with before --metrics-file is written; only these become IOERR when
#: it cannot be (a usage error or a signal says more than "the metrics are missing").
_RUN_OVER = (ExitStatus.OK, ExitStatus.FAILED, ExitStatus.PENDING)


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
    shard: Shard | None = None
    status: int | None = None
    fatal: str | None = None  # why the command could not run, for --json
    metrics_ok = True  # False once the metrics path is known to be unwritable
    try:
        shard = resolve_shard(args)
        done = _COMMANDS[args.command](args, shard)
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
                                         shard)
            if not written and status in _RUN_OVER:
                status = ExitStatus.IOERR
    assert status is not None
    if args.json:
        document = done.document if done is not None and done.document is not None else \
            documents.fatal(args.command, status, fatal or "no document",
                            shard_text(shard))
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
    return save(output, "JSON document", lambda: output.write(document_text(document)))


_COMMANDS: dict[str, Callable[[argparse.Namespace, Shard | None], Done]] = {
    "run": run, "verify": verify, "status": status, "gc": gc, "index": index, "serve": serve,
    "demo": demo,
}
