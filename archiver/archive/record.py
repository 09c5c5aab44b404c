"""The item's record: ``archive.json``, ``SHA256SUMS`` and ``info.json``, built and read here.

An archived item holds its media files and three metadata files (see
:mod:`archiver.storage.names`): ``info.json`` (the API's ``data`` object as it came),
``SHA256SUMS`` (``sha256sum -c`` format) and ``archive.json``, the record written last
as the commit marker. This module is the only one that knows their bytes: the
transaction writes them (:mod:`.transaction`), ``verify`` reads the record back with
:meth:`ArchiveRecord.parse`, which turns any malformed record into one
:class:`RecordError` naming the field, never a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from .. import __version__
from ..models import FileRecord, JobInfo, iso_utc

#: The ``format`` of the records this version writes and reads.
FORMAT = 1

#: The fields of a file entry that are ours; any other key is a backend fact
#: (:attr:`FileRecord.extra`, e.g. S3's checksum under ``"s3"``), kept as it came.
_FILE_FIELDS = ("name", "size", "sha256", "source_url")

_T = TypeVar("_T")


class RecordError(ValueError):
    """An ``archive.json`` that cannot be read as a record; the message says why."""


def iso(epoch: float) -> str:
    """``2026-11-26T17:50:59Z``; never raises: an absurd time must not cost the item."""
    return iso_utc(epoch) or "an unknown time"


@dataclass(frozen=True, slots=True)
class ArchiveRecord:
    """One item's ``archive.json``: what was archived, when, and every file's checksum.

    ``to_bytes()`` gives the exact bytes written; ``parse(to_bytes())`` gives an equal
    record back.
    """

    id: str
    label: str | None
    #: When the item was committed, ``2026-11-26T17:50:59Z``.
    archived_at: str
    archiver_version: str
    video_status: int | None
    #: Akool's ``create_time`` (ms since the epoch) as the API sent it.
    create_time: int | None
    #: When Akool deletes the results, or None when ``create_time`` could not say.
    expires_at: str | None
    files: tuple[FileRecord, ...]
    format: int = FORMAT
    #: The item's result family; records written before families existed have none
    #: and are videos.
    family: str = "video"

    @classmethod
    def build(cls, item_id: str, label: str | None, info: JobInfo,
              files: Sequence[FileRecord], *, now: float) -> ArchiveRecord:
        """The record of *item_id* committed at *now* (epoch seconds) with *files*."""
        expires = info.expires_at
        return cls(id=item_id, label=label, archived_at=iso(now),
                   archiver_version=__version__, video_status=info.status,
                   create_time=info.create_time_ms,
                   expires_at=iso(expires) if expires is not None else None,
                   files=tuple(files), family=info.family)

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON object, keys in the order they are written."""
        return {
            "format": self.format,
            "id": self.id,
            "family": self.family,
            "label": self.label,
            "archived_at": self.archived_at,
            "archiver_version": self.archiver_version,
            "video_status": self.video_status,
            "create_time": self.create_time,
            "expires_at": self.expires_at,
            "files": [f.to_json() for f in self.files],
        }

    def to_bytes(self) -> bytes:
        """The bytes of ``archive.json``."""
        return json_bytes(self.to_json())

    @classmethod
    def parse(cls, raw: bytes) -> ArchiveRecord:
        """Read an ``archive.json``; raises :class:`RecordError` naming what is wrong."""
        try:
            value = json.loads(raw)
        except RecursionError:  # "[[[[..." nested past the parser's stack
            raise RecordError("nested too deeply to be a record") from None
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError alike
            raise RecordError(f"not JSON ({exc})") from None
        top = _Fields(_expect(value, dict, "the record"), "")
        version = top.get("format", int)
        if version != FORMAT:
            raise RecordError(f"format {version!r}, this archiver reads format {FORMAT}")
        entries = top.get("files", list)
        return cls(
            id=top.get("id", str),
            label=top.optional("label", str),
            archived_at=top.get("archived_at", str),
            archiver_version=top.get("archiver_version", str),
            video_status=top.optional("video_status", int),
            # Written as the API sent it; a bool passes JobInfo's int check, so it may be one.
            create_time=top.optional("create_time", int, bool_ok=True),
            expires_at=top.optional("expires_at", str),
            files=tuple(_parse_file(e, f"files[{n}]") for n, e in enumerate(entries)),
            format=version,
            family=top.optional("family", str) or "video",
        )


def _parse_file(value: object, where: str) -> FileRecord:
    fields = _Fields(_expect(value, dict, where), f"{where}.")
    return FileRecord(
        name=fields.get("name", str),
        size=fields.optional("size", int),
        # A dry run's entries have no checksum (null); a record may carry them too.
        sha256=fields.optional("sha256", str) or "",
        source_url=fields.get("source_url", str),
        extra={k: v for k, v in fields.data.items() if k not in _FILE_FIELDS},
    )


class _Fields:
    """Typed access to the keys of one JSON object, naming the key in every error."""

    __slots__ = ("_prefix", "data")

    def __init__(self, data: dict[str, Any], prefix: str) -> None:
        self.data, self._prefix = data, prefix

    def get(self, key: str, kind: type[_T], *, bool_ok: bool = False) -> _T:
        if key not in self.data:
            raise RecordError(f"{self._prefix}{key}: missing")
        return _expect(self.data[key], kind, f"{self._prefix}{key}", bool_ok=bool_ok)

    def optional(self, key: str, kind: type[_T], *, bool_ok: bool = False) -> _T | None:
        if self.data.get(key) is None:
            return None
        return self.get(key, kind, bool_ok=bool_ok)


_NAMES: dict[type[Any], str] = {str: "a string", int: "a whole number", list: "a list",
                                dict: "an object"}


def _expect(value: object, kind: type[_T], where: str, *, bool_ok: bool = False) -> _T:
    # bool is an int to Python, not to a record: "size": true is no size.
    if not isinstance(value, kind) or (isinstance(value, bool) and not bool_ok):
        raise RecordError(f"{where}: expected {_NAMES[kind]}, got {_describe(value)}")
    return value


def _describe(value: object) -> str:
    if value is None:
        return "null"
    return type(value).__name__ if not isinstance(value, str) else f"the string {value[:40]!r}"


def json_bytes(value: object) -> bytes:
    """Indented UTF-8 JSON with a final newline: how ``archive.json`` and ``info.json``
    are written (``info.json`` holds the API's ``data`` object as it came)."""
    return (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def sha256sums(files: Sequence[FileRecord]) -> bytes:
    """The bytes of ``SHA256SUMS`` for *files*, in their order."""
    # Two spaces: text mode, the format `sha256sum -c` reads back.
    return "".join(f"{f.sha256}  {f.name}\n" for f in files).encode("utf-8")
