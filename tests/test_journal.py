"""The webhook journal on a real SQLite file: replay guard, status ranking, pruning."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from archiver.journal import Journal, Recorded, pending_ids
from archiver.webhook import Notification


def note(job: str, status: int, nonce: str, timestamp: int | None = None) -> Notification:
    stamp = int(time.time() * 1000) if timestamp is None else timestamp
    return Notification(job, status, None, stamp, nonce, {"_id": job, "status": status})


async def test_concurrent_records_share_commits_and_detect_replays(tmp_path: Path) -> None:
    """200 callbacks recorded at once: each committed, the replayed ones flagged, WAL on."""
    path = tmp_path / "j.sqlite3"
    async with Journal(path) as journal:
        notes = [note(f"job{i}", 3, f"n{i}") for i in range(200)]
        results = await asyncio.gather(*(journal.record(n) for n in notes + notes[:20]))
    assert results.count(Recorded.NEW) == 200 and results.count(Recorded.REPLAY) == 20
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT count(*) FROM jobs WHERE state = 'pending'").fetchone()[0] == 200
    db.close()
    assert len(await pending_ids(path)) == 200


async def test_prune_forgets_only_deliveries_too_old_to_replay(tmp_path: Path) -> None:
    """prune() drops deliveries stamped before the cut-off and keeps the recent ones."""
    old = int((time.time() - 3600) * 1000)
    async with Journal(tmp_path / "j.sqlite3") as journal:
        recent = note("b", 2, "2")  # one timestamp: the same delivery, sent twice
        await journal.record(note("a", 2, "1", old))
        await journal.record(recent)
        assert await journal.prune(int((time.time() - 600) * 1000)) == 1
        assert await journal.record(recent) is Recorded.REPLAY
        # The job rows are not deliveries: both stay.
        assert {r.id for r in await journal.jobs()} == {"a", "b"}


async def test_retry_later_does_not_delay_news_that_came_meanwhile(tmp_path: Path) -> None:
    """A re-poll that found nothing leaves a row due at once if a 3 arrived meanwhile."""
    async with Journal(tmp_path / "j.sqlite3", repoll_interval=3600) as journal:
        await journal.record(note("a", 2, "1"))
        await journal.record(note("b", 2, "2"))
        await journal.record(note("a", 3, "3"))  # the worker took "a" while it was 2
        await journal.retry_later("a", 3600, "still processing", seen_status=2)
        await journal.retry_later("b", 3600, "still processing", seen_status=2)
        due = await journal.due(time.time(), 10)
    assert [r.id for r in due] == ["a"] and due[0].status == 3


async def test_commit_floor_follows_fast_commits_at_once_and_slow_ones_slowly(
        tmp_path: Path) -> None:
    """The commit floor is set by a real commit, drops to a faster one, creeps up 1 %."""
    async with Journal(tmp_path / "j.sqlite3") as journal:
        assert journal.commit_floor == 0.0
        await journal.record(note("job1", 3, "n1"))
        assert journal.commit_floor > 0.0
        journal._note_commit(1e-6)  # faster than any real commit
        assert journal.commit_floor == 1e-6
        journal._note_commit(1.000001)
        assert abs(journal.commit_floor - 0.010001) < 1e-9
