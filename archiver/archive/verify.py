"""``archiver verify``: what the archive holds, checked against its records - the rules
written once, for every backend, over the narrow storage contract.

Only reads. One listing gives the archived items (``archive.json`` present, see
:mod:`.state`) and each one's entries; then each item's record is read and every file
it lists is compared, from its typed :class:`~archiver.models.FileRecord`, with what is
stored:

- **missing**: no entry of that name;
- **corrupted**: an entry that is not a regular file (a planted symbolic link: reported,
  never followed), a size other than the record's, or a digest other than the record's.
  The digest is the store's own checksum when the backend keeps one
  (:attr:`~archiver.storage.backend.Capabilities.server_checksums`: S3, nothing is
  downloaded) unless ``deep`` asks for the bytes to be read and hashed again, which is
  what every other backend does (local disk);
- **unexpected**: a file nobody recorded. Temporaries (``.video.mp4.part``, its
  ``.part.json`` sidecar, ``.info.json.tmp``: bytes kept for a later run to resume) and
  sub-folders are no item's files and are never reported;
- the metadata files (``info.json``, ``SHA256SUMS``) must be there, as regular files;
- **record**: an ``archive.json`` that cannot be read as one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..errors import StorageError
from ..models import FileRecord
from ..storage.backend import Backend, Entry, Kind
from ..storage.names import INFO_NAME, METADATA_NAMES, RECORD_NAME, SUMS_NAME, is_temporary
from .record import ArchiveRecord, RecordError
from .state import committed

_NOT_REGULAR = "not a regular file (a symbolic link?); not followed"


@dataclass(frozen=True, slots=True)
class Problem:
    id: str
    file: str
    kind: str  # missing | corrupted | unexpected | record
    detail: str

    def __str__(self) -> str:
        return f"{self.id}/{self.file}: {self.kind}: {self.detail}"


@dataclass(slots=True)
class VerifyResult:
    items: int = 0
    files: int = 0
    bytes: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


async def verify(backend: Backend, ids: Sequence[str] | None, *, deep: bool = False,
                 concurrency: int = 4) -> VerifyResult:
    """Check *ids* (all archived ids when None). Ids of a manifest not archived are skipped."""
    wanted = None if ids is None else list(dict.fromkeys(ids))
    listing = await backend.listing(wanted)
    targets = sorted(listing.folders) if wanted is None else wanted
    result = VerifyResult()
    slots = asyncio.Semaphore(concurrency)

    async def one(item_id: str) -> None:
        async with slots:
            await _verify_item(backend, item_id, listing.folders[item_id], deep, result)

    await asyncio.gather(*(one(i) for i in targets if committed(listing.folders.get(i))))
    result.problems.sort(key=lambda p: (p.id, p.file))
    return result


async def _verify_item(backend: Backend, item_id: str, present: Mapping[str, Entry],
                       deep: bool, result: VerifyResult) -> None:
    raw = await backend.read(item_id, RECORD_NAME)
    if raw is None:
        return  # gone since the listing: nothing to verify (status tells)
    result.items += 1
    try:
        record = ArchiveRecord.parse(raw)
    except RecordError as exc:
        result.problems.append(Problem(item_id, RECORD_NAME, "record",
                                       f"unreadable archive.json: {exc}"))
        return
    for file in record.files:
        result.files += 1
        problem = await _check(backend, item_id, file, present.get(file.name), deep)
        if problem is not None:
            result.problems.append(problem)
        elif file.size is not None:
            result.bytes += file.size
    for meta in (INFO_NAME, SUMS_NAME):
        entry = present.get(meta)
        if entry is None:
            result.problems.append(Problem(item_id, meta, "missing", "metadata file"))
        elif entry.kind is not Kind.FILE:
            result.problems.append(Problem(item_id, meta, "corrupted", _NOT_REGULAR))
    recorded = {f.name for f in record.files}
    for name, entry in sorted(present.items()):
        if name in recorded or name in METADATA_NAMES or is_temporary(name) \
                or entry.kind is Kind.FOLDER:
            continue  # temporaries: bytes a later run may resume, not archived data
        result.problems.append(Problem(item_id, name, "unexpected", "not in archive.json"))


async def _check(backend: Backend, item_id: str, file: FileRecord, entry: Entry | None,
                 deep: bool) -> Problem | None:
    """What is wrong with one recorded file, if anything."""
    def problem(kind: str, detail: str) -> Problem:
        return Problem(item_id, file.name, kind, detail)

    if entry is None:
        return problem("missing", "listed in archive.json")
    if entry.kind is not Kind.FILE:
        return problem("corrupted", _NOT_REGULAR)
    if entry.size != file.size:
        return problem("corrupted", f"size {entry.size}, archive.json says {file.size}")
    rehash = deep or not backend.capabilities.server_checksums
    try:
        digest = await backend.digest(item_id, file, rehash=rehash)
    except StorageError as exc:
        return problem("corrupted", f"cannot read: {exc}")
    if digest.sha256 is not None:
        if digest.sha256 != file.sha256:
            return problem("corrupted", f"sha256 {digest.sha256}, archive.json says "
                                        f"{file.sha256}")
        return None
    if digest.reported is None:
        return problem("corrupted", "the store reports no checksum for it (use --deep)")
    if digest.recorded is None:
        return problem("corrupted", "archive.json records no checksum of the store for it "
                                    "(use --deep)")
    if digest.reported != digest.recorded:
        return problem("corrupted", f"the store's checksum {digest.reported}, archive.json "
                                    f"says {digest.recorded}")
    return None
