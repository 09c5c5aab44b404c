"""The read side of an S3 archive: the skip check's listing, ``verify``, ``status``, ``gc``.

The skip check (:meth:`S3Reader.scan`) lists the prefix with ListObjectsV2, jumping
ahead with ``StartAfter`` to the next id it still needs: at most one request per 1,000
keys, or per id, whichever is fewer; never a HEAD per id - on AWS and on stores that keep
keys in a directory tree (SeaweedFS), whose listing order differs (see :class:`_Scan`).

``verify`` compares the ``checksum_sha256`` recorded in ``archive.json`` with
``HeadObject(ChecksumMode=ENABLED)`` without downloading anything (or re-hashes the
object with ``deep``).
"""

from __future__ import annotations

import bisect
import itertools
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from ...errors import StorageUnavailable
from ...lock import NO_FENCE, Fence
from ...manifest import ID_PATTERN
from ...models import RESULT_FILES
from ...retry import with_retries_sync
from ..base import INFO_NAME, RECORD_NAME, SUMS_NAME, Garbage, GcResult
from .answers import BOTO_ERRORS, describe, is_transient, server_time
from .checksums import b64
from .requests import S3Bucket

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Names an item's objects have. ``gc`` deletes nothing else, so a prefix shared with
#: other data (or an empty prefix) never loses what the archiver did not write.
MEDIA_NAMES = frozenset(name for _, name in RESULT_FILES)
ITEM_NAMES = MEDIA_NAMES | {INFO_NAME, SUMS_NAME}
#: Name of the write probe open() puts at the top of the prefix (then deletes).
PROBE_PREFIX = ".archiver-probe-"
#: Keys per DeleteObjects request (S3's maximum).
DELETE_BATCH = 1000


class S3Reader:
    """Reads (and, for ``gc``, deletes) under ``s3://<bucket>/<prefix>``."""

    def __init__(self, bucket: S3Bucket, prefix: str) -> None:
        self._bucket = bucket
        self.prefix = prefix
        #: The listing orders this store may have: the skip check rules out those its
        #: pages contradict, and later checks start from what is left.
        self._orders: tuple[Order, ...] = ORDERS

    async def reading(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a read in the pool; a failure means the archive cannot be read (exit 2)."""
        try:
            return await self._bucket.run(fn, *args)
        except BOTO_ERRORS as exc:
            raise self._bucket.unavailable("read", exc) from None

    # ---------------------------------------------------------------- skip check

    def scan(self, ids: set[str]) -> dict[str, tuple[bool, bool]]:
        """Per id: (any object under ``<prefix><id>/``, its ``archive.json`` exists).

        Seek-listing: each run of ListObjectsV2 requests starts (``StartAfter``) right
        before the folder of the next id still undecided and goes on (continuation
        token) only while inside that folder, so a manifest whose ids are dense in the
        archive costs what plain pagination costs (a request per 1,000 keys), and a
        small manifest against a huge prefix about one request per id - whichever is
        fewer, never a HEAD per id. Which ids a page decides depends on the store's
        listing order, which :class:`_Scan` works out from the pages themselves; keys
        in an order it does not know make it list each undecided id's folder instead.
        """
        scan = _Scan(self.prefix, {f"{self.prefix}{i}/" for i in ids}, self._orders)
        while scan.undecided and scan.orders:
            target = scan.seek()
            for page in self._bucket.pages(self.prefix, StartAfter=target):
                scan.requests += 1
                if not scan.read(page) or not scan.inside_undecided():
                    break  # done, or the next folder is worth a seek of its own
        if self._orders and not scan.orders:  # said once per run: it stays unknown
            log.warning("%s lists keys in an order the skip check does not know: "
                        "listing the folder of each id not found archived, one by one",
                        self._bucket.description)
        self._orders = tuple(o for o in self._orders if o in scan.orders)
        if not scan.orders:
            for folder in sorted(scan.folders - scan.committed):
                scan.requests += 1
                scan.note([obj["Key"] for obj in self._bucket.objects(folder)])
        log.debug("skip check: %d of %d ids archived in %s (%d list requests)",
                  len(scan.committed), len(ids), self._bucket.description, scan.requests)
        start_id = len(self.prefix)
        return {f[start_id:-1]: (f in scan.seen, f in scan.committed) for f in scan.folders}

    # ------------------------------------------------- reading: verify and status

    async def list_archived(self) -> list[str]:
        """Every id under the prefix that has an ``archive.json`` (one full listing)."""
        suffix = "/" + RECORD_NAME

        def scan() -> list[str]:
            names = (obj["Key"][len(self.prefix):] for obj in self._bucket.objects(self.prefix))
            return sorted(n[:-len(suffix)] for n in names
                          if n.endswith(suffix) and n.count("/") == 1)

        return await self.reading(scan)

    async def read_record(self, video_model_id: str) -> bytes | None:
        return await self.reading(self._bucket.get,
                                  f"{self.prefix}{video_model_id}/{RECORD_NAME}")

    async def list_files(self, video_model_id: str) -> dict[str, int]:
        folder = f"{self.prefix}{video_model_id}/"

        def scan() -> dict[str, int]:
            return {obj["Key"][len(folder):]: int(obj["Size"])
                    for obj in self._bucket.objects(folder)
                    if "/" not in obj["Key"][len(folder):]}

        return await self.reading(scan)

    async def item_states(self, ids: Iterable[str]) -> dict[str, str]:
        scan = await self.reading(self.scan, set(ids))
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
                digest = await self.reading(self._bucket.sha256, key)
                if digest != entry.get("sha256"):
                    return f"sha256 {digest}, archive.json says {entry.get('sha256')}"
                return None
            head = await self.reading(self._bucket.head, key)
        except StorageUnavailable as exc:
            return str(exc)  # e.g. 404: listed a moment ago, gone now
        return _compare_checksums(head, entry)

    # ---------------------------------------------------------------- archiver gc

    async def collect_garbage(self, ids: Iterable[str] | None, min_age: float,
                              dry_run: bool, fence: Fence = NO_FENCE) -> GcResult:
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
        writing ``archive.json`` (:class:`~.writer.S3ItemWriter`), and fails the item
        instead of committing a record with a missing file.

        *fence* (the run lease's) is asked before each deletion: a gc that lost its
        lease deletes nothing more.
        """
        wanted = None if ids is None else set(ids)
        return await self.reading(self._collect_sync, wanted, min_age, dry_run, fence)

    def _collect_sync(self, ids: set[str] | None, min_age: float, dry_run: bool,
                      fence: Fence = NO_FENCE) -> GcResult:
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
                fence.confirm_sync()
                self._gc_item(item_id, cutoff, result)
        stale = [p for p in probes if _modified(p) < cutoff]
        if dry_run:
            result.removed.extend(self._garbage(o, None) for o in stale)
        else:
            fence.confirm_sync()
            self._gc_probes(stale, result)
            fence.confirm_sync()
        self._gc_uploads(ids, cutoff, dry_run, result)
        return result

    def _garbage(self, obj: dict[str, Any], item_id: str | None) -> Garbage:
        return Garbage(f"s3://{self._bucket.name}/{obj['Key']}", int(obj.get("Size", 0)),
                       item_id)

    def _cannot_delete(self, objects: list[dict[str, Any]], exc: BaseException) -> list[str]:
        return [self._bucket.scrub(f"cannot delete s3://{self._bucket.name}/{o['Key']}: "
                                   f"{describe(exc)}") for o in objects]

    def _gc_item(self, item_id: str, cutoff: float, result: GcResult) -> None:
        """Delete one id's leftovers, listing its folder again right before every try."""
        def look_then_delete() -> tuple[list[dict[str, Any]], dict[str, Any]] | None:
            # A run may have written to this id since the last listing: look again.
            garbage = _item_garbage(self._gc_folder(item_id), cutoff)
            if not garbage:
                return None
            try:
                # One attempt per listing: a retry after a backoff must list again first.
                return garbage, self._bucket.delete_many_once([o["Key"] for o in garbage])
            except BOTO_ERRORS as exc:
                raise _DeleteFailed(garbage, exc) from exc

        try:
            done = with_retries_sync(look_then_delete, policy=self._bucket.retry,
                                     retryable=_DeleteFailed.transient)
        except _DeleteFailed as failed:
            result.failures.extend(self._cannot_delete(failed.garbage, failed.cause))
            return
        if done is None:
            return
        garbage, answer = done
        self._gc_deleted(garbage, item_id, answer, result)
        if RECORD_NAME in self._gc_folder(item_id):
            # Committed while gc deleted (see collect_garbage): say so loudly.
            result.failures.append(f"{item_id}: committed by a run while gc removed "
                                   "its objects; check it with archiver verify")

    def _gc_probes(self, probes: list[dict[str, Any]], result: GcResult) -> None:
        """Delete leftover write probes: their names are unique, nobody else uses them."""
        for start in range(0, len(probes), DELETE_BATCH):
            batch = probes[start:start + DELETE_BATCH]
            try:
                answer = self._bucket.delete_many([o["Key"] for o in batch])
            except BOTO_ERRORS as exc:
                result.failures.extend(self._cannot_delete(batch, exc))
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
                result.failures.append(f"cannot delete s3://{self._bucket.name}/{obj['Key']}: "
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
            for page in self._bucket.pages(prefix):
                # The earliest S3 time seen: ages only come out younger, never older.
                now = now if now is not None else server_time(page)
                for obj in page.get("Contents", []):
                    name = obj["Key"][len(self.prefix):]
                    item_id, _, rest = name.partition("/")
                    if not rest:
                        if name.startswith(PROBE_PREFIX):
                            probes.append(obj)
                    elif ID_PATTERN.fullmatch(item_id):
                        folders.setdefault(item_id, {})[rest] = obj
        return now if now is not None else time.time(), folders, probes

    def _gc_folder(self, item_id: str) -> dict[str, dict[str, Any]]:
        folder = f"{self.prefix}{item_id}/"
        return {obj["Key"][len(folder):]: obj for obj in self._bucket.objects(folder)}

    def _gc_uploads(self, ids: set[str] | None, cutoff: float, dry_run: bool,
                    result: GcResult) -> None:
        """Abort multipart uploads of item files initiated before *cutoff*: no attempt
        in progress is that old, and no committed object depends on an open upload."""
        for page in self._bucket.upload_pages(self.prefix):
            for upload in page.get("Uploads", []):
                key = str(upload["Key"])
                item_id, _, name = key[len(self.prefix):].partition("/")
                if name not in MEDIA_NAMES or not ID_PATTERN.fullmatch(item_id) \
                        or (ids is not None and item_id not in ids):
                    continue
                if upload["Initiated"].timestamp() >= cutoff:
                    continue
                found = Garbage(f"multipart upload of s3://{self._bucket.name}/{key}", 0,
                                item_id, kind="upload")
                if not dry_run:
                    problem = self._bucket.abort_upload(key, str(upload["UploadId"]))
                    if problem is not None:
                        result.failures.append(f"cannot abort the {found.where}: {problem}")
                        continue
                result.removed.append(found)


Order = Callable[[str], tuple[str, ...]]


def s3_order(key: str) -> tuple[str, ...]:
    """S3's listing order: UTF-8 bytes, which Python's str order matches."""
    return (key,)


def directory_order(key: str) -> tuple[str, ...]:
    """The order of a store that keeps keys in a directory tree (SeaweedFS): each folder's
    entries by name, a folder's contents right after its name - ``abc/y`` before
    ``abc.x``, where S3 has ``abc.x`` first ("." sorts before "/")."""
    return tuple(key.split("/"))


#: The orders the skip check knows, S3's first.
ORDERS: tuple[Order, ...] = (s3_order, directory_order)


class _Scan:
    """What one skip check has learnt: which folders (``<prefix><id>/``) are decided,
    which were seen and committed, and which listing orders the store may have.

    A listing that starts after key S and has returned keys up to L has shown every key
    between S and L *in the store's order*. S3 lists in byte order; a store with a
    directory tree (SeaweedFS) lists ``abc/y`` before ``abc.x``, and skips the whole
    folder ``abc/`` for ``StartAfter=abc``. So a folder counts as decided only when it
    lies between S and L in *every* order the store may still have, and each page is
    checked against those orders: a page out of one order rules it out (a store has one
    order). In both orders a folder's keys are contiguous and come right after its name
    (with the "/"), so a listing that starts there always decides that folder: the scan
    ends. Pages that contradict every known order leave ``orders`` empty: then only what
    was seen is known, and the caller lists folders one by one.

    Where the two orders agree - ids without ``-``, the one id character that sorts
    before ``/`` - a page decides what it decides on S3: the request counts are S3's.
    """

    def __init__(self, prefix: str, folders: set[str], orders: Sequence[Order]) -> None:
        self.prefix = prefix
        self.folders = folders
        self.orders = list(orders)
        #: Folders not decided yet, sorted in the first order still possible.
        self.undecided: list[str] = sorted(folders, key=self._primary)
        self.seen: set[str] = set()
        self.committed: set[str] = set()
        self.requests = 0
        #: Where the current listing started (its StartAfter) and its last key so far.
        self._start = ""
        self._last: str | None = None

    def _primary(self, key: str) -> tuple[str, ...]:
        return self.orders[0](key) if self.orders else (key,)

    def seek(self) -> str:
        """Start a listing right before the first undecided folder; returns its name,
        the ``StartAfter`` to send."""
        self._start = self.undecided[0]
        self._last = None
        return self._start

    def read(self, page: dict[str, Any]) -> bool:
        """Learn from the next page of the listing; True if it goes on (another page
        is worth asking for)."""
        keys = [str(obj["Key"]) for obj in page.get("Contents", [])]
        self._rule_out([self._last or self._start, *keys])
        self.note(keys)
        more = bool(page.get("IsTruncated"))
        if more and not (keys and page.get("NextContinuationToken")):
            self.orders.clear()  # an answer S3 never gives: trust only what was seen
        if keys:
            self._last = keys[-1]
        if not self.orders:
            return False
        self._decide(self._start, self._last if more else None)
        return more

    def inside_undecided(self) -> bool:
        """Whether the listing stopped inside the first undecided folder: then going on
        costs less than a seek."""
        return bool(self.undecided and self._last
                    and self._last.startswith(self.undecided[0]))

    def note(self, keys: list[str]) -> None:
        """Record which wanted folders these keys show, and which are committed."""
        for key in keys:
            name, slash, _ = key[len(self.prefix):].partition("/")
            folder = f"{self.prefix}{name}/"
            # "<prefix><id>" itself (no "/") is some other object, not in the folder.
            if slash and folder in self.folders and key.startswith(self.prefix):
                self.seen.add(folder)
                if key == folder + RECORD_NAME:
                    self.committed.add(folder)

    def _rule_out(self, keys: list[str]) -> None:
        """Drop the orders these keys, as listed, are not in."""
        possible = [order for order in self.orders
                    if all(order(a) < order(b) for a, b in itertools.pairwise(keys))]
        if possible != self.orders:
            primary = self.orders[0] if self.orders else None
            self.orders = possible
            if possible and possible[0] is not primary:
                self.undecided.sort(key=self._primary)

    def _decide(self, start: str, end: str | None) -> None:
        """Folders between *start* and *end* (None: the end of the listing) in every
        possible order are decided: the listing has shown all of their keys."""
        primary = self.orders[0]
        low = bisect.bisect_left(self.undecided, primary(start), key=primary)
        high = len(self.undecided) if end is None else \
            bisect.bisect_left(self.undecided, primary(end), key=primary)
        if low >= high:
            return
        kept = [folder for folder in self.undecided[low:high]
                if not self._between(folder, start, end)]
        self.undecided[low:high] = kept

    def _between(self, folder: str, start: str, end: str | None) -> bool:
        if end is not None and end.startswith(folder):
            return False  # the listing stopped inside it
        if end is None and self._last is not None and folder == self._last + "/":
            # SeaweedFS 4.48 ends a listing early when its last page ends on a key that
            # is also a folder ("<prefix><id>" beside "<prefix><id>/..."): the folder's
            # keys never come. Its own seek will show them.
            return False
        return all(order(start) <= order(folder)
                   and (end is None or order(folder) < order(end)) for order in self.orders)


class _DeleteFailed(Exception):
    """DeleteObjects of one id's leftovers failed: retried (after listing again) only if
    the request's failure is transient; listing failures are not wrapped, so not retried
    a second time."""

    def __init__(self, garbage: list[dict[str, Any]], cause: BaseException) -> None:
        super().__init__(str(cause))
        self.garbage = garbage
        self.cause = cause

    @staticmethod
    def transient(exc: BaseException) -> bool:
        return isinstance(exc, _DeleteFailed) and is_transient(exc.cause)


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


def _compare_checksums(head: dict[str, Any], entry: dict[str, Any]) -> str | None:
    """None if S3's SHA-256 checksum of an object matches its archive.json entry."""
    reported = head.get("ChecksumSHA256")
    raw = entry.get("s3")
    facts: dict[str, Any] = raw if isinstance(raw, dict) else {}
    recorded = facts.get("checksum_sha256")
    if recorded is None and facts.get("checksum_type") != "COMPOSITE":
        # No S3 facts recorded: a single PutObject's checksum is the file's own SHA-256.
        try:
            recorded = b64(bytes.fromhex(str(entry.get("sha256"))))
        except ValueError:
            return "archive.json has no usable sha256"
    if reported is None:
        return "S3 reports no SHA-256 checksum for this object (use --deep)"
    # Compare the base64 digests: HEAD may leave off a composite checksum's "-N".
    if str(reported).split("-")[0] != str(recorded).split("-")[0]:
        return f"S3 checksum {reported}, archive.json says {recorded}"
    return None
