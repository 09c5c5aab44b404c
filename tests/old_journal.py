"""A webhook journal as the first release wrote it (schema version 0), for upgrade tests.

Plain sqlite3, nothing from archiver: the file must look exactly as the old code left it.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

#: The schema of the first journals (version 0, no user_version), as they were written.
SCHEMA_V0 = """
CREATE TABLE IF NOT EXISTS jobs (
    id           TEXT PRIMARY KEY,
    status       INTEGER NOT NULL,
    url          TEXT,
    payload      TEXT NOT NULL,
    received_at  REAL NOT NULL,
    updated_at   REAL NOT NULL,
    state        TEXT NOT NULL DEFAULT 'pending',
    outcome      TEXT,
    error        TEXT,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL,
    done_at      REAL
);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (state, next_attempt);
CREATE TABLE IF NOT EXISTS deliveries (
    nonce       TEXT NOT NULL,
    timestamp   INTEGER NOT NULL,
    job_id      TEXT NOT NULL,
    status      INTEGER NOT NULL,
    received_at REAL NOT NULL,
    PRIMARY KEY (nonce, timestamp)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS health (k TEXT PRIMARY KEY, v REAL NOT NULL);
"""


def old_journal(path: Path, stamp: int, done: str = "done1", waiting: str = "wait1",
                waiting_status: int = 2) -> None:
    """A version-0 journal as the previous release left it: job *done* archived,
    *waiting* pending (due at once if status 3, in 5 minutes if 2), and their
    deliveries under (nonce, timestamp) = ("1529" / "1530", *stamp*)."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(SCHEMA_V0)
    now = time.time()
    due = now if waiting_status == 3 else now + 300
    db.execute("INSERT INTO jobs VALUES (?, 3, 'u', ?, ?, ?, 'done', 'archived', NULL, 1, ?, ?)",
               (done, f'{{"_id": "{done}"}}', now - 60, now - 60, now - 60, now - 30))
    db.execute("INSERT INTO jobs VALUES (?, ?, NULL, ?, ?, ?, 'pending', NULL, NULL, 0, ?, "
               "NULL)", (waiting, waiting_status, f'{{"_id": "{waiting}"}}', now - 50,
                         now - 50, due))
    db.executemany("INSERT INTO deliveries VALUES (?, ?, ?, ?, ?)",
                   [("1529", stamp, done, 3, now - 60),
                    ("1530", stamp, waiting, waiting_status, now)])
    db.commit()
    db.close()


#: The schema of version-1 journals (user_version 1): the replay guard keyed by the
#: delivery's key; no family on jobs.
SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS jobs (
    id           TEXT PRIMARY KEY,
    status       INTEGER NOT NULL,
    url          TEXT,
    payload      TEXT NOT NULL,
    received_at  REAL NOT NULL,
    updated_at   REAL NOT NULL,
    state        TEXT NOT NULL DEFAULT 'pending',
    outcome      TEXT,
    error        TEXT,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL,
    done_at      REAL
);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (state, next_attempt);
CREATE TABLE IF NOT EXISTS accepted (
    key         BLOB PRIMARY KEY,
    timestamp   INTEGER NOT NULL,
    job_id      TEXT NOT NULL,
    status      INTEGER NOT NULL,
    received_at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS health (k TEXT PRIMARY KEY, v REAL NOT NULL);
PRAGMA user_version=1;
"""


def old_journal_v1(path: Path, pending: dict[str, int], done: str = "done1") -> None:
    """A version-1 journal as the previous release left it: job *done* archived, and
    each of *pending* (id -> status 2 or 3, due at once) pending, each with a payload
    whose ``type`` the old release ignored (an image, a face swap...)."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(SCHEMA_V1)
    now = time.time()
    db.execute("INSERT INTO jobs VALUES (?, 3, 'u', ?, ?, ?, 'done', 'archived', NULL, 1, ?, ?)",
               (done, f'{{"_id": "{done}"}}', now - 60, now - 60, now - 60, now - 30))
    for job, status in pending.items():
        db.execute("INSERT INTO jobs VALUES (?, ?, NULL, ?, ?, ?, 'pending', NULL, NULL, 0, "
                   "?, NULL)", (job, status, f'{{"_id": "{job}", "status": {status}}}',
                                now - 50, now - 50, now))
    db.commit()
    db.close()
