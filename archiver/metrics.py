"""Prometheus text-format metrics for node_exporter's textfile collector.

Written atomically (temp file + rename in the same folder), as the collector requires:
it must never read a half-written file. A FIFO, a character device or ``-`` (stdout)
is written straight into (:class:`~archiver.report.OutputFile`).
"""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path

from .akool.families import FAMILIES
from .exitstatus import ExitStatus
from .fleet.shard import Shard
from .models import Outcome, RunResult
from .report import OutputFile

_LAST_SUCCESS = re.compile(
    r"^archiver_last_success_timestamp_seconds(?:\{[^}]*\})?\s+([0-9.eE+]+)\s*$", re.M)


def render_metrics(result: RunResult | None, exit_status: int, *, now: float,
                   last_success: float | None, shard: Shard | None = None) -> str:
    """The metrics text. A sharded run labels every series ``shard="2",shards="4"``:
    N runs on one node write N files whose series must not collide, and the two labels
    let a query count the shards (``count by (shards)``) or pick one."""
    lines: list[str] = []
    common = f'shard="{shard.index}",shards="{shard.count}"' if shard is not None else ""

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            if common:
                labels = f"{{{common},{labels[1:]}" if labels else f"{{{common}}}"
            lines.append(f"{name}{labels} {_number(value)}")

    if result is not None:
        # Every family's series, zeros too: a dashboard's series do not come and go.
        counts = Counter((i.outcome, i.family) for i in result.items)
        metric("archiver_items", "gauge", "Ids of the last run, by outcome and family.",
               [(f'{{outcome="{o.value}",family="{f}"}}', counts[(o, f)])
                for o in Outcome for f in FAMILIES])
        metric("archiver_bytes_archived", "gauge", "Bytes archived by the last run.",
               [("", result.bytes_archived)])
        metric("archiver_run_duration_seconds", "gauge", "Duration of the last run.",
               [("", round(result.duration, 3))])
        metric("archiver_api_unavailable", "gauge",
               "1 if the last run stopped polling because the Akool API did not answer.",
               [("", int(result.api_unavailable))])
        metric("archiver_lease_lost", "gauge",
               "1 if the last run lost its S3 lease to another run and stopped early.",
               [("", int(result.lease_lost))])
        expiry = _first_pending_expiry(result)
        if expiry is not None:
            metric("archiver_pending_expiry_timestamp_seconds", "gauge",
                   "When Akool deletes the results of the last run's pending id that "
                   "expires first (create_time + 7 days).", [("", round(expiry, 3))])
    metric("archiver_last_run_timestamp_seconds", "gauge", "When the last run ended.",
           [("", round(now, 3))])
    if last_success is not None:
        metric("archiver_last_success_timestamp_seconds", "gauge",
               "When a run last ended with every id archived (exit status 0).",
               [("", round(last_success, 3))])
    metric("archiver_exit_status", "gauge", "Exit status of the last run.",
           [("", exit_status)])
    return "\n".join(lines) + "\n"


def write_metrics(path: Path | OutputFile, result: RunResult | None, exit_status: int,
                  now: float | None = None, shard: Shard | None = None) -> None:
    """Write the metrics file; the last-success time carries over from the previous
    file (a regular one: a stream has no previous content)."""
    output = path if isinstance(path, OutputFile) else OutputFile(path, probe=False)
    now = time.time() if now is None else now
    last_success = now if exit_status == ExitStatus.OK else \
        _previous_success(output.previous_text())
    output.write(render_metrics(result, exit_status, now=now, last_success=last_success,
                                shard=shard))


def _first_pending_expiry(result: RunResult) -> float | None:
    """The soonest Akool deletion among the pending ids whose expiry is known: a gauge of
    a time, not an age, since a textfile is read long after it is written (an age would
    freeze; ``time() - ...`` in a query stays true)."""
    return min((i.expires_at for i in result.items
                if i.outcome is Outcome.PENDING and i.expires_at is not None), default=None)


def _previous_success(text: str | None) -> float | None:
    match = _LAST_SUCCESS.search(text) if text is not None else None
    return float(match.group(1)) if match else None


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
