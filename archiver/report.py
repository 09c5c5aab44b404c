"""The JSON run report (``--report PATH``): what happened to every id, and totals.

The schema is documented in the README ("The run report"). It holds no secret:
URLs are recorded without their query string and no header is ever included.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from . import __version__
from .models import ItemResult, Outcome, RunResult, iso_utc

SCHEMA_VERSION = 1


def build_report(result: RunResult, exit_status: int, signal: str | None = None) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC).timestamp()
    totals: dict[str, Any] = {"ids": len(result.items)}
    for outcome in Outcome:
        totals[outcome.value] = result.count(outcome)
    totals["files_archived"] = sum(len(i.files) for i in result.items
                                   if i.outcome is Outcome.ARCHIVED)
    totals["bytes_archived"] = result.bytes_archived
    totals["api_requests"] = result.api_requests
    totals["file_requests"] = result.file_requests
    return {
        "schema": SCHEMA_VERSION,
        "archiver_version": __version__,
        "started_at": iso_utc(result.started_at) if result.started_at else None,
        "finished_at": iso_utc(now),
        "duration_s": round(result.duration, 3),
        "exit_status": exit_status,
        "interrupted_by": signal,
        "storage": result.storage,
        "manifest": result.manifest,
        # "2/4" when the run archived one shard (--shard), else null.
        "shard": result.shard,
        "lease_lost": result.lease_lost,
        # The API did not answer: polling stopped, unfinished ids pending (exit 69).
        "api_unavailable": result.api_unavailable,
        "totals": totals,
        "items": [_item(i, now) for i in result.items],
    }


def _item(item: ItemResult, now: float) -> dict[str, Any]:
    # An expiry no calendar can show is unknown (null), not a reason to lose the report.
    expires = iso_utc(item.expires_at)
    return {
        "id": item.id,
        "label": item.label,
        "outcome": item.outcome.value,
        "api_status": item.status,
        "polls": item.polls,
        "duration_s": round(item.duration, 3),
        "expires_at": expires,
        "past_expiry": expires is not None and item.expires_at is not None
        and item.expires_at < now,
        "files": [f.to_json() for f in item.files],
        "error": None if item.error is None else {
            "kind": item.error_kind, "code": item.error_code, "message": item.error},
    }


def write_report(path: Path, report: dict[str, Any]) -> None:
    """Write atomically: a reader never sees half a report."""
    write_atomic_text(path, json_text(report, indent=2) + "\n")


_RAW_IN_JSON = re.compile("[\x7f-\x9f]")


def json_text(value: Any, *, indent: int | None = None) -> str:
    """``json.dumps`` that also escapes DEL and C1 characters (as ``\\u009b``).

    JSON escapes only C0 characters; a C1 one (U+009B is a one-byte CSI) left raw would
    still drive a terminal that shows the file. Decoded, the text is exactly the same.
    """
    text = json.dumps(value, indent=indent, ensure_ascii=False)
    return _RAW_IN_JSON.sub(lambda m: f"\\u{ord(m[0]):04x}", text)


def check_writable(path: Path) -> None:
    """Raise OSError unless :func:`write_atomic_text` can write *path* now.

    Probes by doing what the write will do (create the folder, create a temporary file
    in it) instead of reading permission bits, which root ignores and which say nothing
    of read-only mounts or a parent that is a regular file.
    """
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    _make_folder(path.parent)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    os.unlink(temp)


def _make_folder(folder: Path) -> None:
    # mkdir alone would say "File exists" when an ancestor is a regular file.
    existing = next((p for p in (folder, *folder.parents) if p.exists()), folder)
    if not existing.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, f"{existing} is not a directory")
    folder.mkdir(parents=True, exist_ok=True)


def write_atomic_text(path: Path, text: str) -> None:
    _make_folder(path.parent)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
