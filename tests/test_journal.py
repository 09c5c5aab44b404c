"""The webhook journal on a real SQLite file: duplicate guard, status ranking, pruning,
and the in-place upgrade of journals written by earlier versions."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from archiver.akool.webhook import Envelope, Notification
from archiver.service.journal import SCHEMA_VERSION, Journal, JournalError, Recorded, pending_ids
from tests.old_journal import SCHEMA_V0, old_journal, old_journal_v1


def note(job: str, status: int, nonce: str, timestamp: int | None = None,
         family: str | None = None) -> Notification:
    """A callback as the intake hands it over; its key is the envelope's, whose
    ciphertext differs with the news (job and status), as Akool's does."""
    stamp = int(time.time() * 1000) if timestamp is None else timestamp
    envelope = Envelope("0" * 40, f"ciphertext-of-{job}-{status}", stamp, str(stamp), nonce)
    return Notification(job, status, None, stamp, nonce, envelope.key,
                        {"_id": job, "status": status}, family)


async def test_concurrent_records_share_commits_and_detect_redeliveries(
        tmp_path: Path) -> None:
    """200 callbacks recorded at once: each committed, the re-delivered ones flagged, WAL on."""
    path = tmp_path / "j.sqlite3"
    async with Journal(path) as journal:
        notes = [note(f"job{i}", 3, f"n{i}") for i in range(200)]
        results = await asyncio.gather(*(journal.record(n) for n in notes + notes[:20]))
    assert results.count(Recorded.NEW) == 200 and results.count(Recorded.REDELIVERY) == 20
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT count(*) FROM jobs WHERE state = 'pending'").fetchone()[0] == 200
    db.close()
    assert await pending_ids(path) == [(f"job{i}", None) for i in range(200)]


async def test_prune_forgets_only_deliveries_too_old_to_replay(tmp_path: Path) -> None:
    """prune() drops deliveries stamped before the cut-off and keeps the recent ones."""
    old = int((time.time() - 3600) * 1000)
    async with Journal(tmp_path / "j.sqlite3") as journal:
        recent = note("b", 2, "2")  # one timestamp: the same delivery, sent twice
        await journal.record(note("a", 2, "1", old))
        await journal.record(recent)
        assert await journal.prune(int((time.time() - 600) * 1000)) == 1
        assert await journal.record(recent) is Recorded.REDELIVERY
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


async def test_callbacks_sharing_nonce_and_timestamp_are_all_recorded(tmp_path: Path) -> None:
    """Akool's nonces are short: different callbacks with one nonce and timestamp each count."""
    stamp = int(time.time() * 1000)
    async with Journal(tmp_path / "j.sqlite3") as journal:
        first, second, news = note("a", 3, "1529", stamp), note("b", 3, "1529", stamp), \
            note("a", 4, "1529", stamp)
        assert await journal.record(first) is Recorded.NEW
        assert await journal.record(second) is Recorded.NEW
        # The same nonce and time, other news for a job already final: harmless.
        assert await journal.record(news) is Recorded.DUPLICATE
        assert await journal.record(second) is Recorded.REDELIVERY
        assert {r.id for r in await journal.pending()} == {"a", "b"}


async def test_a_journal_of_the_previous_version_is_migrated_in_place(tmp_path: Path) -> None:
    """A version-0 file keeps its jobs; its (nonce, timestamp) guard goes, harmlessly."""
    path, stamp = tmp_path / "old.sqlite3", int(time.time() * 1000)
    old_journal(path, stamp)
    async with Journal(path) as journal:
        jobs = {r.id: r for r in await journal.jobs()}
        assert (jobs["done1"].state, jobs["done1"].outcome) == ("done", "archived")
        assert [r.id for r in await journal.pending()] == ["wait1"]
        # Its rows' family is unknown (the first release recorded every product's
        # callbacks as videos): the worker finds it.
        assert jobs["wait1"].family is None
        # A callback Akool sends again after the upgrade, under a nonce and time the old
        # guard had: recorded again, which changes nothing (the job row has it).
        assert await journal.record(note("done1", 3, "1529", stamp)) is Recorded.DUPLICATE
        assert await journal.record(note("wait1", 2, "1530", stamp)) is Recorded.DUPLICATE
        # Another job under a nonce and time the old guard had (its bug): recorded.
        assert await journal.record(note("new1", 3, "1529", stamp)) is Recorded.NEW
        assert await journal.record(note("new1", 3, "1529", stamp)) is Recorded.REDELIVERY
        assert {r.id for r in await journal.pending()} == {"wait1", "new1"}
    db = sqlite3.connect(path)
    tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master "
                                             "WHERE type = 'table'")}
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()
    assert "deliveries" not in tables and {"jobs", "accepted", "health"} <= tables
    # Opened again (and by an older archiver in between, which recreates its table).
    db = sqlite3.connect(path)
    db.executescript(SCHEMA_V0)
    db.close()
    async with Journal(path) as journal:
        assert await journal.record(note("new1", 3, "1529", stamp)) is Recorded.REDELIVERY
        assert len(await journal.jobs()) == 3


async def test_a_journal_of_a_newer_version_is_refused_naming_it(tmp_path: Path) -> None:
    """A schema this archiver does not know is not touched: one error naming the file."""
    path = tmp_path / "new.sqlite3"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(JournalError, match=rf"new\.sqlite3 has schema version "
                                           rf"{SCHEMA_VERSION + 1}, written by a newer "
                                           rf"archiver \(this one knows {SCHEMA_VERSION}\): "
                                           rf"upgrade archiver$"):
        async with Journal(path):
            pass
    db = sqlite3.connect(path)
    assert db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
    db.close()


async def test_a_version_1_journal_gains_the_family_column_in_place(tmp_path: Path) -> None:
    """A version-1 file keeps its jobs and its replay guard; its rows' family is unknown
    (NULL), new rows take theirs, and it is version 2 from then on."""
    path = tmp_path / "v1.sqlite3"
    old_journal_v1(path, {"img1": 3, "vid1": 2})
    async with Journal(path) as journal:
        assert await journal.pending() != []
        assert {r.id: r.family for r in await journal.jobs()} == \
            {"done1": None, "img1": None, "vid1": None}
        assert await journal.record(note("new1", 3, "1", family="faceswap")) is Recorded.NEW
        await journal.set_family("img1", "image")
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    assert dict(db.execute("SELECT id, family FROM jobs WHERE state = 'pending'")) == \
        {"img1": "image", "vid1": None, "new1": "faceswap"}
    db.close()
    assert await pending_ids(path) == [("img1", "image"), ("vid1", None), ("new1", "faceswap")]
    # Opened again: nothing to migrate, nothing lost.
    async with Journal(path) as journal:
        assert len(await journal.jobs()) == 4


async def test_a_family_once_known_stays(tmp_path: Path) -> None:
    """A later callback with no type keeps the family an earlier one named; a typed one
    names it for a row that had none; a family found by the worker is not overwritten."""
    async with Journal(tmp_path / "j.sqlite3") as journal:
        await journal.record(note("a", 2, "1", family="image"))
        await journal.record(note("a", 3, "2"))  # no type this time
        await journal.record(note("b", 2, "3"))
        await journal.record(note("b", 3, "4", family="audio"))
        await journal.record(note("c", 2, "5"))
        await journal.set_family("c", "image2video")
        await journal.record(note("c", 3, "6", family="video"))
        families = {r.id: (r.status, r.family) for r in await journal.jobs()}
    assert families == {"a": (3, "image"), "b": (3, "audio"), "c": (3, "image2video")}
