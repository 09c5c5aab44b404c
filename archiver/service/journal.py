"""The webhook journal: every accepted callback, durably, before Akool hears 200.

One SQLite file (WAL mode); its tables:

- ``accepted``: one row per accepted delivery, keyed by its
  :attr:`~archiver.akool.webhook.Envelope.key` (a hash of everything the signature covers:
  timestamp, nonce and ciphertext). The same body sent again - Akool retrying a 200 it
  did not see, or someone replaying it - is recognised and changes nothing; two
  different callbacks that happen to share a nonce and a timestamp (Akool's nonces are
  short) are both recorded. It lives in the journal, not in memory, so a restart does
  not forget it; rows older than ``max_age`` cannot come back (the freshness check
  refuses them first) and are pruned.
- ``jobs``: one row per job id, the latest meaningful status (2, then 3 or 4), and its
  life in the archiver: ``pending`` until the worker is done with it, then ``done`` with
  an ``outcome`` (``archived``, ``already_archived``, ``failed``, ``expired``) and
  ``error``. ``next_attempt`` says when the worker may take a pending row (again).

Durability: ``synchronous=FULL``. In WAL mode ``NORMAL`` survives a crash of the process
but may lose the last commits on power loss; after our 200 Akool never sends that
callback again, so a lost commit would be a lost job. FULL fsyncs the WAL on every commit,
and :meth:`Journal.record` groups the callbacks that arrive together into one
transaction (group commit): one fsync covers many callbacks, which is what keeps
hundreds of callbacks per second possible on an ordinary disk.

All SQLite work runs on one dedicated thread that owns the connection, so the event
loop never blocks on a fsync.

Schema versions and their migration: :mod:`.schema`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import json
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, TypeVarTuple

from ..akool.webhook import Notification
from .schema import SCHEMA_VERSION as SCHEMA_VERSION
from .schema import JournalError as JournalError
from .schema import migrate

#: A later callback replaces the recorded status only if it ranks higher: a late retry
#: of "processing" must not undo "success", and the first final word (3 or 4) stands.
_RANK = {2: 0, 3: 1, 4: 1}


#: One write of a group commit: runs on the journal thread inside the transaction.
_Write = Callable[[sqlite3.Connection, float], Any]

_T = TypeVar("_T")
_Ts = TypeVarTuple("_Ts")


class Recorded(enum.StrEnum):
    """What recording one callback did."""

    NEW = "new"              # a job or a status the journal did not have
    DUPLICATE = "duplicate"  # a fresh delivery of what is already recorded: harmless
    REDELIVERY = "redelivery"  # this very delivery (same key) was accepted before


@dataclass(frozen=True, slots=True)
class JobRow:
    """One job as the journal has it."""

    id: str
    status: int
    url: str | None
    payload: dict[str, Any]
    received_at: float
    state: str
    outcome: str | None
    error: str | None
    attempts: int


@dataclass(frozen=True, slots=True)
class Stats:
    """Counts for /metrics and `serve`'s log lines."""

    pending: int
    oldest_pending_received_at: float | None
    done: dict[str, int]


class Journal:
    """The journal file at *path*; open with ``async with Journal(path) as journal``."""

    def __init__(self, path: Path, *, repoll_interval: float = 300.0) -> None:
        self.path = path
        self._repoll = repoll_interval
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._db: sqlite3.Connection | None = None
        self._batch: list[tuple[_Write, asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None
        #: About the fastest a group commit completes here (seconds): what the disk's
        #: fsync costs, so the intake can tell waiting for the disk from waiting for the
        #: CPU. Follows a faster commit at once, a slower one slowly (1 % per commit).
        self.commit_floor = 0.0
        self._commits = 0

    async def __aenter__(self) -> Journal:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        """Create or open the file; raise :class:`JournalError` naming it if impossible."""
        self._executor = concurrent.futures.ThreadPoolExecutor(1, "archiver-journal")
        await self._call(self._open_sync)

    async def close(self) -> None:
        """Commit what is queued, then close the file and the thread."""
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        if self._executor is not None:
            if self._db is not None:
                await self._call(self._db.close)
                self._db = None
            self._executor.shutdown(wait=True)
            self._executor = None

    async def _call(self, fn: Callable[[*_Ts], _T], *args: *_Ts) -> _T:
        if self._executor is None:
            raise JournalError(f"journal {self.path} is not open")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except sqlite3.Error as exc:
            raise JournalError(f"journal {self.path}: {exc}") from None

    def _open_sync(self) -> None:
        db: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE ... COMMIT).
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA busy_timeout=10000")  # `run --from-journal` may be reading
            migrate(db, self.path)
        except (OSError, sqlite3.Error, JournalError) as exc:
            if db is not None:
                db.close()
            if isinstance(exc, JournalError):
                raise
            raise JournalError(f"cannot open the journal {self.path}: "
                               f"{getattr(exc, 'strerror', None) or exc}") from None
        self._db = db

    # ------------------------------------------------------------------ intake

    async def record(self, note: Notification) -> Recorded:
        """Record one verified callback; returns once it is committed to disk.

        Callbacks arriving while a commit is under way wait for the next one, all
        together (group commit). Raises :class:`JournalError` if the commit failed:
        then nothing of it is recorded and the caller must not answer 200.
        """
        return await self._write(lambda db, now: self._record_one(db, note, now))

    async def _write(self, write: Callable[[sqlite3.Connection, float], _T]) -> _T:
        """Run *write* in the next group commit; return its result once committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_T] = loop.create_future()
        self._batch.append((write, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        # Shielded: a client hanging up must not cancel what others wait for.
        return await asyncio.shield(future)

    async def _flush(self) -> None:
        # Every write waiting (callbacks, the worker's outcomes) goes in one transaction:
        # one fsync for all, and the worker's updates never queue a callback behind fsyncs.
        while self._batch:
            batch, self._batch = self._batch, []
            started = time.monotonic()
            try:
                results = await self._call(self._write_batch, [w for w, _ in batch], time.time())
                self._note_commit(time.monotonic() - started)
            except Exception as exc:  # JournalError, or a bug: no waiter may hang
                if not isinstance(exc, JournalError):
                    exc = JournalError(f"journal {self.path}: {type(exc).__name__}")
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)

    def _note_commit(self, seconds: float) -> None:
        self._commits += 1
        if self._commits == 1 or seconds < self.commit_floor:
            self.commit_floor = seconds
        else:
            self.commit_floor += 0.01 * (seconds - self.commit_floor)

    def _write_batch(self, writes: list[_Write], now: float) -> list[Any]:
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            results = [write(db, now) for write in writes]
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return results

    def _record_one(self, db: sqlite3.Connection, note: Notification, now: float) -> Recorded:
        cursor = db.execute(
            "INSERT OR IGNORE INTO accepted (key, timestamp, job_id, status, received_at) "
            "VALUES (?, ?, ?, ?, ?)", (note.key, note.timestamp, note.job_id, note.status, now))
        if cursor.rowcount == 0:
            return Recorded.REDELIVERY
        payload = json.dumps(note.payload, ensure_ascii=False)
        # A final status is due at once; "processing" only when the re-poll comes round.
        due = now if note.status != 2 else now + self._repoll
        row = db.execute("SELECT status, state FROM jobs WHERE id = ?", (note.job_id,)).fetchone()
        if row is None:
            db.execute("INSERT INTO jobs (id, status, url, payload, received_at, updated_at, "
                       "next_attempt) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (note.job_id, note.status, note.url, payload, now, now, due))
            return Recorded.NEW
        status, state = row
        if state != "pending" or _RANK[note.status] <= _RANK.get(status, 0):
            return Recorded.DUPLICATE
        db.execute("UPDATE jobs SET status = ?, url = ?, payload = ?, updated_at = ?, "
                   "next_attempt = ? WHERE id = ?",
                   (note.status, note.url, payload, now, due, note.job_id))
        return Recorded.NEW

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise sqlite3.ProgrammingError("journal closed")
        return self._db

    # ------------------------------------------------------------------ worker

    async def due(self, now: float, limit: int, skip: Iterable[str] = ()) -> list[JobRow]:
        """Up to *limit* pending rows whose time has come, oldest first, minus *skip*."""
        skipped = set(skip)
        rows = await self._call(self._select, "SELECT * FROM jobs WHERE state = 'pending' "
                                "AND next_attempt <= ? ORDER BY next_attempt LIMIT ?",
                                (now, limit + len(skipped)))
        return [r for r in rows if r.id not in skipped][:limit]

    async def pending(self) -> list[JobRow]:
        """Every pending row, oldest first (``run --from-journal``)."""
        return await self._call(self._select, "SELECT * FROM jobs WHERE state = 'pending' "
                                "ORDER BY received_at", ())

    async def job(self, job_id: str) -> JobRow | None:
        rows = await self._call(self._select, "SELECT * FROM jobs WHERE id = ?", (job_id,))
        return rows[0] if rows else None

    async def jobs(self) -> list[JobRow]:
        """Every row (tests, `journal` inspection)."""
        return await self._call(self._select, "SELECT * FROM jobs ORDER BY received_at", ())

    def _select(self, sql: str, args: tuple[Any, ...]) -> list[JobRow]:
        cursor = self._connection().execute(sql, args)
        names = [d[0] for d in cursor.description]
        return [_row(dict(zip(names, values, strict=True))) for values in cursor.fetchall()]

    async def finish(self, job_id: str, outcome: str, error: str | None = None) -> None:
        """Mark a pending row done with its *outcome* (committed before returning)."""
        await self._write(lambda db, now: db.execute(
            "UPDATE jobs SET state = 'done', outcome = ?, error = ?, done_at = ?, "
            "attempts = attempts + 1 WHERE id = ? AND state = 'pending'",
            (outcome, error, now, job_id)).rowcount)

    async def retry_later(self, job_id: str, delay: float, error: str | None = None,
                          seen_status: int | None = None) -> None:
        """Leave a row pending, due again in *delay* seconds (not done at Akool yet,
        or a failure a later attempt may get past).

        If a callback changed its status since the worker took it (*seen_status*), the
        row stays due as that callback made it: news must not wait a re-poll interval.
        """
        await self._write(lambda db, now: db.execute(
            "UPDATE jobs SET attempts = attempts + 1, error = ?, "
            "next_attempt = CASE WHEN ? IS NULL OR status = ? THEN ? ELSE next_attempt END "
            "WHERE id = ? AND state = 'pending'",
            (error, seen_status, seen_status, now + delay, job_id)).rowcount)

    async def prune(self, before_ms: int) -> int:
        """Forget deliveries stamped before *before_ms*: too old to pass the freshness
        check, so they can no longer come back."""
        return await self._write(lambda db, now: db.execute(
            "DELETE FROM accepted WHERE timestamp < ?", (before_ms,)).rowcount)

    # ----------------------------------------------------------------- health

    async def stats(self) -> Stats:
        return await self._call(self._stats)

    def _stats(self) -> Stats:
        db = self._connection()
        pending, oldest = db.execute(
            "SELECT count(*), min(received_at) FROM jobs WHERE state = 'pending'").fetchone()
        done = dict(db.execute(
            "SELECT outcome, count(*) FROM jobs WHERE state = 'done' GROUP BY outcome"))
        return Stats(pending, oldest, done)

    async def check_writable(self) -> None:
        """Raise :class:`JournalError` unless a write transaction can start and commit."""
        await self._call(self._probe)

    def _probe(self) -> None:
        # A real row, fsynced like a callback: an empty transaction would touch no disk.
        self._write_batch([lambda db, now: db.execute(
            "INSERT OR REPLACE INTO health (k, v) VALUES ('probe', ?)", (now,))], time.time())


def _row(values: dict[str, Any]) -> JobRow:
    try:
        payload = json.loads(values["payload"])
    except (TypeError, ValueError):
        payload = {}
    return JobRow(id=values["id"], status=values["status"], url=values["url"],
                  payload=payload, received_at=values["received_at"], state=values["state"],
                  outcome=values["outcome"], error=values["error"], attempts=values["attempts"])


async def pending_ids(path: Path) -> list[str]:
    """The ids a journal file holds as pending, oldest first; the file must exist."""
    if not path.is_file():
        raise JournalError(f"journal {path} not found")
    async with Journal(path) as journal:
        return [row.id for row in await journal.pending()]
