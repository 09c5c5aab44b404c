"""What the stand-in's result files are: their bytes, type, validators and URL path.

A family's ``make_files`` builds a job's :class:`File` objects with :func:`bytes_file`,
:func:`mp4_file` and :func:`media_file`; ``files.py`` serves them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from archiver.testing.media import CHUNK_SIZE, MEDIA_FORMATS, SyntheticMp4

# CDN result files are kept for 7 days (akool-api.md); signed URLs expire then too.
RETENTION_S = 7 * 24 * 3600


class Content(Protocol):
    """What serving needs from a file's bytes (generated or held in memory)."""

    @property
    def size(self) -> int: ...

    def read(self, start: int, end: int) -> bytes: ...

    def iter_chunks(
        self, start: int = 0, end: int | None = None, chunk_size: int = CHUNK_SIZE
    ) -> Iterator[bytes]: ...

    def sha256(self) -> str: ...


@dataclass(frozen=True)
class BytesContent:
    """Small in-memory content (SRTs, explicit ``video_bytes``)."""

    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)

    def read(self, start: int, end: int) -> bytes:
        return self.data[max(start, 0) : end]

    def iter_chunks(
        self, start: int = 0, end: int | None = None, chunk_size: int = CHUNK_SIZE
    ) -> Iterator[bytes]:
        stop = self.size if end is None else min(end, self.size)
        for pos in range(max(start, 0), stop, chunk_size):
            yield self.data[pos : min(pos + chunk_size, stop)]

    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True)
class File:
    """One result file of one job, as the CDN serves it."""

    content: Content
    content_type: str
    #: Strong ETag value (without quotes).
    etag: str
    last_modified: datetime
    #: ``charset`` parameter of the Content-Type, for text files.
    charset: str | None = None


def modified_at(create_time: int) -> datetime:
    """Last-Modified of a job's files: its ``create_time`` (ms), to the second."""
    return datetime.fromtimestamp(create_time / 1000, UTC).replace(microsecond=0)


def bytes_file(
    data: bytes, content_type: str, create_time: int, *, charset: str | None = None
) -> File:
    """A file holding exactly *data*."""
    tag = hashlib.sha256(data).hexdigest()
    return File(BytesContent(data), content_type, tag[:32], modified_at(create_time), charset)


def mp4_file(size: int, seed: bytes, create_time: int) -> File:
    """A generated, valid MP4 of exactly *size* bytes, the same for the same *seed*."""
    created_unix = create_time // 1000
    content = SyntheticMp4(size, seed, created_unix)
    # Hashing 2 GiB per job would be slow; the generator's inputs determine
    # the bytes, so a hash of them is a valid strong ETag.
    tag = hashlib.sha256(b"mp4:%d:%d:" % (size, created_unix) + seed).hexdigest()
    return File(content, "video/mp4", tag[:32], modified_at(create_time))


def media_file(media_format: str, size: int, seed: bytes, create_time: int) -> File:
    """A generated image or audio file (:data:`~archiver.testing.media.MEDIA_FORMATS`) of
    exactly *size* bytes, the same for the same *seed*; ``ValueError`` if the format
    cannot be that size."""
    fmt = MEDIA_FORMATS[media_format]
    return bytes_file(fmt.make(size, seed, create_time // 1000), fmt.content_type, create_time)


def file_path(job_id: str, name: str, create_time: int, *, signed: bool) -> str:
    """Path (and signed query) of a job's file, as lookup answers carry it."""
    path = f"/files/{job_id}/{name}"
    if not signed:
        return path
    # A CloudFront-like signature: ignored when serving, but present so that
    # clients learn not to treat the query as part of the file's identity.
    expires = create_time // 1000 + RETENTION_S
    signature = hashlib.sha256(f"{path}:{expires}".encode()).hexdigest()[:40]
    return f"{path}?Expires={expires}&Signature={signature}&Key-Pair-Id=K2AKOOLSTANDIN"
