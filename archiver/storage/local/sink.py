"""One media file written under its temporary name (:class:`LocalFileSink`), with the
sidecar that lets a later attempt resume it (:func:`.partial.read_partial`).

Media files stay under their temporary names (``.video.mp4.part``) until the whole item
commits; each has a small sidecar (``.video.mp4.part.json``) saying where its bytes came
from, so a transfer cut short - by a network fault, Ctrl-C or a crash - is resumed by the
next attempt or the next run instead of starting from zero. Only bytes whose resume can
be guarded are kept (:func:`resumable`): a validator to send as If-Range, or the whole
file, checked.

Thread hops: a resumed file is opened in one hop; a fresh one is created with its first
bytes written. Each chunk after the first is written in one hop, and the file closes
with its fsync in one. A file that arrives in one chunk costs none of its own: the chunk
is held in memory, and the file is created, written, fsynced and renamed in the item's
commit hop (:mod:`.writer`), still durable before it is named; no sidecar is written
for it (one comes with the second chunk, or when ``abort(keep=True)`` keeps the bytes).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import threading
from pathlib import Path
from typing import Any, BinaryIO

from ...errors import StorageError
from ..base import Partial
from ..names import sidecar_name, temp_name
from . import fs
from .partial import resumable

#: Bytes written between two hints to the kernel to start writing back (Linux).
WRITEBACK_STEP = 32 * 1024 * 1024
_FADVISE = hasattr(os, "posix_fadvise") and hasattr(os, "POSIX_FADV_DONTNEED")


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
        #: The name the file gets at commit (:meth:`rename`); temporaries keep :attr:`name`.
        self.final_name = name
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
        #: A fresh file is created when its bytes are first written (:meth:`_file_sync`):
        #: one that arrives in one chunk is then created, written, fsynced and named in
        #: the item's commit hop, with no thread hop of its own.
        self._deferred = False
        self._creating = threading.Lock()

    async def open(self, resume: Partial | None, validator: str | None, source: str) -> None:
        self._meta = {"source": source, "validator": validator}
        if resume is None:
            # Created with the first bytes written (see _file_sync): a failure to create
            # it is reported there, as a write error of this file.
            self._deferred = True
            self.state = "open"
            return
        try:
            await asyncio.to_thread(self._open_sync, resume)
        except StorageError:
            await self.abort()
            raise
        except OSError as exc:
            await self.abort()
            raise fs.write_error(self.temp, exc) from None
        self.state = "open"

    def _open_sync(self, resume: Partial) -> None:
        with fs.folder(self.folder, create=True) as dir_fd:
            assert dir_fd is not None  # created
            # Not O_APPEND: on Linux pwrite() to such a file appends, wherever it
            # was asked to write. write() goes on from the end all the same.
            fd = fs.open_existing(dir_fd, temp_name(self.name), os.O_WRONLY,
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

    def _file_sync(self, dir_fd: int | None = None) -> BinaryIO:
        """The open temporary, created now if it was deferred (in a worker thread).

        Without resume the sidecar comes with the second chunk (see _write_sync), or
        when abort(keep=True) keeps the bytes: a file that arrives in one chunk never
        needs it."""
        if self._file is None and self._deferred:
            # Writes by position run in several threads at once: one creates the file.
            with self._creating:
                if self._file is None and self._deferred:
                    self._file = self._create_sync(dir_fd)
                    self._deferred = False
        assert self._file is not None
        return self._file

    def _create_sync(self, dir_fd: int | None) -> BinaryIO:
        if dir_fd is not None:
            return os.fdopen(fs.create_fresh(dir_fd, temp_name(self.name)), "wb")
        with fs.folder(self.folder, create=True) as made:
            assert made is not None  # created
            return os.fdopen(fs.create_fresh(made, temp_name(self.name)), "wb")

    def _write_sidecar(self, meta: dict[str, Any]) -> None:
        with fs.folder(self.folder) as dir_fd:
            if dir_fd is None:
                raise FileNotFoundError(errno.ENOENT, "the item folder is gone", str(self.folder))
            self._write_sidecar_at(dir_fd, meta)

    def _write_sidecar_at(self, dir_fd: int, meta: dict[str, Any]) -> None:
        fs.write_fresh(dir_fd, sidecar_name(self.name), json.dumps(meta).encode("utf-8"))
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
            raise fs.write_error(self.final, exc) from None

    def _write_held(self) -> None:
        held, self._held = self._held, None
        if held is not None and self._file is not None:
            self._file.write(held)

    def _write_sync(self, chunk: bytes) -> None:
        file = self._file_sync()
        self._write_held()
        file.write(chunk)
        self._written += len(chunk)
        self._writes += 1
        if self._writes == 2 and not self._has_sidecar:
            # More than one chunk: worth resuming after a crash, so say where it is from.
            self._write_sidecar(self._meta)
        if _FADVISE and self._written - self._written_back >= WRITEBACK_STEP:
            # Start writing back what we have so far: the final fsync then has little
            # left to wait for, and the archive does not crowd the page cache.
            file.flush()
            os.posix_fadvise(file.fileno(), self._written_back,
                             self._written - self._written_back, os.POSIX_FADV_DONTNEED)
            self._written_back = self._written

    async def write_at(self, offset: int, chunk: bytes) -> None:
        try:
            await asyncio.to_thread(self._write_at_sync, offset, chunk)
        except OSError as exc:
            await self.abort()
            raise fs.write_error(self.final, exc) from None
        # Counted here, in the event loop: several writes run in threads at once.
        self._written = max(self._written, offset + len(chunk))

    def _write_at_sync(self, offset: int, chunk: bytes) -> None:
        file = self._file_sync()
        view = memoryview(chunk)
        while view:
            done = os.pwrite(file.fileno(), view, offset)
            view, offset = view[done:], offset + done

    async def read_into(self, offset: int, buffer: memoryview) -> int:
        try:
            return await asyncio.to_thread(self._read_into_sync, offset, buffer)
        except OSError as exc:
            await self.abort()
            raise fs.write_error(self.final, exc) from None

    def _read_into_sync(self, offset: int, buffer: memoryview) -> int:
        if self._reader is None:
            self._file_sync()
            with fs.folder(self.folder) as dir_fd:
                if dir_fd is None:
                    raise FileNotFoundError(errno.ENOENT, "the item folder is gone",
                                            str(self.folder))
                self._reader = fs.open_existing(dir_fd, temp_name(self.name), os.O_RDONLY,
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
            raise fs.write_error(self.final, exc) from None

    def _mark_prefix_sync(self, size: int) -> None:
        # Durable before it is named: the sidecar never claims bytes a crash could lose.
        os.fdatasync(self._file_sync().fileno())
        self._meta["prefix"] = size
        self._write_sidecar(self._meta)

    def _close_reader(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            with contextlib.suppress(OSError):
                os.close(reader)

    def rename(self, name: str) -> None:
        self.final_name = name
        self.final = self.folder / name

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
            raise fs.write_error(self.final, exc) from None
        self.state = "complete"
        return {}

    def _commit_sync(self, size: int, sha256: str) -> None:
        file = self._file_sync()
        self._write_held()
        file.flush()
        os.fsync(file.fileno())
        file.close()
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
        if self._sync_at_commit and (self._file is not None or self._deferred):
            file = self._file_sync(dir_fd)
            self._write_held()
            file.flush()
            os.fsync(file.fileno())
            file.close()
            self._file = None
        # Replaces whatever has the final name - a planted link too - never its target.
        os.replace(temp_name(self.name), self.final_name, src_dir_fd=dir_fd,
                   dst_dir_fd=dir_fd)
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
        if file is None and keep and self._held is not None and self._deferred:
            with contextlib.suppress(OSError, StorageError):
                file = self._file_sync()  # created now, to keep the one chunk held
            self._file = None
        self._deferred = False
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
            with fs.folder(self.folder) as dir_fd:
                if dir_fd is not None:
                    self._keep_or_remove(dir_fd, keep)
        except StorageError:
            return  # the item folder is a link: nothing behind it is ours to touch

    def _keep_or_remove(self, dir_fd: int, keep: bool) -> None:
        # Kept only if a later resume can be guarded (_resumable): whatever the caller
        # asked, bytes without a validator go now.
        if keep and resumable(self._meta) and fs.regular_size(dir_fd, temp_name(self.name)) > 0:
            if not self._has_sidecar:
                with contextlib.suppress(OSError):
                    self._write_sidecar_at(dir_fd, self._meta)
            return  # kept, with its sidecar, for the next attempt to resume
        for name in (temp_name(self.name), sidecar_name(self.name)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=dir_fd)
