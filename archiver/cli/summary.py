"""What a person reads on stdout: the summaries of run, dry run, verify, status and gc.

Every text that may quote Akool or a file name goes through :func:`printable` first.
"""

from __future__ import annotations

import re
import time
from collections import Counter

from ..errors import ApiUnavailable
from ..models import JobStatus, Outcome, RunResult, iso_utc

#: Failed ids listed under the summary table; the rest are in --report.
_FAILURES_SHOWN = 20

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_NAMED_CONTROL = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str) -> str:
    """*text* safe to show on a terminal: C0, DEL and C1 characters as visible escapes.

    Akool's texts (``error_reason``, ``msg``) reach log lines and the summary; an ESC
    in them could clear the screen, retitle the window or hide lines, a newline could
    forge a log line. ``"a\\nb\\x1b[2J"`` comes out as ``a\\nb\\x1b[2J``, printable text.
    """
    return _CONTROL.sub(lambda m: _NAMED_CONTROL.get(m[0], f"\\x{ord(m[0]):02x}"), text)


def human_bytes(count: int) -> str:
    """``512B``, ``929.5KiB``, ``1.2GiB``: binary units, one decimal above bytes."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


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
    families = Counter(i.family for i in result.items)
    if len(families) > 1:  # a run of videos alone says nothing new
        lines.append("  by family: " + ", ".join(f"{n} {f}" for f, n in families.items()))
    failed = [i for i in result.items if i.outcome in (Outcome.FAILED, Outcome.EXPIRED)]
    for item in failed[:_FAILURES_SHOWN]:
        lines.append(f"  {item.outcome.value}: {item.id}: {printable(str(item.error))}")
    if len(failed) > _FAILURES_SHOWN:
        lines.append(f"  ... and {len(failed) - _FAILURES_SHOWN} more (see --report)")
    if result.interrupted:
        lines.append("  interrupted: unfinished ids are pending; partial downloads are kept")
    if result.api_unavailable:
        down = next(i for i in result.items if i.error_kind == ApiUnavailable.kind)
        lines.append(f"  API unavailable: {printable(str(down.error))}; unfinished ids are "
                     "pending, try again later (exit status 69)")
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


#: ``status --remote``'s names of Akool's ``video_status`` values.
JOB_STATUS_NAMES: dict[int, str] = {JobStatus.QUEUED: "queued", JobStatus.PROCESSING: "processing",
                                    JobStatus.SUCCESS: "done", JobStatus.FAILED: "failed"}


def describe_remote(status: int, expires_at: float | None) -> str:
    """``status --remote``'s column: the job's state at Akool and when it expires."""
    name = JOB_STATUS_NAMES.get(status, f"status {status}")
    when = iso_utc(expires_at)
    if expires_at is None or when is None:
        return name
    left = expires_at - time.time()
    return f"{name}, {'expired' if left < 0 else 'expires'} {when[:10]} {when[11:16]}Z"
