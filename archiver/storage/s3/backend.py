"""The S3 backend (:class:`S3Backend`): an archive under ``s3://<bucket>/<prefix><id>/``.

Opening checks the bucket (HeadBucket) and that it takes a write (a probe object at the
top of the prefix, deleted at once; ``gc`` reaps one left behind). The run lock is a
lease object (:mod:`.lease`); writing an item is :mod:`.writer`'s, one file
:mod:`.multipart`'s; listing is :mod:`.listing`'s, removing :mod:`.removal`'s. Every
request goes through the :class:`~.requests.S3Bucket`, and every botocore error is
mapped here or there (:mod:`.answers`) before it leaves the package: to
:class:`~archiver.errors.StorageUnavailable` when the archive cannot be used or read
(exit 2), to :class:`~archiver.errors.StorageError` when one item or file failed.

``digest`` without ``rehash`` reads S3's own SHA-256 checksum (HeadObject with
``ChecksumMode=ENABLED``), downloading nothing; with it, the object is downloaded and
hashed.
"""

from __future__ import annotations

import functools
import logging
import secrets
import tempfile
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import botocore.exceptions as bce

from ...errors import StorageError, StorageUnavailable
from ...models import FileRecord
from ...retry import S3_RETRIES, RetryPolicy
from ..backend import Capabilities, Digest, Entry, Kind, Listing, Removal
from ..names import PROBE_PREFIX
from .answers import BOTO_ERRORS, describe, error_code, http_status
from .checksums import recorded_checksum
from .lease import LEASE_FOLDER, S3Lease
from .listing import Lister
from .removal import Remover
from .requests import Connection, S3Bucket
from .spool import Spool
from .writer import S3ItemWriter

if TYPE_CHECKING:
    from ...config import S3StorageConfig

log = logging.getLogger(__name__)

T = TypeVar("T")

MiB = 1024 * 1024


class S3Backend:
    """Archive under ``s3://<bucket>/<prefix><video_model_id>/``.

    Credentials come from boto3's standard chain (environment, shared config and
    ``profile``, instance role) and are never stored here. ``part_size`` is checked by
    the configuration (S3 wants at least 5 MiB); tests may pass a smaller one directly.
    """

    #: S3 keeps nothing to resume: a multipart upload left open is storage billed for
    #: and seen by nobody, so every attempt restarts from zero. It keeps a SHA-256
    #: checksum of every object, which verify reads without downloading.
    capabilities = Capabilities(resumable=False, positional_writes=True,
                                server_checksums=True)

    def __init__(self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None,
                 region: str | None = None, profile: str | None = None,
                 addressing_style: str = "auto", sse: str | None = None,
                 kms_key_id: str | None = None, storage_class: str | None = None,
                 part_size: int = 8 * MiB, parts_in_flight: int = 2,
                 max_concurrency: int = 32, retry: RetryPolicy | None = None,
                 spool_dir: Path | None = None) -> None:
        if part_size < 1 or parts_in_flight < 1 or max_concurrency < 1:
            raise ValueError("part_size, parts_in_flight and max_concurrency must be >= 1")
        self.prefix = prefix
        self.part_size = part_size
        self.parts_in_flight = parts_in_flight
        #: Where files written by position are spooled (:class:`~.multipart.Spool`).
        self.spool_dir = spool_dir
        self.description = f"s3://{bucket}/{prefix}"
        put_args: dict[str, str] = {}
        if sse is not None:
            put_args["ServerSideEncryption"] = sse
        if kms_key_id is not None:
            put_args["SSEKMSKeyId"] = kms_key_id
        if storage_class is not None:
            put_args["StorageClass"] = storage_class
        #: Every request to S3 goes through this.
        self.bucket = S3Bucket(
            bucket, Connection(endpoint_url, region, profile, addressing_style),
            description=self.description, put_args=put_args, part_size=part_size,
            max_concurrency=max_concurrency, retry=retry or S3_RETRIES)
        self._lister = Lister(self.bucket, prefix)
        self._remover = Remover(self.bucket, prefix)

    @classmethod
    def from_config(cls, cfg: S3StorageConfig) -> S3Backend:
        """The storage a validated ``storage.s3`` section describes."""
        return cls(cfg.bucket, cfg.prefix, endpoint_url=cfg.endpoint_url, region=cfg.region,
                   profile=cfg.profile, addressing_style=cfg.addressing_style, sse=cfg.sse,
                   kms_key_id=cfg.kms_key_id, storage_class=cfg.storage_class,
                   part_size=cfg.part_size, parts_in_flight=cfg.parts_in_flight,
                   retry=cfg.retries, spool_dir=cfg.spool_dir)

    def __repr__(self) -> str:
        return f"S3Backend({self.description!r})"

    # ------------------------------------------------------------------ lifecycle

    async def open(self, readonly: bool = False) -> None:
        """Build the clients, then check the bucket is reachable and writable.

        With *readonly* (dry runs), check only that it can be listed: write nothing.
        """
        self.bucket.start()
        try:
            await self.bucket.run(self._open_sync, readonly)
        except BaseException as exc:
            await self.close()  # the run stops here: no threads left behind
            if isinstance(exc, BOTO_ERRORS):
                raise self.bucket.unavailable("use", exc) from None
            raise

    def _open_sync(self, readonly: bool) -> None:
        if not readonly:
            self._check_spool_dir()
        try:
            self.bucket.connect()
        except StorageUnavailable as exc:
            raise StorageUnavailable(f"cannot use {self.description}: {exc}") from None
        self._check_bucket(readonly)

    def _check_bucket(self, readonly: bool) -> None:
        try:
            self.bucket.head_bucket()
        except bce.ClientError as exc:
            raise StorageUnavailable(self._bucket_problem(exc)) from None
        if readonly:
            return
        # HeadBucket proves we may list, not write: a tiny probe object under the prefix
        # proves the rest (PutObject, with the configured encryption and storage class).
        probe = f"{self.prefix}{PROBE_PREFIX}{secrets.token_hex(8)}"
        try:
            self.bucket.put(probe, b"")
        except bce.ClientError as exc:
            raise self.bucket.unavailable("write to", exc) from None
        try:
            # The probe's name is unique to this run: deleting it can hurt no one.
            self.bucket.delete(probe)
        except bce.ClientError as exc:
            # Runs never delete anything else; `archiver gc` reaps the probe later.
            log.info("cannot delete the write probe %s (%s); archiver gc removes it",
                     probe, describe(exc))

    def _check_spool_dir(self) -> None:
        """The spool's folder must take a temporary file now, not mid-run.

        That is ``storage.s3.spool_dir``, or else the system's temporary directory: in a
        container with a read-only root and no writable /tmp there is none, and every
        file fetched in segments would fail on its own, hours in, instead of the run
        stopping at once with the key to set.
        """
        if self.spool_dir is None:
            try:
                # The first writable of $TMPDIR, /tmp, /var/tmp, /usr/tmp and the working
                # directory (each tried with a file); FileNotFoundError if none is.
                tempfile.gettempdir()
            except OSError:
                raise StorageUnavailable(
                    "storage.s3.spool_dir is not set and no temporary directory is "
                    "writable ($TMPDIR, /tmp, /var/tmp, the working directory): set it "
                    "to a writable folder") from None
        try:
            Spool(self.spool_dir).close()
        except OSError as exc:
            where = self.spool_dir if self.spool_dir is not None else \
                f"the temporary directory {tempfile.gettempdir()}"
            raise StorageUnavailable(f"storage.s3.spool_dir: cannot write to "
                                     f"{where}: {exc.strerror or exc}") from None

    def _bucket_problem(self, exc: bce.ClientError) -> str:
        name = self.bucket.name
        status = http_status(exc)
        if status == 404:
            return f"S3 bucket {name!r} does not exist ({self.description})"
        if status == 403:
            return (f"access to S3 bucket {name!r} denied: check the credentials "
                    f"and the bucket policy ({self.description})")
        if status == 301 or error_code(exc) == "PermanentRedirect":
            region = exc.response.get("ResponseMetadata", {}).get(
                "HTTPHeaders", {}).get("x-amz-bucket-region", "another region")
            return (f"S3 bucket {name!r} is in {region}: set storage.s3.region "
                    f"({self.description})")
        return str(self.bucket.unavailable("use", exc))

    async def close(self) -> None:
        """Wait for pending clean-ups (aborts), then release the thread pool."""
        await self.bucket.close()

    # ------------------------------------------------------------------ run lock

    def run_lock(self, name: str, *, ttl: float, what: str,
                 on_lost: Callable[[str], None] | None = None,
                 command: str = "run") -> S3Lease:
        """The run lock of this storage: a lease object under the prefix (:mod:`.lease`),
        so that runs on other hosts and pods are kept out too. Call after :meth:`open`.

        The lease has its own client, whose timeouts are short next to *ttl*: a renewal
        that hangs must fail in time to be noticed.
        """
        client = self.bucket.make_client(True, timeout=max(1.0, min(10.0, ttl / 4)))
        return S3Lease(client, self.bucket.name, f"{self.prefix}{LEASE_FOLDER}{name}",
                       ttl=ttl, what=what, on_lost=on_lost, scrub=self.bucket.scrub,
                       # Encryption as configured (a bucket policy may demand it); not
                       # the storage class: a lease in GLACIER could not be read back.
                       put_args={k: v for k, v in self.bucket.put_args.items()
                                 if k != "StorageClass"},
                       retry=self.bucket.retry, command=command)

    # ---------------------------------------------------------------- items

    def item(self, item_id: str) -> S3ItemWriter:
        return S3ItemWriter(self.bucket, f"{self.prefix}{item_id}/",
                            parts_in_flight=self.parts_in_flight, spool_dir=self.spool_dir)

    # ---------------------------------------------------------------- reading

    async def _reading(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a read in the pool; a failure means the archive cannot be read (exit 2)."""
        try:
            return await self.bucket.run(fn, *args)
        except BOTO_ERRORS as exc:
            raise self.bucket.unavailable("read", exc) from None

    async def listing(self, ids: Collection[str] | None = None, *, only: str | None = None,
                   uploads: bool = False) -> Listing:
        wanted = None if ids is None else set(ids)
        return await self._reading(self._lister.list, wanted, only, uploads)

    async def read(self, item_id: str, name: str) -> bytes | None:
        return await self._reading(self.bucket.get, f"{self.prefix}{item_id}/{name}")

    async def digest(self, item_id: str, file: FileRecord, *, rehash: bool) -> Digest:
        key = f"{self.prefix}{item_id}/{file.name}"
        try:
            if rehash:
                return Digest(sha256=await self.bucket.run(self.bucket.sha256, key))
            head = await self.bucket.run(self.bucket.head, key)
        except BOTO_ERRORS as exc:
            # e.g. HTTP 404: listed a moment ago, gone now; a policy forbidding reads
            raise StorageError(self.bucket.scrub(describe(exc))) from None
        reported, recorded = head.get("ChecksumSHA256"), recorded_checksum(file)
        # Compared as base64 digests: HEAD may leave off a composite checksum's "-N".
        return Digest(reported=str(reported).split("-")[0] if reported else None,
                      recorded=recorded.split("-")[0] if recorded else None)

    # ---------------------------------------------------------------- removing

    async def remove(self, item_id: str | None, entries: Sequence[Entry]) -> Removal:
        return await self._reading(self._remover.remove, item_id, list(entries))

    # ---------------------------------------------------------------- pages

    async def publish(self, name: str, data: bytes, *, content_type: str) -> None:
        # One PutObject is atomic: readers get the old object or the new one. The
        # content type makes a static website or a presigned URL show it, not save it.
        key = f"{self.prefix}{name}"
        try:
            await self.bucket.run(functools.partial(
                self.bucket.put, key, data, extra={"ContentType": content_type}))
        except BOTO_ERRORS as exc:
            raise StorageError(f"cannot write s3://{self.bucket.name}/{key}: "
                               f"{self.bucket.scrub(describe(exc))}") from None

    def where(self, item_id: str | None, entry: Entry) -> str:
        folder = self.prefix if item_id is None else f"{self.prefix}{item_id}/"
        url = f"s3://{self.bucket.name}/{folder}{entry.name}"
        return f"multipart upload of {url}" if entry.kind is Kind.UPLOAD else url
