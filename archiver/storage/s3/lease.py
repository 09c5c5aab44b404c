"""One run per shard across hosts: a lease object on S3, kept with conditional writes.

A ``flock`` keeps runs apart on one host only. Runs on many hosts or pods that share one
S3 prefix keep apart with one small object per prefix and shard,
``<prefix>.archiver-lease/<name>`` (``all`` for an unsharded run, ``shard-2-of-4`` for
``--shard 2/4``). The same primitive Terraform's S3 backend uses for state locking:

- **Acquire**: PutObject with ``If-None-Match: *``. It succeeds for exactly one run; the
  others get 412 and read the lease. A live lease makes them stop with
  :class:`~archiver.fleet.lock.LockHeld` (exit 75) naming the holder's host, pid and expiry.
- **Expiry** is judged by S3's clock alone: the lease's ``LastModified`` plus the
  holder's TTL (in the body), against the ``Date`` of the GetObject answer, plus one
  second for the granularity of both. No host's clock skew can make a lease look expired.
- **Takeover** of an expired lease: PutObject with ``If-Match: <the expired ETag>``. Of
  several runs racing for it, one wins; the others get 412 and find a live lease.
- **Renewal**: a background thread rewrites the lease every TTL/3 with ``If-Match`` on
  the ETag it last wrote. A 412 or 404 means another run took the shard over (our lease
  had expired: the process was frozen, or the network down, for longer than the TTL),
  and so does failing to renew for 3/4 of the TTL: the run is told to stop.
- **Fencing**: the renewal thread alone is not enough - a process frozen (SIGSTOP, a VM
  paused, swap) for longer than the TTL wakes up with a stale lease and work ready to
  start, before its renewal thread has run. So every poll, download, commit and gc
  removal first asks :meth:`S3Lease.confirm`: a lease last confirmed by S3 (a write that
  succeeded, timed from when it was *sent*) within 3/4 of the TTL lets it start at once;
  an older one is renewed on the spot, and if that is refused or fails, the lease is
  lost and the work does not start (:class:`~archiver.errors.LeaseLost`). Work already
  running when the lease is lost may finish its transfer, but not commit.
- **Other shard counts**: once it holds its lease, a run lists the lease folder and gives
  its lease back (LockHeld) if a live lease of another N exists: ``1/2`` and ``2/4`` own
  overlapping ids. Each writes before it looks, so two such runs cannot miss each other.
- **Release**: DeleteObject with ``If-Match``, so a run that lost its lease never deletes
  its successor's. A store that refuses conditional deletes (HTTP 501) gets a read
  (is the lease still ours?) followed by a plain delete; the gap between the two is one
  round trip, and only matters if the lease expired within it - which renewal prevents
  unless the process stalled for a whole TTL at exactly that moment.

A request that reached S3 but whose answer was lost (a timeout) is recognised on the
next attempt: the lease then holds our own random owner token, and we adopt its ETag.

A pod killed by SIGKILL or the OOM killer cannot release its lease: the next run of its
shard waits (exit 75) until the lease expires, at most ``run.lease_ttl`` seconds later.

The lease has a botocore client of its own, with timeouts short next to the TTL (a
renewal that hangs must fail in time to be noticed); which of its errors are retried, and
how they are worded, is the package's one mapping (:mod:`.answers`), within
``storage.s3.retries`` (:data:`~archiver.retry.S3_RETRIES` by default).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import botocore.exceptions as bce

from ...errors import LeaseLost, StorageUnavailable
from ...fleet.lock import LockHeld, describe_name, shard_count
from ...models import iso_utc
from ...retry import S3_RETRIES, RetryPolicy, with_retries_sync
from .answers import CONFLICT, describe, http_status, is_transient
from .lease_state import MAX_BODY, LeaseState, lease_body

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The folder of lease objects under the prefix. Its name can never be an id (ids have
#: no dot), so the skip check, verify, status and gc never take a lease for an item.
LEASE_FOLDER = ".archiver-lease/"
#: Work may start only if the lease was confirmed within this fraction of its TTL.
FRESH_FRACTION = 0.75


class S3Lease:
    """``async with S3Lease(...)``: hold the lease for the block, or raise LockHeld.

    *client* is a boto3 S3 client whose timeouts are short next to *ttl* (a renewal that
    hangs for a whole TTL would let another run take over unnoticed); the lease closes
    it on exit. *on_lost* is called (from the renewal thread) once, with a reason, if
    the lease is lost while held.
    """

    #: Lost when not renewed in time, or taken over: work asks before it starts.
    can_be_lost = True

    def __init__(self, client: Any, bucket: str, key: str, *, ttl: float, what: str,
                 on_lost: Callable[[str], None] | None = None,
                 scrub: Callable[[str], str] = lambda s: s,
                 put_args: dict[str, str] | None = None,
                 retry: RetryPolicy = S3_RETRIES, command: str = "run") -> None:
        self.client = client
        self.bucket = bucket
        self.key = key
        self.ttl = ttl
        self.what = what
        self.owner = secrets.token_hex(16)
        #: The archiver command holding it (``run``, ``serve``, ``gc``), for messages.
        self.command = command
        self.lost: str | None = None
        self._on_lost = on_lost
        self._scrub = scrub
        #: Encryption settings: a bucket policy may refuse unencrypted writes.
        self._put_args = put_args or {}
        #: Bounds for retrying acquire, read and list requests (renewal has its own
        #: schedule: every TTL/3, lost after failing for 3/4 of the TTL).
        self._retry = retry
        self._etag: str | None = None
        #: time.monotonic() at which the last write that S3 accepted was sent.
        self._confirmed = float("-inf")
        #: One write of the lease at a time: the renewal thread's and a fence's.
        self._writing = threading.Lock()
        self._acquired_at = iso_utc(time.time())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def where(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> S3Lease:
        try:
            await asyncio.to_thread(self.acquire)
        except BaseException:
            self.client.close()
            raise
        self._thread = threading.Thread(target=self._renew_loop, name="archiver-lease",
                                        daemon=True)
        self._thread.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.to_thread(self.close)

    def close(self) -> None:
        """Stop renewing, release the lease if it is still ours, close the client."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        try:
            if self._etag is not None and self.lost is None:
                self.release()
        finally:
            self.client.close()

    # -------------------------------------------------------------------- acquire

    def acquire(self) -> None:
        """Take the lease, then make sure no live lease of another shard layout overlaps
        it; raise LockHeld (holding nothing) if either fails."""
        self._take()
        try:
            self._check_layout()
        except BaseException:
            self.release()
            self._etag = None
            raise

    def _take(self) -> None:
        """Create the lease, or take over an expired one; raise LockHeld if it is live."""
        for _ in range(5):
            sent = time.monotonic()
            try:
                self._etag = self._retrying(functools.partial(self._put, IfNoneMatch="*"))
                self._confirmed = sent
                log.debug("lease %s acquired", self.where)
                return
            except bce.ClientError as exc:
                if http_status(exc) not in CONFLICT:
                    raise self._unavailable("create", exc) from None
            except bce.BotoCoreError as exc:
                raise self._unavailable("create", exc) from None
            current = self._read()
            if current is None:
                continue  # released between our write and our read: try again
            if current.body.get("owner") == self.owner:
                self._etag = current.etag  # our own write, whose answer was lost
                self._confirmed = sent
                return
            if not current.expired:
                raise LockHeld(f"{self.what} is held by another archiver run on "
                               f"{current.describe()}; not starting a second one "
                               f"(lease {self.where})")
            sent = time.monotonic()
            try:
                self._etag = self._retrying(functools.partial(self._put, IfMatch=current.etag))
                self._confirmed = sent
            except bce.ClientError as exc:
                if http_status(exc) in CONFLICT | {404}:
                    continue  # another run took it over first, or it was released
                raise self._unavailable("take over", exc) from None
            except bce.BotoCoreError as exc:
                raise self._unavailable("take over", exc) from None
            log.warning("took over the expired lease of %s from %s", self.what,
                        current.describe().split(";")[0])
            return
        raise LockHeld(f"the lease of {self.what} keeps changing hands; not starting "
                       f"(lease {self.where})")

    def _check_layout(self) -> None:
        """Refuse to run beside a live lease of another shard count on this prefix.

        ``--shard 1/2`` and ``--shard 2/4`` (or an unsharded run) own overlapping ids:
        run together they would archive those twice. Each run writes its own lease first
        and looks for the others second, so of two such runs starting together at least
        the later one sees the earlier (both may see each other and both stop: exit 75,
        try again). Expired leases, and names this version does not write, are ignored.
        """
        folder, _, name = self.key.rpartition("/")
        mine = shard_count(name)
        if mine is None:
            return
        try:
            page = self._retrying(lambda: self.client.list_objects_v2(
                Bucket=self.bucket, Prefix=folder + "/", MaxKeys=1000))
        except (bce.BotoCoreError, bce.ClientError) as exc:
            raise self._unavailable("list the leases beside", exc) from None
        for obj in page.get("Contents", []):
            other = str(obj["Key"]).rpartition("/")[2]
            count = shard_count(other)
            if count is None or count == mine:
                continue
            current = self._read(str(obj["Key"]))
            if current is not None and not current.expired:
                what = describe_name(other)
                raise LockHeld(
                    f"{what} holds s3://{self.bucket}/{obj['Key']} on {current.describe()}; "
                    f"{self.what} would archive some of its ids too: use one shard count "
                    "per prefix at a time; not starting")

    def _read(self, key: str | None = None) -> LeaseState | None:
        key = self.key if key is None else key
        try:
            answer = self._retrying(lambda: self.client.get_object(Bucket=self.bucket, Key=key))
            raw = answer["Body"].read(MAX_BODY)
        except bce.ClientError as exc:
            if http_status(exc) == 404:
                return None
            raise self._unavailable("read", exc) from None
        except bce.BotoCoreError as exc:
            raise self._unavailable("read", exc) from None
        return LeaseState.read(answer, raw, default_ttl=self.ttl)

    def _put(self, **condition: str) -> str:
        body = lease_body(owner=self.owner, what=self.what, command=self.command,
                          acquired_at=self._acquired_at, ttl=self.ttl)
        answer = self.client.put_object(
            Bucket=self.bucket, Key=self.key, Body=body, ContentType="application/json",
            **self._put_args, **condition)
        return str(answer["ETag"])

    # ---------------------------------------------------------------------- renew

    def _renew_loop(self) -> None:
        interval = self.ttl / 3
        wait = interval
        while not self._stop.wait(wait):
            with self._writing:
                if self.lost is not None:
                    return
                problem = self._renew_once()
            if self.lost is not None:
                return
            if problem is None:
                wait = interval
                continue
            late = time.monotonic() - self._confirmed
            if late > self.ttl * FRESH_FRACTION:
                self._lose(f"could not renew it for {late:.0f}s ({problem})")
                return
            log.info("could not renew the lease of %s (%s); trying again", self.what,
                     self._scrub(problem))
            wait = min(interval, 1.0)

    def _renew_once(self) -> str | None:
        """Rewrite the lease on its ETag: None if done (or the lease is lost: see
        :attr:`lost`), else why not. Call holding ``_writing``."""
        for _ in range(2):
            sent = time.monotonic()
            try:
                self._etag = self._put(IfMatch=str(self._etag))
                self._confirmed = sent
                return None
            except bce.ClientError as exc:
                if http_status(exc) not in CONFLICT | {404}:
                    return describe(exc)
                if not self._still_ours(exc):
                    return None  # lost
                # Ours after all (an earlier write landed, its answer lost): write again
                # on the ETag found, which confirms it.
            except bce.BotoCoreError as exc:
                return describe(exc)
        return "the lease's ETag keeps changing"

    # ---------------------------------------------------------------------- fence

    def _fresh(self) -> bool:
        return time.monotonic() - self._confirmed <= self.ttl * FRESH_FRACTION

    async def confirm(self) -> None:
        """Let work start only under a lease S3 confirmed within 3/4 of its TTL; renew
        a staler one now; raise :class:`LeaseLost` if it is lost (see the module doc)."""
        if self.lost is None and self._fresh():
            return  # the common case: one clock read, no thread hop
        await asyncio.to_thread(self.confirm_sync)

    def confirm_sync(self) -> None:
        """:meth:`confirm` from a worker thread (gc's removals)."""
        if self.lost is None and not self._fresh():
            with self._writing:
                if self.lost is None and not self._fresh():
                    problem = self._renew_once()
                    if self.lost is None and not self._fresh():
                        late = time.monotonic() - self._confirmed
                        self._lose(f"could not confirm it for {late:.0f}s "
                                   f"({problem or 'no answer'})")
        if self.lost is not None:
            raise LeaseLost(f"the lease of {self.what} is lost: {self._scrub(self.lost)}")

    def _still_ours(self, exc: bce.ClientError) -> bool:
        """After a refused renewal: adopt the lease's ETag if it holds our owner token
        (a renewal whose answer was lost) and say True; else it was taken over or
        deleted: lose it and say False."""
        try:
            current = self._read()
        except StorageUnavailable:
            current = None
        if current is not None and current.body.get("owner") == self.owner:
            self._etag = current.etag
            return True
        who = f"taken over by {current.describe().split(';')[0]}" if current is not None \
            else "deleted"
        self._lose(f"it was {who} ({describe(exc)})")
        return False

    def _lose(self, reason: str) -> None:
        if self.lost is not None:
            return  # told once
        self.lost = reason
        log.error("lost the lease of %s: %s; stopping: no new poll, download or commit",
                  self.what, self._scrub(reason))
        if self._on_lost is not None:
            self._on_lost(reason)

    # -------------------------------------------------------------------- release

    def release(self) -> None:
        """Delete the lease if it is still ours; never raises (the TTL cleans up)."""
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=self._etag)
            log.debug("lease %s released", self.where)
            return
        except bce.ClientError as exc:
            status = http_status(exc)
            if status in CONFLICT | {404}:
                log.warning("the lease of %s was no longer ours at the end of the run; "
                            "left it alone", self.what)
                return
            if status != 501:
                self._release_failed(exc)
                return
        except bce.BotoCoreError as exc:
            self._release_failed(exc)
            return
        self._release_unconditionally()

    def _release_unconditionally(self) -> None:
        """For stores without conditional deletes: read, then delete if still ours."""
        try:
            current = self._read()
            if current is not None and current.body.get("owner") == self.owner:
                self.client.delete_object(Bucket=self.bucket, Key=self.key)
        except (StorageUnavailable, bce.BotoCoreError, bce.ClientError) as exc:
            self._release_failed(exc)

    def _release_failed(self, exc: BaseException) -> None:
        log.warning("could not release the lease %s (%s); it expires within %gs",
                    self.where, self._scrub(describe(exc)), self.ttl)

    def _retrying(self, request: Callable[[], T]) -> T:
        """*request*, tried again on transient failures within the lease's policy."""
        def told(attempt: int) -> None:
            log.info("lease request failed; trying again (attempt %d)", attempt)

        return with_retries_sync(request, policy=self._retry, retryable=is_transient,
                                 on_retry=told)

    def _unavailable(self, action: str, exc: BaseException) -> StorageUnavailable:
        return StorageUnavailable(self._scrub(
            f"cannot {action} the lease {self.where}: {describe(exc)}"))
