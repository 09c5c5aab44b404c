"""Local-disk storage: temp file, byte count check, fsync, rename, fsync the folder.

Media files stay under their temporary names (``.video.mp4.part``) until the whole item
commits; each has a small sidecar (``.video.mp4.part.json``) saying where its bytes came
from, so a transfer cut short - by a network fault, Ctrl-C or a crash - is resumed by the
next attempt or the next run instead of starting from zero.

Blocking file work runs in threads, grouped so that each step is one thread hop: opening a
file with its sidecar, each chunk, closing with its fsync, and the whole commit (metadata
files, renames, folder fsync, record). A hop per system call (aiofiles' way) cost more
than the work itself for 10,000 small items.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import aiofiles
import aiofiles.os

from ..config import os_reason
from ..errors import DownloadError, StorageUnavailable
from .base import RECORD_NAME, Partial

TEMP_SUFFIX = ".part"
SIDECAR_SUFFIX = ".part.json"
LOCK_NAME = ".archiver.lock"
_HASH_BLOCK = 1024 * 1024
#: Bytes written between two hints to the kernel to start writing back (Linux).
WRITEBACK_STEP = 32 * 1024 * 1024
_FADVISE = hasattr(os, "posix_fadvise") and hasattr(os, "POSIX_FADV_DONTNEED")


def temp_name(name: str) -> str:
    """The temporary name a file has until its item commits: hidden, marked partial."""
    return f".{name}{TEMP_SUFFIX}"


def sidecar_name(name: str) -> str:
    return f".{name}{SIDECAR_SUFFIX}"


class LocalStorage:
    """Archive under ``root/<video_model_id>/``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.description = str(self.root)

    @property
    def default_lock_file(self) -> Path:
        return self.root / LOCK_NAME

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
        # os.path on a str, not pathlib: 5x faster, and a manifest may hold 200,000 ids.
        root, isfile = str(self.root), os.path.isfile
        return await asyncio.to_thread(
            lambda: {i for i in ids if isfile(f"{root}/{i}/{RECORD_NAME}")}
        )

    def item(self, video_model_id: str) -> LocalItemWriter:
        return LocalItemWriter(self.root / video_model_id)

    # ------------------------------------------------------- reading (verify, status)

    async def list_archived(self) -> list[str]:
        def scan() -> list[str]:
            if not self.root.is_dir():
                return []
            return sorted(p.parent.name for p in self.root.glob(f"*/{RECORD_NAME}"))

        return await asyncio.to_thread(scan)

    async def read_record(self, video_model_id: str) -> bytes | None:
        try:
            async with aiofiles.open(self.root / video_model_id / RECORD_NAME, "rb") as f:
                return await f.read()
        except OSError:
            return None

    async def list_files(self, video_model_id: str) -> dict[str, int]:
        def scan() -> dict[str, int]:
            folder = self.root / video_model_id
            if not folder.is_dir():
                return {}
            return {p.name: p.stat().st_size for p in folder.iterdir()
                    if p.is_file() and not p.name.startswith(".")}

        return await asyncio.to_thread(scan)

    async def item_states(self, ids: Iterable[str]) -> dict[str, str]:
        def scan() -> dict[str, str]:
            states = {}
            for item_id in ids:
                folder = self.root / item_id
                if (folder / RECORD_NAME).is_file():
                    states[item_id] = "archived"
                elif folder.is_dir() and any(folder.iterdir()):
                    states[item_id] = "partial"
                else:
                    states[item_id] = "absent"
            return states

        return await asyncio.to_thread(scan)

    async def check_file(self, video_model_id: str, entry: dict[str, Any],
                         deep: bool) -> str | None:
        # Local files are always re-hashed: reading them back is the only check there is.
        path = self.root / video_model_id / str(entry.get("name"))
        try:
            digest = await asyncio.to_thread(_sha256_file, path)
        except OSError as exc:
            return f"cannot read: {os_reason(exc)}"
        if digest != entry.get("sha256"):
            return f"sha256 {digest}, archive.json says {entry.get('sha256')}"
        return None


class LocalItemWriter:
    """Writes the files of one item folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._sinks: list[LocalFileSink] = []
        self._small: list[Path] = []
        self._pending_small: list[tuple[str, bytes]] = []

    async def partial(self, name: str) -> Partial | None:
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

    async def commit(self, record: bytes) -> None:
        sinks = [s for s in self._sinks if s.state == "complete"]
        small, self._pending_small = self._pending_small, []
        # If the commit fails half-way, abort() removes the metadata files it wrote.
        self._small = [self.folder / name for name, _ in small]
        await asyncio.to_thread(_commit_sync, self.folder, sinks, small, record)
        for sink in sinks:
            sink.state = "final"
        self._small.clear()

    async def abort(self, keep: bool = False) -> None:
        for sink in self._sinks:
            await sink.abort(keep=keep)
        # Metadata files are not part of any committed item: remove them, so nothing
        # uncommitted sits under a final name looking complete.
        for path in self._small:
            with contextlib.suppress(FileNotFoundError):
                await aiofiles.os.remove(path)
        self._small.clear()
        with contextlib.suppress(OSError):
            await aiofiles.os.rmdir(self.folder)  # only succeeds if nothing was kept


class LocalFileSink:
    """One media file being written under its temporary name."""

    def __init__(self, folder: Path, name: str) -> None:
        self.final = folder / name
        self.temp = folder / temp_name(name)
        self.sidecar = folder / sidecar_name(name)
        #: open -> complete -> final, or -> aborted
        self.state = "new"
        self._file: Any = None
        self._written = 0
        self._written_back = 0
        self._writes = 0
        self._has_sidecar = False
        self._meta: dict[str, Any] = {}

    async def open(self, resume: Partial | None, validator: str | None, source: str) -> None:
        self._meta = {"source": source, "validator": validator}
        try:
            await asyncio.to_thread(self._open_sync, resume)
        except OSError as exc:
            await self.abort()
            raise _write_error(self.temp, exc) from None
        self.state = "open"

    def _open_sync(self, resume: Partial | None) -> None:
        self.temp.parent.mkdir(parents=True, exist_ok=True)
        if resume is not None:
            self._file = open(self.temp, "ab")  # noqa: SIM115 - closed in commit/abort
            self._written = self._file.tell()
            if self._written != resume.size:
                raise DownloadError(f"{self.temp} changed while resuming")
        else:
            self._file = open(self.temp, "wb")  # noqa: SIM115
        if resume is not None:
            self._write_sidecar(self._meta)
        # Otherwise the sidecar comes with the second chunk (see _write_sync), or when
        # abort(keep=True) keeps the bytes: a file that arrives in one chunk never needs it.

    def _write_sidecar(self, meta: dict[str, Any]) -> None:
        self.sidecar.write_text(json.dumps(meta), encoding="utf-8")
        self._has_sidecar = True

    async def write(self, chunk: bytes) -> None:
        try:
            await asyncio.to_thread(self._write_sync, chunk)
        except OSError as exc:
            await self.abort()
            raise _write_error(self.final, exc) from None

    def _write_sync(self, chunk: bytes) -> None:
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

    async def commit(self, size: int, sha256: str) -> dict[str, Any]:
        if self._written != size:
            await self.abort()
            raise DownloadError(f"{self.final.name}: wrote {self._written} bytes, expected {size}")
        try:
            await asyncio.to_thread(self._commit_sync, size, sha256)
        except OSError as exc:
            await self.abort()
            raise _write_error(self.final, exc) from None
        self.state = "complete"
        return {}

    def _commit_sync(self, size: int, sha256: str) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        if self._writes <= 1 and not self._has_sidecar:
            return  # one chunk: cheaper to fetch again than to record
        # Complete and checked: if the run stops before the item commits, the next
        # run can use this file as it is.
        self._write_sidecar({**self._meta, "complete": True, "size": size, "sha256": sha256})

    def make_final_sync(self) -> None:
        os.replace(self.temp, self.final)
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.sidecar)

    async def abort(self, keep: bool = False) -> None:
        # An earlier abort(keep=True) kept the bytes; abort(keep=False) still removes them.
        if self.state == "final" or (self.state == "aborted" and keep):
            return
        if self._file is not None:
            with contextlib.suppress(OSError):
                await asyncio.to_thread(self._file.close)
            self._file = None
        self.state = "aborted"
        if keep and self.temp.exists() and self.temp.stat().st_size > 0:
            if not self._has_sidecar:
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(self._write_sidecar, self._meta)
            return  # kept, with its sidecar, for the next attempt to resume
        for path in (self.temp, self.sidecar):
            with contextlib.suppress(FileNotFoundError):
                await aiofiles.os.remove(path)


def _read_partial(folder: Path, name: str) -> Partial | None:
    """The resumable state of *name* in *folder*, or None (and clean up what is useless)."""
    temp, sidecar = folder / temp_name(name), folder / sidecar_name(name)
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        size = temp.stat().st_size
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or size == 0:
        return None
    hasher = hashlib.sha256()
    head = b""
    try:
        with temp.open("rb") as f:
            while block := f.read(_HASH_BLOCK):
                if not head:
                    head = block[:4096]
                hasher.update(block)
    except OSError:
        return None
    complete = bool(meta.get("complete")) and meta.get("size") == size \
        and meta.get("sha256") == hasher.hexdigest()
    return Partial(name=name, size=size, validator=meta.get("validator"),
                   source=str(meta.get("source", "")), hasher=hasher, head=head,
                   complete=complete)


def _sha256_file(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_HASH_BLOCK):
            hasher.update(block)
    return hasher.hexdigest()


def _fsync_dir(path: Path) -> None:
    # Makes renames durable; not every platform allows opening a directory.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_error(path: Path, exc: OSError) -> DownloadError:
    if exc.errno == errno.ENOSPC:
        return DownloadError(f"no space left on device writing {path}")
    return DownloadError(f"cannot write {path}: {os_reason(exc)}")


def _commit_sync(folder: Path, sinks: list[LocalFileSink], small: list[tuple[str, bytes]],
                 record: bytes) -> None:
    """The whole commit in one thread hop: metadata files, renames, folder fsync, record."""
    path = folder
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in small:
            path = folder / name
            _write_atomic_sync(path, data)
        for sink in sinks:
            path = sink.final
            sink.make_final_sync()
        _fsync_dir(folder)
        # Last: from this moment the item counts as archived. Write-once, like S3's
        # If-None-Match: if another run committed this id first, its record stands.
        path = folder / RECORD_NAME
        _write_atomic_sync(path, record, replace=False)
        _fsync_dir(folder)
    except OSError as exc:
        raise _write_error(path, exc) from None


def _write_atomic_sync(path: Path, data: bytes, *, replace: bool = True) -> None:
    """Temp file, fsync, rename (or hard-link, keeping an existing *path*). The caller
    fsyncs the folder."""
    temp = path.with_name(f".{path.name}.tmp")
    try:
        with open(temp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(temp, path)
        else:
            with contextlib.suppress(FileExistsError):
                os.link(temp, path)
            os.remove(temp)
    except OSError:
        with contextlib.suppress(OSError):
            os.remove(temp)
        raise
