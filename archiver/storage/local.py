"""Local-disk storage: temp file, byte count check, fsync, rename, fsync the folder.

Media files stay under their temporary names (``.video.mp4.part``) until the whole item
commits; each has a small sidecar (``.video.mp4.part.json``) saying where its bytes came
from, so a transfer cut short - by a network fault, Ctrl-C or a crash - is resumed by the
next attempt or the next run instead of starting from zero. Whether an item that did not
commit keeps those bytes is decided once, by the scheduler, when it knows the item's
outcome: ``abort(keep=False)`` removes every temporary in the item folder.

Nothing below the root is trusted (the root itself may be a symbolic link: that is the
user's choice). Whoever can write into the root could plant symbolic links where a run
writes - at ``<root>/<id>``, at ``.video.mp4.part``, its sidecar, ``.info.json.tmp`` - to
make the run write, truncate or read files elsewhere. So the item folder is opened with
``O_NOFOLLOW`` (an item folder that is a link fails its item, and nothing is done through
it) and every file operation goes through that folder's descriptor (``openat``,
``renameat``, ``unlinkat``). A file made fresh is unlinked first, then created with
``O_CREAT | O_EXCL | O_NOFOLLOW``; an existing one (a partial to resume, a sidecar, a file
to verify) is opened with ``O_NOFOLLOW`` and must be a regular file. Renames onto a final
name replace whatever entry has that name, a planted link included, never its target.

Blocking file work runs in threads, grouped so that each step is one thread hop: opening a
file with its sidecar, each chunk, closing with its fsync, and the whole commit (metadata
files, renames, folder fsync, record). A hop per system call (aiofiles' way) cost more
than the work itself for 10,000 small items. A file that arrives in one chunk goes
further: the chunk is held in memory and written, fsynced and renamed in the item's
commit hop (still durable before it is named), so a small item costs two hops - open and
commit - and no hop at all is spent looking for a partial where there is no sidecar.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import json
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from .._os import os_reason
from ..errors import StorageError, StorageUnavailable
from ..lock import NO_FENCE, Fence, LocalLock
from .base import NOT_A_FILE, RECORD_NAME, GcResult, Partial, is_temporary

TEMP_SUFFIX = ".part"
SIDECAR_SUFFIX = ".part.json"
LOCK_NAME = ".archiver.lock"
_HASH_BLOCK = 1024 * 1024
#: A sidecar is a few hundred bytes; anything much larger was not written by us.
_SIDECAR_MAX = 64 * 1024
#: Bytes written between two hints to the kernel to start writing back (Linux).
WRITEBACK_STEP = 32 * 1024 * 1024
_FADVISE = hasattr(os, "posix_fadvise") and hasattr(os, "POSIX_FADV_DONTNEED")

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO planted under a file's name must fail the fstat check, not hang open().
_EXISTING_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def temp_name(name: str) -> str:
    """The temporary name a file has until its item commits: hidden, marked partial."""
    return f".{name}{TEMP_SUFFIX}"


def sidecar_name(name: str) -> str:
    return f".{name}{SIDECAR_SUFFIX}"


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
        with the layout check beside it (:class:`~archiver.lock.LocalLock`).

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
        return await asyncio.to_thread(_read_record, self.root / video_model_id)

    async def list_files(self, video_model_id: str) -> dict[str, int]:
        """Final names in the item folder: regular files with their sizes, links and
        other odd entries with :data:`~archiver.verify.NOT_A_FILE` (never followed)."""
        def scan() -> dict[str, int]:
            try:
                with _folder(self.root / video_model_id) as dir_fd:
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
                _sha256_file, self.root / video_model_id, str(entry.get("name")))
        except (OSError, StorageError) as exc:
            return f"cannot read: {_reason(exc)}"
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

        from ..manifest import ID_PATTERN

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

        from ..models import RESULT_FILES
        from .base import INFO_NAME, SUMS_NAME, Garbage

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
        return await asyncio.to_thread(_read_partial, self.folder, name)

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

    async def commit(self, record: bytes) -> bool:
        sinks = [s for s in self._sinks if s.state == "complete"]
        small, self._pending_small = self._pending_small, []
        # If the commit fails half-way, abort() removes the metadata files it wrote.
        self._small = [name for name, _ in small]
        ours = await asyncio.to_thread(_commit_sync, self.folder, sinks, small, record)
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


class LocalFileSink:
    """One media file being written under its temporary name.

    Written in order (:meth:`write`) or, for a file fetched over several connections, by
    position (:meth:`write_at`). In the second mode the sidecar records the contiguous,
    checked prefix (:meth:`mark_prefix`, after an ``fdatasync``): a run that stops
    however it stops resumes after that prefix, and whatever lies past it is cut off.
    """

    supports_positional_writes = True

    def __init__(self, folder: Path, name: str) -> None:
        self.folder = folder
        self.name = name
        self.final = folder / name
        self.temp = folder / temp_name(name)
        self.sidecar = folder / sidecar_name(name)
        #: open -> complete -> final, or -> aborted
        self.state = "new"
        self._file: BinaryIO | None = None
        self._written = 0
        self._written_back = 0
        self._writes = 0
        self._has_sidecar = False
        self._meta: dict[str, Any] = {}
        #: A read-only descriptor of the temporary, opened by the first read_into().
        self._reader: int | None = None
        #: The first chunk, held until a second comes or the item commits: a file that
        #: arrives in one chunk (most subtitles, small videos) then costs no thread hop
        #: of its own - it is written, fsynced and renamed in the item's commit hop.
        self._held: bytes | None = None
        #: commit() left the flush + fsync + close to the item's commit (one chunk).
        self._sync_at_commit = False

    async def open(self, resume: Partial | None, validator: str | None, source: str) -> None:
        self._meta = {"source": source, "validator": validator}
        try:
            await asyncio.to_thread(self._open_sync, resume)
        except StorageError:
            await self.abort()
            raise
        except OSError as exc:
            await self.abort()
            raise _write_error(self.temp, exc) from None
        self.state = "open"

    def _open_sync(self, resume: Partial | None) -> None:
        with _folder(self.folder, create=True) as dir_fd:
            assert dir_fd is not None  # created
            if resume is not None:
                # Not O_APPEND: on Linux pwrite() to such a file appends, wherever it
                # was asked to write. write() goes on from the end all the same.
                fd = _open_existing(dir_fd, temp_name(self.name), os.O_WRONLY,
                                    single_link=True)
                self._file = os.fdopen(fd, "wb")  # an fd is never truncated by fdopen
                self._written = os.fstat(fd).st_size
                if resume.cut and self._written > resume.size:
                    # Bytes past the checked prefix of a segmented download: not trusted.
                    os.ftruncate(fd, resume.size)
                    self._written = resume.size
                if self._written != resume.size:
                    raise StorageError(f"{self.temp} changed while resuming")
                self._file.seek(resume.size)
                self._write_sidecar_at(dir_fd, self._meta)
            else:
                self._file = os.fdopen(_create_fresh(dir_fd, temp_name(self.name)), "wb")
        # Without resume the sidecar comes with the second chunk (see _write_sync), or when
        # abort(keep=True) keeps the bytes: a file that arrives in one chunk never needs it.

    def _write_sidecar(self, meta: dict[str, Any]) -> None:
        with _folder(self.folder) as dir_fd:
            if dir_fd is None:
                raise FileNotFoundError(errno.ENOENT, "the item folder is gone", str(self.folder))
            self._write_sidecar_at(dir_fd, meta)

    def _write_sidecar_at(self, dir_fd: int, meta: dict[str, Any]) -> None:
        _write_fresh(dir_fd, sidecar_name(self.name), json.dumps(meta).encode("utf-8"))
        self._has_sidecar = True

    async def write(self, chunk: bytes) -> None:
        if self._writes == 0 and self._held is None:
            self._held = chunk
            self._written += len(chunk)
            self._writes = 1
            return
        try:
            await asyncio.to_thread(self._write_sync, chunk)
        except OSError as exc:
            await self.abort()
            raise _write_error(self.final, exc) from None

    def _write_held(self) -> None:
        held, self._held = self._held, None
        if held is not None and self._file is not None:
            self._file.write(held)

    def _write_sync(self, chunk: bytes) -> None:
        assert self._file is not None
        self._write_held()
        self._file.write(chunk)
        self._written += len(chunk)
        self._writes += 1
        if self._writes == 2 and not self._has_sidecar:
            # More than one chunk: worth resuming after a crash, so say where it is from.
            self._write_sidecar(self._meta)
        if _FADVISE and self._written - self._written_back >= WRITEBACK_STEP:
            # Start writing back what we have so far: the final fsync then has little
            # left to wait for, and the archive does not crowd the page cache.
            self._file.flush()
            os.posix_fadvise(self._file.fileno(), self._written_back,
                             self._written - self._written_back, os.POSIX_FADV_DONTNEED)
            self._written_back = self._written

    async def write_at(self, offset: int, chunk: bytes) -> None:
        try:
            await asyncio.to_thread(self._write_at_sync, offset, chunk)
        except OSError as exc:
            await self.abort()
            raise _write_error(self.final, exc) from None
        # Counted here, in the event loop: several writes run in threads at once.
        self._written = max(self._written, offset + len(chunk))

    def _write_at_sync(self, offset: int, chunk: bytes) -> None:
        assert self._file is not None
        view = memoryview(chunk)
        while view:
            done = os.pwrite(self._file.fileno(), view, offset)
            view, offset = view[done:], offset + done

    async def read_into(self, offset: int, buffer: memoryview) -> int:
        try:
            return await asyncio.to_thread(self._read_into_sync, offset, buffer)
        except OSError as exc:
            await self.abort()
            raise _write_error(self.final, exc) from None

    def _read_into_sync(self, offset: int, buffer: memoryview) -> int:
        if self._reader is None:
            with _folder(self.folder) as dir_fd:
                if dir_fd is None:
                    raise FileNotFoundError(errno.ENOENT, "the item folder is gone",
                                            str(self.folder))
                self._reader = _open_existing(dir_fd, temp_name(self.name), os.O_RDONLY,
                                              single_link=True)
        done = os.preadv(self._reader, [buffer], offset)
        end = offset + done
        if _FADVISE and end - self._written_back >= WRITEBACK_STEP:
            # Read back and hashed: start writing it back and let it leave the page cache.
            os.posix_fadvise(self._reader, self._written_back, end - self._written_back,
                             os.POSIX_FADV_DONTNEED)
            self._written_back = end
        return done

    async def mark_prefix(self, size: int) -> None:
        try:
            await asyncio.to_thread(self._mark_prefix_sync, size)
        except OSError as exc:
            await self.abort()
            raise _write_error(self.final, exc) from None

    def _mark_prefix_sync(self, size: int) -> None:
        assert self._file is not None
        # Durable before it is named: the sidecar never claims bytes a crash could lose.
        os.fdatasync(self._file.fileno())
        self._meta["prefix"] = size
        self._write_sidecar(self._meta)

    def _close_reader(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            with contextlib.suppress(OSError):
                os.close(reader)

    async def commit(self, size: int, sha256: str) -> dict[str, Any]:
        if self._written != size:
            await self.abort()
            raise StorageError(f"{self.final.name}: wrote {self._written} bytes, expected {size}")
        if self._writes <= 1 and not self._has_sidecar:
            # One chunk and nothing recorded for a resume: writing it, the fsync and the
            # close wait for the item's commit hop, where they come before the rename -
            # still durable before it is named, one thread hop instead of three.
            self._sync_at_commit = True
            self.state = "complete"
            return {}
        try:
            await asyncio.to_thread(self._commit_sync, size, sha256)
        except (OSError, StorageError) as exc:
            await self.abort()
            if isinstance(exc, StorageError):
                raise
            raise _write_error(self.final, exc) from None
        self.state = "complete"
        return {}

    def _commit_sync(self, size: int, sha256: str) -> None:
        assert self._file is not None
        self._write_held()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        self._close_reader()
        if self._writes <= 1 and not self._has_sidecar:
            return  # one chunk: cheaper to fetch again than to record
        if "prefix" in self._meta:
            self._meta["prefix"] = size  # all of it is checked now
        # Complete and checked: if the run stops before the item commits, the next
        # run can use this file as it is (no request, so no validator needed).
        self._meta = {**self._meta, "complete": True, "size": size, "sha256": sha256}
        self._write_sidecar(self._meta)

    def make_final_sync(self, dir_fd: int) -> None:
        if self._sync_at_commit and self._file is not None:
            self._write_held()
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
        # Replaces whatever has the final name - a planted link too - never its target.
        os.replace(temp_name(self.name), self.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(sidecar_name(self.name), dir_fd=dir_fd)

    async def abort(self, keep: bool = False) -> None:
        # An earlier abort(keep=True) kept the bytes; abort(keep=False) still removes them.
        if self.state == "final" or (self.state == "aborted" and keep):
            return
        file, self._file = self._file, None
        self.state = "aborted"
        await asyncio.to_thread(self._abort_sync, file, keep)

    def _abort_sync(self, file: BinaryIO | None, keep: bool) -> None:
        self._close_reader()
        held, self._held = self._held, None
        if file is not None and keep and held is not None:
            with contextlib.suppress(OSError):
                file.write(held)  # a good prefix: kept for a resume like any other bytes
        if file is not None:
            with contextlib.suppress(OSError):
                if keep and "prefix" in self._meta:
                    # Written by position: only the prefix marked checked is worth keeping.
                    file.flush()
                    os.ftruncate(file.fileno(), self._meta["prefix"])
            with contextlib.suppress(OSError):
                file.close()
        try:
            with _folder(self.folder) as dir_fd:
                if dir_fd is not None:
                    self._keep_or_remove(dir_fd, keep)
        except StorageError:
            return  # the item folder is a link: nothing behind it is ours to touch

    def _keep_or_remove(self, dir_fd: int, keep: bool) -> None:
        # Kept only if a later resume can be guarded (_resumable): whatever the caller
        # asked, bytes without a validator go now.
        if keep and _resumable(self._meta) and _regular_size(dir_fd, temp_name(self.name)) > 0:
            if not self._has_sidecar:
                with contextlib.suppress(OSError):
                    self._write_sidecar_at(dir_fd, self._meta)
            return  # kept, with its sidecar, for the next attempt to resume
        for name in (temp_name(self.name), sidecar_name(self.name)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=dir_fd)


# ----------------------------------------------------------- safe file system access

@contextlib.contextmanager
def _folder(folder: Path, *, create: bool = False) -> Iterator[int | None]:
    """A descriptor of the item folder, never through a symbolic link; None if absent.

    With *create*, the folder (and the root above it) is made first. Raises
    :class:`StorageError` naming the path when ``<root>/<id>`` is a link or not a folder.
    """
    if create:
        folder.parent.mkdir(parents=True, exist_ok=True)  # the root: the user's, may be a link
        with contextlib.suppress(FileExistsError):
            os.mkdir(folder)  # mkdir never follows a link at the final name
    try:
        fd = os.open(folder, _DIR_FLAGS)
    except FileNotFoundError:
        if create:
            raise
        fd = None
    except OSError as exc:
        if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
            raise
        kind = "a symbolic link" if folder.is_symlink() else "not a directory"
        raise StorageError(f"item folder {folder} is {kind}: refusing to use it") from None
    try:
        yield fd
    finally:
        if fd is not None:
            os.close(fd)


def _create_fresh(dir_fd: int, name: str) -> int:
    """A new empty file *name*: whatever had the name (a stale temporary, a planted link)
    is unlinked first, never written through."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name, dir_fd=dir_fd)
    return os.open(name, _CREATE_FLAGS, 0o644, dir_fd=dir_fd)


def _write_fresh(dir_fd: int, name: str, data: bytes, *, fsync: bool = False) -> None:
    with os.fdopen(_create_fresh(dir_fd, name), "wb") as f:
        f.write(data)
        if fsync:
            f.flush()
            os.fsync(f.fileno())


def _open_existing(dir_fd: int, name: str, flags: int, *, single_link: bool = False) -> int:
    """Open *name* if it is a regular file - not a link, FIFO or folder - else OSError.

    With *single_link*, a file with other hard links is refused too: appending to it
    would write to whatever else it is.
    """
    if "/" in name or name in ("", ".", ".."):
        raise OSError(errno.EINVAL, "not a file name")  # a name from archive.json
    fd = os.open(name, flags | _EXISTING_FLAGS, dir_fd=dir_fd)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        if single_link and info.st_nlink != 1:
            raise OSError(errno.EMLINK, "has other hard links")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _regular_size(dir_fd: int, name: str) -> int:
    """The size of *name* if it is a regular file, else 0 (a link is not followed)."""
    try:
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return 0
    return info.st_size if stat.S_ISREG(info.st_mode) else 0


def _is_regular(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except FileNotFoundError:
        return False


def _committed(folder: str | Path) -> bool:
    """*folder* is a real folder (not a link) holding a regular ``archive.json``."""
    try:
        return (stat.S_ISDIR(os.lstat(folder).st_mode)
                and stat.S_ISREG(os.lstat(f"{folder}/{RECORD_NAME}").st_mode))
    except OSError:
        return False


def _has_entries(folder: Path) -> bool:
    try:
        with _folder(folder) as dir_fd:
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


def _read_record(folder: Path) -> bytes | None:
    try:
        with _folder(folder) as dir_fd:
            if dir_fd is None:
                return None
            with os.fdopen(_open_existing(dir_fd, RECORD_NAME, os.O_RDONLY), "rb") as f:
                return f.read()
    except (OSError, StorageError):
        return None


def _read_partial(folder: Path, name: str) -> Partial | None:
    """The resumable state of *name* in *folder*, or None (nothing usable is there).

    Raises :class:`StorageError` if the item folder is a link. A partial or sidecar
    that is a link is ignored (the new attempt replaces it), never read through.
    """
    with _folder(folder) as dir_fd:
        if dir_fd is None:
            return None
        try:
            with os.fdopen(_open_existing(dir_fd, sidecar_name(name), os.O_RDONLY,
                                          single_link=True), "rb") as f:
                meta = json.loads(f.read(_SIDECAR_MAX))
            temp = os.fdopen(_open_existing(dir_fd, temp_name(name), os.O_RDONLY,
                                            single_link=True), "rb")
        except (OSError, ValueError):
            return None
    with temp:
        try:
            size = os.fstat(temp.fileno()).st_size
            if not isinstance(meta, dict) or not _resumable(meta):
                return None  # e.g. kept by an earlier version without a validator
            on_disk = size
            prefix = meta.get("prefix")
            if prefix is not None:
                # Written by position: only the prefix marked checked counts.
                if not isinstance(prefix, int) or isinstance(prefix, bool) or prefix < 0:
                    return None
                size = min(size, prefix)
            if size == 0:
                return None
            hasher = hashlib.sha256()
            head = b""
            left = size
            while left and (block := temp.read(min(_HASH_BLOCK, left))):
                if not head:
                    head = block[:4096]
                hasher.update(block)
                left -= len(block)
        except OSError:
            return None
    complete = bool(meta.get("complete")) and meta.get("size") == size \
        and meta.get("sha256") == hasher.hexdigest()
    if not (complete or meta.get("validator")):
        return None  # a "complete" that is not: nothing could guard its resume
    return Partial(name=name, size=size, validator=meta.get("validator"),
                   source=str(meta.get("source", "")), hasher=hasher, head=head,
                   complete=complete and on_disk == size, cut=on_disk > size)


def _resumable(meta: dict[str, Any]) -> bool:
    """Whether bytes a sidecar describes may be kept for a later attempt: only if their
    resume can be guarded - a validator to send as If-Range - or needs no request at all
    (the whole file, checked). Without either, a Range request could splice two
    versions of the file: such bytes are dropped (:meth:`LocalFileSink.abort`) and never
    resumed (:func:`_read_partial`)."""
    validator = meta.get("validator")
    return (isinstance(validator, str) and validator != "") or meta.get("complete") is True


def _sha256_file(folder: Path, name: str) -> str:
    hasher = hashlib.sha256()
    with _folder(folder) as dir_fd:
        if dir_fd is None:
            raise FileNotFoundError(errno.ENOENT, "no item folder", str(folder))
        with os.fdopen(_open_existing(dir_fd, name, os.O_RDONLY), "rb") as f:
            while block := f.read(_HASH_BLOCK):
                hasher.update(block)
    return hasher.hexdigest()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno == errno.ELOOP:
        return "a symbolic link (not followed)"
    if isinstance(exc, StorageError):
        return str(exc)
    return os_reason(exc)


def _write_error(path: Path, exc: OSError) -> StorageError:
    if exc.errno == errno.ENOSPC:
        return StorageError(f"no space left on device writing {path}")
    return StorageError(f"cannot write {path}: {_reason(exc)}")


# ---------------------------------------------------------------- commit and abort

def _commit_sync(folder: Path, sinks: list[LocalFileSink], small: list[tuple[str, bytes]],
                 record: bytes) -> bool:
    """The whole commit in one thread hop: metadata files, renames, folder fsync, record.

    False, touching nothing, if the item has a record already (another run committed it).
    """
    path = folder
    try:
        with _folder(folder, create=True) as dir_fd:
            assert dir_fd is not None  # created
            if _is_regular(dir_fd, RECORD_NAME):
                return False
            for name, data in small:
                path = folder / name
                _write_atomic_sync(dir_fd, name, data)
            for sink in sinks:
                path = sink.final
                sink.make_final_sync(dir_fd)
            os.fsync(dir_fd)
            # Last: from this moment the item counts as archived. Write-once, like S3's
            # If-None-Match: if another run committed this id first, its record stands.
            path = folder / RECORD_NAME
            ours = _write_atomic_sync(dir_fd, RECORD_NAME, record, replace=False)
            os.fsync(dir_fd)
            # Temporaries of files this item no longer has (an earlier run's partial of
            # a subtitle Akool stopped offering): a committed folder keeps none.
            with contextlib.suppress(OSError):
                _remove_temporaries(dir_fd)
            return ours
    except OSError as exc:
        raise _write_error(path, exc) from None


def _discard_sync(folder: Path, small: list[str], keep: bool) -> None:
    """End an uncommitted item: remove the metadata files it wrote and, unless *keep*,
    every temporary in its folder; then the folder itself if that left it empty."""
    try:
        with _folder(folder) as dir_fd:
            if dir_fd is None:
                return
            if _is_regular(dir_fd, RECORD_NAME):
                return  # committed after all (another run, racing): its files stand
            for name in small:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name, dir_fd=dir_fd)
            if not keep:
                _remove_temporaries(dir_fd)
    except StorageError:
        return  # the item folder is a link: nothing behind it is ours to touch
    with contextlib.suppress(OSError):
        os.rmdir(folder)  # only succeeds if nothing was kept; never follows a link


def _remove_temporaries(dir_fd: int) -> None:
    for name in os.listdir(dir_fd):
        if is_temporary(name):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=dir_fd)  # a planted link goes, not its target


def _write_atomic_sync(dir_fd: int, name: str, data: bytes, *, replace: bool = True) -> bool:
    """Temp file, fsync, rename (or hard-link, keeping an existing regular *name*: then
    False). The caller fsyncs the folder."""
    temp = f".{name}.tmp"
    try:
        _write_fresh(dir_fd, temp, data, fsync=True)
        if replace:
            os.replace(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            return True
        linked = _link_unless_regular(dir_fd, temp, name)
        os.unlink(temp, dir_fd=dir_fd)
        return linked
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temp, dir_fd=dir_fd)
        raise


def _link_unless_regular(dir_fd: int, temp: str, name: str) -> bool:
    """Hard-link *temp* as *name*: True. A regular file already there stands (another
    run's record): False. A link or special file planted there is replaced."""
    try:
        os.link(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
    except FileExistsError:
        if _is_regular(dir_fd, name):
            return False
        os.unlink(name, dir_fd=dir_fd)
        os.link(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
    return True
