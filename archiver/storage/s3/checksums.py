"""S3's SHA-256 checksums: what is sent, what S3 reports, what ``archive.json`` records.

Every object carries S3's native checksum: ``ChecksumSHA256`` (base64) of the whole
object for a single PutObject, or per part for a multipart upload, which S3 combines into
a composite checksum, ``base64(sha256(part digests))-N`` (:func:`composite_checksum`).
What a sink's commit returns for ``archive.json`` (:func:`facts`, under ``"s3"``) names
that checksum and its type, so ``verify`` can compare it with S3's own without
downloading anything (:func:`recorded_checksum`, :func:`same_checksum`).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ...errors import StorageError
from ...models import FileRecord


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def composite_checksum(part_digests: Iterable[bytes]) -> str:
    """S3's composite SHA-256 of a multipart upload: base64(sha256(part digests)) + ``-N``."""
    digests = list(part_digests)
    return f"{b64(hashlib.sha256(b''.join(digests)).digest())}-{len(digests)}"


@dataclass(frozen=True, slots=True)
class Part:
    """An uploaded part: what CompleteMultipartUpload and the composite checksum need."""

    number: int
    etag: str
    #: base64 SHA-256, as sent and as CompleteMultipartUpload wants it.
    checksum: str
    digest: bytes


def same_checksum(reported: str, expected: str) -> bool:
    """Whether two S3 checksums agree. The base64 digests are compared: HEAD and
    GetObjectAttributes may leave off a composite checksum's ``-N``."""
    return reported.split("-")[0] == expected.split("-")[0]


def check_reported(key: str, reported: str | None, expected: str) -> None:
    """Raise if S3 reported a checksum other than the one computed while streaming."""
    if reported is not None and not same_checksum(reported, expected):
        raise StorageError(f"{key}: S3 reports checksum {reported}, "
                           f"computed {expected} while streaming")


def facts(key: str, answer: dict[str, Any], *, checksum: str, kind: str,
          verified: bool) -> dict[str, Any]:
    """What ``archive.json`` records of an object S3 stored (see :mod:`archiver.storage.s3`)."""
    found: dict[str, Any] = {
        "key": key,
        "etag": str(answer.get("ETag", "")).strip('"'),
        "checksum_sha256": checksum,
        "checksum_type": kind,
        "checksum_verified": verified,
    }
    if answer.get("VersionId") not in (None, "", "null"):  # "null": not versioned
        found["version_id"] = answer["VersionId"]
    if answer.get("ServerSideEncryption"):
        found["server_side_encryption"] = answer["ServerSideEncryption"]
    return found


def recorded_checksum(file: FileRecord) -> str | None:
    """The S3 checksum ``archive.json`` records for *file*: its ``s3`` facts', or - for a
    record without them - the file's own SHA-256, which is what a single PutObject's
    checksum is. None if neither can be had (a composite checksum not recorded)."""
    raw = file.extra.get("s3")
    found: dict[str, Any] = raw if isinstance(raw, dict) else {}
    recorded = found.get("checksum_sha256")
    if isinstance(recorded, str) and recorded:
        return recorded
    if found.get("checksum_type") == "COMPOSITE":
        return None
    try:
        return b64(bytes.fromhex(file.sha256))
    except ValueError:
        return None
