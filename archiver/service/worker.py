"""The worker of ``archiver serve``: takes due journal rows and archives them in small
batches with the scheduler ``archiver run`` uses."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Iterable
from typing import Any, Protocol

from ..akool.answers import OK
from ..akool.client import AkoolClient
from ..archive import Archive
from ..archive.scheduler import Scheduler
from ..archive.transaction import RESUMABLE_KINDS, end_unstarted
from ..config import Config
from ..download import Downloader
from ..errors import APIError, JobFailed, LeaseLost
from ..fleet.lock import NO_FENCE, Fence
from ..manifest import ManifestItem
from ..models import ItemResult, JobStatus, Outcome, redact_urls_in
from .counters import UNKNOWN_FAMILY, Counters, batch_limits
from .journal import JobRow, JournalError
from .probe import find_family

log = logging.getLogger(__name__)

#: Error kinds a later attempt may get past: the row stays pending.
_RETRYABLE_KINDS = RESUMABLE_KINDS
#: Seconds a job the callback called final may wait for the API to say so too.
_FINAL_DEADLINE = 60.0
#: Results are gone after 7 days; a row still not final a day after that never will be.
_GIVE_UP_AFTER = 8 * 24 * 3600.0



class WorkerJournal(Protocol):
    """What the worker needs of the journal (a :class:`Journal`, or the intake's proxy)."""

    async def due(self, now: float, limit: int, skip: Iterable[str] = ()) -> list[JobRow]: ...

    async def finish(self, job_id: str, outcome: str, error: str | None = None) -> None: ...

    async def retry_later(self, job_id: str, delay: float, error: str | None = None,
                          seen_status: int | None = None) -> None: ...

    async def set_family(self, job_id: str, family: str) -> None: ...

    async def prune(self, before_ms: int) -> int: ...


class Worker:
    """Takes due journal rows and archives them with the run's scheduler, batch by batch."""

    def __init__(self, config: Config, journal: WorkerJournal, storage: Archive,
                 client: AkoolClient, downloader: Downloader, counters: Counters,
                 wake: asyncio.Event, stop: asyncio.Event, fence: Fence = NO_FENCE) -> None:
        webhook = config.webhook
        assert webhook is not None
        self._repoll = webhook.repoll_interval
        self._max_age = webhook.max_age
        # A batch holds one of few slots until its last job ends, so no job may keep it
        # for polling.deadline: a job the callback called final gets a minute for the API
        # to agree, a re-poll (status 2, maybe a lost callback) one look; either is then
        # left pending for the next re-poll.
        self._final_config = _with_deadline(config, min(config.polling.deadline,
                                                        _FINAL_DEADLINE, self._repoll))
        self._repoll_config = _with_deadline(config, 0.0)
        self._journal = journal
        self._storage = storage
        self._client = client
        self._downloader = downloader
        self._counters = counters
        self._wake = wake
        self._stop = stop
        self._fence = fence
        self._in_flight: set[str] = set()
        self._batches: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Work until *stop* is set, then let the batches in flight stop gracefully."""
        last_prune = 0.0
        while not self._stop.is_set():
            self._wake.clear()
            try:
                if time.monotonic() - last_prune > 60:
                    last_prune = time.monotonic()
                    await self._journal.prune(int((time.time() - 2 * self._max_age) * 1000))
                await self._dispatch()
            except JournalError as exc:
                # /healthz says so too; the rows are safe on disk, try again shortly.
                log.error("worker: %s", exc)
            await self._sleep()
        # The scheduler saw the same stop event: each batch ends its transfers within
        # run.shutdown_grace and reports the rest pending, which stays so in the journal.
        await asyncio.gather(*self._batches, return_exceptions=True)

    async def _sleep(self) -> None:
        # Futures of different results, only ever waited on: their values are unused.
        waits: set[asyncio.Future[Any]] = {asyncio.ensure_future(self._wake.wait()),
                                           asyncio.ensure_future(self._stop.wait())}
        waits |= set(self._batches)  # a freed batch slot may take more work
        try:
            await asyncio.wait(waits, timeout=min(self._repoll, 5.0),
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits - set(self._batches):
                waiter.cancel()

    async def _dispatch(self) -> None:
        while not self._stop.is_set():
            batches, size = batch_limits(self._counters, time.monotonic())
            if len(self._batches) >= batches:
                return
            rows = await self._journal.due(time.time(), size, self._in_flight)
            if not rows:
                return
            for row in rows:
                self._in_flight.add(row.id)
            task = asyncio.create_task(self._batch(rows))
            self._batches.add(task)
            task.add_done_callback(self._batches.discard)

    async def _batch(self, rows: list[JobRow]) -> None:
        try:
            failed = [r for r in rows if r.status == JobStatus.FAILED]
            for row in failed:
                await self._job_failed(row)
            rest = [r for r in rows if r.status != JobStatus.FAILED]
            # A job whose callback named no family we know: ask each family first.
            known = await asyncio.gather(*(self._resolve(r) for r in rest))
            rest = [r for r in known if r is not None]
            final = [r for r in rest if r.status == JobStatus.SUCCESS]
            processing = [r for r in rest if r.status != JobStatus.SUCCESS]
            await asyncio.gather(self._archive(final, self._final_config),
                                 self._archive(processing, self._repoll_config))
        except LeaseLost:
            return  # the server is stopping; the rows stay due for whoever holds the lock
        except Exception as exc:
            # The rows stay pending and come due again: a bug must not lose a job.
            log.error("worker: batch of %d job(s) failed: %s (kept pending)", len(rows),
                      type(exc).__name__)
            log.debug("worker: batch failed", exc_info=exc)
            for row in rows:
                with contextlib.suppress(JournalError):
                    await self._journal.retry_later(row.id, self._repoll,
                                                    f"internal error: {type(exc).__name__}")
        finally:
            for row in rows:
                self._in_flight.discard(row.id)

    async def _job_failed(self, row: JobRow) -> None:
        """A status 4 callback: Akool says the job failed; no API call needed."""
        reason = row.payload.get("error_reason") or row.payload.get("msg") or \
            "Akool reported the job failed (callback status 4)"
        code = row.payload.get("error_code")
        # The callback's own words, its URLs redacted (one may be a signed result URL).
        reason = redact_urls_in(str(reason))
        error = f"Akool job failed: {reason}" + (f" (error_code {code})" if code else "")
        # Bytes an earlier attempt kept for this id are of no use now (as in `run`).
        await self._fence.confirm()  # LeaseLost: the batch keeps the row pending
        await end_unstarted(self._storage, row.id, Outcome.FAILED, JobFailed(None, str(reason)))
        await self._done(row, "failed", error)
        log.warning("%s: failed: %s", row.id, error)

    async def _resolve(self, row: JobRow) -> JobRow | None:
        """*row* with its family: as recorded, or found by asking each family (and
        recorded). None if no family claims the id: then the row stays pending, asked
        again every re-poll, until it gives up as any row does."""
        if row.family is not None:
            return row
        probe = await find_family(self._client, row.id)
        if probe.family is not None:
            await self._journal.set_family(row.id, probe.family)
            return dataclasses.replace(row, family=probe.family)
        kind = row.payload.get("type")
        error = (f"no result family knows this id (callback type {str(kind)[:40]!r})"
                 if probe.unknown_everywhere else
                 f"its result family is unknown and the API did not answer ({probe.error})")
        log.warning("%s: %s; asking again in %gs", row.id, error, self._repoll)
        await self._keep_pending(row, error)
        return None

    async def _archive(self, rows: list[JobRow], config: Config) -> None:
        if not rows:
            return
        scheduler = Scheduler(config, self._client, self._downloader, self._storage,
                              fence=self._fence)
        items = [ManifestItem(r.id, family=_family_of(r)) for r in rows]
        results = await scheduler.run(items, self._stop)
        for row, result in zip(rows, results, strict=True):
            if await self._misrouted(row, result):
                continue
            await self._settle(row, result)

    async def _misrouted(self, row: JobRow, result: ItemResult) -> bool:
        """Whether the family the callback's type named answered that it does not know
        the id while another family does (a type Akool sends for another product than
        documented): then the row takes that family and is due again at once."""
        # A business code about this id (1008 "does not exist"...); not 1000 with an
        # answer we could not read, which another family's endpoint would not fix.
        if result.outcome is not Outcome.FAILED or result.error_kind != APIError.kind \
                or result.error_code in (None, OK) or row.family is None:
            return False
        probe = await find_family(self._client, row.id, skip=(row.family,))
        if probe.family is None:
            return False  # the named family's answer stands
        log.warning("%s: not a %s job (callback type %r) but a %s one", row.id, row.family,
                    str(row.payload.get("type"))[:40], probe.family)
        await self._journal.set_family(row.id, probe.family)
        await self._journal.retry_later(row.id, 0.0, result.error)
        self._wake.set()
        return True

    async def _settle(self, row: JobRow, result: ItemResult) -> None:
        outcome = result.outcome
        if outcome in (Outcome.ARCHIVED, Outcome.ALREADY_ARCHIVED, Outcome.EXPIRED) or (
                outcome is Outcome.FAILED and result.error_kind not in _RETRYABLE_KINDS):
            await self._done(row, outcome.value, result.error)
            return
        if self._stop.is_set() or result.error_kind == LeaseLost.kind:
            return  # interrupted: the row stays due, the next start takes it at once
        await self._keep_pending(row, result.error or "not final at Akool")

    async def _keep_pending(self, row: JobRow, error: str) -> None:
        """Due again in a re-poll interval, or expired once too old to ever be final."""
        if time.time() - row.received_at > _GIVE_UP_AFTER:
            await self._done(row, Outcome.EXPIRED.value,
                             f"not archived within {_GIVE_UP_AFTER / 86400:g} days of the "
                             f"first callback (last: {error})")
            return
        await self._journal.retry_later(row.id, self._repoll, error, row.status)

    async def _done(self, row: JobRow, outcome: str, error: str | None) -> None:
        await self._journal.finish(row.id, outcome, error)
        self._counters.outcomes[outcome, row.family or UNKNOWN_FAMILY] += 1


def _family_of(row: JobRow) -> str:
    if row.family is None:  # _resolve ran first: a bug, and the batch keeps it pending
        raise RuntimeError(f"{row.id}: archived before its family was known")
    return row.family


def _with_deadline(config: Config, deadline: float) -> Config:
    return config.model_copy(update={"polling": config.polling.model_copy(
        update={"deadline": deadline})})
