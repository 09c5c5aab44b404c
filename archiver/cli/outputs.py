"""``--report`` and ``--metrics-file``: checked before the run, written after it.

A path that cannot be written is found at start (exit 2, nothing attempted); one that
breaks during the run costs only that file (exit 74, the archive is fine).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from .. import __version__
from .._os import os_reason
from ..errors import ArchiverError, UsageError
from ..exitstatus import ExitStatus
from ..lock import LockHeld
from ..models import RunResult
from ..report import check_writable, write_report
from ..shard import Shard
from .summary import printable


class OutputPathError(UsageError):
    """--report / --metrics-file names a path that cannot be written."""

    def __init__(self, message: str, path: Path) -> None:
        super().__init__(message)
        self.path = path


def check_output(path: Path | None, what: str) -> None:
    """Raise :class:`OutputPathError` if *path* (the *what*) cannot be written."""
    if path is None:
        return
    try:
        check_writable(path)
    except OSError as err:
        raise OutputPathError(f"cannot write the {what} {path}: {os_reason(err)}",
                              path) from None


def save(path: Path, what: str, write: Callable[[], None]) -> bool:
    """Run *write*; on an OS error print one line naming *path* and return False."""
    try:
        write()
    except OSError as err:
        print(printable(f"archiver: error: cannot write the {what} {path}: {os_reason(err)} "
                        "(the archive is not affected; only this file is missing)"),
              file=sys.stderr)
        return False
    return True


def write_failure_report(path: Path, exc: ArchiverError, shard: Shard | None) -> None:
    """The report of a run that could not start: its status and why, no items."""
    status = ExitStatus.TEMPFAIL if isinstance(exc, LockHeld) else ExitStatus.USAGE
    report = {"schema": 1, "archiver_version": __version__, "exit_status": status,
              "fatal_error": str(exc), "shard": str(shard) if shard is not None else None,
              "items": [], "totals": None}
    save(path, "report", lambda: write_report(path, report))


def write_metrics_file(path: Path, result: RunResult | None, status: int,
                       shard: Shard | None = None) -> bool:
    """Write the metrics of a run that ended with *status*; False if that failed."""
    from ..metrics import write_metrics

    return save(path, "metrics file", lambda: write_metrics(path, result, status, shard=shard))
