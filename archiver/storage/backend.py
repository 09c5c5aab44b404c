"""The storage contract: what a backend does, and nothing more.

As restic's ``internal/backend``: a small interface per store, each backend in its own
package (:mod:`.local`, :mod:`.s3`), and what every store shares written once above
them, in :mod:`archiver.archive` - which names an item has, when it counts as archived,
what ``verify`` compares, what ``gc`` removes, the commit protocol, the run lock seam.
A backend (:class:`Backend`) only

- lists the entries of item folders (:meth:`Backend.listing`): name, :class:`Kind`, size,
  modification time *by the store's clock* and a tag that changes with the entry - as
  cheaply as the store allows (S3: a seek listing, never a request per id; local disk:
  an ``lstat`` or two per id for the skip check);
- reads a small file (:meth:`Backend.read`) and tells a stored file's :class:`Digest`;
- writes items (:meth:`Backend.item`: an :class:`ItemWriter`, its :class:`FileSink` objects):
  temporaries, positional writes, resumption (:class:`Partial`), and a commit that
  writes the record only if it is absent, returning whether it is ours;
- removes entries only if they are unchanged (:meth:`Backend.remove`);
- publishes a small file at the top, atomically (:meth:`Backend.publish`: the index
  pages of ``archiver index``);
- takes its run lock (:meth:`Backend.run_lock`: a ``flock``, a lease), yielding the
  :class:`~archiver.fleet.lock.Fence` work checks before it starts;
- says what it can (:class:`Capabilities`);

and maps its own errors to :class:`~archiver.errors.StorageError` (one item's, or one
file's) and :class:`~archiver.errors.StorageUnavailable` (the whole store) where they
enter, as httpx maps its transport's: nothing above a backend sees a third-party error.

An archive holds one folder (or key prefix) per ``video_model_id``, the names in it
those of :mod:`.names`. An item is archived if and only if its ``archive.json`` exists.
Backends guarantee that nothing appears under a final name until it is complete, and
that an item aborted without ``keep`` leaves no temporary data behind (no open upload).
Files an aborted item already made final may stay where another run could share their
names (S3: another host writing the same prefix commits the same keys), until
``archiver gc`` removes those of ids nobody committed.

A new backend (GCS, Azure) implements :class:`Backend` and passes the contract suite,
``tests/test_storage_contract.py``, which also runs against the in-memory backend of
:mod:`archiver.testing.memory`, written to nothing but this module.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from ..fleet.lock import Fence
from ..models import FileRecord


class Kind(enum.StrEnum):
    """What an entry of an item folder is."""

    #: A regular file (an object).
    FILE = "file"
    #: Not a regular file (a symbolic link, a FIFO): reported, never followed.
    OTHER = "other"
    #: A folder inside the item's (keys with a "/" in their name on S3).
    FOLDER = "folder"
    #: An upload not finished (an S3 multipart upload): invisible until completed.
    UPLOAD = "upload"


class Entry(NamedTuple):
    """One entry of an item folder (or, for :attr:`Listing.strays`, of the top).

    A named tuple: listing a manifest's 200,000 ids makes one per committed id, and a
    tuple is made four times faster than a frozen dataclass."""

    name: str
    kind: Kind
    size: int = 0
    #: When it was last written, in epoch seconds by the store's clock (S3: LastModified
    #: or, for an upload, Initiated), comparable with :attr:`Listing.now`.
    mtime: float = 0.0
    #: Tells this version of the entry from any other (local: inode, mtime and size; S3:
    #: ETag, LastModified and size; an upload: its id). Same tag: unchanged.
    tag: str = ""


@dataclass(slots=True)
class Listing:
    """What :meth:`Backend.listing` found."""

    #: The store's clock when the listing began (S3: its first answer's Date): entries
    #: are aged against it, so no host's clock counts.
    now: float
    #: id -> name -> entry, for every folder that holds anything.
    folders: dict[str, Mapping[str, Entry]] = field(default_factory=dict)
    #: id -> unfinished uploads into that folder (asked for with ``uploads=True``).
    uploads: dict[str, list[Entry]] = field(default_factory=dict)
    #: Entries at the top of the archive, outside any folder (the whole archive listed).
    strays: list[Entry] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend can do beyond the contract's minimum."""

    #: An interrupted file keeps its bytes (under a temporary name) for a later attempt
    #: to resume (:meth:`ItemWriter.partial`). Local disk: yes; S3: no.
    resumable: bool = False
    #: Its sinks take writes by position (:attr:`FileSink.supports_positional_writes`).
    positional_writes: bool = False
    #: The store keeps its own checksum of each file, which :meth:`Backend.digest` can
    #: read without reading the bytes (S3's ``ChecksumSHA256``).
    server_checksums: bool = False


@dataclass(frozen=True, slots=True)
class Digest:
    """What a backend can tell about a stored file's bytes (:meth:`Backend.digest`)."""

    #: The SHA-256 of the stored bytes (hex), read and hashed now.
    sha256: str | None = None
    #: The store's own checksum of the file, as it reports it now...
    reported: str | None = None
    #: ... and as it reported it when the file was written (from the record's backend
    #: facts). The backend gives both in one form: they agree if and only if equal.
    recorded: str | None = None


@dataclass(slots=True)
class Removal:
    """What :meth:`Backend.remove` did."""

    #: The entries removed (each unchanged since listed, until then).
    removed: list[Entry] = field(default_factory=list)
    #: One line per entry that could not be removed (entries found changed or gone are
    #: left alone silently: another run wrote or removed them).
    failures: list[str] = field(default_factory=list)
    #: The folder itself went too, left empty (stores with real folders).
    folder: bool = False


@dataclass(frozen=True, slots=True)
class Partial:
    """Bytes kept from an interrupted transfer, which a new attempt may resume."""

    name: str
    #: Bytes already stored.
    size: int
    #: The strong ETag or Last-Modified the bytes came with, sent as If-Range when
    #: resuming. None only for a *complete* file, which needs no request: bytes that
    #: came without a validator are never kept (a resume could splice two versions).
    validator: str | None
    #: The URL path they came from (query stripped): resume only the same file.
    source: str
    #: A ``hashlib.sha256()`` object already fed with the stored bytes.
    hasher: Any = None
    #: The first bytes stored (up to 4 KiB), for content checks.
    head: bytes = b""
    #: The whole file was received and checked; only the item's commit was missing.
    complete: bool = False
    #: The temporary file may hold bytes past *size* (a download over several
    #: connections stopped): they are no prefix to trust, and the sink cuts them off.
    cut: bool = False


class FileSink(Protocol):
    """A file being written. Data is invisible under its final name until :meth:`commit`.

    A sink writes sequentially (:meth:`write`). One whose :attr:`supports_positional_writes`
    is true can also be written out of order - several ranges of one file fetched at
    once - with :meth:`write_at`, read back with :meth:`read_into` (the caller hashes the
    bytes in order), and told with :meth:`mark_prefix` how far the bytes are contiguous
    and checked. A sink uses one mode or the other, never both.
    """

    #: Whether :meth:`write_at`, :meth:`read_into` and :meth:`mark_prefix` work (local
    #: disk: into the temporary file; S3: into a local spool, parts sent as the prefix grows).
    supports_positional_writes: bool

    async def write(self, chunk: bytes) -> None:
        """Append *chunk*. Called with chunks of about ``downloads.chunk_size`` bytes."""

    async def write_at(self, offset: int, chunk: bytes) -> None:
        """Write *chunk* at byte *offset* (positional sinks only; see the class docstring)."""

    async def read_into(self, offset: int, buffer: memoryview) -> int:
        """Read back bytes written at *offset* into *buffer*, up to its length; how many
        came (positional sinks only). The buffer is the caller's, reused read after
        read: reading back a whole file allocates nothing per read."""

    async def mark_prefix(self, size: int) -> None:
        """The first *size* bytes are contiguous and checked: make them durable and record
        them, so that a later attempt or run resumes after them and trusts nothing past
        them (positional sinks only). :meth:`abort` with *keep* keeps just that prefix.
        """

    def rename(self, name: str) -> None:
        """Give the file the final name *name* instead of the one it was opened with:
        the extension its first bytes proved (``image`` -> ``image.png``). Called at
        most once, once the first bytes were checked and before any is stored under a
        final name; temporary names (and so a resume) keep the name opened with."""

    async def commit(self, size: int, sha256: str) -> dict[str, Any]:
        """Check *size* bytes were written and make the file durable.

        The file is under its final name at the latest when the item commits.

        *sha256* is the whole-file digest computed while streaming. Returns extra facts
        for ``archive.json`` (e.g. an S3 checksum), possibly empty.
        """

    async def abort(self, keep: bool = False) -> None:
        """Discard what was written; safe to call twice, and after a failed commit.

        With *keep*, a backend that can resume keeps the bytes under their temporary
        name for a later :meth:`ItemWriter.partial` - only if that resume can be guarded:
        they came with a validator (or are the whole file, checked). Other bytes, and
        every backend that cannot resume, discard them all the same.
        """


class ItemWriter(Protocol):
    """Writes one item. Either :meth:`commit` or :meth:`abort` ends it."""

    async def partial(self, name: str) -> Partial | None:
        """What an earlier, interrupted attempt left of *name*, if resumable (else None):
        never bytes without a validator, unless complete (see :class:`Partial`)."""

    async def open_file(self, name: str, *, resume: Partial | None = None,
                        validator: str | None = None, source: str = "") -> FileSink:
        """Start writing the media file *name* (e.g. ``video.mp4``).

        With *resume*, the sink appends after ``resume.size`` bytes already stored.
        *validator* and *source* describe the download, for a later resume.
        """

    async def put_small(self, name: str, data: bytes) -> None:
        """Atomically write a small metadata file (``info.json``, ``SHA256SUMS``)."""

    async def commit(self, record: bytes, *, expect: Collection[str] = ()) -> bool:
        """Write ``archive.json`` - last - making the item count as archived, once every
        file this writer stored and every name in *expect* is there under its final name
        (else :class:`~archiver.errors.StorageError`, and no record: nothing incomplete
        may ever look complete).

        Write-once: True if this writer's record is the item's now; False if another
        run committed the item first (its record stands, and the item was already
        archived when this run got there)."""

    async def abort(self, keep: bool = False) -> None:
        """Remove temporary files (and, where no other run can share them, any file this
        writer made final without committing: local disk; S3 keeps those for ``gc``).

        With *keep*, a backend that can resume keeps downloaded bytes under temporary
        names for the next run (interruption, transient failure) - those whose resume
        can be guarded (:meth:`FileSink.abort`). Without it, the item
        leaves nothing: temporaries kept by earlier attempts or runs go too. The caller
        (the scheduler) decides once it knows the item's outcome.
        """


class Backend(Protocol):
    """One store of item folders (see the module docstring)."""

    #: Where it is, safe to log (no credentials): a path, ``s3://bucket/prefix``.
    description: str
    capabilities: Capabilities

    async def open(self, readonly: bool = False) -> None:
        """Check the store exists and is writable; raise StorageUnavailable if not.

        With *readonly* (dry runs, verify, status), only check it can be read: write nothing.
        """

    async def close(self) -> None:
        """Release resources (waiting for clean-ups handed to threads)."""

    async def listing(self, ids: Collection[str] | None = None, *, only: str | None = None,
                   uploads: bool = False) -> Listing:
        """The entries of the folders of *ids*, or of every folder when None (then also
        :attr:`Listing.strays`). Folders that hold nothing, or that are not folders (a
        link named like an id), are left out.

        With *only*, the caller needs no more than, per folder, whether it holds a regular
        file named *only* and whether it holds anything: a backend may then leave other
        entries out (at least one stays for a folder holding anything), and the size,
        time and tag of the one named *only* (nothing is removed on the strength of
        such a listing) - the skip check's and ``status``' cheap path. With *uploads*,
        unfinished uploads are listed too.
        Raises StorageUnavailable if the store cannot be listed.
        """

    async def read(self, item_id: str, name: str) -> bytes | None:
        """The bytes of the small regular file *name* of the item (``archive.json``), or
        None if there is none. Raises StorageUnavailable if the store cannot be read."""

    async def digest(self, item_id: str, file: FileRecord, *, rehash: bool) -> Digest:
        """What the store says of the stored file *file* names: with *rehash*, its bytes
        read and hashed (:attr:`Digest.sha256`); without, the store's own checksum and
        the one recorded (:attr:`Digest.reported`, :attr:`Digest.recorded`; backends
        with :attr:`Capabilities.server_checksums` only). Raises StorageError naming
        what could not be read (gone, a link, denied)."""

    def item(self, item_id: str) -> ItemWriter:
        """A writer for one item's folder."""

    async def remove(self, item_id: str | None, entries: Sequence[Entry]) -> Removal:
        """Remove *entries* of the item's folder (of the top when *item_id* is None), each
        only if it is unchanged since it was listed (same tag), and none from a folder
        holding ``archive.json`` by then. Unfinished uploads are aborted. Raises
        StorageUnavailable if the store cannot be reached at all."""

    async def publish(self, name: str, data: bytes, *, content_type: str) -> None:
        """Write the small file *name* at the top of the archive, replacing any: readers
        see the old bytes or the new, never a part (local disk: a temporary, fsync,
        rename; S3: one PutObject, served with *content_type*). Only for the archive's
        own pages (``index.html``, :func:`~archiver.storage.names.is_index_page`), never
        an item's file. Raises StorageError naming what could not be written."""

    def where(self, item_id: str | None, entry: Entry) -> str:
        """*entry* of the item (or of the top), as messages show it: a path, a URL."""

    def run_lock(self, name: str, *, ttl: float, what: str,
                 on_lost: Callable[[str], None] | None = None,
                 command: str = "run") -> AbstractAsyncContextManager[Fence]:
        """The lock that keeps other runs of this store out while held.

        Commands take it through :func:`archiver.archive.runlock.hold`, not directly.
        *name* is ``all`` or the shard's (``shard-2-of-4``); *what* describes it in
        messages, *command* (``run``, ``serve``, ``gc``) tells other runs who holds it.
        Local disk: a ``flock`` on a file in the root (runs on this host). S3: a lease
        object under the prefix (runs on every host), renewed every *ttl* / 3 seconds;
        *on_lost* is called (from another thread) if it is lost while held. Either way,
        a live lock of another shard count beside it makes the run give its own back.
        Entering raises :class:`~archiver.fleet.lock.LockHeld` if another run holds it, and
        yields the :class:`~archiver.fleet.lock.Fence` work checks before it starts.
        """
