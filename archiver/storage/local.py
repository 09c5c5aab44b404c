"""Local-disk storage: temp file, byte count check, fsync, rename, fsync the folder."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import aiofiles
import aiofiles.os

from ..config import os_reason
from ..errors import DownloadError, StorageUnavailable
from .base import RECORD_NAME

TEMP_SUFFIX = ".part"


def temp_name(name: str) -> str:
    """The temporary name a file has until it is complete: hidden, and marked partial."""
    return f".{name}{TEMP_SUFFIX}"


class LocalStorage:
    """Archive under ``root/<video_model_id>/``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.description = str(self.root)

    async def open(self) -> None:
        await asyncio.to_thread(self._check_writable)

    def _check_writable(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            # A probe is the only way to know (access() lies for root and on read-only mounts).
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=".archiver-probe-"):
                pass
        except OSError as exc:
            raise StorageUnavailable(
                f"archive root {self.root} is not writable: {os_reason(exc)}"
            ) from None

    async def close(self) -> None:
        return None

    async def archived(self, ids: Iterable[str]) -> set[str]:
        ids = list(ids)
        return await asyncio.to_thread(
            lambda: {i for i in ids if (self.root / i / RECORD_NAME).is_file()}
        )

    def item(self, video_model_id: str) -> LocalItemWriter:
        return LocalItemWriter(self.root / video_model_id)


class LocalItemWriter:
    """Writes the files of one item folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._made_final: list[Path] = []
        self._sinks: list[LocalFileSink] = []

    async def _ensure_folder(self) -> None:
        try:
            await aiofiles.os.makedirs(self.folder, exist_ok=True)
        except OSError as exc:
            raise DownloadError(f"cannot create {self.folder}: {os_reason(exc)}") from None

    async def open_file(self, name: str) -> LocalFileSink:
        await self._ensure_folder()
        sink = LocalFileSink(self.folder / temp_name(name), self.folder / name, self._made_final)
        await sink.open()
        self._sinks.append(sink)
        return sink

    async def put_small(self, name: str, data: bytes) -> None:
        await self._ensure_folder()
        await _write_atomic(self.folder / name, data)
        self._made_final.append(self.folder / name)

    async def commit(self, record: bytes) -> None:
        await self._ensure_folder()
        await _write_atomic(self.folder / RECORD_NAME, record)
        self._made_final.clear()

    async def abort(self) -> None:
        for sink in self._sinks:
            await sink.abort()
        # Files made final by this writer are not part of any committed item: remove them,
        # so nothing uncommitted sits under a final name looking complete.
        for path in self._made_final:
            with contextlib.suppress(FileNotFoundError):
                await aiofiles.os.remove(path)
        self._made_final.clear()
        with contextlib.suppress(OSError):
            await aiofiles.os.rmdir(self.folder)  # only succeeds if we left it empty


class LocalFileSink:
    """One media file being written under its temporary name."""

    def __init__(self, temp: Path, final: Path, made_final: list[Path]) -> None:
        self.temp = temp
        self.final = final
        self._made_final = made_final
        self._file: Any = None
        self._written = 0

    async def open(self) -> None:
        try:
            self._file = await aiofiles.open(self.temp, "wb")
        except OSError as exc:
            raise DownloadError(f"cannot create {self.temp}: {os_reason(exc)}") from None

    async def write(self, chunk: bytes) -> None:
        try:
            await self._file.write(chunk)
        except OSError as exc:
            await self.abort()
            raise _write_error(self.final, exc) from None
        self._written += len(chunk)

    async def commit(self, size: int, sha256: str) -> dict[str, Any]:
        if self._written != size:
            await self.abort()
            raise DownloadError(f"{self.final.name}: wrote {self._written} bytes, expected {size}")
        try:
            await self._file.flush()
            await asyncio.to_thread(os.fsync, self._file.fileno())
            await self._file.close()
            self._file = None
            await aiofiles.os.replace(self.temp, self.final)
            await asyncio.to_thread(_fsync_dir, self.final.parent)
        except OSError as exc:
            await self.abort()
            raise _write_error(self.final, exc) from None
        self._made_final.append(self.final)
        return {}

    async def abort(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                await self._file.close()
            self._file = None
        with contextlib.suppress(FileNotFoundError):
            await aiofiles.os.remove(self.temp)


async def _write_atomic(path: Path, data: bytes) -> None:
    temp = path.with_name(f".{path.name}.tmp")
    try:
        async with aiofiles.open(temp, "wb") as f:
            await f.write(data)
            await f.flush()
            await asyncio.to_thread(os.fsync, f.fileno())
        await aiofiles.os.replace(temp, path)
        await asyncio.to_thread(_fsync_dir, path.parent)
    except OSError as exc:
        with contextlib.suppress(OSError):
            await aiofiles.os.remove(temp)
        raise _write_error(path, exc) from None


def _fsync_dir(path: Path) -> None:
    # Makes the rename itself durable; not every platform allows opening a directory.
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
