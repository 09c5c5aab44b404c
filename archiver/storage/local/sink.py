"""One media file written under its temporary name (:class:`LocalFileSink`), with the
sidecar that lets a later attempt resume it (:func:`read_partial`).

Media files stay under their temporary names (``.video.mp4.part``) until the whole item
commits; each has a small sidecar (``.video.mp4.part.json``) saying where its bytes came
from, so a transfer cut short - by a network fault, Ctrl-C or a crash - is resumed by the
next attempt or the next run instead of starting from zero. Only bytes whose resume can
be guarded are kept (:func:`resumable`): a validator to send as If-Range, or the whole
file, checked.

Thread hops: a sink opens its file (and resumes it) in one hop, writes each chunk in one,
and closes with its fsync in one. A file that arrives in one chunk costs none of its own:
the chunk is held in memory and written, fsynced and renamed in the item's commit hop
(:mod:`.writer`), still durable before it is named; and no sidecar is written for it
(one comes with the second chunk, or when ``abort(keep=True)`` keeps the bytes).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import json
import os
from pathlib import Path
from typing import Any, BinaryIO

from ...errors import StorageError
from ..base import Partial
from ..names import sidecar_name, temp_name
from . import fs

#: A sidecar is a few hundred bytes; anything much larger was not written by us.
_SIDECAR_MAX = 64 * 1024
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

    async def open(self, resume: Partial | None, validator: str | None, source: str) -> None:
        self._meta = {"source": source, "validator": validator}
        try:
            await asyncio.to_thread(self._open_sync, resume)
        except StorageError:
            await self.abort()
            raise
        except OSError as exc:
            await self.abort()
            raise fs.write_error(self.temp, exc) from None
        self.state = "open"

    def _open_sync(self, resume: Partial | None) -> None:
        with fs.folder(self.folder, create=True) as dir_fd:
            assert dir_fd is not None  # created
            if resume is not None:
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
            else:
                self._file = os.fdopen(fs.create_fresh(dir_fd, temp_name(self.name)), "wb")
        # Without resume the sidecar comes with the second chunk (see _write_sync), or when
        # abort(keep=True) keeps the bytes: a file that arrives in one chunk never needs it.

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
            raise fs.write_error(self.final, exc) from None
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
            raise fs.write_error(self.final, exc) from None

    def _read_into_sync(self, offset: int, buffer: memoryview) -> int:
        if self._reader is None:
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




def read_partial(folder: Path, name: str) -> Partial | None:
    """The resumable state of *name* in *folder*, or None (nothing usable is there).

    Raises :class:`StorageError` if the item folder is a link. A partial or sidecar
    that is a link is ignored (the new attempt replaces it), never read through.
    """
    with fs.folder(folder) as dir_fd:
        if dir_fd is None:
            return None
        try:
            with os.fdopen(fs.open_existing(dir_fd, sidecar_name(name), os.O_RDONLY,
                                          single_link=True), "rb") as f:
                meta = json.loads(f.read(_SIDECAR_MAX))
            temp = os.fdopen(fs.open_existing(dir_fd, temp_name(name), os.O_RDONLY,
                                            single_link=True), "rb")
        except (OSError, ValueError):
            return None
    with temp:
        try:
            size = os.fstat(temp.fileno()).st_size
            if not isinstance(meta, dict) or not resumable(meta):
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
            while left and (block := temp.read(min(fs.HASH_BLOCK, left))):
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


def resumable(meta: dict[str, Any]) -> bool:
    """Whether bytes a sidecar describes may be kept for a later attempt: only if their
    resume can be guarded - a validator to send as If-Range - or needs no request at all
    (the whole file, checked). Without either, a Range request could splice two
    versions of the file: such bytes are dropped (:meth:`LocalFileSink.abort`) and never
    resumed (:func:`read_partial`)."""
    validator = meta.get("validator")
    return (isinstance(validator, str) and validator != "") or meta.get("complete") is True

