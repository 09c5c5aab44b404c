"""What became of each id in one pass: one :class:`~archiver.models.ItemResult` each.

The scheduler's jobs (:class:`Job`: one id, its polls, its expiry) end here, exactly
once (:meth:`Outcomes.finish`): the result is recorded, logged at the level its outcome
deserves, told to the observer, and counted down until the pass is done. Polling
(:mod:`.polling`) and archiving (:mod:`.scheduler`) both end jobs through it, and both
ask the run lock's fence before starting work on one (:func:`admitted`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import ApiUnavailable, ItemError, LeaseLost
from ..events import Observer
from ..fleet.lock import Fence
from ..manifest import ManifestItem
from ..models import FileRecord, ItemResult, Outcome

log = logging.getLogger(__name__)


@dataclass(slots=True, eq=False)
class Job:
    """One id of the pass, from its first poll to its outcome."""

    item: ManifestItem
    started: float = 0.0
    polls: int = 0
    last_status: int | None = None
    expires_at: float | None = None
    timer: asyncio.TimerHandle | None = None
    done: bool = False
    #: An unknown video_status was already logged for this id (once is news, each poll noise).
    warned_status: bool = False


class Outcomes:
    """The results of one pass, and the event set when the last job has ended."""

    def __init__(self, observer: Observer, monotonic: Callable[[], float]) -> None:
        self._observer = observer
        self._monotonic = monotonic
        self.results: dict[str, ItemResult] = {}
        #: Jobs not ended yet; :attr:`done` is set when it reaches 0.
        self.remaining = 0
        self.done = asyncio.Event()

    def finish(self, job: Job, outcome: Outcome, *, error: ItemError | None = None,
               files: list[FileRecord] | None = None, quiet: bool = False) -> None:
        """Record *job*'s outcome (once); *quiet*: its log line is the caller's to write."""
        if job.done:
            return
        job.done = True
        item = job.item
        result = ItemResult(
            id=item.id, label=item.label, outcome=outcome, status=job.last_status,
            files=files or [], polls=job.polls,
            duration=(self._monotonic() - job.started) if job.started else 0.0,
            expires_at=job.expires_at, family=item.family,
        )
        if error is not None:
            result.error = str(error)
            result.error_kind = error.kind
            result.error_code = getattr(error, "code", None)
            # A down API is said once (by the client), not once per id.
            level = logging.DEBUG if quiet or isinstance(error, ApiUnavailable) else \
                logging.INFO if outcome is Outcome.PENDING else logging.WARNING
            log.log(level, "%s: %s: %s", item.id, outcome.value, error)
        elif outcome is Outcome.ARCHIVED:
            log.info("%s: archived %d file(s), %d bytes", item.id, len(result.files), result.bytes)
        self.results[item.id] = result
        self._observer.item_finished(result)
        self.remaining -= 1
        if self.remaining <= 0:
            self.done.set()


async def admitted(fence: Fence, outcomes: Outcomes, job: Job) -> bool:
    """Whether work on *job* may start: the run still holds its lock. If not, the id
    stays pending (the run holding the lock now will do it)."""
    try:
        await fence.confirm()
    except LeaseLost as exc:
        outcomes.finish(job, Outcome.PENDING, error=exc)
        return False
    return True


def internal_error(job: Job, exc: Exception) -> ItemError:
    """The error a bug fails one id with: one line, the traceback only with --debug."""
    log.error("%s: internal error: %s", job.item.id, type(exc).__name__)
    log.debug("%s: internal error", job.item.id, exc_info=exc)  # traceback with --debug
    return ItemError(f"internal error: {type(exc).__name__} (run with --debug for details)")
