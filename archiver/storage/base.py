"""The storage contract every backend implements.

An archive holds one folder (or key prefix) per ``video_model_id``::

    <id>/video.mp4 ... media files, each written under a temporary name, then made final
    <id>/info.json      the API's ``data`` object as it came
    <id>/SHA256SUMS     ``sha256sum -c`` format
    <id>/archive.json   the item's record, written LAST: it is the commit marker

An item is archived if and only if its ``archive.json`` exists. Backends guarantee that
nothing appears under a final name until it is complete, and that an item aborted
without ``keep`` leaves no temporary data behind (no open upload). Files an aborted item
already made final may stay where another run could share their names (S3: another host
writing the same prefix commits the same keys), until ``archiver gc`` removes those of ids
nobody committed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..lock import NO_FENCE, Fence
from .names import INFO_NAME, RECORD_NAME, SUMS_NAME, is_temporary

__all__ = ["INFO_NAME", "RECORD_NAME", "SUMS_NAME", "is_temporary"]



#: The size a reader's ``list_files`` gives an entry under a final name that is not a
#: regular file (a symbolic link, a FIFO): ``verify`` reports it and never follows it.
NOT_A_FILE = -1


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


@dataclass(frozen=True, slots=True)
class Garbage:
    """One thing ``archiver gc`` removed (or, in a dry run, would remove)."""

    #: Where it is, safe to print: ``s3://bucket/key``, a path.
    where: str
    #: Its size in bytes (0 when unknown, e.g. a multipart upload).
    size: int = 0
    #: The id it belonged to; None for strays such as a leftover write probe.
    item: str | None = None
    #: ``file`` (an object or a file), ``upload`` (a multipart upload), ``folder``.
    kind: str = "file"


@dataclass(slots=True)
class GcResult:
    """What ``archiver gc`` did."""

    removed: list[Garbage] = field(default_factory=list)
    #: One line per thing that could not be removed (exit status 1).
    failures: list[str] = field(default_factory=list)
    #: Uncommitted ids left alone because something of theirs is younger than min_age.
    kept_recent: list[str] = field(default_factory=list)

    @property
    def files(self) -> list[Garbage]:
        return [g for g in self.removed if g.kind == "file"]

    @property
    def uploads(self) -> list[Garbage]:
        return [g for g in self.removed if g.kind == "upload"]

    @property
    def items(self) -> set[str]:
        return {g.item for g in self.files if g.item is not None}

    @property
    def bytes(self) -> int:
        return sum(g.size for g in self.removed)


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

    async def commit(self, record: bytes) -> bool:
        """Write ``archive.json`` - last - making the item count as archived.

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


class Storage(Protocol):
    """A destination for archived items: what runs write, and what ``verify``,
    ``status`` and ``gc`` read. Both backends (:mod:`.local`, :mod:`.s3`) implement all of
    it; the contract tests (``tests/test_storage_contract.py``) run against each."""

    #: Human-readable location, safe to log (no credentials).
    description: str

    #: Whether an interrupted file keeps its bytes (under a temporary name) for a later
    #: attempt to resume (:meth:`ItemWriter.partial`). Local disk: yes; S3: no.
    resumable: bool

    async def open(self, readonly: bool = False) -> None:
        """Check the destination exists and is writable; raise StorageUnavailable if not.

        With *readonly* (dry runs, verify, status), only check it can be read: write nothing.
        """

    async def close(self) -> None:
        """Release resources."""

    # ---------------------------------------------------------------- run lock

    def default_lock_path(self) -> Path | None:
        """Where a lock file for this destination goes on this host (local: in the root),
        or None to let the caller pick one (a file named after :attr:`description`)."""

    def run_lock(self, name: str, *, ttl: float, what: str,
                 on_lost: Callable[[str], None] | None = None,
                 command: str = "run") -> AbstractAsyncContextManager[Fence]:
        """The lock that keeps other runs of this destination out while held.

        Commands take it through :func:`archiver.runlock.hold`, not directly.
        *name* is ``all`` or the shard's (``shard-2-of-4``); *what* describes it in
        messages, *command* (``run``, ``serve``, ``gc``) tells other runs who holds it.
        Local disk: a ``flock`` on a file in the root (runs on this host). S3: a lease
        object under the prefix (runs on every host), renewed every *ttl* / 3 seconds;
        *on_lost* is called (from another thread) if it is lost while held. Either way,
        a live lock of another shard count beside it makes the run give its own back.
        Entering raises :class:`~archiver.lock.LockHeld` if another run holds it, and
        yields the :class:`~archiver.lock.Fence` work checks before it starts.
        """

    # ---------------------------------------------------------------- writing

    async def archived(self, ids: Iterable[str]) -> set[str]:
        """Those of *ids* whose ``archive.json`` exists (cheaply: no per-id network call)."""

    def item(self, video_model_id: str) -> ItemWriter:
        """A writer for one item's folder."""

    # ------------------------------------------------- reading: verify, status

    async def list_archived(self) -> list[str]:
        """Every id that has an ``archive.json``, sorted."""

    async def read_record(self, video_model_id: str) -> bytes | None:
        """The ``archive.json`` of an id, or None."""

    async def list_files(self, video_model_id: str) -> dict[str, int]:
        """Files of an item under final names: name -> size (:data:`NOT_A_FILE` for an
        entry that is not a regular file). Temporaries may be listed: verify skips them."""

    async def item_states(self, ids: Iterable[str]) -> dict[str, str]:
        """archived / partial (some bytes stored, no record) / absent, per id."""

    async def check_file(self, video_model_id: str, entry: dict[str, Any],
                         deep: bool) -> str | None:
        """Compare one stored file with its ``archive.json`` entry: None if intact, else
        why not (local: re-hashed; S3: S3's own checksum, or re-hashed with *deep*)."""

    # ---------------------------------------------------------------- gc

    async def collect_garbage(self, ids: Iterable[str] | None, min_age: float,
                              dry_run: bool, fence: Fence = NO_FENCE) -> GcResult:
        """Remove leftovers of uncommitted ids (all ids when *ids* is None) whose every
        file is older than *min_age* seconds; with *dry_run*, only report them. A
        committed item is never touched (:mod:`archiver.gc`). *fence* is asked before
        each removal: :class:`~archiver.errors.LeaseLost` stops the collection."""
