"""Listing an S3 archive (:class:`Lister`): entries of id folders, as cheaply as S3 allows.

For a set of ids (the skip check, ``status``, ``verify`` or ``gc`` of a manifest) the
prefix is *seek-listed*: ListObjectsV2 runs start (``StartAfter``) right before the
folder of the next id still undecided and go on (continuation token) only while inside
that folder, so a manifest whose ids are dense in the archive costs what plain
pagination costs (a request per 1,000 keys), and a small manifest against a huge prefix
about one request per id - whichever is fewer, never a HEAD per id. Which ids a page
decides depends on the store's listing order - S3's byte order, or the directory order
of stores that keep keys in a tree (SeaweedFS) - which :class:`_Scan` works out from the
pages themselves; keys in an order it does not know make it list each undecided id's
folder instead, with a warning (once). The whole archive (``ids`` None: ``verify`` and
``gc`` of everything) is one plain listing of the prefix.

Entries carry S3's own times: ``LastModified`` (``Initiated`` for a multipart upload)
and, as :attr:`Listing.now`, the ``Date`` of the first answer - ages are S3's, whatever
the host's clock says. An object's tag is its ETag, LastModified and size.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..backend import Entry, Kind, Listing
from ..names import RECORD_NAME
from .answers import server_time
from .requests import S3Bucket

log = logging.getLogger(__name__)


class Lister:
    """Lists ``s3://<bucket>/<prefix>`` (blocking: run in the bucket's pool)."""

    def __init__(self, bucket: S3Bucket, prefix: str) -> None:
        self._bucket = bucket
        self.prefix = prefix
        #: The listing orders this store may have: each seek listing rules out those its
        #: pages contradict, and later ones start from what is left.
        self._orders: tuple[Order, ...] = ORDERS

    def list(self, ids: set[str] | None, only: str | None, uploads: bool) -> Listing:
        """The archive's entries (see :meth:`archiver.storage.backend.Backend.listing`)."""
        listing = self._everything() if ids is None else self._seek(ids, only)
        if uploads:
            self._uploads(listing, ids)
        return listing

    def _everything(self) -> Listing:
        """One listing of the whole prefix: every folder, and the keys at the top."""
        now: float | None = None
        found: dict[str, list[dict[str, Any]]] = {}
        strays: list[dict[str, Any]] = []
        for page in self._bucket.pages(self.prefix):
            # The earliest S3 time seen: ages only come out younger, never older.
            now = now if now is not None else server_time(page)
            for obj in page.get("Contents", []):
                item_id, slash, _ = str(obj["Key"])[len(self.prefix):].partition("/")
                if slash:
                    found.setdefault(item_id, []).append(obj)
                else:
                    strays.append(obj)
        listing = Listing(now=now if now is not None else time.time())
        listing.folders = {i: _entries(objs, len(self.prefix) + len(i) + 1)
                           for i, objs in found.items()}
        listing.strays = list(_entries(strays, len(self.prefix)).values())
        return listing

    def _seek(self, ids: set[str], only: str | None) -> Listing:
        """Seek-list the folders of *ids*. With *only*, a folder whose *only* object was
        seen needs no more listing; without, every folder's entries come complete."""
        scan = _Scan(self.prefix, {f"{self.prefix}{i}/" for i in ids}, self._orders,
                     marker=only or RECORD_NAME)
        now: float | None = None
        while scan.undecided and scan.orders:
            target = scan.seek()
            for page in self._bucket.pages(self.prefix, StartAfter=target):
                now = now if now is not None else server_time(page)
                scan.requests += 1
                if not scan.read(page) or not scan.inside_undecided():
                    break  # done, or the next folder is worth a seek of its own
        if self._orders and not scan.orders:  # said once per run: it stays unknown
            log.warning("%s lists keys in an order the skip check does not know: "
                        "listing the folder of each id not found archived, one by one",
                        self._bucket.description)
        self._orders = tuple(o for o in self._orders if o in scan.orders)
        if not scan.orders:
            # Only what was seen is known: list the folders it may not have shown whole.
            again = scan.folders - scan.committed
            if only is None:
                again |= set(scan.undecided)
            for folder in sorted(again):
                scan.requests += 1
                scan.objects.pop(folder, None)
                scan.note(list(self._bucket.objects(folder)))
        log.debug("listed %d ids of %s: %d list requests", len(ids),
                  self._bucket.description, scan.requests)
        listing = Listing(now=now if now is not None else time.time())
        start = len(self.prefix)
        listing.folders = {folder[start:-1]: _entries(objs.values(), len(folder))
                           for folder, objs in scan.objects.items() if objs}
        return listing

    def _uploads(self, listing: Listing, ids: set[str] | None) -> None:
        """Add the multipart uploads under the prefix into id folders (of *ids*)."""
        for page in self._bucket.upload_pages(self.prefix):
            for upload in page.get("Uploads", []):
                item_id, slash, name = str(upload["Key"])[len(self.prefix):].partition("/")
                if not slash or "/" in name or (ids is not None and item_id not in ids):
                    continue
                listing.uploads.setdefault(item_id, []).append(Entry(
                    name, Kind.UPLOAD, 0, upload["Initiated"].timestamp(),
                    str(upload["UploadId"])))


def object_tag(obj: dict[str, Any]) -> str:
    """What tells this version of an object from another: ETag, LastModified and size."""
    return f"{obj.get('ETag')}|{obj['LastModified'].timestamp()}|{obj.get('Size')}"


def _entries(objects: Iterable[dict[str, Any]], start: int) -> dict[str, Entry]:
    """The entries of one folder, whose keys' names begin at *start*: keys with a "/"
    left in their name are one :attr:`Kind.FOLDER` entry per first name part, as new
    as the newest of them."""
    entries: dict[str, Entry] = {}
    for obj in objects:
        name, slash, _ = str(obj["Key"])[start:].partition("/")
        modified = float(obj["LastModified"].timestamp())
        if slash or not name:
            older = entries.get(name)
            newest = max(modified, older.mtime) if older is not None else modified
            entries[name] = Entry(name, Kind.FOLDER, 0, newest)
        else:
            entries[name] = Entry(name, Kind.FILE, int(obj.get("Size", 0)), modified,
                                  object_tag(obj))
    return entries


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
    """What one seek listing has learnt: which folders (``<prefix><id>/``) are decided,
    the objects seen of each, which hold the marker, and which listing orders the store
    may have.

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

    def __init__(self, prefix: str, folders: set[str], orders: Sequence[Order],
                 marker: str = RECORD_NAME) -> None:
        self.prefix = prefix
        self.folders = folders
        self.orders = list(orders)
        #: The name whose presence :attr:`committed` records.
        self.marker = marker
        #: Folders not decided yet, sorted in the first order still possible.
        self.undecided: list[str] = sorted(folders, key=self._primary)
        #: The objects seen of each wanted folder, by key.
        self.objects: dict[str, dict[str, dict[str, Any]]] = {}
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
        objects = page.get("Contents", [])
        keys = [str(obj["Key"]) for obj in objects]
        self._rule_out([self._last or self._start, *keys])
        self.note(objects)
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

    def note(self, objects: list[dict[str, Any]]) -> None:
        """Record the objects these are of wanted folders, and which folders hold the
        marker (``archive.json`` for the skip check)."""
        for obj in objects:
            key = str(obj["Key"])
            name, slash, _ = key[len(self.prefix):].partition("/")
            folder = f"{self.prefix}{name}/"
            # "<prefix><id>" itself (no "/") is some other object, not in the folder.
            if slash and folder in self.folders and key.startswith(self.prefix):
                # By key: a seek may show again keys an earlier listing showed.
                self.objects.setdefault(folder, {})[key] = obj
                if key == folder + self.marker:
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
