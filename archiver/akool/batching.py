"""Batched polling (:class:`Coalescer`): concurrent callers of one family, one request.

Face swap and image-to-video answer several ids per request. Each caller asks for one
id (:meth:`Coalescer.get`); the ids asked for while no batch is being gathered start
one, which waits up to *linger* seconds for more callers (or until it holds *size*
ids, or as many as the URL may carry), then sends them in one request. Batches are
sent as soon as they are gathered, several at once if callers keep coming; each is one
request to the rate limiter and the circuit breaker, however many ids it carries.

The request (*send*) answers, per id, a :class:`~archiver.models.JobInfo` or the
:class:`~archiver.errors.ItemError` of that id alone (not found, a hostile entry); an
exception it raises (credentials, an API that does not answer) is every caller's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

from ..errors import ItemError
from ..models import JobInfo

log = logging.getLogger(__name__)

#: One answer per id of a batch.
Answers = dict[str, JobInfo | ItemError]
#: Sends one batch (ids in order, no repeats).
Send = Callable[[list[str]], Awaitable[Answers]]
#: Whether a batch of these ids still fits one request (the URL's length).
Fits = Callable[[Sequence[str]], bool]


#: A batch waits at most this long for more ids (seconds)...
MAX_LINGER = 1.0


def linger_for(interval: float) -> float:
    """... and at most a tenth of ``polling.interval``: polls are that far apart anyway,
    and re-polls spread by their jitter are gathered into full batches."""
    return min(MAX_LINGER, interval / 10)


class Coalescer:
    """Gathers the ids of concurrent callers into batches of at most *size*."""

    def __init__(self, send: Send, *, size: int, linger: float,
                 fits: Fits = lambda ids: True) -> None:
        self._send, self._size, self._linger, self._fits = send, size, linger, fits
        #: id -> the futures of its callers, in arrival order.
        self._waiting: dict[str, list[asyncio.Future[JobInfo]]] = {}
        self._gatherer: asyncio.Task[None] | None = None
        self._full = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()
        #: Batches sent and ids they carried (for reports, tests and the bench).
        self.batches = 0
        self.ids_sent = 0

    async def get(self, item_id: str) -> JobInfo:
        """The job *item_id*'s current state, from the next batch."""
        future: asyncio.Future[JobInfo] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(item_id, []).append(future)
        if len(self._waiting) >= self._size:
            self._full.set()
        if self._gatherer is None or self._gatherer.done():
            self._gatherer = asyncio.create_task(self._gather(), name="akool-batch")
        try:
            return await future
        finally:
            if not future.done():  # the caller was cancelled: drop it from the batch
                callers = self._waiting.get(item_id)
                if callers is not None and future in callers:
                    callers.remove(future)
                    if not callers:
                        del self._waiting[item_id]

    async def close(self) -> None:
        """Stop gathering; batches in flight end (their callers get their answers)."""
        if self._gatherer is not None:
            self._gatherer.cancel()
        for callers in self._waiting.values():
            for future in callers:
                future.cancel()
        self._waiting.clear()
        tasks = [*self._inflight, *([self._gatherer] if self._gatherer else [])]
        # Their callers were told; their own ends are of no interest here.
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _gather(self) -> None:
        while self._waiting:
            if len(self._waiting) < self._size and self._linger > 0:
                self._full.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), self._linger)
            else:
                await asyncio.sleep(0)  # let the callers of this tick join
            batch = self._take()
            if not batch:
                continue
            task = asyncio.create_task(self._run(batch), name="akool-batch-request")
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    def _take(self) -> dict[str, list[asyncio.Future[JobInfo]]]:
        """Up to *size* waiting ids that fit one request, oldest first."""
        batch: dict[str, list[asyncio.Future[JobInfo]]] = {}
        for item_id in list(self._waiting):
            if len(batch) >= self._size or (batch and not self._fits([*batch, item_id])):
                break
            batch[item_id] = self._waiting.pop(item_id)
        return batch

    async def _run(self, batch: dict[str, list[asyncio.Future[JobInfo]]]) -> None:
        ids = list(batch)
        self.batches += 1
        self.ids_sent += len(ids)
        try:
            answers = await self._send(ids)
        except asyncio.CancelledError:
            for callers in batch.values():
                for future in callers:
                    future.cancel()
            raise
        except Exception as exc:
            for callers in batch.values():
                for future in callers:
                    if not future.done():
                        future.set_exception(exc)
            return
        for item_id, callers in batch.items():
            answer = answers[item_id]
            for future in callers:
                if future.done():
                    continue
                if isinstance(answer, JobInfo):
                    future.set_result(answer)
                else:
                    future.set_exception(answer)
