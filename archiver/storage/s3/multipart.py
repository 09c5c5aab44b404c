"""One media file streaming into S3 (:class:`S3FileSink`): one PutObject, or a multipart
upload whose parts go up while the download goes on.

- The downloader's chunks fill a buffer of ``part_size`` bytes; a file that ends within
  one part goes as one PutObject (``ChecksumSHA256``, and its SHA-256 as metadata).
- A larger file becomes a multipart upload: each full part goes as an UploadPart with
  that part's SHA-256 (``ChecksumSHA256``), which S3 checks on arrival and combines into
  a composite checksum (``<base64>-N``) at CompleteMultipartUpload. Its whole-file
  SHA-256 is not object metadata: it is unknown at CreateMultipartUpload, and setting
  metadata afterwards means copying the whole object. ``archive.json`` and
  ``SHA256SUMS`` hold it, as on local disk.
- Memory: at most ``parts_in_flight`` parts per file exist at once, counting the one
  being filled (:meth:`S3FileSink.write` waits for room): a run holds at most
  ``part_size x parts_in_flight x downloads`` bytes of parts, whatever the file size.
- Clean-up: the pool job that starts the multipart upload registers its abort right
  then (:class:`~.cleanups.Cleanups`); completing the upload announces it done. An abort
  waits for the requests still running, then runs what is registered - once.
- Written by position (:meth:`S3FileSink.write_at`: a large file fetched over several
  connections), the bytes go to a local spool first (:mod:`.spool`), made on the first
  positional write, so sequential writes never touch it; see there.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import tempfile
from pathlib import Path
from typing import Any

from ...errors import StorageError
from .answers import BOTO_ERRORS
from .buffers import PartBuffer
from .checksums import Part, b64, complete_checked, put_checked
from .cleanups import Cleanups, consume, shielded
from .requests import S3Bucket
from .spool import Spool

log = logging.getLogger(__name__)

#: S3 refuses part numbers above this.
MAX_PARTS = 10_000
#: The name the open multipart upload's abort is registered under.
_UPLOAD = "multipart upload"


class S3FileSink:
    """One media file streaming into S3: one PutObject, or a multipart upload.

    Written in order (:meth:`write`), or by position through a local spool
    (:meth:`write_at`, :meth:`read_into`, :meth:`mark_prefix`; see the module docstring).
    """

    #: Through the spool: ranges are written there, parts go up as the checked prefix grows.
    supports_positional_writes = True

    def __init__(self, bucket: S3Bucket, key: str, *, parts_in_flight: int,
                 spool_dir: Path | None = None) -> None:
        self._bucket = bucket
        self.key = key
        self._part_size = bucket.buffers.part_size
        self._parts_in_flight = parts_in_flight
        self._spool_dir = spool_dir
        #: Made by the first write_at (positional mode); None while writing in order.
        self._spool: Spool | None = None
        #: Bytes of the spool already handed to part uploads (whole parts from 0).
        self._sent = 0
        #: The checked prefix last reported (mark_prefix): never written again.
        self._marked = 0
        # One sender of spooled parts at a time (a mark, the commit).
        self._sending = asyncio.Lock()
        # Allocated on the first write; handed to the pool job that uploads it.
        self._buffer: PartBuffer | None = None
        self._written = 0
        self._create: concurrent.futures.Future[str] | None = None
        self._upload_id: str | None = None
        self._next_part = 1
        # Part uploads in flight: concurrent future -> its asyncio wrapper.
        self._inflight: dict[concurrent.futures.Future[Part], asyncio.Future[Part]] = {}
        self._parts: dict[int, Part] = {}
        self._final: concurrent.futures.Future[Any] | None = None
        self._cleanups = Cleanups()
        #: The object is final under :attr:`key` (the item writer checks it is there).
        self.done = False
        self._abort_future: concurrent.futures.Future[None] | None = None

    # ------------------------------------------------------------------ writing

    async def write(self, chunk: bytes) -> None:
        self._check_open()
        if self._spool is not None:
            raise StorageError(f"{self.key}: written by position already; cannot append")
        view = memoryview(chunk)
        try:
            while view:
                self._check_open()  # an abort (of the whole item) may have come meanwhile
                # A full buffer is only sent once more data proves it is not the last part:
                # a file of exactly part_size bytes stays a single PutObject.
                if self._buffer is not None and self._buffer.full:
                    await self._send_part()
                if self._buffer is None:
                    self._buffer = self._bucket.buffers.take()
                view = view[self._buffer.fill(view):]
        except BaseException:
            await self.abort()
            raise
        self._written += len(chunk)

    async def write_at(self, offset: int, chunk: bytes) -> None:
        self._check_open()
        try:
            spool = self._spool or self._open_spool()
            if offset < self._marked:
                # Bytes below the checked prefix may have gone to S3 already: they must
                # stay exactly what was hashed.
                raise StorageError(f"{self.key}: write at byte {offset}, inside the "
                                   f"checked prefix ({self._marked} bytes)")
            await asyncio.to_thread(spool.write, offset, chunk)
        except OSError as exc:
            await self.abort()
            raise self._spool_error(exc) from None
        except BaseException:
            await self.abort()
            raise
        # Counted here, in the event loop: several writes run in threads at once.
        self._written = max(self._written, offset + len(chunk))

    def _open_spool(self) -> Spool:
        """The spool, made by the first write by position (raises OSError)."""
        if self._written or self._buffer is not None:
            raise StorageError(f"{self.key}: written in order already; cannot write by "
                               "position")
        # Made here, on the loop, not in a thread: concurrent first writes must find one
        # spool, and opening an anonymous file is one quick system call.
        self._spool = Spool(self._spool_dir)
        return self._spool

    async def read_into(self, offset: int, buffer: memoryview) -> int:
        self._check_open()
        if self._spool is None:
            return 0  # nothing written by position
        try:
            return await asyncio.to_thread(self._spool.read_into, offset, buffer)
        except OSError as exc:
            await self.abort()
            raise self._spool_error(exc) from None

    async def mark_prefix(self, size: int) -> None:
        """The first *size* bytes are checked: send every whole part inside them (but a
        last one, which the commit sends: a one-part file stays a single PutObject)."""
        self._check_open()
        self._marked = max(self._marked, size)
        if self._spool is None:
            return  # called before the first write: nothing to send yet
        try:
            async with self._sending:
                # A part ending where the written bytes end may be the file's last part.
                while (self._sent + self._part_size <= self._marked
                       and self._sent + self._part_size < self._written):
                    await self._send_spooled(self._part_size)
        except BaseException:
            await self.abort()
            raise

    def _spool_error(self, exc: OSError) -> StorageError:
        where = self._spool_dir or tempfile.gettempdir()
        return StorageError(f"{self.key}: the local spool in {where} (storage.s3.spool_dir) "
                            f"failed: {exc.strerror or exc}")

    async def _send_part(self) -> None:
        """Send the buffer filled by :meth:`write` as the next part."""
        await self._start_part()
        data, self._buffer = self._buffer, None
        assert data is not None
        self._submit_part(data, None)
        del data  # the pool job holds the only reference: freed once uploaded
        # Back-pressure: the next buffer counts too, so parts in memory <= parts_in_flight.
        await self._wait_for_room()

    async def _send_spooled(self, size: int) -> None:
        """Send the spool's next *size* bytes (from :attr:`_sent`) as the next part."""
        # No buffer is being filled in this mode: the room is made for this part's own.
        await self._wait_for_room()
        await self._start_part()
        assert self._spool is not None and self._next_part == self._sent // self._part_size + 1
        load = (self._spool, self._sent, size)
        self._sent += size
        self._submit_part(self._bucket.buffers.take(), load)

    def rename(self, name: str) -> None:
        # The key is only used once the upload starts (its first part, or the single
        # PUT at commit): the first bytes are checked long before.
        if self._create is not None or self._upload_id is not None:
            raise StorageError(f"{self.key}: renamed after its upload started")
        self.key = self.key[:self.key.rfind("/") + 1] + name

    async def _start_part(self) -> None:
        """Check the part count; start the multipart upload if not done yet."""
        if self._next_part > MAX_PARTS:
            raise StorageError(
                f"{self.key}: more than {MAX_PARTS} parts of {self._part_size} bytes; "
                "raise storage.s3.part_size")
        if self._upload_id is None:
            if self._create is None:
                self._create = self._bucket.submit(self._create_sync)
            try:
                self._upload_id = await asyncio.wrap_future(self._create)
            except BOTO_ERRORS as exc:
                raise self._bucket.item_error("CreateMultipartUpload", self.key,
                                              exc) from None

    def _submit_part(self, data: PartBuffer, load: tuple[Spool, int, int] | None) -> None:
        """Hand part :attr:`_next_part` to the pool (*load*: first read it from the spool)."""
        assert self._upload_id is not None
        number = self._next_part
        self._next_part += 1
        future = self._bucket.submit(self._upload_part_sync, self._upload_id, number, data,
                                     load)
        wrapper = asyncio.wrap_future(future)
        wrapper.add_done_callback(consume)
        self._inflight[future] = wrapper

    async def _wait_for_room(self) -> None:
        """Wait until fewer than ``parts_in_flight`` parts are uploading (raise a failure)."""
        self._harvest(wait_for_all=False)
        while len(self._inflight) >= self._parts_in_flight:
            await asyncio.wait(self._inflight.values(), return_when=asyncio.FIRST_COMPLETED)
            self._harvest(wait_for_all=False)

    def _harvest(self, *, wait_for_all: bool) -> None:
        """Collect finished part uploads; raise the first failure."""
        for future, wrapper in list(self._inflight.items()):
            if not wrapper.done():
                if wait_for_all:
                    raise AssertionError("part upload still running")  # pragma: no cover
                continue
            del self._inflight[future]
            if wrapper.cancelled():
                raise StorageError(f"{self.key}: upload aborted")
            exc = wrapper.exception()
            if exc is not None:
                if isinstance(exc, BOTO_ERRORS):
                    raise self._bucket.item_error("UploadPart", self.key, exc) from None
                raise exc
            part = wrapper.result()
            self._parts[part.number] = part

    def _load(self, data: PartBuffer, load: tuple[Spool, int, int]) -> None:
        """Fill *data* from the spool (in a thread: the descriptor stays open meanwhile)."""
        spool, offset, size = load
        try:
            with spool.using() as fd:
                data.load(fd, offset, size)
        except OSError as exc:
            raise self._spool_error(exc) from None

    def _create_sync(self) -> str:
        upload_id = self._bucket.create_upload(self.key)
        # Registered the moment the upload exists: whatever fails later aborts it.
        self._cleanups.add(_UPLOAD, lambda: self._abort_upload(upload_id))
        log.debug("multipart upload of %s started", self.key)
        return upload_id

    def _upload_part_sync(self, upload_id: str, number: int, data: PartBuffer,
                          load: tuple[Spool, int, int] | None) -> Part:
        try:
            if load is not None:
                self._load(data, load)
            # Hashed here, in the pool thread: hashlib releases the GIL, the loop stays free.
            digest = data.sha256()
            checksum = b64(digest)
            answer = self._bucket.upload_part(self.key, upload_id, number, data, checksum)
        finally:
            self._bucket.buffers.give_back(data)
        reported = answer.get("ChecksumSHA256")
        if reported is not None and reported != checksum:
            raise StorageError(f"{self.key}: S3 reported checksum {reported} for part "
                                f"{number}, expected {checksum}")
        return Part(number, str(answer["ETag"]), checksum, digest)

    # ------------------------------------------------------------------ commit

    async def commit(self, size: int, sha256: str) -> dict[str, Any]:
        self._check_open()
        try:
            if self._written != size:
                raise StorageError(f"{self.key}: wrote {self._written} bytes, expected {size}")
            if self._spool is not None:
                await self._send_spooled_tail(size)
            if self._upload_id is None and self._create is None:
                data, self._buffer = self._buffer, None
                self._final = self._bucket.submit(self._put_single_sync, data, sha256)
            else:
                if self._buffer is not None:
                    await self._send_part()
                if self._inflight:
                    await asyncio.wait(self._inflight.values())
                self._harvest(wait_for_all=True)
                self._final = self._bucket.submit(self._complete_sync)
            try:
                stored: dict[str, Any] = await asyncio.wrap_future(self._final)
            except BOTO_ERRORS as exc:
                raise self._bucket.item_error("upload", self.key, exc) from None
        except BaseException:
            await self.abort()
            raise
        self.done = True
        if self._spool is not None:
            self._bucket.submit(self._spool.close)  # freeing its blocks may take a moment
        return {"s3": stored}

    async def _send_spooled_tail(self, size: int) -> None:
        """Before the commit: what the marks left in the spool. A file that fits one part
        and started no upload is loaded into :attr:`_buffer`, for one PutObject (whose
        SHA-256 is checked against the download's); otherwise the rest goes as parts."""
        async with self._sending:
            if self._upload_id is None and self._create is None and size <= self._part_size:
                assert self._spool is not None and self._buffer is None
                buffer = self._bucket.buffers.take()
                try:
                    await asyncio.to_thread(self._load, buffer, (self._spool, 0, size))
                except Exception:
                    self._bucket.buffers.give_back(buffer)  # the load has ended: unused
                    raise
                # Only now: cancelled mid-load, the buffer is dropped, never given back
                # to the pool (another file could take it while the load still writes).
                self._buffer = buffer
                return
            while self._sent < size:
                await self._send_spooled(min(self._part_size, size - self._sent))

    def _put_single_sync(self, data: PartBuffer | None, sha256: str) -> dict[str, Any]:
        try:
            return put_checked(self._bucket, self.key, b"" if data is None else data, sha256)
        finally:
            if data is not None:
                self._bucket.buffers.give_back(data)

    def _complete_sync(self) -> dict[str, Any]:
        assert self._upload_id is not None
        parts = [self._parts[n] for n in sorted(self._parts)]
        # Once S3 completes it, the object is final: an abort has no upload to abort.
        found = complete_checked(self._bucket, self.key, self._upload_id, parts,
                                 on_final=lambda: self._cleanups.done(_UPLOAD))
        log.debug("multipart upload of %s complete: %d parts", self.key, len(parts))
        found["part_size"] = self._part_size
        found["parts"] = len(parts)
        return found

    # ------------------------------------------------------------------- abort

    async def abort(self, keep: bool = False) -> None:
        """Abort the multipart upload (S3 keeps no partial data: *keep* is ignored)."""
        future = self.begin_abort()
        if future is not None:
            await shielded(future)

    def begin_abort(self) -> concurrent.futures.Future[None] | None:
        """Hand the clean-up to the pool synchronously (cancellation cannot stop it);
        None if the file is final (it stays: see :class:`~.writer.S3ItemWriter`)."""
        if self.done:
            return None
        if self._abort_future is None:
            if self._buffer is not None:
                self._bucket.buffers.give_back(self._buffer)
                self._buffer = None
            for future in self._inflight:
                future.cancel()  # queued parts never start
            pending = [f for f in (*self._inflight, self._create, self._final) if f is not None]
            self._abort_future = self._bucket.submit(self._abort_sync, pending)
        return self._abort_future

    def _abort_sync(self, pending: list[concurrent.futures.Future[Any]]) -> None:
        # Parts still uploading finish first: a part landing after the abort would
        # leave storage S3 keeps billing for (S3 documents this race).
        concurrent.futures.wait(pending)
        self._cleanups.run()
        if self._spool is not None:
            self._spool.close()  # once reads and writes still in flight end (see Spool)

    def _abort_upload(self, upload_id: str) -> None:
        problem = self._bucket.abort_upload(self.key, upload_id)
        if problem is None:
            log.debug("multipart upload of %s aborted", self.key)
        else:
            log.warning("could not abort the multipart upload of s3://%s/%s: %s",
                        self._bucket.name, self.key, problem)

    def _check_open(self) -> None:
        if self.done or self._abort_future is not None:
            raise StorageError(f"{self.key}: file already committed or aborted")
