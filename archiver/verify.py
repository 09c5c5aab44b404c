"""``archiver verify`` and ``archiver status``: what the archive holds, checked against itself.

Both only read. ``verify`` compares every file an ``archive.json`` lists with what the
storage holds: present, same size, same SHA-256 (local: re-hashed; S3: S3's own checksum,
or re-hashed with ``deep``), and reports files nobody recorded. ``status`` says, per
id, whether it is archived, partially downloaded or absent, without calling the API.

Temporaries (``.video.mp4.part``, its ``.part.json`` sidecar, ``.info.json.tmp``) are
not part of any item: bytes kept for a later run to resume, never reported. An entry
under a final name that is not a regular file (a planted symbolic link) is reported,
never followed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from .record import ArchiveRecord, RecordError
from .storage.base import INFO_NAME, NOT_A_FILE, RECORD_NAME, SUMS_NAME, Storage, is_temporary

METADATA = frozenset({INFO_NAME, SUMS_NAME, RECORD_NAME})

ARCHIVED, PARTIAL, ABSENT = "archived", "partial", "absent"


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


async def verify(reader: Storage, ids: Sequence[str] | None, *, deep: bool = False,
                 concurrency: int = 4) -> VerifyResult:
    """Check *ids* (all archived ids when None). Ids of a manifest not archived are skipped."""
    targets = list(ids) if ids is not None else await reader.list_archived()
    result = VerifyResult()
    slots = asyncio.Semaphore(concurrency)

    async def one(item_id: str) -> None:
        async with slots:
            await _verify_item(reader, item_id, deep, result)

    await asyncio.gather(*(one(i) for i in targets))
    result.problems.sort(key=lambda p: (p.id, p.file))
    return result


async def _verify_item(reader: Storage, item_id: str, deep: bool,
                       result: VerifyResult) -> None:
    raw = await reader.read_record(item_id)
    if raw is None:
        return  # not archived: nothing to verify (status tells which ids are missing)
    result.items += 1
    try:
        record = ArchiveRecord.parse(raw)
    except RecordError as exc:
        result.problems.append(Problem(item_id, RECORD_NAME, "record",
                                       f"unreadable archive.json: {exc}"))
        return
    entries = {f.name: f for f in record.files}
    present = await reader.list_files(item_id)
    for name, entry in entries.items():
        result.files += 1
        if name not in present:
            result.problems.append(Problem(item_id, name, "missing", "listed in archive.json"))
            continue
        if present[name] == NOT_A_FILE:
            result.problems.append(Problem(
                item_id, name, "corrupted", "not a regular file (a symbolic link?); not followed"))
            continue
        if present[name] != entry.size:
            result.problems.append(Problem(
                item_id, name, "corrupted",
                f"size {present[name]}, archive.json says {entry.size}"))
            continue
        problem = await reader.check_file(item_id, entry.to_json(), deep)
        if problem is not None:
            result.problems.append(Problem(item_id, name, "corrupted", problem))
        else:
            result.bytes += present[name]
    for meta in (INFO_NAME, SUMS_NAME):
        if meta not in present:
            result.problems.append(Problem(item_id, meta, "missing", "metadata file"))
        elif present[meta] == NOT_A_FILE:
            result.problems.append(Problem(
                item_id, meta, "corrupted", "not a regular file (a symbolic link?); not followed"))
    for name in sorted(set(present) - set(entries) - METADATA):
        if is_temporary(name):
            continue  # bytes a later run may resume, or a stale leftover: not archived data
        result.problems.append(Problem(item_id, name, "unexpected", "not in archive.json"))
