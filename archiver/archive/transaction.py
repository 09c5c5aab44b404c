"""One item's transaction: from opening its writer to ``archive.json``, or to its end.

:meth:`ItemTransaction.commit` opens the item's writer, downloads its files (all at once,
asking the API for fresh URLs when a file host refuses one), writes ``info.json`` and
``SHA256SUMS``, then - once the run's lock is confirmed still held (the fence) -
``archive.json`` LAST, written only if absent (another run's record stands) and only
once every file it lists and the metadata files are there (the writer checks); an item
is archived if and only if its record exists.

:meth:`ItemTransaction.end` closes an item that will not commit. Whether its stored
bytes stay for a later run is decided here and nowhere else (:func:`keeps_partials`),
once the item's outcome is known - the scheduler, and ``archiver serve`` for a job that
failed before any transfer, come here for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import (
    DownloadError,
    FatalRunError,
    Interrupted,
    ItemError,
    ItemTimeout,
    LeaseLost,
    TransientAPIError,
    TransientDownloadError,
    UrlGone,
)
from ..events import FileEvents, Observer
from ..fleet.lock import NO_FENCE, Fence
from ..manifest import ManifestItem
from ..models import FileRecord, JobInfo, JobStatus, Outcome, RemoteFile
from ..storage.backend import ItemWriter
from ..storage.names import INFO_NAME, SUMS_NAME
from .record import ArchiveRecord, json_bytes, sha256sums

if TYPE_CHECKING:
    from ..akool.client import AkoolClient
    from ..download import Downloader
    from .layer import Archive

log = logging.getLogger(__name__)

#: Failures a later run may get past, using the bytes already stored: interruption, the
#: item's time limit, network or API trouble, a refused URL Akool may renew ...
_RESUMABLE_ITEM_ERRORS: tuple[type[ItemError], ...] = (
    TransientDownloadError, TransientAPIError, UrlGone, ItemTimeout, Interrupted, LeaseLost)
#: ... and whatever stopped the whole run.
_RESUMABLE = (*_RESUMABLE_ITEM_ERRORS, FatalRunError)

#: The report's ``error.kind`` of those failures: an item that ended with one of these
#: is worth another attempt (``archiver serve`` keeps its job pending).
RESUMABLE_KINDS = frozenset(cls.kind for cls in _RESUMABLE_ITEM_ERRORS)


def keeps_partials(outcome: Outcome | None, error: BaseException) -> bool:
    """Whether an item that ended with *outcome* and *error* keeps its downloaded bytes.

    The one place this is decided, once the outcome is known. An expired item, and
    one that failed for good (rejected content, a permanent HTTP or API error, a failed
    job), keeps nothing: no later run could finish it, so its bytes would stay forever.
    What a kept item keeps is bounded by what can be resumed safely, whatever the error:
    storage never keeps bytes without a validator to send as If-Range
    (:meth:`~archiver.storage.backend.FileSink.abort`), since a resume without one could
    splice two versions of a file.
    """
    if outcome is Outcome.EXPIRED:
        return False
    return isinstance(error, _RESUMABLE)


async def end_unstarted(archive: Archive, item_id: str, outcome: Outcome,
                        error: ItemError) -> None:
    """End an item that ended before any transfer of this run (while polling, or a
    failed job's callback): only a discard touches storage, since bytes an earlier run
    kept for it are of no use once it failed for good."""
    if not keeps_partials(outcome, error):
        await _end_writer(archive.item(item_id), item_id, keep=False)


@dataclass(frozen=True, slots=True)
class Transactions:
    """What the item transactions of one run share; :meth:`begin` starts one."""

    archive: Archive
    client: AkoolClient
    downloader: Downloader
    observer: Observer
    #: Run-wide: how many files download at once, whatever the number of items.
    file_slots: asyncio.Semaphore
    #: How many times one item may ask the API for fresh URLs (``downloads.url_refreshes``).
    url_refreshes: int
    #: Wall-clock time (epoch seconds): the record's ``archived_at``.
    clock: Callable[[], float]
    #: The run lock's fence: no commit starts unless the lock is still held.
    fence: Fence = NO_FENCE

    def begin(self, item: ManifestItem) -> ItemTransaction:
        """The transaction of *item*, its writer open."""
        return ItemTransaction(self, item, self.archive.item(item.id))


class ItemTransaction:
    """Archives one item: :meth:`commit` it, or :meth:`end` it with its outcome."""

    def __init__(self, shared: Transactions, item: ManifestItem, writer: ItemWriter) -> None:
        self._shared, self._item, self._writer = shared, item, writer

    async def commit(self, info: JobInfo) -> list[FileRecord] | None:
        """Fetch every file of *info* and commit the item; its files, in archive order,
        or None if another run committed the item first (its record stands).

        On failure the caller ends the transaction with :meth:`end`, knowing the outcome
        (an :class:`UrlGone` may yet turn out to be an expiry).
        """
        item, shared = self._item, self._shared
        shared.observer.item_started(item.id, len(info.files))
        records: dict[str, FileRecord] = {}
        refreshes = 0
        while True:
            try:
                await self._fetch_all(info.files, records)
                break
            except UrlGone:
                if refreshes >= shared.url_refreshes:
                    raise
                refreshes += 1
                # The URL expired or was revoked: Akool may hand out a fresh one.
                log.info("%s: result URL refused, asking the API again", item.id)
                info = await self._fresh_info()
        ordered = [records[f.name] for f in info.files]
        record = ArchiveRecord.build(item.id, item.label, info, ordered, now=shared.clock())
        # The lock may have been lost while the files came: then another run owns the
        # item now, and this one may not commit it (LeaseLost: pending).
        await shared.fence.confirm()
        await self._writer.put_small(INFO_NAME, json_bytes(info.raw))
        await self._writer.put_small(SUMS_NAME, sha256sums(ordered))
        # Write-once, and only once every file the record lists is there (one listing
        # on S3: gc deleting in the instant after its last look cannot slip through).
        ours = await self._writer.commit(
            record.to_bytes(), expect=[*(f.name for f in ordered), INFO_NAME, SUMS_NAME])
        return ordered if ours else None

    async def end(self, outcome: Outcome | None, error: BaseException) -> None:
        """End an item that did not commit: keep its stored bytes or not
        (:func:`keeps_partials`). *outcome* is None when the whole run stops."""
        await _end_writer(self._writer, self._item.id, keep=keeps_partials(outcome, error))

    async def _fetch_all(self, files: Sequence[RemoteFile],
                         records: dict[str, FileRecord]) -> None:
        """Fetch the files not in *records* yet, all at once; the first error wins."""
        todo = [f for f in files if f.name not in records]
        tasks: dict[str, asyncio.Task[FileRecord]] = {}
        try:
            async with asyncio.TaskGroup() as group:
                for remote in todo:
                    tasks[remote.name] = group.create_task(self._fetch(remote))
        except BaseExceptionGroup as group_error:
            _collect(tasks, records)
            first = _first_item_error(group_error)
            if first is not None:
                raise first from None
            raise
        _collect(tasks, records)

    async def _fresh_info(self) -> JobInfo:
        await self._shared.fence.confirm()
        info = await self._shared.client.job_info(self._item.id, self._item.family)
        if info.status != JobStatus.SUCCESS or not info.files:
            raise DownloadError(f"result URL refused and the job now has status {info.status}")
        return info

    async def _fetch(self, remote: RemoteFile) -> FileRecord:
        shared = self._shared
        async with shared.file_slots:
            listener = FileEvents(shared.observer, self._item.id, remote.name)
            return await shared.downloader.fetch(remote, self._writer, listener,
                                                 admit=shared.fence.confirm)


async def _end_writer(writer: ItemWriter, item_id: str, *, keep: bool) -> None:
    # Shielded: a second Ctrl-C must not cut a clean-up short half-way.
    try:
        await asyncio.shield(writer.abort(keep=keep))
    except Exception as exc:
        # The item's own outcome stands; a clean-up that failed is worth a line.
        log.warning("%s: clean-up of an unfinished item failed: %s", item_id, exc)


def _collect(tasks: dict[str, asyncio.Task[FileRecord]], records: dict[str, FileRecord]) -> None:
    for name, task in tasks.items():
        if task.done() and not task.cancelled() and task.exception() is None:
            records[name] = task.result()


def _first_item_error(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    # An error that stops the run outranks a per-item one.
    flat = list(_flatten(group))
    for kind in (FatalRunError, UrlGone, ItemError):
        for exc in flat:
            if isinstance(exc, kind):
                return exc
    return None


def _flatten(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _flatten(exc)
        else:
            yield exc
