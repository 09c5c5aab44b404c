"""``--report`` and ``--metrics-file``: checked before the run, written after it.

A path that cannot be written is found at start (exit 2, nothing attempted); one that
breaks during the run costs only that file (exit 74, the archive is fine). What a path
may be - ``-`` for stdout, a FIFO, a device, a link, a regular file - and how each is
written is :class:`~archiver.report.OutputFile`'s business.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from .._os import os_reason
from ..errors import ArchiverError, UsageError
from ..exitstatus import ExitStatus
from ..fleet.lock import LockHeld
from ..fleet.shard import Shard
from ..models import RunResult
from ..report import STDOUT, OutputFile, write_report
from .logs import say

#: Either a path as given on the command line, or the output it was checked into.
Output = Path | OutputFile


class OutputPathError(UsageError):
    """--report / --metrics-file names a path that cannot be written."""

    def __init__(self, message: str, path: Path) -> None:
        super().__init__(message)
        self.path = path


def check_output(path: Path | None, what: str) -> OutputFile | None:
    """The output *path* (the *what*) names, checked now; raise
    :class:`OutputPathError` if it cannot be written. A FIFO or device stays open
    until it is written."""
    if path is None:
        return None
    try:
        return OutputFile(path)
    except OSError as err:
        raise OutputPathError(f"cannot write the {what} {path}: {os_reason(err)}",
                              path) from None


def check_outputs(args: argparse.Namespace) -> None:
    """Check ``--report`` and ``--metrics-file``, keeping the outputs on *args*
    (``report_output``, ``metrics_output``) for the end of the run."""
    if args.report is not None and args.metrics_file is not None \
            and str(args.report) == str(args.metrics_file) == STDOUT:
        raise UsageError("--report and --metrics-file cannot both be - (standard output)")
    args.report_output = check_output(args.report, "report")
    args.metrics_output = check_output(args.metrics_file, "metrics file")
    if getattr(args, "json", False):
        for flag, output in (("--report", args.report_output),
                             ("--metrics-file", args.metrics_output)):
            if output is not None and output.is_stdout:
                raise UsageError(f"--json prints its document on standard output: "
                                 f"{flag} {output.path} cannot go there too (give it a file)")


def summary_stream(args: argparse.Namespace) -> TextIO:
    """Where the summary goes: stdout, unless the report or metrics go there (then
    stderr: a pipeline reading JSON must get JSON only)."""
    outputs = (getattr(args, "report_output", None), getattr(args, "metrics_output", None))
    if any(o is not None and o.is_stdout for o in outputs):
        return sys.stderr
    if any(str(p) == STDOUT for p in (getattr(args, "report", None),
                                      getattr(args, "metrics_file", None))):
        return sys.stderr
    return sys.stdout


def save(path: Output, what: str, write: Callable[[], None]) -> bool:
    """Run *write*; on an OS error print one line naming *path* and return False."""
    try:
        write()
    except OSError as err:
        name = path.path if isinstance(path, OutputFile) else path
        say(f"cannot write the {what} {name}: {os_reason(err)} (the archive is not "
            "affected; only this file is missing)", exit_status=ExitStatus.IOERR)
        return False
    return True


def write_failure_report(path: Output, exc: ArchiverError, shard: Shard | None) -> None:
    """The report of a run that could not start: its status and why, no items."""
    from .documents import fatal

    status = ExitStatus.TEMPFAIL if isinstance(exc, LockHeld) else ExitStatus.USAGE
    report = fatal("run", status, str(exc), str(shard) if shard is not None else None)
    save(path, "report", lambda: write_report(path, report))


def write_metrics_file(path: Output, result: RunResult | None, status: int,
                       shard: Shard | None = None) -> bool:
    """Write the metrics of a run that ended with *status*; False if that failed."""
    from ..metrics import write_metrics

    return save(path, "metrics file", lambda: write_metrics(path, result, status, shard=shard))
