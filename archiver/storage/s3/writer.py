"""One item's objects (:class:`S3ItemWriter`): media files, metadata, ``archive.json`` last.

- Aborting an item aborts its files' multipart uploads and **deletes nothing**: an
  object this run made final under ``<prefix><id>/video.mp4``... is, byte for byte, the
  object another run (another host: locks are local) may have just uploaded under the
  same key and listed in its committed ``archive.json``. Deleting "our" object would
  delete theirs. A conditional delete cannot tell them apart (equal bytes, equal ETag),
  and staging keys copied at commit would double every byte written, need
  UploadPartCopy above 5 GiB and change the checksum type ``verify`` compares. So an
  uncommitted attempt leaves its objects: without ``archive.json`` they never count as
  archived (``status`` says ``partial``), the next attempt overwrites them with the same
  bytes, and ``archiver gc`` reaps those of ids nobody committed. The clean-up is handed
  to the thread pool in one piece before the first ``await``, so it completes even if
  the task is cancelled again meanwhile (closing the storage waits for it).
- Before ``archive.json``, one listing of the item's folder checks that every file the
  record lists is there (``gc`` deleting in the instant after its last look would
  otherwise let a record name a missing file); if not, the item fails, unrecorded.
- ``archive.json`` is written with ``If-None-Match: *``: a 412 means another run
  committed this id first, which is a success. Stores that ignore the header overwrite;
  one that refuses it (501) gets unconditional writes from then on.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import botocore.exceptions as bce

from ...errors import StorageError
from ..backend import Partial
from ..names import RECORD_NAME
from .answers import BOTO_ERRORS, error_code, http_status
from .cleanups import shielded
from .multipart import S3FileSink
from .requests import S3Bucket

log = logging.getLogger(__name__)

#: HTTP status of a failed ``If-None-Match: *``: the key exists.
PRECONDITION_FAILED = 412


class S3ItemWriter:
    """Writes one item's objects; :meth:`abort` aborts its multipart uploads, no more.

    Objects made final stay when the item is not committed: the same key may hold the
    same bytes that another run has just listed in its ``archive.json`` (see the module
    docstring). ``archiver gc`` removes those of ids that nobody committed.
    """

    def __init__(self, bucket: S3Bucket, folder: str, *, parts_in_flight: int,
                 spool_dir: Path | None = None) -> None:
        self._bucket = bucket
        self.folder = folder
        self._parts_in_flight = parts_in_flight
        self._spool_dir = spool_dir
        self._sinks: list[S3FileSink] = []
        # put_small / commit requests submitted to the pool: abort waits for them.
        self._ops: list[concurrent.futures.Future[Any]] = []
        # Keys of metadata files written: checked for presence before the commit.
        self._small_keys: list[str] = []
        self._committed = False
        #: Whether the item's record is this writer's (False: another run's stood).
        self._ours = True
        self._abort_future: concurrent.futures.Future[None] | None = None

    async def partial(self, name: str) -> Partial | None:
        # S3 keeps no resumable partial download: a new attempt restarts from zero.
        return None

    async def open_file(self, name: str, *, resume: Partial | None = None,
                        validator: str | None = None, source: str = "") -> S3FileSink:
        self._check_usable()
        if resume is not None:  # partial() never offers one: appending would corrupt
            raise StorageError(f"{self.folder}{name}: S3 storage does not resume files")
        sink = S3FileSink(self._bucket, self.folder + name,
                          parts_in_flight=self._parts_in_flight, spool_dir=self._spool_dir)
        self._sinks.append(sink)
        return sink

    async def put_small(self, name: str, data: bytes) -> None:
        self._check_usable()
        key = self.folder + name
        await self._request("PutObject", key, self._put_small_sync, key, data)

    def _put_small_sync(self, key: str, data: bytes) -> None:
        self._bucket.put(key, data)
        self._small_keys.append(key)

    async def commit(self, record: bytes, *, expect: Collection[str] = ()) -> bool:
        """Write ``archive.json`` with If-None-Match once every file is there: a 412
        (committed by another run) is fine, and says False."""
        self._check_usable()
        key = self.folder + RECORD_NAME
        await self._request("PutObject", key, self._commit_sync, key, record,
                            [self.folder + name for name in expect])
        return self._ours

    async def _request(self, action: str, key: str, fn: Callable[..., None],
                       *args: Any) -> None:
        future = self._bucket.submit(fn, *args)
        self._ops.append(future)
        try:
            await asyncio.wrap_future(future)
        except BOTO_ERRORS as exc:
            raise self._bucket.item_error(action, key, exc) from None

    def _commit_sync(self, key: str, record: bytes, expect: list[str]) -> None:
        bucket = self._bucket
        self._check_present(expect)
        try:
            bucket.put(key, record, if_none_match=bucket.conditional_writes)
        except bce.ClientError as exc:
            if http_status(exc) == PRECONDITION_FAILED:
                # Another run committed this id between our skip check and now. Its record
                # stands (write-once); our objects carry the same bytes, so keep them.
                log.info("%s was committed by another run meanwhile; keeping its record",
                         key)
                self._ours = False
            elif bucket.conditional_writes and (http_status(exc) == 501
                                                or error_code(exc) == "NotImplemented"):
                # Stores that ignore If-None-Match just work; one that refuses it gets
                # plain writes from now on (racing runs then overwrite each other).
                log.warning("%s does not support If-None-Match: archive.json is written "
                            "unconditionally", bucket.description)
                bucket.conditional_writes = False
                bucket.put(key, record)
            else:
                raise
        self._committed = True

    def _check_present(self, expect: list[str]) -> None:
        """Refuse to commit a record whose files are not all there (one listing).

        Nothing of this archiver deletes an object a run may still commit, except
        ``archiver gc`` in the one round trip between its last look at an id and its
        delete (see :mod:`.removal`). An upload landing in
        exactly that moment is caught here, and the item fails instead of committing a
        missing file.
        """
        expected = {s.key for s in self._sinks if s.done} | set(self._small_keys) \
            | set(expect)
        if not expected:
            return
        present = {obj["Key"] for obj in self._bucket.objects(self.folder)}
        missing = sorted(k[len(self.folder):] for k in expected - present)
        if missing:
            raise StorageError(
                f"s3://{self._bucket.name}/{self.folder}: {', '.join(missing)} vanished "
                "before archive.json was written (archiver gc or a lifecycle rule?); "
                "not committed")

    async def abort(self, keep: bool = False) -> None:
        """Abort this item's open multipart uploads, even while being cancelled.

        Deletes no object: one under a final key may be another run's committed file
        (same key, same bytes). *keep* is ignored: S3 keeps nothing to resume (a
        multipart upload left open would be storage S3 bills for and nobody sees), so
        every attempt restarts from zero.
        """
        if self._abort_future is None:
            # Everything is handed to the pool before the first await: a second
            # cancellation can interrupt the wait below, not the clean-up itself.
            sink_aborts = [s.begin_abort() for s in self._sinks]
            for op in self._ops:
                op.cancel()  # not started yet: never will be
            self._abort_future = self._bucket.submit(
                self._abort_sync, [f for f in sink_aborts if f is not None], list(self._ops))
        await shielded(self._abort_future)

    def _abort_sync(self, sink_aborts: list[concurrent.futures.Future[None]],
                    ops: list[concurrent.futures.Future[Any]]) -> None:
        # Requests still running finish (or fail) first, so that when abort() returns
        # this writer has nothing in flight; objects they made final stay (see class).
        concurrent.futures.wait([*sink_aborts, *ops])
        if not self._committed and self._small_keys:
            log.debug("%s: not committed; objects written so far stay for the next "
                      "attempt or archiver gc", self.folder)

    def _check_usable(self) -> None:
        if self._abort_future is not None or self._committed:
            raise StorageError(f"{self.folder}: writer already ended")
