"""The local-disk backend (:class:`LocalBackend`): an archive under ``<root>/<id>/``.

Writing goes through :mod:`.writer` (one item, its one-hop commit) and :mod:`.sink` (one
file and its sidecar); every file-system access below the root through :mod:`.fs`
(never through a symbolic link); the run lock is a ``flock`` (:mod:`.flock`).

The read side is the contract's (:class:`~archiver.storage.backend.Backend`), each call
one thread hop:

- :meth:`LocalBackend.listing` calls ``lstat`` on each id's folder, and with ``only`` (the skip
  check, ``status``) the one name asked for: two ``lstat`` calls per id, no directory
  read, for a manifest of 200,000 ids. A folder that is a symbolic link is no folder.
  Entries carry their ``mtime`` (this host's clock is the store's) and, as their tag,
  inode, ``mtime_ns`` and size.
- :meth:`LocalBackend.digest` re-hashes: reading the bytes back is the only check a disk
  has.
- :meth:`LocalBackend.remove` opens the folder with ``O_NOFOLLOW`` and, for each entry,
  calls ``lstat`` on it again relative to that descriptor: only a regular file with the same
  inode, ``mtime_ns`` and size is unlinked, and nothing at all once ``archive.json`` is
  there. A folder left empty goes too.
"""

from __future__ import annotations

import asyncio
import os
import stat
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType

from ..._os import os_reason
from ...errors import StorageError, StorageUnavailable
from ...models import FileRecord
from ..backend import Capabilities, Digest, Entry, Kind, Listing, Removal
from ..names import RECORD_NAME
from . import fs
from .flock import LocalLock
from .writer import LocalItemWriter

LOCK_NAME = ".archiver.lock"


class LocalBackend:
    """Archive under ``root/<video_model_id>/``."""

    #: An interrupted file keeps its bytes and sidecar for the next attempt to resume.
    capabilities = Capabilities(resumable=True, positional_writes=True)

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.description = str(self.root)

    def __repr__(self) -> str:
        return f"LocalBackend({self.description!r})"

    # ------------------------------------------------------------------ lifecycle

    async def open(self, readonly: bool = False) -> None:
        if not readonly:  # a dry run or verify must not even create the root
            await asyncio.to_thread(self._check_writable)

    def _check_writable(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageUnavailable(
                f"cannot create archive root {self.root}: {os_reason(exc)}") from None
        if not self.root.is_dir():
            raise StorageUnavailable(f"archive root {self.root} is not a directory")
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise StorageUnavailable(f"archive root {self.root} is not writable")

    async def close(self) -> None:
        return None

    def run_lock(self, name: str, *, ttl: float, what: str,
                 on_lost: Callable[[str], None] | None = None,
                 command: str = "run") -> LocalLock:
        """A ``flock`` on ``<root>/.archiver.lock`` (a shard's: ``.archiver.shard-2-of-4.lock``),
        with the layout check beside it (:class:`~.flock.LocalLock`).

        Disks are not shared between hosts here, so a file lock keeps every other run
        out; it cannot be lost while held (*ttl* and *on_lost* do not apply).
        """
        return LocalLock(self.root / LOCK_NAME, name, what, command)

    def item(self, item_id: str) -> LocalItemWriter:
        return LocalItemWriter(self.root / item_id)

    # ------------------------------------------------------------------ reading

    async def listing(self, ids: Collection[str] | None = None, *, only: str | None = None,
                   uploads: bool = False) -> Listing:
        # Disks have no unfinished uploads: a file being written is a temporary, listed.
        wanted = ids if ids is None or isinstance(ids, list) else list(ids)
        return await asyncio.to_thread(self._list_sync, wanted, only)

    def _list_sync(self, ids: list[str] | None, only: str | None) -> Listing:
        listing = Listing(now=time.time())
        # str paths, not pathlib: 5x faster over a manifest of 200,000 ids.
        root = str(self.root)
        if ids is None:
            try:
                with os.scandir(root) as found:
                    top = list(found)
            except FileNotFoundError:
                return listing  # no archive yet
            except OSError as exc:
                raise StorageUnavailable(f"cannot read archive root {root}: "
                                         f"{os_reason(exc)}") from None
            ids = [e.name for e in top if e.is_dir(follow_symlinks=False)]
            listing.strays = [_entry(e.name, e.stat(follow_symlinks=False)) for e in top
                              if not e.is_dir(follow_symlinks=False)]
        if only is not None:
            listing.folders = _marked(root, ids, only)
            return listing
        for item_id in ids:
            entries = _folder_entries(f"{root}/{item_id}")
            if entries:
                listing.folders[item_id] = entries
        return listing

    async def read(self, item_id: str, name: str) -> bytes | None:
        return await asyncio.to_thread(fs.read_small, self.root / item_id, name)

    async def digest(self, item_id: str, file: FileRecord, *, rehash: bool) -> Digest:
        # Always re-hashed, whatever *rehash* says: a disk keeps no checksum of its own.
        try:
            sha256 = await asyncio.to_thread(fs.sha256_file, self.root / item_id, file.name)
        except (OSError, StorageError) as exc:
            raise StorageError(fs.reason(exc)) from None
        return Digest(sha256=sha256)

    # ------------------------------------------------------------------ removing

    async def remove(self, item_id: str | None, entries: Sequence[Entry]) -> Removal:
        return await asyncio.to_thread(self._remove_sync, item_id, list(entries))

    def _remove_sync(self, item_id: str | None, entries: list[Entry]) -> Removal:
        result = Removal()
        path = self.root if item_id is None else self.root / item_id
        try:
            # The item folder never through a link (O_NOFOLLOW): swapped for one, it
            # raises StorageError and nothing behind it is touched.
            with fs.folder(path) if item_id is not None else fs.root_folder(path) as dir_fd:
                if dir_fd is None:
                    return result
                if item_id is not None and fs.is_regular(dir_fd, RECORD_NAME):
                    return result  # committed since it was listed: never touched
                for entry in entries:
                    problem = _unlink_if_unchanged(dir_fd, entry)
                    if problem == "":
                        result.removed.append(entry)
                    elif problem is not None:
                        result.failures.append(f"cannot remove {path / entry.name}: {problem}")
        except StorageError:
            return result
        except OSError as exc:
            result.failures.append(f"cannot remove from {path}: {os_reason(exc)}")
            return result
        if item_id is not None and result.removed and not result.failures:
            try:
                os.rmdir(path)  # only if left empty; rmdir never follows a link
                result.folder = True
            except OSError:
                pass
        return result

    # ------------------------------------------------------------------ pages

    async def publish(self, name: str, data: bytes, *, content_type: str) -> None:
        # A disk keeps no content type: a web server tells it from the name.
        await asyncio.to_thread(self._publish_sync, name, data)

    def _publish_sync(self, name: str, data: bytes) -> None:
        path = self.root / name
        try:
            with fs.root_folder(self.root) as dir_fd:
                if dir_fd is None:
                    raise StorageError(f"cannot write {path}: no archive root {self.root}")
                # A temporary (.index.html.tmp), fsync, rename: a reader (a browser, a
                # sync) sees the old page or the new one. A link planted under the
                # name is replaced, never written through.
                fs.write_atomic(dir_fd, name, data)
                os.fsync(dir_fd)
        except OSError as exc:
            raise fs.write_error(path, exc) from None

    def where(self, item_id: str | None, entry: Entry) -> str:
        folder = self.root if item_id is None else self.root / item_id
        return str(folder / entry.name)


def _unlink_if_unchanged(dir_fd: int, entry: Entry) -> str | None:
    """Unlink *entry* if it is still the regular file listed: "" when done, None when it
    changed or went (left alone), else why it could not be removed."""
    try:
        info = os.stat(entry.name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return os_reason(exc)
    if not stat.S_ISREG(info.st_mode) or _tag(info) != entry.tag:
        return None
    try:
        os.unlink(entry.name, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return os_reason(exc)
    return ""


def _marked(root: str, ids: list[str], only: str) -> dict[str, Mapping[str, Entry]]:
    """The folders of *ids* under *root* (see :meth:`LocalBackend.listing` with ``only``):
    those holding a regular file *only* with one entry of that name (shared, without size,
    time or tag), the others that exist with all theirs. The skip check's loop over a
    manifest of 200,000 ids: kept tight - no call per id beyond the two ``lstat`` (a
    folder that is absent costs one)."""
    folders: dict[str, Mapping[str, Entry]] = {}
    # One read-only mapping for every folder holding the marker: a manifest's ids make no
    # object each (200,000 ids with 20,000 of them committed: no 40,000 containers for
    # the garbage collector to walk, among the manifest's 200,000 items).
    marked = MappingProxyType({only: Entry(only, Kind.FILE)})
    lstat, is_dir, is_regular = os.lstat, stat.S_ISDIR, stat.S_ISREG
    for item_id in ids:
        path = f"{root}/{item_id}"
        try:
            if not is_dir(lstat(path).st_mode):
                continue  # a link or a file named like an id: no folder
        except OSError:
            continue  # absent: by far the most common case of a manifest's ids
        try:
            found: os.stat_result | None = lstat(f"{path}/{only}")
        except OSError:
            found = None
        if found is not None and is_regular(found.st_mode):
            folders[item_id] = marked
        elif entries := _folder_entries(path):
            folders[item_id] = entries  # rare: a folder without the marker
    return folders


def _folder_entries(path: str) -> dict[str, Entry] | None:
    """The entries of the item folder *path*; None if it is absent or not a folder (a
    link). Ids name one folder each: the manifest checked them long before."""
    try:
        dir_fd = os.open(path, fs.DIR_FLAGS)  # O_NOFOLLOW: a link is no folder
    except OSError:
        return None
    try:
        with os.scandir(dir_fd) as found_entries:
            return {e.name: _entry(e.name, e.stat(follow_symlinks=False))
                    for e in found_entries}
    except OSError:
        return None
    finally:
        os.close(dir_fd)


def _entry(name: str, info: os.stat_result) -> Entry:
    mode = info.st_mode
    kind = Kind.FILE if stat.S_ISREG(mode) else Kind.FOLDER if stat.S_ISDIR(mode) \
        else Kind.OTHER
    return Entry(name, kind, info.st_size if kind is Kind.FILE else 0, info.st_mtime,
                 _tag(info))


def _tag(info: os.stat_result) -> str:
    return f"{info.st_ino}:{info.st_mtime_ns}:{info.st_size}"
