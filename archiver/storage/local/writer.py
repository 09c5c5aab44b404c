"""One item folder being written (:class:`LocalItemWriter`) and its one-hop commit.

The commit (:func:`_commit_sync`) is one thread hop: metadata files, the renames of the
item's files onto their final names, the folder's fsync and ``archive.json``, written
last and write-once - hard-linked from its temporary, so that a record another run wrote
first stands. A small item therefore costs this one hop in all: a file that arrives in
one chunk is created and written here too (see :mod:`.sink`), and no hop is spent
looking for a partial where there is no sidecar. A hop per system
call (aiofiles' way) cost more than the work itself for 10,000 small items
(``bench/bench_small_items.py``, ``bench/bench_per_item.py``).

Whether an item that did not commit keeps its bytes is decided once, by the caller, when
it knows the item's outcome: ``abort(keep=False)`` removes every temporary in the item
folder (:func:`_discard_sync`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Collection
from pathlib import Path

from ...errors import StorageError
from ..base import Partial
from ..names import RECORD_NAME, sidecar_name
from . import fs
from .partial import read_partial
from .sink import LocalFileSink


class LocalItemWriter:
    """Writes the files of one item folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._sinks: list[LocalFileSink] = []
        self._small: list[str] = []
        self._pending_small: list[tuple[str, bytes]] = []

    async def partial(self, name: str) -> Partial | None:
        # No sidecar, no partial - the case of nearly every new item: one lstat here costs
        # less than a thread hop. (Whatever is there - a link - is judged in the thread.)
        try:
            os.lstat(self.folder / sidecar_name(name))
        except FileNotFoundError:
            return None
        except OSError:
            pass
        return await asyncio.to_thread(read_partial, self.folder, name)

    async def open_file(self, name: str, *, resume: Partial | None = None,
                        validator: str | None = None, source: str = "") -> LocalFileSink:
        sink = LocalFileSink(self.folder, name)
        await sink.open(resume, validator if resume is None else resume.validator,
                        source if resume is None else resume.source)
        self._sinks.append(sink)
        return sink

    async def put_small(self, name: str, data: bytes) -> None:
        # Kept in memory and written by commit(), in the same thread hop: metadata files
        # only matter once the item commits.
        self._pending_small.append((name, data))

    async def commit(self, record: bytes, *, expect: Collection[str] = ()) -> bool:
        sinks = [s for s in self._sinks if s.state == "complete"]
        small, self._pending_small = self._pending_small, []
        # If the commit fails half-way, abort() removes what it made final: the metadata
        # files and the item's files (uncommitted, they are nobody else's on this disk).
        self._small = [name for name, _ in small] + [sink.final_name for sink in sinks]
        ours = await asyncio.to_thread(_commit_sync, self.folder, sinks, small, record,
                                       expect)
        if not ours:
            # Another run committed this id first: its files stand, ours are temporaries.
            self._small.clear()
            await self.abort(keep=False)
            return False
        for sink in sinks:
            sink.state = "final"
        self._small.clear()
        return True

    async def abort(self, keep: bool = False) -> None:
        """End the item uncommitted. Without *keep*, every temporary in its folder goes,
        those left by earlier attempts and runs included; with it, downloaded bytes stay
        for the next run to resume."""
        for sink in self._sinks:
            await sink.abort(keep=keep)
        small, self._small = self._small, []
        await asyncio.to_thread(_discard_sync, self.folder, small, keep)


# ---------------------------------------------------------------- commit and abort

def _commit_sync(folder: Path, sinks: list[LocalFileSink], small: list[tuple[str, bytes]],
                 record: bytes, expect: Collection[str]) -> bool:
    """The whole commit in one thread hop: metadata files, renames, folder fsync, the
    presence of every name in *expect*, record.

    False, touching nothing, if the item has a record already (another run committed it).
    """
    path = folder
    try:
        with fs.folder(folder, create=True) as dir_fd:
            assert dir_fd is not None  # created
            if fs.is_regular(dir_fd, RECORD_NAME):
                return False
            for name, data in small:
                path = folder / name
                fs.write_atomic(dir_fd, name, data)
            for sink in sinks:
                path = sink.final
                sink.make_final_sync(dir_fd)
            missing = [name for name in expect if not fs.is_regular(dir_fd, name)]
            if missing:
                raise StorageError(f"{folder}: {', '.join(missing)} missing before "
                                   "archive.json was written; not committed")
            os.fsync(dir_fd)
            # Last: from this moment the item counts as archived. Write-once, like S3's
            # If-None-Match: if another run committed this id first, its record stands.
            path = folder / RECORD_NAME
            ours = fs.write_atomic(dir_fd, RECORD_NAME, record, replace=False)
            os.fsync(dir_fd)
            # Temporaries of files this item no longer has (an earlier run's partial of
            # a subtitle Akool stopped offering): a committed folder keeps none.
            with contextlib.suppress(OSError):
                fs.remove_temporaries(dir_fd)
            return ours
    except OSError as exc:
        raise fs.write_error(path, exc) from None


def _discard_sync(folder: Path, small: list[str], keep: bool) -> None:
    """End an uncommitted item: remove the metadata files it wrote and, unless *keep*,
    every temporary in its folder; then the folder itself if that left it empty."""
    try:
        with fs.folder(folder) as dir_fd:
            if dir_fd is None:
                return
            if fs.is_regular(dir_fd, RECORD_NAME):
                return  # committed after all (another run, racing): its files stand
            for name in small:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name, dir_fd=dir_fd)
            if not keep:
                fs.remove_temporaries(dir_fd)
    except StorageError:
        return  # the item folder is a link: nothing behind it is ours to touch
    with contextlib.suppress(OSError):
        os.rmdir(folder)  # only succeeds if nothing was kept; never follows a link

