"""The poll side of a pass (:class:`Poller`): ask Akool about each id until it is done.

A fixed pool of ``concurrency.polls`` workers takes jobs from a queue, whatever the
manifest's length. A job not done yet waits for its next poll as a timer on the event
loop, not as a sleeping task (10,000 pending jobs cost 10,000 small timer handles),
backing off from ``polling.interval`` to ``polling.max_interval`` with +-10% jitter,
until ``polling.deadline``: then it is pending. A finished job goes to the archiving
side (*ready*); a failed one ends (*end*).

The API down (:class:`~archiver.errors.ApiUnavailable`, from the client's breaker): no
new poll starts, polls in flight end, and every id not finished is pending - including
those whose polls got no answer just before, which were the first signs of the outage
(their failures wait for the verdict: :meth:`Poller.answered`).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

from ..akool.client import AkoolClient
from ..akool.families import FAMILIES
from ..config import Config
from ..errors import (
    ApiUnavailable,
    DownloadError,
    FatalRunError,
    Interrupted,
    ItemError,
    JobFailed,
    TransientAPIError,
)
from ..fleet.lock import Fence
from ..models import JobInfo, JobStatus, Outcome
from .outcomes import Job, Outcomes, admitted, internal_error
from .record import iso

log = logging.getLogger(__name__)

#: Warn about items this close to Akool deleting them.
EXPIRY_WARNING_SECONDS = 24 * 3600

#: How a job that failed is ended: (job, outcome, error, quiet).
End = Callable[[Job, Outcome, ItemError, bool], Awaitable[None]]


class Poller:
    """Polls the jobs put on :attr:`queue`; :meth:`worker` is one of the pool's tasks."""

    def __init__(self, config: Config, client: AkoolClient, outcomes: Outcomes, fence: Fence,
                 *, ready: Callable[[Job, JobInfo], None], end: End,
                 stop: Callable[[FatalRunError], None], clock: Callable[[], float],
                 monotonic: Callable[[], float]) -> None:
        self._config = config
        self._client = client
        self._outcomes = outcomes
        self._fence = fence
        self._ready, self._end, self._stop = ready, end, stop
        self._clock, self._monotonic = clock, monotonic
        self.queue: asyncio.Queue[Job] = asyncio.Queue()
        #: Jobs with a re-poll timer armed.
        self.waiting: set[Job] = set()
        #: Set once the API is known to be down: no poll starts after that.
        self.unavailable: ApiUnavailable | None = None
        #: Ids whose poll got no answer (retries exhausted) since the API last answered
        #: one: failed, unless the API turns out to be down - then they are pending.
        #: Their log lines wait for that verdict.
        self._unanswered: list[Job] = []
        #: The pass is stopping gracefully: a poll cut short leaves its id pending.
        self.stopping = False
        #: loop.time() after which no job is polled again.
        self.deadline = 0.0

    async def worker(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            job = await self.queue.get()
            if self.unavailable is not None:
                self._outcomes.finish(job, Outcome.PENDING, error=self.unavailable)
                continue
            if self._fence.can_be_lost and \
                    not await admitted(self._fence, self._outcomes, job):
                continue
            if not job.started:
                job.started = self._monotonic()
            job.polls += 1
            try:
                info = await self._client.job_info(job.item.id, job.item.family)
            except FatalRunError as exc:
                self._stop(exc)
                return
            except ApiUnavailable as exc:
                self.api_down(exc, job)
                continue
            except TransientAPIError as exc:
                if exc.no_answer:  # failed - or the first sign of an outage
                    self._unanswered.append(job)
                    await self._end(job, Outcome.FAILED, exc, True)
                else:
                    self.answered()
                    await self._end(job, Outcome.FAILED, exc, False)
                continue
            except ItemError as exc:
                self.answered()
                await self._end(job, Outcome.FAILED, exc, False)
                continue
            except asyncio.CancelledError:
                if self.stopping:
                    self._outcomes.finish(job, Outcome.PENDING,
                                          error=Interrupted("interrupted while polling"))
                raise
            except Exception as exc:
                await self._end(job, Outcome.FAILED, internal_error(job, exc), False)
                continue
            self.answered()
            job.last_status = info.status
            job.expires_at = info.expires_at
            await self._route(loop, job, info)

    async def _route(self, loop: asyncio.AbstractEventLoop, job: Job, info: JobInfo) -> None:
        item_id = job.item.id
        if info.status == JobStatus.SUCCESS:
            main = FAMILIES[info.family].roles[0].name
            if not any(f.name == main for f in info.files):
                what = "data.video is empty" if info.family == "video" \
                    else f"it has no {main} URL"
                await self._end(job, Outcome.FAILED,
                                DownloadError(f"job succeeded but {what}"), False)
                return
            self._warn_if_expiring(item_id, info)
            self._ready(job, info)
        elif info.status == JobStatus.FAILED:
            await self._end(job, Outcome.FAILED,
                            JobFailed(info.error_code, info.error_reason), False)
        else:
            if info.status not in (JobStatus.QUEUED, JobStatus.PROCESSING) \
                    and not job.warned_status:
                job.warned_status = True
                log.warning("%s: unknown video_status %r, polling again until the deadline",
                            item_id, info.status)
            if self.unavailable is not None:  # no more polls in this run
                self._outcomes.finish(job, Outcome.PENDING, error=self.unavailable)
                return
            now = loop.time()
            if now >= self.deadline:
                log.info("%s: not done by the deadline (status %s), left pending",
                         item_id, info.status)
                self._outcomes.finish(job, Outcome.PENDING)
                return
            delay = min(self._backoff(job.polls), self.deadline - now)
            job.timer = loop.call_later(delay, self._repoll, job)
            self.waiting.add(job)

    def api_down(self, exc: ApiUnavailable, job: Job | None = None) -> None:
        """The API is down: no new polls. *job* (its poll refused), the ids waiting for
        a poll and those whose polls just got no answer are left pending."""
        if job is not None:
            self._outcomes.finish(job, Outcome.PENDING, error=exc)
        if self.unavailable is not None:
            return
        self.unavailable = exc
        for earlier in self._unanswered:
            # Already finished as failed (the observer was told so); the outage is the
            # better explanation, and the next run polls them again.
            result = self._outcomes.results[earlier.item.id]
            result.outcome = Outcome.PENDING
            result.error, result.error_kind, result.error_code = str(exc), exc.kind, None
        self._unanswered.clear()
        self.drain(exc)

    def drain(self, error: ItemError) -> None:
        """End every job waiting for a poll as pending with *error*: no poll starts."""
        for waiting in list(self.waiting):
            if waiting.timer is not None:
                waiting.timer.cancel()
            self._outcomes.finish(waiting, Outcome.PENDING, error=error)
        self.waiting.clear()
        while not self.queue.empty():
            self._outcomes.finish(self.queue.get_nowait(), Outcome.PENDING, error=error)

    def cancel_timers(self) -> None:
        for job in self.waiting:
            if job.timer is not None:
                job.timer.cancel()

    def answered(self) -> None:
        """The API answered a poll (or the run is over): the polls that got no answer
        before it failed on their own, and their log lines are due."""
        for job in self._unanswered:
            result = self._outcomes.results[job.item.id]
            log.warning("%s: %s: %s", job.item.id, result.outcome.value, result.error)
        self._unanswered.clear()

    def _repoll(self, job: Job) -> None:
        self.waiting.discard(job)
        job.timer = None
        self.queue.put_nowait(job)

    def _backoff(self, polls: int) -> float:
        polling = self._config.polling
        base = min(polling.max_interval, polling.interval * 2.0 ** min(polls - 1, 30))
        # +-10% jitter so thousands of jobs created together do not poll in lockstep.
        return min(polling.max_interval, base * random.uniform(0.9, 1.1))

    def _warn_if_expiring(self, item_id: str, info: JobInfo) -> None:
        if info.expires_at is None:
            return
        left = info.expires_at - self._clock()
        if left <= 0:
            log.warning("%s: past Akool's 7-day retention (expired %s); trying anyway",
                        item_id, iso(info.expires_at))
        elif left < EXPIRY_WARNING_SECONDS:
            log.warning("%s: expires in %.1f hours (%s)", item_id, left / 3600,
                        iso(info.expires_at))
