"""The local-disk backend: an archive under ``<root>/<video_model_id>/``.

Writing goes through :mod:`.writer` (one item, its one-hop commit) and :mod:`.sink` (one
file and its sidecar); every file-system access below the root through :mod:`.fs`
(never through a symbolic link); the run lock is a ``flock`` (:mod:`.flock`).
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..._os import os_reason
from ...errors import StorageError, StorageUnavailable
from ...lock import NO_FENCE, Fence
from ..base import NOT_A_FILE, GcResult
from ..names import RECORD_NAME, sidecar_name, temp_name
from . import fs
from .flock import LocalLock
from .writer import LocalItemWriter

LOCK_NAME = ".archiver.lock"


class LocalStorage:
    """Archive under ``root/<video_model_id>/``."""

    #: An interrupted file keeps its bytes and sidecar for the next attempt to resume.
    resumable = True

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.description = str(self.root)

    def default_lock_path(self) -> Path:
        """``<root>/.archiver.lock``: the lock lives with the archive it guards."""
        return self.root / LOCK_NAME

    def run_lock(self, name: str, *, ttl: float, what: str,
                 on_lost: Callable[[str], None] | None = None,
                 command: str = "run") -> LocalLock:
        """A ``flock`` on ``<root>/.archiver.lock`` (a shard's: ``.archiver.shard-2-of-4.lock``),
        with the layout check beside it (:class:`~.flock.LocalLock`).

        Disks are not shared between hosts here, so a file lock keeps every other run
        out; it cannot be lost while held (*ttl* and *on_lost* do not apply).
        """
        return LocalLock(self.default_lock_path(), name, what, command)

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

    async def archived(self, ids: Iterable[str]) -> set[str]:
        ids = list(ids)
        # lstat on str paths, not pathlib: 5x faster (a manifest may hold 200,000 ids),
        # and a planted link never passes for an archived item.
        root = str(self.root)
        return await asyncio.to_thread(
            lambda: {i for i in ids if _committed(f"{root}/{i}")}
        )

    def item(self, video_model_id: str) -> LocalItemWriter:
        return LocalItemWriter(self.root / video_model_id)

    # ------------------------------------------------------- reading (verify, status)

    async def list_archived(self) -> list[str]:
        def scan() -> list[str]:
            try:
                with os.scandir(self.root) as entries:
                    names = [e.name for e in entries]
            except OSError:
                return []
            return sorted(n for n in names if _committed(self.root / n))

        return await asyncio.to_thread(scan)

    async def read_record(self, video_model_id: str) -> bytes | None:
        return await asyncio.to_thread(fs.read_small, self.root / video_model_id, RECORD_NAME)

    async def list_files(self, video_model_id: str) -> dict[str, int]:
        """Final names in the item folder: regular files with their sizes, links and
        other odd entries with :data:`~archiver.verify.NOT_A_FILE` (never followed)."""
        def scan() -> dict[str, int]:
            try:
                with fs.folder(self.root / video_model_id) as dir_fd:
                    return {} if dir_fd is None else _list_final(dir_fd)
            except (OSError, StorageError):
                return {}

        return await asyncio.to_thread(scan)

    async def item_states(self, ids: Iterable[str]) -> dict[str, str]:
        def scan() -> dict[str, str]:
            states: dict[str, str] = {}
            for item_id in ids:
                folder = self.root / item_id
                if _committed(folder):
                    states[item_id] = "archived"
                elif _has_entries(folder):
                    states[item_id] = "partial"
                else:
                    states[item_id] = "absent"  # also an item folder that is a link
            return states

        return await asyncio.to_thread(scan)

    async def check_file(self, video_model_id: str, entry: dict[str, Any],
                         deep: bool) -> str | None:
        # Local files are always re-hashed: reading them back is the only check there is.
        try:
            digest = await asyncio.to_thread(
                fs.sha256_file, self.root / video_model_id, str(entry.get("name")))
        except (OSError, StorageError) as exc:
            return f"cannot read: {fs.reason(exc)}"
        if digest != entry.get("sha256"):
            return f"sha256 {digest}, archive.json says {entry.get('sha256')}"
        return None

    # ---------------------------------------------------------------- archiver gc
    # Self-contained (imports inside), so that it stays clear of the rest of the module.

    async def collect_garbage(self, ids: Iterable[str] | None, min_age: float,
                              dry_run: bool, fence: Fence = NO_FENCE) -> GcResult:
        """Remove the temporaries (``.NAME.part``, ``.NAME.part.json``, ``.NAME.tmp``) of
        ids without ``archive.json`` whose every entry is older than *min_age* seconds,
        then their folder if it is empty. Returns a :class:`~archiver.storage.base.GcResult`.

        Never follows a symlink: each id folder is opened with ``O_NOFOLLOW`` and its
        entries are looked at (``lstat``) and removed relative to that descriptor, so a
        folder or file swapped for a link can only make gc skip it. Only regular files
        with the archiver's own temporary names are removed; a committed item is never
        touched. The caller holds the run lock: no run on this root writes meanwhile
        (*fence* is asked before each item all the same).
        """
        wanted = None if ids is None else list(ids)
        return await asyncio.to_thread(self._collect_sync, wanted, min_age, dry_run, fence)

    def _collect_sync(self, ids: list[str] | None, min_age: float, dry_run: bool,
                      fence: Fence) -> GcResult:
        import time

        from ...manifest import ID_PATTERN

        result = GcResult()
        cutoff = time.time() - min_age
        try:
            root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            return result  # no archive yet: nothing to collect
        except OSError as exc:
            raise StorageUnavailable(f"cannot read archive root {self.root}: "
                                     f"{os_reason(exc)}") from None
        try:
            if ids is None:
                with os.scandir(root_fd) as entries:
                    ids = [e.name for e in entries if e.is_dir(follow_symlinks=False)]
            for item_id in sorted(set(ids)):
                if ID_PATTERN.fullmatch(item_id):
                    fence.confirm_sync()
                    self._collect_item(root_fd, item_id, cutoff, dry_run, result)
        finally:
            os.close(root_fd)
        return result

    def _collect_item(self, root_fd: int, item_id: str, cutoff: float, dry_run: bool,
                      result: Any) -> None:
        import stat

        from ...models import RESULT_FILES
        from ..base import INFO_NAME, SUMS_NAME, Garbage

        media = [name for _, name in RESULT_FILES]
        temporaries = {temp_name(n) for n in media} | {sidecar_name(n) for n in media} \
            | {f".{n}.tmp" for n in (INFO_NAME, SUMS_NAME, RECORD_NAME)}
        try:
            # O_NOFOLLOW: a symlink named like an id is not an item folder (ELOOP).
            fd = os.open(item_id, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                         | os.O_CLOEXEC, dir_fd=root_fd)
        except OSError:
            return  # absent, not a folder, or a link
        removed_all = True
        try:
            with os.scandir(fd) as scan:
                entries = {e.name: e.stat(follow_symlinks=False) for e in scan}
            if RECORD_NAME in entries:
                return  # committed: never touched
            garbage = [n for n, st in entries.items()
                       if n in temporaries and stat.S_ISREG(st.st_mode)]
            if not garbage:
                return
            if any(st.st_mtime >= cutoff for st in entries.values()):
                result.kept_recent.append(item_id)
                return
            for name in sorted(garbage):
                found = Garbage(str(self.root / item_id / name), entries[name].st_size, item_id)
                if not dry_run:
                    try:
                        os.unlink(name, dir_fd=fd)
                    except FileNotFoundError:
                        continue
                    except OSError as exc:
                        removed_all = False
                        result.failures.append(f"cannot remove {found.where}: {os_reason(exc)}")
                        continue
                result.removed.append(found)
        finally:
            os.close(fd)
        if not dry_run and removed_all:
            try:
                os.rmdir(item_id, dir_fd=root_fd)  # only succeeds if nothing else is left
            except OSError:
                return
            result.removed.append(Garbage(str(self.root / item_id), 0, item_id, kind="folder"))



def _committed(folder: str | Path) -> bool:
    """*folder* is a real folder (not a link) holding a regular ``archive.json``."""
    try:
        return (stat.S_ISDIR(os.lstat(folder).st_mode)
                and stat.S_ISREG(os.lstat(f"{folder}/{RECORD_NAME}").st_mode))
    except OSError:
        return False


def _has_entries(folder: Path) -> bool:
    try:
        with fs.folder(folder) as dir_fd:
            return dir_fd is not None and bool(os.listdir(dir_fd))
    except (OSError, StorageError):
        return False


def _list_final(dir_fd: int) -> dict[str, int]:
    files = {}
    with os.scandir(dir_fd) as entries:
        for entry in entries:
            if entry.name.startswith("."):
                continue  # temporaries (and the lock): not part of any record
            if entry.is_file(follow_symlinks=False):
                files[entry.name] = entry.stat(follow_symlinks=False).st_size
            elif not entry.is_dir(follow_symlinks=False):
                files[entry.name] = NOT_A_FILE  # a link or special file: reported, not followed
    return files

