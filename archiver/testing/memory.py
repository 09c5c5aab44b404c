"""An archive kept in memory (:class:`MemoryBackend`): a third backend, for tests.

Written to nothing but the narrow contract of :mod:`archiver.storage.backend`, to show
what a new backend (GCS, Azure) needs: it passes the contract suite
(``tests/test_storage_contract.py``) and runs whole archiver runs through the Archive
layer, with no line elsewhere that knows it exists. Its semantics are a disk's, without
one: a file's bytes sit under its temporary name while they are written, the item's
files take their final names all at once when it commits (write-once ``archive.json``),
an aborted item leaves nothing (nothing is kept to resume), a run lock is held per name
with the layout check for other shard counts, and removal checks each entry's version.

Nothing is kept across processes: use it in-process (``Archive(MemoryBackend())``).
"""

from __future__ import annotations

import hashlib
import itertools
import time
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from ..errors import StorageError
from ..fleet.lock import NO_FENCE, Fence, LockHeld, describe_name, shard_count
from ..models import FileRecord
from ..storage.backend import (
    Capabilities,
    Digest,
    Entry,
    Kind,
    Listing,
    Partial,
    Removal,
)
from ..storage.names import RECORD_NAME, is_temporary, temp_name


@dataclass(frozen=True, slots=True)
class Stored:
    """One stored file: its bytes, when it was written and its version."""

    data: bytes | bytearray
    mtime: float
    version: int


class MemoryBackend:
    """An archive in a dict: ``files[id][name]`` (see the module docstring)."""

    capabilities = Capabilities(resumable=False, positional_writes=True)

    def __init__(self, name: str = "archive", *, clock: Callable[[], float] = time.time
                 ) -> None:
        self.description = f"memory://{name}"
        self.clock = clock
        self.files: dict[str, dict[str, Stored]] = {}
        #: The files at the top, outside any item (the index pages).
        self.top: dict[str, Stored] = {}
        self._versions = itertools.count(1)
        self._locks: set[str] = set()

    async def open(self, readonly: bool = False) -> None:
        return None

    async def close(self) -> None:
        return None

    def store(self, item_id: str, name: str, data: bytes | bytearray) -> None:
        """Write a file as it is (the item writer's commit; tests, as another program)."""
        stored = Stored(data, self.clock(), next(self._versions))
        self.files.setdefault(item_id, {})[name] = stored

    # ------------------------------------------------------------------ reading

    async def listing(self, ids: Collection[str] | None = None, *, only: str | None = None,
                      uploads: bool = False) -> Listing:
        listing = Listing(now=self.clock())
        for item_id in sorted(self.files) if ids is None else ids:
            folder = self.files.get(item_id)
            if folder:
                listing.folders[item_id] = {
                    name: Entry(name, Kind.FILE, len(s.data), s.mtime, str(s.version))
                    for name, s in folder.items()}
        if ids is None:
            listing.strays = [Entry(name, Kind.FILE, len(s.data), s.mtime, str(s.version))
                              for name, s in sorted(self.top.items())]
        return listing

    async def read(self, item_id: str, name: str) -> bytes | None:
        stored = self.files.get(item_id, {}).get(name)
        return None if stored is None else bytes(stored.data)

    async def digest(self, item_id: str, file: FileRecord, *, rehash: bool) -> Digest:
        stored = self.files.get(item_id, {}).get(file.name)
        if stored is None:
            raise StorageError(f"{self.description}/{item_id}/{file.name}: gone")
        return Digest(sha256=hashlib.sha256(stored.data).hexdigest())  # no checksum kept

    # ------------------------------------------------------------------ writing

    def item(self, item_id: str) -> MemoryItemWriter:
        return MemoryItemWriter(self, item_id)

    async def publish(self, name: str, data: bytes, *, content_type: str) -> None:
        self.top[name] = Stored(bytes(data), self.clock(), next(self._versions))

    async def remove(self, item_id: str | None, entries: Sequence[Entry]) -> Removal:
        result = Removal()
        folder = self.top if item_id is None else self.files.get(item_id, {})
        if RECORD_NAME in folder:
            return result
        for entry in entries:
            stored = folder.get(entry.name)
            if stored is not None and str(stored.version) == entry.tag:
                del folder[entry.name]
                result.removed.append(entry)
        if item_id is not None and result.removed and not folder:
            del self.files[item_id]
        return result

    def where(self, item_id: str | None, entry: Entry) -> str:
        return f"{self.description}/{item_id}/{entry.name}" if item_id is not None \
            else f"{self.description}/{entry.name}"

    def run_lock(self, name: str, *, ttl: float, what: str,
                 on_lost: Callable[[str], None] | None = None,
                 command: str = "run") -> AbstractAsyncContextManager[Fence]:
        return self._lock(name, what)

    @asynccontextmanager
    async def _lock(self, name: str, what: str) -> AsyncIterator[Fence]:
        if name in self._locks:
            raise LockHeld(f"{what}: another run holds {self.description} ({name})")
        mine = shard_count(name)
        for other in self._locks:
            if shard_count(other) != mine:
                raise LockHeld(f"{describe_name(other)} holds {self.description}; {what} "
                               "would archive some of its ids too")
        self._locks.add(name)
        try:
            yield NO_FENCE  # a lock in this process cannot be lost while it lives
        finally:
            self._locks.discard(name)


class MemoryItemWriter:
    """One item: a file's bytes sit under its temporary name while written (visible, as
    on disk: ``status`` says partial), and go under their final names when the item
    commits, all at once."""

    def __init__(self, store: MemoryBackend, item_id: str) -> None:
        self._store = store
        self._item_id = item_id
        self._sinks: list[MemorySink] = []
        self._small: dict[str, bytes] = {}
        self._ended = False

    async def partial(self, name: str) -> Partial | None:
        return None  # nothing kept to resume

    async def open_file(self, name: str, *, resume: Partial | None = None,
                        validator: str | None = None, source: str = "") -> MemorySink:
        if self._ended or resume is not None:
            raise StorageError(f"{self._item_id}/{name}: cannot open (ended, or a resume)")
        sink = MemorySink(self._store, self._item_id, name)
        self._sinks.append(sink)
        return sink

    async def put_small(self, name: str, data: bytes) -> None:
        self._small[name] = data

    async def commit(self, record: bytes, *, expect: Collection[str] = ()) -> bool:
        folder = self._store.files.get(self._item_id, {})
        files = {s.final_name: bytes(s.data) for s in self._sinks if s.done} | self._small
        missing = sorted(n for n in expect if n not in files and n not in folder)
        if missing:
            raise StorageError(f"{self._item_id}: {', '.join(missing)} missing before "
                               "archive.json was written; not committed")
        if RECORD_NAME in folder:
            await self.abort()
            return False  # another run committed it first: its record stands
        self._ended = True
        for name, data in files.items():
            self._store.store(self._item_id, name, data)
        self._store.store(self._item_id, RECORD_NAME, record)
        for sink in self._sinks:
            sink.forget()
        return True

    async def abort(self, keep: bool = False) -> None:
        """Nothing is kept to resume: every temporary of the item goes."""
        self._ended = True
        for sink in self._sinks:
            await sink.abort()
        folder = self._store.files.get(self._item_id, {})
        for name in [n for n in folder if is_temporary(n)]:
            del folder[name]
        if not folder:
            self._store.files.pop(self._item_id, None)


class MemorySink:
    """One file being written under its temporary name, in order or by position."""

    supports_positional_writes = True

    def __init__(self, store: MemoryBackend, item_id: str, name: str) -> None:
        self._store = store
        self._item_id = item_id
        self.name = name
        #: The name at commit (:meth:`rename`); the temporary keeps :attr:`name`.
        self.final_name = name
        self.data = bytearray()
        self.done = False
        self._aborted = False

    def rename(self, name: str) -> None:
        self.final_name = name

    async def write(self, chunk: bytes) -> None:
        self._check_open()
        self.data += chunk
        self._show()

    async def write_at(self, offset: int, chunk: bytes) -> None:
        self._check_open()
        if len(self.data) < offset + len(chunk):
            self.data.extend(bytes(offset + len(chunk) - len(self.data)))
        self.data[offset:offset + len(chunk)] = chunk
        self._show()

    async def read_into(self, offset: int, buffer: memoryview) -> int:
        piece = self.data[offset:offset + len(buffer)]
        buffer[:len(piece)] = piece
        return len(piece)

    async def mark_prefix(self, size: int) -> None:
        return None

    async def commit(self, size: int, sha256: str) -> dict[str, Any]:
        self._check_open()
        if len(self.data) != size or hashlib.sha256(self.data).hexdigest() != sha256:
            await self.abort()
            raise StorageError(f"{self.name}: wrote {len(self.data)} bytes, expected {size}")
        self.done = True
        return {}

    async def abort(self, keep: bool = False) -> None:
        if not self._aborted:
            self._aborted = True
            self.done = False
            self.forget()

    def forget(self) -> None:
        """Drop the temporary (the item committed, or this file was aborted)."""
        self._store.files.get(self._item_id, {}).pop(temp_name(self.name), None)

    def _show(self) -> None:
        # The buffer itself, not a copy: what is stored grows as it is written.
        self._store.store(self._item_id, temp_name(self.name), self.data)

    def _check_open(self) -> None:
        if self.done or self._aborted:
            raise StorageError(f"{self.name}: already committed or aborted")
