"""The Archive layer: one object over a storage backend, owning what every backend shares.

As restic's repository sits above its ``backend`` interface, :class:`Archive` sits above
:class:`~archiver.storage.backend.Backend` and holds the rules that would otherwise be
written once per backend (and were: twice, differently):

- the skip check and ``status``: what counts as archived, partial or absent
  (:mod:`.state`), from the backend's cheapest listing;
- ``verify``: what is compared, from typed records (:mod:`.verify`);
- ``gc``: what is garbage, by the store's clock, removed only if unchanged (:mod:`.gc`);
- the item transaction and its commit protocol (:mod:`archiver.archive.transaction`), through
  :meth:`Archive.item`;
- ``index``: the archive's static pages, read from its records (:mod:`.index`);
- the run lock every command takes, through one seam (:func:`archiver.archive.runlock.hold`,
  which asks :attr:`Archive.backend` for the store's own lock).

A backend stays narrow - list, read, digest, write an item, remove if unchanged, lock -
so a third one (GCS, Azure) needs only that interface and the contract suite
(``tests/test_storage_contract.py``); nothing here branches on which backend it is.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..config import StorageConfig
from ..fleet.lock import NO_FENCE, Fence
from ..pages.index import PER_PAGE
from ..storage import make_backend
from ..storage.backend import Backend, Capabilities, ItemWriter
from ..storage.names import RECORD_NAME
from . import gc, index, verify
from .state import State, committed, is_id, state


@dataclass(frozen=True, slots=True)
class SkipCheck:
    """What the skip check found for a manifest's ids (:meth:`Archive.skip_check`)."""

    #: Archived: skipped.
    archived: frozenset[str]
    #: Holding something but no record (state partial): bytes an earlier run kept, or
    #: an attempt that did not commit. Any other id not archived had nothing stored.
    partial: frozenset[str]


class Archive:
    """The archive kept on *backend* (see the module docstring)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    @classmethod
    def from_config(cls, config: StorageConfig) -> Archive:
        """The archive on the backend the configuration names."""
        return cls(make_backend(config))

    def __repr__(self) -> str:
        return f"Archive({self.backend!r})"

    @property
    def description(self) -> str:
        """Where the archive is, safe to log (no credentials)."""
        return self.backend.description

    @property
    def capabilities(self) -> Capabilities:
        return self.backend.capabilities

    async def open(self, readonly: bool = False) -> None:
        """Check the store can take the results (with *readonly*: can be read); raise
        :class:`~archiver.errors.StorageUnavailable` if not."""
        await self.backend.open(readonly=readonly)

    async def close(self) -> None:
        await self.backend.close()

    # ------------------------------------------------------------------ writing

    async def archived(self, ids: Iterable[str]) -> set[str]:
        """Those of *ids* that are archived: the skip check, without a request per id."""
        return set((await self.skip_check(ids)).archived)

    async def skip_check(self, ids: Iterable[str]) -> SkipCheck:
        """Which of *ids* are archived, and which hold something else (one listing).

        A run needs the second set too: an id that fails before any transfer of the run
        has its stored bytes discarded (:func:`~archiver.archive.transaction.end_unstarted`),
        and an id that had nothing stored has nothing to discard - no writer, no thread
        hop, no request for it (10,000 failed ids: ~1 CPU s on the event loop).
        """
        listing = await self.backend.listing(list(ids), only=RECORD_NAME)
        archived: set[str] = set()
        partial: set[str] = set()
        for item_id, folder in listing.folders.items():
            (archived if committed(folder) else partial).add(item_id)
        return SkipCheck(frozenset(archived), frozenset(partial))

    def item(self, item_id: str) -> ItemWriter:
        """A writer for one item (the transaction's: :mod:`archiver.archive.transaction`)."""
        return self.backend.item(item_id)

    # ------------------------------------------------------------------ reading

    async def item_states(self, ids: Iterable[str]) -> dict[str, State]:
        """archived / partial / absent, per id (:mod:`.state`)."""
        wanted = list(ids)
        listing = await self.backend.listing(wanted, only=RECORD_NAME)
        return {i: state(listing.folders.get(i)) for i in wanted}

    async def list_archived(self) -> list[str]:
        """Every archived id, sorted (one listing of the whole archive)."""
        listing = await self.backend.listing(None, only=RECORD_NAME)
        return sorted(i for i, folder in listing.folders.items()
                      if is_id(i) and committed(folder))

    async def verify(self, ids: Sequence[str] | None = None, *, deep: bool = False,
                     concurrency: int = 4) -> verify.VerifyResult:
        """Check *ids* (every archived id when None) against their records (:mod:`.verify`)."""
        return await verify.verify(self.backend, ids, deep=deep, concurrency=concurrency)

    async def collect_garbage(self, ids: Sequence[str] | None, min_age: float,
                              dry_run: bool, fence: Fence = NO_FENCE) -> gc.GcResult:
        """Remove what uncommitted attempts left, older than *min_age* (:mod:`.gc`)."""
        return await gc.collect_garbage(self.backend, ids, min_age, dry_run, fence)

    async def write_index(self, *, per_page: int = PER_PAGE) -> index.IndexResult:
        """Publish the archive's static pages, ``index.html`` first among them
        (:mod:`.index`)."""
        return await index.write_index(self.backend, per_page=per_page)
