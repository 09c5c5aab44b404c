"""Requests to one bucket: the clients, the thread pool, the retry policy, error wording.

:class:`S3Bucket` is the one interface the backend, the skip check, the item writer, the
file sink and the ``s3://`` manifest read use to reach S3: named methods (``put``,
``create_upload``, ``upload_part``, ``pages``, ``read_object`` ...), each one request
retried within the policy. No other part of the archiver touches a botocore client but
the run lease (:mod:`.lease`, which needs a client of its own with short timeouts), so
there is one place that decides what is retried (:func:`.answers.is_transient`), one
thread pool, and one place that words a botocore error (naming bucket and key, never
credentials).

boto3 blocks, so every request runs in this bucket's own thread pool, never on the event
loop (and never in the loop's small default executor).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import boto3
import botocore.exceptions as bce
from botocore.config import Config as BotoConfig

from ...config import S3StorageConfig
from ...errors import StorageError, StorageUnavailable
from ...retry import S3_RETRIES, RetryPolicy, with_retries_sync
from .answers import describe, error_code, http_status, is_transient
from .buffers import BufferPool, BufferReader, PartBuffer
from .checksums import b64

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Keys per ListObjectsV2 page (S3's maximum).
LIST_PAGE = 1000
#: Seconds to connect and to wait for each read of an answer, by default.
TIMEOUTS = (10.0, 60.0)


@dataclass(frozen=True, slots=True)
class Connection:
    """Where the bucket is and how to reach it (no credentials: boto3's chain finds them)."""

    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    addressing_style: str = "auto"

    @classmethod
    def of(cls, cfg: S3StorageConfig | None) -> Connection:
        """Where a ``storage.s3`` section says (boto3's defaults without one)."""
        if cfg is None:
            return cls()
        return cls(cfg.endpoint_url, cfg.region, cfg.profile, cfg.addressing_style)


class ObjectTooLarge(StorageUnavailable):
    """:meth:`S3Bucket.read_object` found an object larger than the caller's limit."""


class S3Bucket:
    """One bucket and the requests made to it (see the module docstring).

    Created closed; :meth:`start` builds the pool, :meth:`connect` (in the pool) the
    clients, :meth:`close` waits for pending jobs and releases both.
    """

    def __init__(self, name: str, connection: Connection, *, description: str,
                 put_args: dict[str, str] | None = None, part_size: int = 8 * 1024 * 1024,
                 max_concurrency: int = 1, retry: RetryPolicy = S3_RETRIES,
                 timeouts: tuple[float, float] = TIMEOUTS) -> None:
        self.name = name
        self.connection = connection
        #: ``s3://bucket/prefix``, for messages.
        self.description = description
        #: Applied to every PutObject and CreateMultipartUpload.
        self.put_args = put_args or {}
        self.max_concurrency = max_concurrency
        self.retry = retry
        self._timeouts = timeouts
        self.buffers = BufferPool(part_size)
        #: archive.json is written with If-None-Match: * (until the store refuses it).
        self.conditional_writes = True
        self._session: Any = None
        #: For every request but the bodies of PutObject and UploadPart.
        self.client: Any = None
        #: For PutObject and UploadPart (see :meth:`connect`).
        self.data_client: Any = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        # Only to scrub them from messages (defence in depth); never logged or shown.
        self._secrets: tuple[str, ...] = ()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Build the thread pool (idempotent)."""
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=self.max_concurrency, thread_name_prefix="archiver-s3")
            self.buffers.start()

    def connect(self) -> None:
        """Find credentials and build the clients (blocking: call in the pool).

        Raises :class:`StorageUnavailable` saying why (the message is the reason alone:
        the caller says what could not be used)."""
        try:
            session = boto3.session.Session(profile_name=self.connection.profile)
        except bce.ProfileNotFound:
            raise StorageUnavailable(
                f"AWS profile {self.connection.profile!r} not found") from None
        credentials = session.get_credentials()
        if credentials is None:
            raise StorageUnavailable("no AWS credentials found (environment, shared "
                                     "config/profile or instance role)")
        frozen = credentials.get_frozen_credentials()
        self._secrets = tuple(s for s in (frozen.access_key, frozen.secret_key, frozen.token)
                              if s and len(s) >= 4)
        self.close_clients()  # opened again: fresh clients
        self._session = session
        self.client = self.make_client(True)
        # For PutObject and UploadPart only, which always carry x-amz-checksum-sha256: that
        # header is signed and S3 checks the body against it, so hashing the body a second
        # time for the signature (botocore does on http:// endpoints, and on https:// when
        # the checksum is the caller's) would protect nothing more and cost a SHA-256 pass.
        self.data_client = self.make_client(False)

    def make_client(self, sign_payload: bool, timeout: float | None = None) -> Any:
        """A new client of this bucket's session (after :meth:`connect`)."""
        config = BotoConfig(
            s3={"addressing_style": self.connection.addressing_style,
                "payload_signing_enabled": sign_payload},
            # One retry policy, ours: botocore makes one attempt. (Not "max_attempts": 1,
            # which botocore reads as one *retry*: every request was sent twice per try.)
            retries={"mode": "standard", "total_max_attempts": 1},
            max_pool_connections=self.max_concurrency,
            connect_timeout=timeout or self._timeouts[0],
            read_timeout=timeout or self._timeouts[1],
        )
        return self._session.client("s3", endpoint_url=self.connection.endpoint_url,
                                    region_name=self.connection.region, config=config)

    async def close(self) -> None:
        """Wait for pending jobs (clean-ups among them), then release pool and clients."""
        executor, self._executor = self._executor, None
        if executor is not None:
            # Blocking: run it off the loop so other tasks (progress output) keep going.
            await asyncio.get_running_loop().run_in_executor(None, executor.shutdown, True)
        self.close_clients()
        self.buffers.close()

    def close_clients(self) -> None:
        """Release the clients (a bucket used without its pool: :meth:`read_object`)."""
        for client in (self.client, self.data_client):
            if client is not None:
                client.close()
        self.client = self.data_client = None

    # ------------------------------------------------------------------ the pool

    def submit(self, fn: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
        """Run *fn* in the pool; the future can be waited on from any thread."""
        if self._executor is None:
            raise RuntimeError("S3 storage used before open() or after close()")
        return self._executor.submit(fn, *args)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in the pool, awaited."""
        return await asyncio.wrap_future(self.submit(fn, *args))

    # ------------------------------------------------------------------ requests

    def call(self, method: Callable[..., dict[str, Any]], **params: Any) -> dict[str, Any]:
        """One S3 request, retried on transient failures within :attr:`retry`'s bounds."""
        body = params.get("Body")

        def again(attempt: int) -> None:
            log.info("retrying S3 %s of %s (attempt %d)", getattr(method, "__name__", "request"),
                     params.get("Key", self.name), attempt)
            if isinstance(body, BufferReader):
                body.seek(0)  # botocore starts where the failed attempt stopped

        return with_retries_sync(lambda: method(**params), policy=self.retry,
                                 retryable=is_transient, on_retry=again)

    def put(self, key: str, data: bytes | PartBuffer, *, sha256_hex: str | None = None,
            if_none_match: bool = False, extra: dict[str, str] | None = None,
            ) -> tuple[dict[str, Any], str]:
        """PutObject with its SHA-256 checksum (and as metadata); returns (answer, b64).

        *extra*: more PutObject parameters (``ContentType`` of a page served as is)."""
        digest = data.sha256() if isinstance(data, PartBuffer) else hashlib.sha256(data).digest()
        if sha256_hex is not None and digest.hex() != sha256_hex:
            # The bytes in hand are not the bytes the downloader hashed: never store them.
            raise StorageError(f"{key}: buffered bytes do not match the download's SHA-256")
        checksum = b64(digest)
        body = data.reader() if isinstance(data, PartBuffer) else data
        params: dict[str, Any] = dict(
            Bucket=self.name, Key=key, Body=body, ChecksumAlgorithm="SHA256",
            ChecksumSHA256=checksum, Metadata={"sha256": digest.hex()}, **self.put_args)
        params.update(extra or {})
        if if_none_match:
            params["IfNoneMatch"] = "*"
        try:
            return self.call(self.data_client.put_object, **params), checksum
        finally:
            if isinstance(body, BufferReader):
                body.close()

    def delete(self, key: str) -> None:
        self.call(self.client.delete_object, Bucket=self.name, Key=key)

    def delete_many(self, keys: list[str]) -> dict[str, Any]:
        """DeleteObjects (at most 1,000 keys), retried; the answer lists per-key errors."""
        return self.call(self.client.delete_objects, Bucket=self.name,
                         Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True})

    def delete_many_once(self, keys: list[str]) -> dict[str, Any]:
        """DeleteObjects, one attempt: for a caller that must look again before a retry."""
        return dict(self.client.delete_objects(
            Bucket=self.name, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True}))

    def head_bucket(self) -> None:
        self.call(self.client.head_bucket, Bucket=self.name)

    def head(self, key: str) -> dict[str, Any]:
        """HeadObject, asking for the object's checksum."""
        return self.call(self.client.head_object, Bucket=self.name, Key=key,
                         ChecksumMode="ENABLED")

    def head_checksum(self, key: str) -> str | None:
        """The SHA-256 checksum S3 reports for *key*, or None if it cannot be read back."""
        try:
            answer = self.head(key)
        except bce.ClientError as exc:
            # A write-only policy may forbid reading back: record ours, unconfirmed.
            log.debug("cannot read back the checksum of %s: %s", key, describe(exc))
            return None
        value = answer.get("ChecksumSHA256")
        return str(value) if value else None

    def get(self, key: str) -> bytes | None:
        """The bytes of a small object, or None if there is no such key."""
        try:
            answer = self.call(self.client.get_object, Bucket=self.name, Key=key)
        except bce.ClientError as exc:
            if http_status(exc) == 404:
                return None
            raise
        return bytes(answer["Body"].read())

    def read_object(self, key: str, *, limit: int, deadline: float) -> bytes | None:
        """The bytes of *key*, or None if there is no such key (or bucket): a small object
        read once, e.g. an ``s3://`` manifest. Blocking, and needs no pool (only
        :meth:`connect`). The request and the reading of its body are retried together
        within :attr:`retry`. Raises :class:`ObjectTooLarge` past *limit* bytes, and
        :class:`StorageUnavailable` whose message is the reason alone (access denied,
        throttled beyond the retries, no answer within *deadline* seconds).
        """
        def fetch() -> bytes:
            answer = self.client.get_object(Bucket=self.name, Key=key)
            if int(answer.get("ContentLength") or 0) > limit:
                raise ObjectTooLarge(f"larger than {limit} bytes")
            return _read_capped(answer["Body"], limit, time.monotonic() + deadline, deadline)

        try:
            return with_retries_sync(fetch, policy=self.retry, retryable=is_transient)
        except bce.ClientError as exc:
            if http_status(exc) == 404 or error_code(exc) in ("NoSuchKey", "NoSuchBucket"):
                return None
            if http_status(exc) == 403:
                raise StorageUnavailable("access denied (check the credentials and "
                                         "s3:GetObject on this key)") from None
            error = exc.response.get("Error", {})
            raise StorageUnavailable(self.scrub(
                f"{error.get('Code', http_status(exc))}: {error.get('Message', '')}"
                .rstrip(": "))) from None
        except bce.NoCredentialsError as exc:
            raise StorageUnavailable(describe(exc)) from None
        except (bce.BotoCoreError, OSError) as exc:
            raise StorageUnavailable(self.scrub(f"{type(exc).__name__}: {exc}")) from None

    def sha256(self, key: str) -> str:
        """Download *key* and return its SHA-256, retrying a transfer that fails midway."""
        def download() -> str:
            # ChecksumMode: botocore also checks a whole-object checksum as it reads,
            # raising FlexibleChecksumError on a mismatch - retried here, whole.
            answer = self.client.get_object(Bucket=self.name, Key=key, ChecksumMode="ENABLED")
            hasher = hashlib.sha256()
            for block in answer["Body"].iter_chunks(1024 * 1024):
                hasher.update(block)
            return hasher.hexdigest()

        return with_retries_sync(download, policy=self.retry, retryable=is_transient)

    def pages(self, prefix: str, **params: Any) -> Iterator[dict[str, Any]]:
        """ListObjectsV2 pages of everything under *prefix* (each request retried)."""
        query: dict[str, Any] = {"Bucket": self.name, "Prefix": prefix,
                                 "MaxKeys": LIST_PAGE, **params}
        while True:
            page = self.call(self.client.list_objects_v2, **query)
            yield page
            if not page.get("IsTruncated"):
                return
            query["ContinuationToken"] = page["NextContinuationToken"]

    def objects(self, prefix: str) -> Iterator[dict[str, Any]]:
        """Every object under *prefix*."""
        for page in self.pages(prefix):
            yield from page.get("Contents", [])

    def upload_pages(self, prefix: str) -> Iterator[dict[str, Any]]:
        """ListMultipartUploads pages under *prefix*."""
        params: dict[str, Any] = {"Bucket": self.name, "Prefix": prefix}
        while True:
            page = self.call(self.client.list_multipart_uploads, **params)
            yield page
            if not page.get("IsTruncated"):
                return
            params["KeyMarker"] = page.get("NextKeyMarker")
            params["UploadIdMarker"] = page.get("NextUploadIdMarker")

    # ------------------------------------------------------------ multipart uploads

    def create_upload(self, key: str) -> str:
        """CreateMultipartUpload with SHA-256 part checksums; returns the UploadId."""
        answer = self.call(self.client.create_multipart_upload, Bucket=self.name, Key=key,
                           ChecksumAlgorithm="SHA256", **self.put_args)
        return str(answer["UploadId"])

    def upload_part(self, key: str, upload_id: str, number: int, data: PartBuffer,
                    checksum: str) -> dict[str, Any]:
        """UploadPart of *data* (whose base64 SHA-256 is *checksum*), from the buffer."""
        reader = data.reader()
        try:
            return self.call(self.data_client.upload_part, Bucket=self.name, Key=key,
                             UploadId=upload_id, PartNumber=number, Body=reader,
                             ChecksumAlgorithm="SHA256", ChecksumSHA256=checksum)
        finally:
            reader.close()

    def complete_upload(self, key: str, upload_id: str,
                        parts: list[dict[str, Any]]) -> dict[str, Any]:
        return self.call(self.client.complete_multipart_upload, Bucket=self.name, Key=key,
                         UploadId=upload_id, MultipartUpload={"Parts": parts})

    def abort_upload(self, key: str, upload_id: str) -> str | None:
        """AbortMultipartUpload; None when done (or gone already), else why it failed."""
        try:
            self.call(self.client.abort_multipart_upload, Bucket=self.name, Key=key,
                      UploadId=upload_id)
        except bce.ClientError as exc:
            if error_code(exc) != "NoSuchUpload":
                return self.scrub(describe(exc))
        except bce.BotoCoreError as exc:
            return self.scrub(describe(exc))
        return None

    # ------------------------------------------------------------------ wording

    def item_error(self, action: str, key: str, exc: BaseException) -> StorageError:
        """The error an item fails with when a request about *key* failed."""
        return StorageError(self.scrub(
            f"S3 {action} of s3://{self.name}/{key} failed: {describe(exc)}"))

    def unavailable(self, doing: str, exc: BaseException) -> StorageUnavailable:
        """The error the run stops with when the bucket cannot be used at all."""
        return StorageUnavailable(self.scrub(f"cannot {doing} {self.description}: "
                                             f"{describe(exc)}"))

    def scrub(self, message: str) -> str:
        """*message* without any credential this bucket was opened with."""
        for secret in self._secrets:
            message = message.replace(secret, "***")
        return message


def _read_capped(body: Any, limit: int, until: float, deadline: float) -> bytes:
    """Read a streaming body, refusing more than *limit* bytes or past *until*."""
    chunks: list[bytes] = []
    size = 0
    while chunk := body.read(min(1024 * 1024, limit + 1 - size)):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise ObjectTooLarge(f"larger than {limit} bytes")
        if time.monotonic() > until:
            raise StorageUnavailable(f"took longer than {deadline:g}s")
    return b"".join(chunks)
