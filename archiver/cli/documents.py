"""``--json``: the one JSON document each command prints on stdout.

Every document starts with the same keys - ``schema`` (1), ``command``,
``archiver_version``, ``exit_status`` and ``fatal_error`` (null, or the one-line reason
the command could not run) - then what the command found. ``run``'s document is its
run report (:func:`archiver.report.build_report`), the very JSON ``--report`` writes.
The README ("Machine-readable output") documents each one; a field is only ever added
within a schema version, never renamed or removed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..models import iso_utc
from ..report import SCHEMA_VERSION

if TYPE_CHECKING:
    from ..archive.gc import GcResult
    from ..archive.index import IndexResult
    from ..archive.verify import VerifyResult
    from ..demo import DemoRun, DemoServe
    from ..manifest import ManifestItem


def header(command: str, exit_status: int = 0, fatal_error: str | None = None
           ) -> dict[str, Any]:
    """The keys every document starts with."""
    return {"schema": SCHEMA_VERSION, "command": command, "archiver_version": __version__,
            "exit_status": exit_status, "fatal_error": fatal_error}


def fatal(command: str, exit_status: int, message: str, shard: str | None = None
          ) -> dict[str, Any]:
    """The document of a command that could not run (or was stopped before its end)."""
    document = header(command, exit_status, message)
    if command == "run":
        # As the run report of a run that could not start.
        document |= {"shard": shard, "items": [], "totals": None}
    return document


def verify(result: VerifyResult, *, storage: str, shard: str | None, deep: bool
           ) -> dict[str, Any]:
    return header("verify") | {
        "storage": storage, "shard": shard, "deep": deep,
        "ok": result.ok,
        "totals": {"items": result.items, "files": result.files, "bytes": result.bytes,
                   "problems": len(result.problems)},
        "problems": [{"id": p.id, "file": p.file, "kind": p.kind, "detail": p.detail}
                     for p in result.problems],
    }


#: One ``status --remote`` answer: (video_status, expires_at) or an error message.
Remote = tuple[int, float | None] | str


def status(items: Sequence[ManifestItem], states: dict[str, str],
           remote: dict[str, Remote] | None, *, storage: str, manifest: str | None,
           shard: str | None) -> dict[str, Any]:
    from .summary import JOB_STATUS_NAMES

    def remote_entry(item_id: str) -> dict[str, Any] | None:
        if remote is None:
            return None
        answer = remote.get(item_id)
        if answer is None:  # archived: not asked
            return None
        if isinstance(answer, str):
            return {"status": None, "state": None, "expires_at": None, "error": answer}
        code, expires = answer
        return {"status": code, "state": JOB_STATUS_NAMES.get(code), "error": None,
                "expires_at": iso_utc(expires)}

    rows = [{"id": i.id, "label": i.label, "state": states.get(i.id, "absent"),
             "remote": remote_entry(i.id)} for i in items]
    totals = {"ids": len(rows)} | {
        s: sum(1 for r in rows if r["state"] == s) for s in ("archived", "partial", "absent")}
    return header("status") | {
        "storage": storage, "manifest": manifest, "shard": shard, "remote": remote is not None,
        "totals": totals, "items": rows,
    }


def gc(result: GcResult, *, dry_run: bool, min_age: float) -> dict[str, Any]:
    return header("gc") | {
        "dry_run": dry_run, "min_age_s": min_age,
        "totals": {"items": len(result.items), "files": len(result.files),
                   "uploads": len(result.uploads), "bytes": result.bytes,
                   "kept_recent": len(result.kept_recent), "failures": len(result.failures)},
        "removed": [{"where": g.where, "kind": g.kind, "size": g.size, "item": g.item}
                    for g in result.removed],
        "kept_recent": sorted(result.kept_recent),
        "failures": list(result.failures),
    }


def index(result: IndexResult, *, per_page: int) -> dict[str, Any]:
    return header("index") | {
        "location": result.location, "per_page": per_page,
        "totals": {"items": result.items, "pages": len(result.pages), "bytes": result.bytes,
                   "unreadable": len(result.unreadable)},
        "pages": list(result.pages),
        "unreadable": list(result.unreadable),
        "removed": list(result.removed),
        "failures": list(result.failures),
    }


def demo(run: DemoRun, report: dict[str, Any]) -> dict[str, Any]:
    """The demo's run report, with what the demo itself adds."""
    document = {**report, "command": "demo"}
    document["demo"] = {"dir": str(run.directory), "manifest": str(run.manifest),
                        "as_expected": run.status == 0,
                        "failing_on_purpose": sorted(run.expected_failures)}
    return document


def demo_serve(served: DemoServe) -> dict[str, Any]:
    return header("demo") | {
        "mode": "serve", "dir": str(served.directory),
        "journal": str(served.journal) if served.journal is not None else None,
        "as_expected": served.status == 0,
        "callbacks": dict(served.checks),
        "jobs": [{"id": row.id, "family": row.family, "outcome": row.outcome,
                  "error": row.error}
                 for row in served.rows],
    }
