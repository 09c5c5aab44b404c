"""``archiver index``: the archive's own static pages, read from its records and
published at its top - written once, for every backend, over the storage contract.

One listing of the whole archive gives the committed items (``archive.json`` present:
:mod:`.state`); each record is read (a few at a time) and shown as an
:class:`~archiver.pages.index.IndexItem` - an unreadable one too, with the reason, so
that nothing archived goes missing from the page. The pages (:mod:`archiver.pages.index`)
are published with :meth:`~archiver.storage.backend.Backend.publish`, each atomically,
the last page first and ``index.html`` last: whoever follows the links from a new
``index.html`` finds new pages behind it. Pages of an earlier, longer index that the new
one no longer links (``index-7.html`` when 6 pages are left) are removed.

The pages are no item: ids hold no dot, so ``index*.html`` at the top is never taken
for one, ``verify`` and the skip check only look into item folders, and ``gc`` removes
nothing at the top but stale write probes. Writing the index takes no run lock: it only
reads records (each written once, last) and writes its own pages, so it may run beside a
run - it shows what was committed when it listed.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from ..models import iso_utc
from ..pages.index import PER_PAGE, IndexFile, IndexItem, newest_first, render
from ..storage.backend import Backend, Entry, Kind
from ..storage.names import INDEX_NAME, RECORD_NAME, index_page_number
from .record import ArchiveRecord, RecordError
from .state import committed, is_id

#: Records read at once (S3: GETs in flight).
READ_CONCURRENCY = 16
CONTENT_TYPE = "text/html; charset=utf-8"


@dataclass(slots=True)
class IndexResult:
    """What ``archiver index`` wrote."""

    #: Where the first page is, as messages show it (a path, ``s3://bucket/prefix/index.html``).
    location: str
    items: int = 0
    #: The pages written, first to last.
    pages: list[str] = field(default_factory=list)
    #: Their bytes, all pages together.
    bytes: int = 0
    #: Ids whose ``archive.json`` could not be read as a record (shown as such).
    unreadable: list[str] = field(default_factory=list)
    #: Pages of an earlier index no longer linked, removed.
    removed: list[str] = field(default_factory=list)
    #: One line per stale page that could not be removed.
    failures: list[str] = field(default_factory=list)


async def collect_items(backend: Backend, *, concurrency: int = READ_CONCURRENCY
                        ) -> tuple[list[IndexItem], list[Entry]]:
    """Every committed item as the index shows it, newest first, and the entries at the
    top of the archive (one listing of the whole archive)."""
    listing = await backend.listing(None, only=RECORD_NAME)
    ids = sorted(i for i, folder in listing.folders.items() if is_id(i) and committed(folder))
    pending = iter(ids)
    found: list[IndexItem] = []

    async def reader() -> None:
        # A few readers taking ids in turn, not a task per id: 100,000 ids stay cheap.
        for item_id in pending:
            raw = await backend.read(item_id, RECORD_NAME)
            if raw is not None:  # None: gone since listed
                found.append(item_of(item_id, raw))

    await asyncio.gather(*(reader() for _ in range(concurrency)))
    return newest_first(found), listing.strays


def item_of(item_id: str, raw: bytes) -> IndexItem:
    """The index's view of the record *raw* of the folder *item_id*."""
    try:
        record = ArchiveRecord.parse(raw)
    except RecordError as exc:
        return IndexItem(item_id, error=str(exc))
    # Records written before result families came have no family: they are videos.
    family = getattr(record, "family", None)
    return IndexItem(
        id=item_id, label=record.label,
        family=family if isinstance(family, str) and family else "video",
        archived_at=record.archived_at,
        files=tuple(IndexFile(f.name, f.size, f.sha256) for f in record.files))


async def write_index(backend: Backend, *, per_page: int = PER_PAGE,
                      concurrency: int = READ_CONCURRENCY, now: float | None = None
                      ) -> IndexResult:
    """Read the archive, publish its pages, remove pages no longer linked (see the
    module docstring). Raises StorageUnavailable if the archive cannot be listed or
    read, StorageError if a page cannot be written (pages already written stand: each
    is whole, and the old ``index.html`` still links old pages that are whole too)."""
    items, top = await collect_items(backend, concurrency=concurrency)
    written = iso_utc(time.time() if now is None else now) or ""
    pages = render(items, generated_at=written, per_page=per_page)
    result = IndexResult(location=backend.where(None, Entry(INDEX_NAME, Kind.FILE)),
                         items=len(items), pages=[name for name, _ in pages],
                         bytes=sum(len(data) for _, data in pages),
                         unreadable=[i.id for i in items if i.error is not None])
    for name, data in reversed(pages):  # index.html last: see the module docstring
        await backend.publish(name, data, content_type=CONTENT_TYPE)
    stale = [e for e in top if e.kind is Kind.FILE
             and (index_page_number(e.name) or 0) > len(pages)]
    if stale:
        removal = await backend.remove(None, stale)
        result.removed = sorted(e.name for e in removal.removed)
        result.failures = list(removal.failures)
    return result
