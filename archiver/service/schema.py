"""The journal's SQLite schema, and its migration in place on open.

Schema versions (``PRAGMA user_version``), migrated in place on open:

- 0: the first journals, whose ``deliveries`` table was keyed by ``(nonce, timestamp)``.
  Its rows cannot be turned into keys (the ciphertext was not kept), so it is dropped:
  a delivery accepted before the upgrade and sent again within ``max_age`` is then
  recorded once more, which changes nothing - its job row is there, and a status is
  only ever replaced by a higher one - and is answered 200 as a duplicate.
- 1: ``accepted``, keyed by the delivery's key.
- 2: ``jobs.family``, the result family of each job (``video``, ``image``...; NULL while
  unknown: a callback without a ``type`` this archiver knows). Rows of older journals
  get NULL, which the worker resolves by asking each family, as for a new unknown one:
  not "video", because older archivers recorded every callback Akool sent, of whatever
  product (and polled the video endpoint for it), so a pending row may be an image.

The first release (no version check) opening a newer journal recreates its
``deliveries`` table and works as before, its new rows' family NULL (resolved as
above); the next open by this version drops the table again. The archiver that wrote
version 1 refuses a version-2 journal in one line, as this one refuses a version 3.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ..errors import FatalRunError

#: The schema this code writes; a journal of a higher version is refused (see above).
SCHEMA_VERSION = 2
SCHEMA = (
    """CREATE TABLE IF NOT EXISTS jobs (
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
        done_at      REAL,
        family       TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS jobs_due ON jobs (state, next_attempt)",
    # The key is 16 bytes, not hex text, and `timestamp` has no index (prune scans, as
    # it did in version 0): a group commit of 64 callbacks into 20,000 rows then writes
    # 76 WAL pages, against 73 in version 0 and 159 with a hex key and an index.
    """CREATE TABLE IF NOT EXISTS accepted (
        key         BLOB PRIMARY KEY,
        timestamp   INTEGER NOT NULL,
        job_id      TEXT NOT NULL,
        status      INTEGER NOT NULL,
        received_at REAL NOT NULL
    ) WITHOUT ROWID""",
    "CREATE TABLE IF NOT EXISTS health (k TEXT PRIMARY KEY, v REAL NOT NULL)",
    # Version 0's replay guard, keyed by (nonce, timestamp): see the module docstring.
    "DROP TABLE IF EXISTS deliveries",
)



def _add_family_column(db: sqlite3.Connection) -> None:
    # Version 2. By column, not by version number: a version-1 file that an older
    # archiver opened in between still lacks it, a new file already has it.
    columns = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
    if "family" not in columns:
        db.execute("ALTER TABLE jobs ADD COLUMN family TEXT")


class JournalError(FatalRunError):
    """The journal cannot be opened, read or written."""


def migrate(db: sqlite3.Connection, path: Path) -> None:
    """Bring the file to :data:`SCHEMA_VERSION` in one transaction: two processes
    opening it at once (``serve``, ``run --from-journal``) take turns, and a crash
    leaves it as it was."""
    db.execute("BEGIN IMMEDIATE")
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise JournalError(
                f"the journal {path} has schema version {version}, written by a "
                f"newer archiver (this one knows {SCHEMA_VERSION}): upgrade archiver")
        for statement in SCHEMA:
            db.execute(statement)
        _add_family_column(db)
        if version < SCHEMA_VERSION:
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
