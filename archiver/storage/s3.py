"""S3 (and S3-compatible) storage: streamed, checksummed end to end, nothing orphaned.

Keys are ``<prefix><video_model_id>/<file>``, the same layout as on local disk, with
``archive.json`` written last as the commit marker.

How a media file travels (:class:`S3FileSink`):

- The downloader's chunks are gathered into a buffer of at most ``part_size`` bytes.
  A file that ends within one part goes as one PutObject with its whole-object
  ``ChecksumSHA256`` and the whole-file SHA-256 as metadata ``sha256``.
- A larger file becomes a multipart upload: each full part goes as an UploadPart with
  that part's SHA-256 (``ChecksumSHA256``), which S3 checks on arrival and combines into
  a composite checksum (``<base64>-N``) at CompleteMultipartUpload. Its whole-file
  SHA-256 is not object metadata: it is unknown at CreateMultipartUpload, and setting
  metadata afterwards means copying the whole object. ``archive.json`` and
  ``SHA256SUMS`` hold it, as on local disk.
- Memory: at most ``parts_in_flight`` parts per file exist at once, counting the one
  being filled, so a run holds at most ``part_size x parts_in_flight x downloads`` bytes
  of parts, whatever the file size. :meth:`S3FileSink.write` waits (back-pressure) when
  the limit is reached. Part buffers are anonymous memory maps, reused from part to part.
- boto3 blocks, so every request runs in this storage's own thread pool, never on the
  event loop (and never in the loop's small default executor).

The skip check (:meth:`S3Storage.archived`) lists the prefix with ListObjectsV2,
jumping ahead with ``StartAfter`` to the next id it still needs: at most one request per
1,000 keys, or per id, whichever is fewer; never a HEAD per id.

What ``archive.json`` gets for each media file (the dict :meth:`S3FileSink.commit`
returns, under ``"s3"``): ``key``, ``etag``, ``checksum_sha256`` (base64, ``-N`` suffixed
for a multipart upload), ``checksum_type`` (``FULL_OBJECT`` or ``COMPOSITE``),
``part_size`` and ``parts`` for a multipart upload, ``version_id`` and
``server_side_encryption`` when S3 reports them, and ``checksum_verified``: whether S3
itself reported a checksum equal to the one computed while streaming (a store that does
not report checksums gets ``false``, and the computed value is recorded). A
verifier can compare ``checksum_sha256`` with ``HeadObject(ChecksumMode=ENABLED)``
without downloading anything.

Failure handling:

- Aborting a file aborts its multipart upload (an UploadId is ours alone). Aborting an
  item aborts its files' uploads and **deletes nothing**: an object this run made final
  under ``<prefix><id>/video.mp4``... is, byte for byte, the object another run (another
  host: locks are local) may have just uploaded under the same key and listed in its
  committed ``archive.json``. Deleting "our" object would delete theirs. A conditional
  delete cannot tell them apart (equal bytes, equal ETag), and staging keys copied at
  commit would double every byte written, need UploadPartCopy above 5 GiB and change
  the checksum type ``verify`` compares. So an uncommitted attempt leaves its objects:
  without ``archive.json`` they never count as archived (``status`` says ``partial``),
  the next attempt overwrites them with the same bytes, and ``archiver gc`` reaps those
  of ids nobody committed (:meth:`S3Storage.collect_garbage`). The clean-up is handed to
  the thread pool in one piece before the first ``await``, so it completes even if the
  task is cancelled again meanwhile (:meth:`S3Storage.close` waits for it).
- Before ``archive.json``, one listing of the item's folder checks that every file the
  record lists is there (``gc`` deleting in the instant after its last look would
  otherwise let a record name a missing file); if not, the item fails, unrecorded.
- ``archive.json`` is written with ``If-None-Match: *``: a 412 means another run
  committed this id first, which is a success. Stores that ignore the header overwrite;
  one that refuses it (501) gets unconditional writes from then on.
- Requests are retried here, with bounded attempts and time, on throttling (SlowDown,
  503 and friends), connection errors and ``FlexibleChecksumError``; botocore's own retry
  loop is switched off so that there is exactly one, explicit, retry policy.
- botocore exceptions never leave this module: :meth:`S3Storage.open` and
  :meth:`S3Storage.archived` raise :class:`~archiver.errors.StorageUnavailable` (exit 2),
  item operations :class:`~archiver.errors.DownloadError`. Messages name the bucket and
  key, never credentials.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import email.utils
import hashlib
import logging
import mmap
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import boto3
import botocore.exceptions as bce
import stamina
from botocore.config import Config as BotoConfig

from ..errors import DownloadError, StorageUnavailable
from ..lease import LEASE_FOLDER, S3Lease
from ..manifest import ID_PATTERN
from ..models import RESULT_FILES
from .base import INFO_NAME, RECORD_NAME, SUMS_NAME, Garbage, GcResult, Partial

if TYPE_CHECKING:
    from ..config import S3StorageConfig

log = logging.getLogger(__name__)

T = TypeVar("T")

MiB = 1024 * 1024
#: S3 refuses part numbers above this.
MAX_PARTS = 10_000
#: Keys per ListObjectsV2 page (S3's maximum).
LIST_PAGE = 1000

#: Error codes worth another attempt: throttling, S3's own transient failures, and a
#: conditional write racing another one (AWS documents retrying that 409).
RETRYABLE_CODES = frozenset({
    "SlowDown", "Throttling", "ThrottlingException", "RequestThrottled",
    "TooManyRequestsException", "RequestTimeout", "InternalError", "ServiceUnavailable",
    "ConditionalRequestConflict",
})
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
#: HTTP status of a failed ``If-None-Match: *``: the key exists.
PRECONDITION_FAILED = 412
#: Names an item's objects have. ``gc`` deletes nothing else, so a prefix shared with
#: other data (or an empty prefix) never loses what the archiver did not write.
MEDIA_NAMES = frozenset(name for _, name in RESULT_FILES)
ITEM_NAMES = MEDIA_NAMES | {INFO_NAME, SUMS_NAME}
#: Name of the write probe open() puts at the top of the prefix (then deletes).
PROBE_PREFIX = ".archiver-probe-"
#: Keys per DeleteObjects request (S3's maximum).
DELETE_BATCH = 1000


def _is_transient(exc: Exception) -> bool:
    """Whether *exc*, raised by one S3 request, is worth retrying."""
    if isinstance(exc, bce.ClientError):
        code = _code(exc)
        return code in RETRYABLE_CODES or _status(exc) in RETRYABLE_STATUS
    if isinstance(exc, bce.SSLError):
        return False  # a certificate problem does not fix itself
    # Connection refused/reset/closed, connect and read timeouts; s3transfer does not retry
    # FlexibleChecksumError (a response that failed its checksum), so it is ours to retry.
    return isinstance(exc, bce.ConnectionError | bce.HTTPClientError
                      | bce.FlexibleChecksumError)


def _code(exc: bce.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: bce.ClientError) -> int | None:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(status) if status is not None else None


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def composite_checksum(part_digests: Iterable[bytes]) -> str:
    """S3's composite SHA-256 of a multipart upload: base64(sha256(part digests)) + ``-N``."""
    digests = list(part_digests)
    return f"{_b64(hashlib.sha256(b''.join(digests)).digest())}-{len(digests)}"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounds for retrying one S3 request: attempts and total time, then backoff (seconds)."""

    attempts: int = 5
    timeout: float = 120.0
    wait_initial: float = 0.5
    wait_max: float = 10.0


class S3Storage:
    """Archive under ``s3://<bucket>/<prefix><video_model_id>/``.

    Credentials come from boto3's standard chain (environment, shared config and
    ``profile``, instance role) and are never stored here. ``part_size`` is checked by
    the configuration (S3 wants at least 5 MiB); tests may pass a smaller one directly.
    """

    def __init__(self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None,
                 region: str | None = None, profile: str | None = None,
                 addressing_style: str = "auto", sse: str | None = None,
                 kms_key_id: str | None = None, storage_class: str | None = None,
                 part_size: int = 8 * MiB, parts_in_flight: int = 2,
                 max_concurrency: int = 32, retry: RetryPolicy | None = None) -> None:
        if part_size < 1 or parts_in_flight < 1 or max_concurrency < 1:
            raise ValueError("part_size, parts_in_flight and max_concurrency must be >= 1")
        self.bucket = bucket
        self.prefix = prefix
        self.endpoint_url = endpoint_url
        self.region = region
        self.profile = profile
        self.addressing_style = addressing_style
        self.part_size = part_size
        self.parts_in_flight = parts_in_flight
        self.max_concurrency = max_concurrency
        self.retry = retry or RetryPolicy()
        #: archive.json is written with If-None-Match: * (until the store refuses it).
        self.conditional_writes = True
        self.description = f"s3://{bucket}/{prefix}"
        #: Applied to every PutObject and CreateMultipartUpload.
        self.put_args: dict[str, str] = {}
        if sse is not None:
            self.put_args["ServerSideEncryption"] = sse
        if kms_key_id is not None:
            self.put_args["SSEKMSKeyId"] = kms_key_id
        if storage_class is not None:
            self.put_args["StorageClass"] = storage_class
        self._session: Any = None
        self._client: Any = None
        self._data_client: Any = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        # Part buffers not in use, for the next part: a fresh map costs a page fault per
        # 4 KiB when first written (~0.5 ms per MiB), a reused one nothing. The pool only
        # holds what was in use at once before, so the memory bound is unchanged.
        self._idle_buffers: list[_PartBuffer] = []
        self._buffers_lock = threading.Lock()
        # Only to scrub them from messages (defence in depth); never logged or shown.
        self._secrets: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, cfg: S3StorageConfig) -> S3Storage:
        """The storage a validated ``storage.s3`` section describes."""
        return cls(cfg.bucket, cfg.prefix, endpoint_url=cfg.endpoint_url, region=cfg.region,
                   profile=cfg.profile, addressing_style=cfg.addressing_style, sse=cfg.sse,
                   kms_key_id=cfg.kms_key_id, storage_class=cfg.storage_class,
                   part_size=cfg.part_size, parts_in_flight=cfg.parts_in_flight)

    def __repr__(self) -> str:
        return f"S3Storage({self.description!r})"

    # ------------------------------------------------------------------ lifecycle

    async def open(self, readonly: bool = False) -> None:
        """Build the clients, then check the bucket is reachable and writable.

        With *readonly* (dry runs), check only that it can be listed: write nothing.
        """
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=self.max_concurrency, thread_name_prefix="archiver-s3")
        try:
            await self._in_thread(self._open_sync, readonly)
        except BaseException as exc:
            await self.close()  # the run stops here: no threads left behind
            if isinstance(exc, bce.BotoCoreError | bce.ClientError):
                raise StorageUnavailable(self._scrub(
                    f"cannot use {self.description}: {_describe(exc)}")) from None
            raise

    def _open_sync(self, readonly: bool) -> None:
        try:
            session = boto3.session.Session(profile_name=self.profile)
        except bce.ProfileNotFound:
            raise StorageUnavailable(
                f"cannot use {self.description}: AWS profile {self.profile!r} not found"
            ) from None
        credentials = session.get_credentials()
        if credentials is None:
            raise StorageUnavailable(
                f"cannot use {self.description}: no AWS credentials found (environment, "
                "shared config/profile or instance role)")
        frozen = credentials.get_frozen_credentials()
        self._secrets = tuple(s for s in (frozen.access_key, frozen.secret_key, frozen.token)
                              if s and len(s) >= 4)

        self._close_clients()  # opened again: fresh clients
        self._session = session
        self._client = self._make_client(True)
        # For PutObject and UploadPart only, which always carry x-amz-checksum-sha256: that
        # header is signed and S3 checks the body against it, so hashing the body a second
        # time for the signature (botocore does on http:// endpoints, and on https:// when
        # the checksum is the caller's) would protect nothing more and cost a SHA-256 pass.
        self._data_client = self._make_client(False)
        self._check_bucket(readonly)

    def _make_client(self, sign_payload: bool, timeout: float | None = None) -> Any:
        config = BotoConfig(
            s3={"addressing_style": self.addressing_style,
                "payload_signing_enabled": sign_payload},
            # One retry policy, ours (see module docstring): botocore makes one attempt.
            retries={"mode": "standard", "max_attempts": 1},
            max_pool_connections=self.max_concurrency,
            connect_timeout=timeout or 10,
            read_timeout=timeout or 60,
        )
        return self._session.client("s3", endpoint_url=self.endpoint_url,
                                    region_name=self.region, config=config)

    def lease(self, name: str, *, ttl: float, what: str,
              on_lost: Callable[[str], None] | None = None) -> S3Lease:
        """The run lock of this storage: a lease object under the prefix (:mod:`archiver.lease`),
        so that runs on other hosts and pods are kept out too. Call after :meth:`open`.

        The lease has its own client, whose timeouts are short next to *ttl*: a renewal
        that hangs must fail in time to be noticed.
        """
        client = self._make_client(True, timeout=max(1.0, min(10.0, ttl / 4)))
        return S3Lease(client, self.bucket, f"{self.prefix}{LEASE_FOLDER}{name}", ttl=ttl,
                       what=what, on_lost=on_lost, scrub=self._scrub,
                       # Encryption as configured (a bucket policy may demand it); not
                       # the storage class: a lease in GLACIER could not be read back.
                       put_args={k: v for k, v in self.put_args.items()
                                 if k != "StorageClass"})

    def _check_bucket(self, readonly: bool) -> None:
        try:
            self._call(self._client.head_bucket, Bucket=self.bucket)
        except bce.ClientError as exc:
            raise StorageUnavailable(self._bucket_problem(exc)) from None
        if readonly:
            return
        # HeadBucket proves we may list, not write: a tiny probe object under the prefix
        # proves the rest (PutObject, with the configured encryption and storage class).
        probe = f"{self.prefix}{PROBE_PREFIX}{secrets.token_hex(8)}"
        try:
            self._put(probe, b"")
        except bce.ClientError as exc:
            raise StorageUnavailable(self._scrub(
                f"cannot write to {self.description}: {_describe(exc)}")) from None
        try:
            # The probe's name is unique to this run: deleting it can hurt no one.
            self._call(self._client.delete_object, Bucket=self.bucket, Key=probe)
        except bce.ClientError as exc:
            # Runs never delete anything else; `archiver gc` reaps the probe later.
            log.info("cannot delete the write probe %s (%s); archiver gc removes it",
                     probe, _describe(exc))

    def _bucket_problem(self, exc: bce.ClientError) -> str:
        status = _status(exc)
        if status == 404:
            return f"S3 bucket {self.bucket!r} does not exist ({self.description})"
        if status == 403:
            return (f"access to S3 bucket {self.bucket!r} denied: check the credentials "
                    f"and the bucket policy ({self.description})")
        if status == 301 or _code(exc) == "PermanentRedirect":
            region = exc.response.get("ResponseMetadata", {}).get(
                "HTTPHeaders", {}).get("x-amz-bucket-region", "another region")
            return (f"S3 bucket {self.bucket!r} is in {region}: set storage.s3.region "
                    f"({self.description})")
        return self._scrub(f"cannot use {self.description}: {_describe(exc)}")

    async def close(self) -> None:
        """Wait for pending clean-ups (aborts), then release the thread pool."""
        executor, self._executor = self._executor, None
        if executor is not None:
            # Blocking: run it off the loop so other tasks (progress output) keep going.
            await asyncio.get_running_loop().run_in_executor(None, executor.shutdown, True)
        self._close_clients()
        with self._buffers_lock:
            idle, self._idle_buffers = self._idle_buffers, []
        for buffer in idle:
            buffer.close()

    def _close_clients(self) -> None:
        for client in (self._client, self._data_client):
            if client is not None:
                client.close()
        self._client = self._data_client = None

    # ---------------------------------------------------------------- skip check

    async def archived(self, ids: Iterable[str]) -> set[str]:
        """Those of *ids* with an ``archive.json``, found by listing, not by HEAD per id."""
        scan = await self._reading(self._scan, set(ids))
        return {i for i, (_, committed) in scan.items() if committed}

    def _scan(self, ids: set[str]) -> dict[str, tuple[bool, bool]]:
        """Per id: (any object under ``<prefix><id>/``, its ``archive.json`` exists).

        Seek-listing: S3 lists keys in order, and each ListObjectsV2 request starts
        (``StartAfter``) right before the next folder still undecided, so a manifest
        whose ids are dense in the archive costs what plain pagination costs (a request
        per 1,000 keys), and a small manifest against a huge prefix about one request
        per id - whichever is fewer, never a HEAD per id.
        """
        folders = sorted(f"{self.prefix}{i}/" for i in ids)
        wanted = set(folders)
        seen: set[str] = set()
        committed: set[str] = set()
        after = ""
        index = requests = 0
        while index < len(folders):
            # "<prefix><id>" sorts before every key of the folder "<prefix><id>/".
            start = max(after, folders[index][:-1])
            page = self._call(self._client.list_objects_v2, Bucket=self.bucket,
                              Prefix=self.prefix, StartAfter=start, MaxKeys=LIST_PAGE)
            requests += 1
            keys = [obj["Key"] for obj in page.get("Contents", [])]
            for key in keys:
                folder = self.prefix + key[len(self.prefix):].split("/", 1)[0] + "/"
                if folder in wanted:
                    seen.add(folder)
                    if key == folder + RECORD_NAME:
                        committed.add(folder)
            if not page.get("IsTruncated") or not keys:
                break
            after = keys[-1]
            # A folder is decided once the listing is past all of its keys.
            while index < len(folders) and folders[index] < after \
                    and not after.startswith(folders[index]):
                index += 1
        log.debug("skip check: %d of %d ids archived in %s (%d list requests)",
                  len(committed), len(ids), self.description, requests)
        start_id = len(self.prefix)
        return {f[start_id:-1]: (f in seen, f in committed) for f in folders}

    # ------------------------------------------------- reading: verify and status

    async def list_archived(self) -> list[str]:
        """Every id under the prefix that has an ``archive.json`` (one full listing)."""
        suffix = "/" + RECORD_NAME

        def scan() -> list[str]:
            names = (obj["Key"][len(self.prefix):] for obj in self._list(self.prefix))
            return sorted(n[:-len(suffix)] for n in names
                          if n.endswith(suffix) and n.count("/") == 1)

        return await self._reading(scan)

    async def read_record(self, video_model_id: str) -> bytes | None:
        """The ``archive.json`` of an id, or None."""
        key = f"{self.prefix}{video_model_id}/{RECORD_NAME}"

        def read() -> bytes | None:
            try:
                answer = self._call(self._client.get_object, Bucket=self.bucket, Key=key)
            except bce.ClientError as exc:
                if _status(exc) == 404:
                    return None
                raise
            return bytes(answer["Body"].read())

        return await self._reading(read)

    async def list_files(self, video_model_id: str) -> dict[str, int]:
        """Objects of an item: name -> size."""
        folder = f"{self.prefix}{video_model_id}/"

        def scan() -> dict[str, int]:
            return {obj["Key"][len(folder):]: int(obj["Size"]) for obj in self._list(folder)
                    if "/" not in obj["Key"][len(folder):]}

        return await self._reading(scan)

    async def item_states(self, ids: Iterable[str]) -> dict[str, str]:
        """archived / partial (objects but no ``archive.json``) / absent, per id."""
        scan = await self._reading(self._scan, set(ids))
        return {i: "archived" if committed else "partial" if seen else "absent"
                for i, (seen, committed) in scan.items()}

    async def check_file(self, video_model_id: str, entry: dict[str, Any],
                         deep: bool) -> str | None:
        """Compare an object with its archive.json entry: S3's own checksum, or re-hashed.

        Without *deep* nothing is downloaded: HeadObject's SHA-256 checksum (which S3
        computed from the bytes it received) must equal the one recorded. With *deep*
        the object is downloaded and hashed.
        """
        key = f"{self.prefix}{video_model_id}/{entry.get('name')}"
        try:
            if deep:
                digest = await self._reading(self._hash_object, key)
                if digest != entry.get("sha256"):
                    return f"sha256 {digest}, archive.json says {entry.get('sha256')}"
                return None
            head = await self._reading(lambda: self._call(
                self._client.head_object, Bucket=self.bucket, Key=key, ChecksumMode="ENABLED"))
        except StorageUnavailable as exc:
            return str(exc)  # e.g. 404: listed a moment ago, gone now
        return _compare_checksums(head, entry)

    def _hash_object(self, key: str) -> str:
        """Download *key* and return its SHA-256, retrying a transfer that fails midway."""
        retry = self.retry
        for attempt in stamina.retry_context(
            on=_is_transient, attempts=retry.attempts, timeout=retry.timeout,
            wait_initial=retry.wait_initial, wait_max=retry.wait_max,
            wait_jitter=retry.wait_initial,
        ):
            with attempt:
                # ChecksumMode: botocore also checks a whole-object checksum as it reads,
                # raising FlexibleChecksumError on a mismatch - retried here, whole.
                answer = self._client.get_object(Bucket=self.bucket, Key=key,
                                                 ChecksumMode="ENABLED")
                hasher = hashlib.sha256()
                for block in answer["Body"].iter_chunks(MiB):
                    hasher.update(block)
                return hasher.hexdigest()
        raise AssertionError("unreachable")  # pragma: no cover - stamina re-raises

    def _list(self, prefix: str) -> Iterator[dict[str, Any]]:
        """Every object under *prefix*, page by page (each request retried)."""
        params: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix,
                                  "MaxKeys": LIST_PAGE}
        while True:
            page = self._call(self._client.list_objects_v2, **params)
            yield from page.get("Contents", [])
            if not page.get("IsTruncated"):
                return
            params["ContinuationToken"] = page["NextContinuationToken"]

    async def _reading(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a read in the pool; a failure means the archive cannot be read (exit 2)."""
        try:
            return await self._in_thread(fn, *args)
        except (bce.BotoCoreError, bce.ClientError) as exc:
            raise StorageUnavailable(self._scrub(
                f"cannot read {self.description}: {_describe(exc)}")) from None

    # ---------------------------------------------------------------- archiver gc

    async def collect_garbage(self, ids: Iterable[str] | None, min_age: float,
                              dry_run: bool) -> GcResult:
        """Delete the objects of ids without ``archive.json`` whose every object is older
        than *min_age* seconds, leftover write probes, and multipart uploads initiated
        longer ago than that. Ages are measured by S3's clock (``LastModified``,
        ``Initiated`` against the listing's ``Date``), so no host's clock skew counts.

        Only names an item has (``video.mp4``, ``info.json``, ...) under a folder named
        like an id are deleted; a committed item is never touched. Right before each
        DeleteObjects (and before each retry of one) the id's folder is listed again, so
        a run that has written to it since (its objects are new) makes gc leave it alone.
        What remains is one round trip between that listing and the delete; a run that
        uploads in exactly that moment then finds its object gone when it checks, before
        writing ``archive.json`` (:meth:`S3ItemWriter.commit`), and fails the item
        instead of committing a record with a missing file.
        """
        wanted = None if ids is None else set(ids)
        return await self._reading(self._collect_sync, wanted, min_age, dry_run)

    def _collect_sync(self, ids: set[str] | None, min_age: float, dry_run: bool) -> GcResult:
        result = GcResult()
        now, folders, probes = self._gc_listing(ids)
        cutoff = now - min_age
        for item_id, objects in sorted(folders.items()):
            garbage = _item_garbage(objects, cutoff)
            if garbage is None:
                continue
            if not garbage:
                result.kept_recent.append(item_id)
            elif dry_run:
                result.removed.extend(self._garbage(o, item_id) for o in garbage)
            else:
                self._gc_item(item_id, cutoff, result)
        stale = [p for p in probes if _modified(p) < cutoff]
        if dry_run:
            result.removed.extend(self._garbage(o, None) for o in stale)
        else:
            self._gc_probes(stale, result)
        self._gc_uploads(ids, cutoff, dry_run, result)
        return result

    def _garbage(self, obj: dict[str, Any], item_id: str | None) -> Garbage:
        return Garbage(f"s3://{self.bucket}/{obj['Key']}", int(obj.get("Size", 0)), item_id)

    def _gc_item(self, item_id: str, cutoff: float, result: GcResult) -> None:
        """Delete one id's leftovers, listing its folder again right before every try."""
        retry = self.retry
        for attempt in range(1, retry.attempts + 1):
            # A run may have written to this id since the last listing: look again.
            garbage = _item_garbage(self._gc_folder(item_id), cutoff)
            if not garbage:
                return
            try:
                # Not self._call: a retry after a backoff must list again first.
                answer = self._client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": o["Key"]}
                                                            for o in garbage], "Quiet": True})
            except (bce.BotoCoreError, bce.ClientError) as exc:
                if attempt < retry.attempts and _is_transient(exc):
                    time.sleep(min(retry.wait_max, retry.wait_initial * 2 ** (attempt - 1)))
                    continue
                result.failures.extend(self._scrub(
                    f"cannot delete s3://{self.bucket}/{o['Key']}: {_describe(exc)}")
                    for o in garbage)
                return
            self._gc_deleted(garbage, item_id, answer, result)
            if RECORD_NAME in self._gc_folder(item_id):
                # Committed while gc deleted (see collect_garbage): say so loudly.
                result.failures.append(f"{item_id}: committed by a run while gc removed "
                                       "its objects; check it with archiver verify")
            return

    def _gc_probes(self, probes: list[dict[str, Any]], result: GcResult) -> None:
        """Delete leftover write probes: their names are unique, nobody else uses them."""
        for start in range(0, len(probes), DELETE_BATCH):
            batch = probes[start:start + DELETE_BATCH]
            try:
                answer = self._call(self._client.delete_objects, Bucket=self.bucket,
                                    Delete={"Objects": [{"Key": o["Key"]} for o in batch],
                                            "Quiet": True})
            except (bce.BotoCoreError, bce.ClientError) as exc:
                result.failures.extend(self._scrub(
                    f"cannot delete s3://{self.bucket}/{o['Key']}: {_describe(exc)}")
                    for o in batch)
                continue
            self._gc_deleted(batch, None, answer, result)

    def _gc_deleted(self, objects: list[dict[str, Any]], item_id: str | None,
                    answer: dict[str, Any], result: GcResult) -> None:
        errors = {e.get("Key"): e for e in answer.get("Errors", [])}
        for obj in objects:
            error = errors.get(obj["Key"])
            if error is None:
                result.removed.append(self._garbage(obj, item_id))
            else:
                result.failures.append(f"cannot delete s3://{self.bucket}/{obj['Key']}: "
                                       f"{error.get('Code')}: {error.get('Message')}")

    def _gc_listing(self, ids: set[str] | None) -> tuple[
            float, dict[str, dict[str, dict[str, Any]]], list[dict[str, Any]]]:
        """(S3's time, id -> name -> object, leftover probes): one listing of the
        prefix, or of each id's folder when *ids* are given."""
        now: float | None = None
        folders: dict[str, dict[str, dict[str, Any]]] = {}
        probes: list[dict[str, Any]] = []
        prefixes = [self.prefix] if ids is None else [f"{self.prefix}{i}/" for i in sorted(ids)]
        for prefix in prefixes:
            for page in self._pages(prefix):
                # The earliest S3 time seen: ages only come out younger, never older.
                now = now if now is not None else _server_time(page)
                for obj in page.get("Contents", []):
                    name = obj["Key"][len(self.prefix):]
                    item_id, _, rest = name.partition("/")
                    if not rest:
                        if name.startswith(PROBE_PREFIX):
                            probes.append(obj)
                    elif ID_PATTERN.fullmatch(item_id):
                        folders.setdefault(item_id, {})[rest] = obj
        return now if now is not None else time.time(), folders, probes

    def _pages(self, prefix: str) -> Iterator[dict[str, Any]]:
        params: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix,
                                  "MaxKeys": LIST_PAGE}
        while True:
            page = self._call(self._client.list_objects_v2, **params)
            yield page
            if not page.get("IsTruncated"):
                return
            params["ContinuationToken"] = page["NextContinuationToken"]

    def _gc_folder(self, item_id: str) -> dict[str, dict[str, Any]]:
        folder = f"{self.prefix}{item_id}/"
        return {obj["Key"][len(folder):]: obj for page in self._pages(folder)
                for obj in page.get("Contents", [])}

    def _gc_uploads(self, ids: set[str] | None, cutoff: float, dry_run: bool,
                    result: GcResult) -> None:
        """Abort multipart uploads of item files initiated before *cutoff*: no attempt
        in progress is that old, and no committed object depends on an open upload."""
        params: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.prefix}
        while True:
            page = self._call(self._client.list_multipart_uploads, **params)
            for upload in page.get("Uploads", []):
                key = str(upload["Key"])
                item_id, _, name = key[len(self.prefix):].partition("/")
                if name not in MEDIA_NAMES or not ID_PATTERN.fullmatch(item_id) \
                        or (ids is not None and item_id not in ids):
                    continue
                if upload["Initiated"].timestamp() >= cutoff:
                    continue
                found = Garbage(f"multipart upload of s3://{self.bucket}/{key}", 0, item_id,
                                kind="upload")
                if not dry_run:
                    try:
                        self._call(self._client.abort_multipart_upload, Bucket=self.bucket,
                                   Key=key, UploadId=upload["UploadId"])
                    except bce.ClientError as exc:
                        if _code(exc) != "NoSuchUpload":  # gone already: fine
                            result.failures.append(self._scrub(
                                f"cannot abort the {found.where}: {_describe(exc)}"))
                            continue
                    except bce.BotoCoreError as exc:
                        result.failures.append(self._scrub(
                            f"cannot abort the {found.where}: {_describe(exc)}"))
                        continue
                result.removed.append(found)
            if not page.get("IsTruncated"):
                return
            params["KeyMarker"] = page.get("NextKeyMarker")
            params["UploadIdMarker"] = page.get("NextUploadIdMarker")

    # -------------------------------------------------------------------- items

    def item(self, video_model_id: str) -> S3ItemWriter:
        return S3ItemWriter(self, f"{self.prefix}{video_model_id}/")

    # ------------------------------------------------------------ request helpers

    def _take_buffer(self) -> _PartBuffer:
        with self._buffers_lock:
            if self._idle_buffers:
                return self._idle_buffers.pop()
        return _PartBuffer(self.part_size)

    def _give_back(self, buffer: _PartBuffer) -> None:
        buffer.size = 0
        with self._buffers_lock:
            if self._executor is not None:
                self._idle_buffers.append(buffer)
                return
        buffer.close()  # closed storage: nothing will reuse it

    def _submit(self, fn: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
        if self._executor is None:
            raise RuntimeError("S3Storage used before open() or after close()")
        return self._executor.submit(fn, *args)

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.wrap_future(self._submit(fn, *args))

    def _call(self, method: Callable[..., dict[str, Any]], **params: Any) -> dict[str, Any]:
        """One S3 request, retried on transient failures within :attr:`retry`'s bounds."""
        retry = self.retry
        body = params.get("Body")
        for attempt in stamina.retry_context(
            on=_is_transient, attempts=retry.attempts, timeout=retry.timeout,
            wait_initial=retry.wait_initial, wait_max=retry.wait_max,
            wait_jitter=retry.wait_initial,
        ):
            with attempt:
                if attempt.num > 1:
                    log.info("retrying S3 %s of %s (attempt %d)",
                             _operation(method), params.get("Key", self.bucket), attempt.num)
                    if isinstance(body, _Reader):
                        body.seek(0)  # botocore starts where the failed attempt stopped
                return method(**params)
        raise AssertionError("unreachable")  # pragma: no cover - stamina re-raises

    def _put(self, key: str, data: bytes | _PartBuffer, *, sha256_hex: str | None = None,
             if_none_match: bool = False) -> tuple[dict[str, Any], str]:
        """PutObject with its SHA-256 checksum (and as metadata); returns (answer, b64)."""
        digest = data.sha256() if isinstance(data, _PartBuffer) else hashlib.sha256(data).digest()
        if sha256_hex is not None and digest.hex() != sha256_hex:
            # The bytes in hand are not the bytes the downloader hashed: never store them.
            raise DownloadError(f"{key}: buffered bytes do not match the download's SHA-256")
        b64 = _b64(digest)
        body = data.reader() if isinstance(data, _PartBuffer) else data
        params: dict[str, Any] = dict(
            Bucket=self.bucket, Key=key, Body=body, ChecksumAlgorithm="SHA256",
            ChecksumSHA256=b64, Metadata={"sha256": digest.hex()}, **self.put_args)
        if if_none_match:
            params["IfNoneMatch"] = "*"
        try:
            return self._call(self._data_client.put_object, **params), b64
        finally:
            if isinstance(body, _Reader):
                body.close()

    def _item_error(self, action: str, key: str, exc: BaseException) -> DownloadError:
        return DownloadError(self._scrub(
            f"S3 {action} of s3://{self.bucket}/{key} failed: {_describe(exc)}"))

    def _scrub(self, message: str) -> str:
        for secret in self._secrets:
            message = message.replace(secret, "***")
        return message


def _item_garbage(objects: dict[str, dict[str, Any]],
                  cutoff: float) -> list[dict[str, Any]] | None:
    """What gc may delete of one id's folder (name -> object): None if there is nothing
    to do (committed, or no item file), [] if something in it is too recent."""
    if RECORD_NAME in objects:
        return None  # committed: never touched
    ours = [obj for name, obj in objects.items() if name in ITEM_NAMES]
    if not ours:
        return None
    if any(_modified(obj) >= cutoff for obj in objects.values()):
        return []
    return ours


def _modified(obj: dict[str, Any]) -> float:
    return float(obj["LastModified"].timestamp())


def _server_time(answer: dict[str, Any]) -> float | None:
    """The ``Date`` of an S3 answer, as a timestamp (None if missing or unreadable)."""
    date = answer.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    try:
        return email.utils.parsedate_to_datetime(date).timestamp() if date else None
    except (TypeError, ValueError):
        return None


def _compare_checksums(head: dict[str, Any], entry: dict[str, Any]) -> str | None:
    """None if S3's SHA-256 checksum of an object matches its archive.json entry."""
    reported = head.get("ChecksumSHA256")
    facts = entry.get("s3") if isinstance(entry.get("s3"), dict) else {}
    recorded = facts.get("checksum_sha256")
    if recorded is None and facts.get("checksum_type") != "COMPOSITE":
        # No S3 facts recorded: a single PutObject's checksum is the file's own SHA-256.
        try:
            recorded = _b64(bytes.fromhex(str(entry.get("sha256"))))
        except ValueError:
            return "archive.json has no usable sha256"
    if reported is None:
        return "S3 reports no SHA-256 checksum for this object (use --deep)"
    # Compare the base64 digests: HEAD may leave off a composite checksum's "-N".
    if str(reported).split("-")[0] != str(recorded).split("-")[0]:
        return f"S3 checksum {reported}, archive.json says {recorded}"
    return None


def _operation(method: Callable[..., Any]) -> str:
    return getattr(method, "__name__", "request")


def _describe(exc: BaseException) -> str:
    """One line about a botocore error: code and message, or the transport problem."""
    if isinstance(exc, bce.ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code") or "error"
        status = _status(exc)
        message = str(error.get("Message") or "").strip()
        if code.isdigit():  # HEAD answers carry no body: only a status
            return f"HTTP {code}"
        return f"{code} (HTTP {status}): {message}"[:300] if message else f"{code} ({status})"
    if isinstance(exc, bce.NoCredentialsError | bce.PartialCredentialsError):
        return "no usable AWS credentials found (environment, shared config/profile, role)"
    return str(exc)[:300] or type(exc).__name__


class S3ItemWriter:
    """Writes one item's objects; :meth:`abort` aborts its multipart uploads, no more.

    Objects made final stay when the item is not committed: the same key may hold the
    same bytes that another run has just listed in its ``archive.json`` (see the module
    docstring). ``archiver gc`` removes those of ids that nobody committed.
    """

    def __init__(self, storage: S3Storage, folder: str) -> None:
        self._storage = storage
        self.folder = folder
        self._sinks: list[S3FileSink] = []
        # put_small / commit requests submitted to the pool: abort waits for them.
        self._ops: list[concurrent.futures.Future[Any]] = []
        # Keys of metadata files written: checked for presence before the commit.
        self._small_keys: list[str] = []
        self._committed = False
        self._abort_future: concurrent.futures.Future[None] | None = None

    async def partial(self, name: str) -> Partial | None:
        # S3 keeps no resumable partial download: a new attempt restarts from zero.
        return None

    async def open_file(self, name: str, *, resume: Partial | None = None,
                        validator: str | None = None, source: str = "") -> S3FileSink:
        self._check_usable()
        if resume is not None:  # partial() never offers one: appending would corrupt
            raise DownloadError(f"{self.folder}{name}: S3 storage does not resume files")
        sink = S3FileSink(self._storage, self.folder + name)
        self._sinks.append(sink)
        return sink

    async def put_small(self, name: str, data: bytes) -> None:
        self._check_usable()
        key = self.folder + name
        future = self._storage._submit(self._put_small_sync, key, data)
        self._ops.append(future)
        try:
            await asyncio.wrap_future(future)
        except (bce.BotoCoreError, bce.ClientError) as exc:
            raise self._storage._item_error("PutObject", key, exc) from None

    def _put_small_sync(self, key: str, data: bytes) -> None:
        self._storage._put(key, data)
        self._small_keys.append(key)

    async def commit(self, record: bytes) -> None:
        """Write ``archive.json`` with If-None-Match: a 412 (committed by another run) is fine."""
        self._check_usable()
        key = self.folder + RECORD_NAME
        future = self._storage._submit(self._commit_sync, key, record)
        self._ops.append(future)
        try:
            await asyncio.wrap_future(future)
        except (bce.BotoCoreError, bce.ClientError) as exc:
            raise self._storage._item_error("PutObject", key, exc) from None

    def _commit_sync(self, key: str, record: bytes) -> None:
        storage = self._storage
        self._check_present()
        try:
            storage._put(key, record, if_none_match=storage.conditional_writes)
        except bce.ClientError as exc:
            if _status(exc) == PRECONDITION_FAILED:
                # Another run committed this id between our skip check and now. Its record
                # stands (write-once); our objects carry the same bytes, so keep them.
                log.info("%s was committed by another run meanwhile; keeping its record",
                         key)
            elif storage.conditional_writes and (_status(exc) == 501
                                                 or _code(exc) == "NotImplemented"):
                # Stores that ignore If-None-Match just work; one that refuses it gets
                # plain writes from now on (racing runs then overwrite each other).
                log.warning("%s does not support If-None-Match: archive.json is written "
                            "unconditionally", storage.description)
                storage.conditional_writes = False
                storage._put(key, record)
            else:
                raise
        self._committed = True

    def _check_present(self) -> None:
        """Refuse to commit a record whose files are not all there (one listing).

        Nothing of this archiver deletes an object a run may still commit, except
        ``archiver gc`` in the one round trip between its last look at an id and its
        delete (see :meth:`S3Storage.collect_garbage`). An upload landing in exactly that
        moment is caught here, and the item fails instead of committing a missing file.
        """
        expected = {s.key for s in self._sinks if s._done} | set(self._small_keys)
        if not expected:
            return
        storage = self._storage
        present: set[str] = set()
        for page in storage._pages(self.folder):
            present.update(obj["Key"] for obj in page.get("Contents", []))
        missing = sorted(k[len(self.folder):] for k in expected - present)
        if missing:
            raise DownloadError(
                f"s3://{storage.bucket}/{self.folder}: {', '.join(missing)} vanished before "
                "archive.json was written (archiver gc or a lifecycle rule?); not committed")

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
            sink_aborts = [s._begin_abort() for s in self._sinks]
            for op in self._ops:
                op.cancel()  # not started yet: never will be
            self._abort_future = self._storage._submit(
                self._abort_sync, [f for f in sink_aborts if f is not None], list(self._ops))
        await _shielded(self._abort_future)

    def _abort_sync(self, sink_aborts: list[concurrent.futures.Future[None]],
                    ops: list[concurrent.futures.Future[Any]]) -> None:
        # Requests still running finish (or fail) first, so that when abort() returns
        # this writer has nothing in flight; objects they made final stay (see class).
        concurrent.futures.wait([*sink_aborts, *ops])
        if not self._committed and any(
                f.done() and not f.cancelled() and f.exception() is None for f in ops):
            log.debug("%s: not committed; objects written so far stay for the next "
                      "attempt or archiver gc", self.folder)

    def _check_usable(self) -> None:
        if self._abort_future is not None or self._committed:
            raise DownloadError(f"{self.folder}: writer already ended")


async def _shielded(future: concurrent.futures.Future[Any]) -> None:
    """Wait for a clean-up job; cancellation stops the wait, never the job."""
    try:
        await asyncio.shield(asyncio.wrap_future(future))
    except Exception:
        # Clean-up must not replace the error that caused it; say it went wrong.
        log.warning("S3 clean-up failed", exc_info=True)


def _consume(future: asyncio.Future[Any]) -> None:
    # Marks a failure as seen: abort() may leave part uploads no one awaits any more.
    if not future.cancelled():
        future.exception()


class S3FileSink:
    """One media file streaming into S3: one PutObject, or a multipart upload."""

    #: Parts go up in order as the bytes stream: a large file is fetched over one
    #: connection (ranges as parts would be possible, but are not done).
    supports_positional_writes = False

    def __init__(self, storage: S3Storage, key: str) -> None:
        self._storage = storage
        self.key = key
        self._part_size = storage.part_size
        # Allocated on the first write; handed to the pool job that uploads it.
        self._buffer: _PartBuffer | None = None
        self._written = 0
        self._create: concurrent.futures.Future[str] | None = None
        self._upload_id: str | None = None
        self._next_part = 1
        # Part uploads in flight: concurrent future -> its asyncio wrapper.
        self._inflight: dict[concurrent.futures.Future[_Part], asyncio.Future[_Part]] = {}
        self._parts: dict[int, _Part] = {}
        self._final: concurrent.futures.Future[Any] | None = None
        self._done = False
        self._abort_future: concurrent.futures.Future[None] | None = None

    # ------------------------------------------------------------------ writing

    async def write(self, chunk: bytes) -> None:
        self._check_open()
        view = memoryview(chunk)
        try:
            while view:
                self._check_open()  # an abort (of the whole item) may have come meanwhile
                # A full buffer is only sent once more data proves it is not the last part:
                # a file of exactly part_size bytes stays a single PutObject.
                if self._buffer is not None and self._buffer.full:
                    await self._send_part()
                if self._buffer is None:
                    self._buffer = self._storage._take_buffer()
                view = view[self._buffer.fill(view):]
        except BaseException:
            await self.abort()
            raise
        self._written += len(chunk)

    async def _send_part(self) -> None:
        if self._next_part > MAX_PARTS:
            raise DownloadError(
                f"{self.key}: more than {MAX_PARTS} parts of {self._part_size} bytes; "
                "raise storage.s3.part_size")
        if self._upload_id is None:
            if self._create is None:
                self._create = self._storage._submit(self._create_sync)
            try:
                self._upload_id = await asyncio.wrap_future(self._create)
            except (bce.BotoCoreError, bce.ClientError) as exc:
                raise self._storage._item_error("CreateMultipartUpload", self.key,
                                                exc) from None
        data, self._buffer = self._buffer, None
        assert data is not None
        number = self._next_part
        self._next_part += 1
        future = self._storage._submit(self._upload_part_sync, self._upload_id, number, data)
        wrapper = asyncio.wrap_future(future)
        wrapper.add_done_callback(_consume)
        self._inflight[future] = wrapper
        del data  # the pool job holds the only reference: freed once uploaded
        self._harvest(wait_for_all=False)
        # Back-pressure: the next buffer counts too, so parts in memory <= parts_in_flight.
        while len(self._inflight) >= self._storage.parts_in_flight:
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
                raise DownloadError(f"{self.key}: upload aborted")
            exc = wrapper.exception()
            if exc is not None:
                if isinstance(exc, bce.BotoCoreError | bce.ClientError):
                    raise self._storage._item_error("UploadPart", self.key, exc) from None
                raise exc
            part = wrapper.result()
            self._parts[part.number] = part

    def _create_sync(self) -> str:
        storage = self._storage
        answer = storage._call(storage._client.create_multipart_upload, Bucket=storage.bucket,
                               Key=self.key, ChecksumAlgorithm="SHA256", **storage.put_args)
        upload_id = str(answer["UploadId"])
        log.debug("multipart upload of %s started", self.key)
        return upload_id

    def _upload_part_sync(self, upload_id: str, number: int, data: _PartBuffer) -> _Part:
        storage = self._storage
        reader = data.reader()
        try:
            # Hashed here, in the pool thread: hashlib releases the GIL, the loop stays free.
            digest = data.sha256()
            b64 = _b64(digest)
            answer = storage._call(
                storage._data_client.upload_part, Bucket=storage.bucket, Key=self.key,
                UploadId=upload_id, PartNumber=number, Body=reader,
                ChecksumAlgorithm="SHA256", ChecksumSHA256=b64)
        finally:
            reader.close()
            storage._give_back(data)
        reported = answer.get("ChecksumSHA256")
        if reported is not None and reported != b64:
            raise DownloadError(f"{self.key}: S3 reported checksum {reported} for part "
                                f"{number}, expected {b64}")
        return _Part(number, str(answer["ETag"]), b64, digest)

    # ------------------------------------------------------------------ commit

    async def commit(self, size: int, sha256: str) -> dict[str, Any]:
        self._check_open()
        try:
            if self._written != size:
                raise DownloadError(f"{self.key}: wrote {self._written} bytes, expected {size}")
            if self._upload_id is None and self._create is None:
                data, self._buffer = self._buffer, None
                self._final = self._storage._submit(self._put_single_sync, data, sha256)
            else:
                if self._buffer is not None:
                    await self._send_part()
                if self._inflight:
                    await asyncio.wait(self._inflight.values())
                self._harvest(wait_for_all=True)
                self._final = self._storage._submit(self._complete_sync)
            try:
                facts: dict[str, Any] = await asyncio.wrap_future(self._final)
            except (bce.BotoCoreError, bce.ClientError) as exc:
                raise self._storage._item_error("upload", self.key, exc) from None
        except BaseException:
            await self.abort()
            raise
        self._done = True
        return {"s3": facts}

    def _put_single_sync(self, data: _PartBuffer | None, sha256: str) -> dict[str, Any]:
        try:
            answer, b64 = self._storage._put(self.key, b"" if data is None else data,
                                             sha256_hex=sha256)
        finally:
            if data is not None:
                self._storage._give_back(data)
        reported = answer.get("ChecksumSHA256") or self._head_checksum()
        self._check_reported(reported, b64)
        return self._facts(answer, checksum=b64, kind="FULL_OBJECT",
                           verified=reported is not None)

    def _complete_sync(self) -> dict[str, Any]:
        storage = self._storage
        parts = [self._parts[n] for n in sorted(self._parts)]
        expected = composite_checksum(p.digest for p in parts)
        answer = storage._call(
            storage._client.complete_multipart_upload, Bucket=storage.bucket, Key=self.key,
            UploadId=self._upload_id,
            MultipartUpload={"Parts": [
                {"PartNumber": p.number, "ETag": p.etag, "ChecksumSHA256": p.checksum}
                for p in parts]})
        # S3 answers the composite checksum here; some stores (moto among them) only on a
        # HEAD with ChecksumMode=ENABLED.
        reported = answer.get("ChecksumSHA256") or self._head_checksum()
        self._check_reported(reported, expected)
        log.debug("multipart upload of %s complete: %d parts", self.key, len(parts))
        facts = self._facts(answer, checksum=expected, kind="COMPOSITE",
                            verified=reported is not None)
        facts["part_size"] = self._part_size
        facts["parts"] = len(parts)
        return facts

    def _head_checksum(self) -> str | None:
        storage = self._storage
        try:
            answer = storage._call(storage._client.head_object, Bucket=storage.bucket,
                                   Key=self.key, ChecksumMode="ENABLED")
        except bce.ClientError as exc:
            # A write-only policy may forbid reading back: record ours, unconfirmed.
            log.debug("cannot read back the checksum of %s: %s", self.key, _describe(exc))
            return None
        value = answer.get("ChecksumSHA256")
        return str(value) if value else None

    def _check_reported(self, reported: str | None, expected: str) -> None:
        # Compare the base64 digests: HEAD and GetObjectAttributes may omit the "-N".
        if reported is not None and reported.split("-")[0] != expected.split("-")[0]:
            raise DownloadError(f"{self.key}: S3 reports checksum {reported}, "
                                f"computed {expected} while streaming")

    def _facts(self, answer: dict[str, Any], *, checksum: str, kind: str,
               verified: bool) -> dict[str, Any]:
        facts: dict[str, Any] = {
            "key": self.key,
            "etag": str(answer.get("ETag", "")).strip('"'),
            "checksum_sha256": checksum,
            "checksum_type": kind,
            "checksum_verified": verified,
        }
        if answer.get("VersionId") not in (None, "", "null"):  # "null": not versioned
            facts["version_id"] = answer["VersionId"]
        if answer.get("ServerSideEncryption"):
            facts["server_side_encryption"] = answer["ServerSideEncryption"]
        return facts

    # ------------------------------------------------------------------- abort

    async def abort(self, keep: bool = False) -> None:
        """Abort the multipart upload (S3 keeps no partial data: *keep* is ignored)."""
        future = self._begin_abort()
        if future is not None:
            await _shielded(future)

    def _begin_abort(self) -> concurrent.futures.Future[None] | None:
        """Hand the clean-up to the pool (synchronously: cancellation cannot stop it)."""
        if self._done:
            return None
        if self._abort_future is None:
            if self._buffer is not None:
                self._storage._give_back(self._buffer)
                self._buffer = None
            for future in self._inflight:
                future.cancel()  # queued parts never start
            pending = [f for f in (*self._inflight, self._create, self._final) if f is not None]
            self._abort_future = self._storage._submit(self._abort_sync, pending)
        return self._abort_future

    def _abort_sync(self, pending: list[concurrent.futures.Future[Any]]) -> None:
        # Parts still uploading finish first: a part landing after the abort would
        # leave storage S3 keeps billing for (S3 documents this race).
        concurrent.futures.wait(pending)
        upload_id = self._upload_id
        if upload_id is None and self._create is not None and not self._create.cancelled() \
                and self._create.exception() is None:
            upload_id = self._create.result()
        completed = (self._final is not None and not self._final.cancelled()
                     and self._final.exception() is None)
        if completed:
            return  # the object is final: it stays (see S3ItemWriter)
        if upload_id is None:
            return
        storage = self._storage
        try:
            storage._call(storage._client.abort_multipart_upload, Bucket=storage.bucket,
                          Key=self.key, UploadId=upload_id)
            log.debug("multipart upload of %s aborted", self.key)
        except bce.ClientError as exc:
            if _code(exc) != "NoSuchUpload":
                log.warning("could not abort the multipart upload of s3://%s/%s: %s",
                            storage.bucket, self.key, storage._scrub(_describe(exc)))
        except bce.BotoCoreError as exc:
            log.warning("could not abort the multipart upload of s3://%s/%s: %s",
                        storage.bucket, self.key, storage._scrub(_describe(exc)))

    def _check_open(self) -> None:
        if self._done or self._abort_future is not None:
            raise DownloadError(f"{self.key}: file already committed or aborted")


@dataclass(frozen=True, slots=True)
class _Part:
    """An uploaded part: what CompleteMultipartUpload and the composite checksum need."""

    number: int
    etag: str
    #: base64 SHA-256, as sent and as CompleteMultipartUpload wants it.
    checksum: str
    digest: bytes


class _PartBuffer:
    """Up to one part of a file, in an anonymous memory map of exactly ``part_size``.

    Not a bytearray: a map is exactly the part size, only the pages written count towards
    RSS, and closing it gives the memory straight back to the OS. Multi-MiB bytearrays
    allocated and freed part after part make glibc raise its mmap threshold and keep them
    in a heap that fragments: the peak RSS of 8 parallel 64 MiB uploads went up to 50 MiB
    past the arithmetic (part_size x parts_in_flight x downloads).
    """

    __slots__ = ("_map", "capacity", "size")

    def __init__(self, capacity: int) -> None:
        self._map = mmap.mmap(-1, capacity)
        self.capacity = capacity
        self.size = 0

    @property
    def full(self) -> bool:
        return self.size >= self.capacity

    def fill(self, data: memoryview) -> int:
        """Copy as much of *data* as fits; returns how many bytes were taken."""
        take = min(self.capacity - self.size, len(data))
        self._map[self.size:self.size + take] = data[:take]
        self.size += take
        return take

    def sha256(self) -> bytes:
        with memoryview(self._map) as view:
            return hashlib.sha256(view[:self.size]).digest()

    def reader(self) -> _Reader:
        return _Reader(memoryview(self._map)[:self.size])

    def close(self) -> None:
        self._map.close()


class _Reader:
    """A file-like view of a part buffer for botocore, which sends it in small reads.

    (botocore takes bytes, bytearray or a file-like object as a Body; this avoids copying
    a whole part into bytes just to send it.)
    """

    def __init__(self, view: memoryview) -> None:
        self._view = view
        self._pos = 0

    def __len__(self) -> int:
        return len(self._view)

    def read(self, size: int | None = -1) -> bytes:
        end = len(self._view) if size is None or size < 0 else min(self._pos + size,
                                                                      len(self._view))
        data = bytes(self._view[self._pos:end])
        self._pos = end
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: len(self._view)}[whence]
        self._pos = max(0, min(base + offset, len(self._view)))
        return self._pos

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:
        self._view.release()  # lets the map close
