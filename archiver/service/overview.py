"""The status page's read of the journal file (:func:`read_overview`): bounded, on a
connection of its own, never the journal's (see :mod:`.journal` for the file itself)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from .schema import JournalError


def read_overview(path: Path, limit: int, since: float) -> dict[str, Any]:
    """What ``serve``'s status page shows, read through a connection of its own
    (blocking: run it in a thread).

    Why not the journal's connection: on 100,000 rows these scans take some 0.3 s,
    and on the journal's one thread they would hold every callback's commit back that
    long. A second connection that only reads takes no write lock: in WAL mode it reads
    a snapshot while commits go on. One transaction, so one consistent view:

    - ``pending``: how many, ``oldest`` (the first callback of the oldest, epoch
      seconds), and ``urgent``: the *limit* heard of longest ago (closest to Akool's
      deletion);
    - ``done``: finished jobs by outcome; ``finished_since``: those finished at or after
      *since*, by outcome;
    - ``latest``: the *limit* finished last; ``failures``: the *limit* failed or expired
      last.

    Bounded whatever the journal holds: at most 3 x *limit* rows are read out, and
    never a payload or a URL (of the payload, only its ``type``); rows are plain dicts.
    Raises :class:`JournalError` naming the file.
    """
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True,
                             isolation_level=None)
    except sqlite3.Error as exc:
        raise JournalError(f"journal {path}: {exc}") from None
    try:
        db.execute("PRAGMA busy_timeout=5000")
        db.execute("BEGIN")
        return _overview(db, limit, since)
    except sqlite3.Error as exc:
        raise JournalError(f"journal {path}: {exc}") from None
    finally:
        db.close()


def _overview(db: sqlite3.Connection, limit: int, since: float) -> dict[str, Any]:
    # The payload is JSON we wrote; json_valid guards a row some other tool wrote.
    columns = ("id, family, status, received_at, attempts, error, next_attempt, outcome, "
               "done_at, "
               "CASE WHEN json_valid(payload) THEN json_extract(payload, '$.type') END "
               "AS type")

    def rows(where: str, order: str) -> list[dict[str, Any]]:
        # The top rows by rowid first, their columns after: sorting the columns of
        # every row (json_extract included) took twice as long on 100,000 rows.
        cursor = db.execute(f"SELECT {columns} FROM jobs WHERE rowid IN (SELECT rowid "
                            f"FROM jobs WHERE {where} ORDER BY {order} LIMIT ?) "
                            f"ORDER BY {order}", (limit,))
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]

    pending, oldest = db.execute(
        "SELECT count(*), min(received_at) FROM jobs WHERE state = 'pending'").fetchone()
    counts = db.execute("SELECT outcome, count(*), total(done_at >= ?) FROM jobs "
                        "WHERE state = 'done' GROUP BY outcome", (since,)).fetchall()
    return {
        "pending": pending,
        "oldest": oldest,
        "urgent": rows("state = 'pending'", "received_at, id"),
        "done": {outcome: n for outcome, n, _ in counts},
        "finished_since": {outcome: int(n) for outcome, _, n in counts if n},
        "latest": rows("state = 'done'", "done_at DESC, id"),
        "failures": rows("state = 'done' AND outcome IN ('failed', 'expired')",
                         "done_at DESC, id"),
    }
