"""Run events: what the scheduler tells whoever watches a run (progress bars, logs, tests).

The scheduler calls an :class:`Observer`; the CLI decides what the events become (a
progress display, nothing at all). Every method is a no-op, so an observer overrides
only what it needs.
"""

from __future__ import annotations

from .models import ItemResult, RunResult


class Observer:
    """Receives run events; the CLI turns them into logs or progress. Methods are no-ops."""

    def run_started(self, total: int, already_archived: int) -> None:
        """The run knows how many ids it has and how many were archived before."""

    def item_started(self, item_id: str, files: int) -> None:
        """Downloading of one finished job begins (*files* result files)."""

    def file_started(self, item_id: str, name: str, total: int | None, offset: int) -> None:
        """A transfer began: *total* bytes expected if known, *offset* already stored."""

    def file_progress(self, item_id: str, name: str, count: int) -> None:
        """*count* more bytes of a result file arrived."""

    def file_ended(self, item_id: str, name: str) -> None:
        """A transfer attempt ended (stored, failed or to be retried)."""

    def item_finished(self, result: ItemResult) -> None:
        """One id reached its outcome for this run."""

    def run_finished(self, result: RunResult) -> None:
        """The run is over (called by :func:`archiver.run.archive`)."""


class FileEvents:
    """Turns one transfer's events (a :class:`~archiver.download.TransferListener`) into
    observer calls naming the item and file."""

    __slots__ = ("_item_id", "_name", "_observer")

    def __init__(self, observer: Observer, item_id: str, name: str) -> None:
        self._observer, self._item_id, self._name = observer, item_id, name

    def started(self, total: int | None, offset: int) -> None:
        self._observer.file_started(self._item_id, self._name, total, offset)

    def advanced(self, count: int) -> None:
        self._observer.file_progress(self._item_id, self._name, count)

    def ended(self) -> None:
        self._observer.file_ended(self._item_id, self._name)
