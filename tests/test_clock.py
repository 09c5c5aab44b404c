"""Expiry logic driven by an injected wall clock, against the stand-in: no sleeping.

Each job is created at a fixed moment long past (``CREATED``); the scheduler is told,
through its ``clock``, how long ago that was. The same job is then "about to expire",
"expired" or neither, whatever the machine's clock says.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from archiver.akool.client import AkoolClient
from archiver.archive import Archive
from archiver.archive.record import ArchiveRecord, iso
from archiver.archive.scheduler import Scheduler
from archiver.config import Config
from archiver.download import Downloader
from archiver.manifest import ManifestItem
from archiver.models import ItemResult, Outcome

from .conftest import ID1, ID2

HOUR = 3600.0
DAY = 24 * HOUR
#: 2026-01-05T10:00:00Z: when every job of these tests was created at Akool.
CREATED = 1_767_607_200.0


def days_after_creation(days: float) -> Callable[[], float]:
    """A wall clock frozen *days* after :data:`CREATED`."""
    return lambda: CREATED + days * DAY


async def run_at(config: Config, ids: list[str], clock: Callable[[], float]) -> list[ItemResult]:
    """One scheduler pass over *ids* with wall-clock time *clock*."""
    storage = Archive.from_config(config.storage)
    await storage.open()
    try:
        async with (
            AkoolClient(config.api, limit=config.concurrency.polls) as client,
            Downloader(config.downloads, limit=config.concurrency.downloads) as downloader,
        ):
            scheduler = Scheduler(config, client, downloader, storage, clock=clock)
            return await scheduler.run([ManifestItem(i) for i in ids])
    finally:
        await storage.close()


def expiry_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and "expire" in r.getMessage()]


async def test_job_six_days_23_hours_old_is_warned_as_expiring(standin, make_config, caplog):
    """One hour before its 7 days end (per the clock) a job is archived with a warning."""
    standin.add_job(ID1, create_time=int(CREATED * 1000))
    with caplog.at_level(logging.WARNING):
        [result] = await run_at(make_config(), [ID1], days_after_creation(6 + 23 / 24))
    assert result.outcome is Outcome.ARCHIVED
    assert expiry_warnings(caplog) == [f"{ID1}: expires in 1.0 hours (2026-01-12T10:00:00Z)"]


async def test_job_five_days_old_gets_no_expiry_warning(standin, make_config, caplog):
    """Two days before its expiry (per the clock) a job is archived without a warning."""
    standin.add_job(ID1, create_time=int(CREATED * 1000))
    with caplog.at_level(logging.WARNING):
        [result] = await run_at(make_config(), [ID1], days_after_creation(5))
    assert result.outcome is Outcome.ARCHIVED
    assert expiry_warnings(caplog) == []


async def test_refused_urls_past_seven_days_are_expired(standin, make_config, caplog, tmp_path):
    """Refused URLs of a job past its 7 days (per the clock): `expired`, nothing kept."""
    standin.add_job(ID1, create_time=int(CREATED * 1000), expired=True)
    with caplog.at_level(logging.WARNING):
        [result] = await run_at(make_config(), [ID1], days_after_creation(7 + 1 / 24))
    assert result.outcome is Outcome.EXPIRED
    assert result.error_kind == "url_gone"
    assert result.error is not None
    assert result.error.startswith("results expired on 2026-01-12T10:00:00Z (Akool keeps them")
    assert f"{ID1}: past Akool's 7-day retention (expired 2026-01-12T10:00:00Z); " \
           "trying anyway" in expiry_warnings(caplog)
    assert not (tmp_path / "archive" / ID1).exists()


async def test_same_refused_urls_before_seven_days_are_a_failure(standin, make_config):
    """The same refused URLs one hour before expiry (per the clock) fail the id, not expire."""
    standin.add_job(ID1, create_time=int(CREATED * 1000), expired=True)
    [result] = await run_at(make_config(), [ID1], days_after_creation(6 + 23 / 24))
    assert result.outcome is Outcome.FAILED
    assert result.error_kind == "url_gone" and result.error_code == 403
    assert "expired on" not in (result.error or "")


async def test_record_archived_at_comes_from_the_clock(standin, make_config, tmp_path: Path):
    """archive.json's archived_at is the injected clock's time, its expires_at create + 7 days."""
    standin.add_job(ID1, create_time=int(CREATED * 1000))
    standin.add_job(ID2, create_time=int(CREATED * 1000))
    clock = days_after_creation(2.5)
    results = await run_at(make_config(), [ID1, ID2], clock)
    assert [r.outcome for r in results] == [Outcome.ARCHIVED, Outcome.ARCHIVED]
    for job in (ID1, ID2):
        raw = (tmp_path / "archive" / job / "archive.json").read_bytes()
        record = ArchiveRecord.parse(raw)
        assert record.archived_at == "2026-01-07T22:00:00Z" == iso(clock())
        assert record.expires_at == "2026-01-12T10:00:00Z"
        assert json.loads(raw)["create_time"] == int(CREATED * 1000)
