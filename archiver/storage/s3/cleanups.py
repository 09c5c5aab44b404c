"""Clean-ups that must happen whatever befalls the task that needs them.

:class:`Cleanups` registers an undo the moment the resource it undoes exists (as
s3transfer's ``add_failure_cleanup``): the multipart upload's abort is registered by the
pool job that creates the upload. :func:`shielded` waits for a clean-up handed to the
pool without letting a cancellation stop it; :func:`consume` marks the failure of a
request nobody awaits any more as seen.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class Cleanups:
    """Clean-up actions registered when the resource they undo is created, run once.

    As s3transfer's ``add_failure_cleanup``/``announce_done``: the code that starts a
    multipart upload registers its abort right then; completing the upload announces it
    done (nothing left to undo). :meth:`run` runs what is registered exactly once; an
    action registered after that (a request that was already running) runs at once.
    Thread-safe: actions are registered from pool threads.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._actions: dict[str, Callable[[], None]] = {}
        self._ran = False

    def add(self, name: str, action: Callable[[], None]) -> None:
        """Undo *name* with *action* if the owner fails."""
        with self._lock:
            late = self._ran
            if not late:
                self._actions[name] = action
        if late:
            action()

    def done(self, name: str) -> None:
        """*name* is final: there is nothing to undo any more."""
        with self._lock:
            self._actions.pop(name, None)

    def run(self) -> None:
        """Run every registered action once, in the order they were registered."""
        with self._lock:
            actions, self._actions, self._ran = list(self._actions.values()), {}, True
        for action in actions:
            action()


async def shielded(future: concurrent.futures.Future[Any]) -> None:
    """Wait for a clean-up job; cancellation stops the wait, never the job."""
    try:
        await asyncio.shield(asyncio.wrap_future(future))
    except Exception:
        # Clean-up must not replace the error that caused it; say it went wrong.
        log.warning("S3 clean-up failed", exc_info=True)


def consume(future: asyncio.Future[Any]) -> None:
    """Mark a failure as seen: abort() may leave part uploads no one awaits any more."""
    if not future.cancelled():
        future.exception()
