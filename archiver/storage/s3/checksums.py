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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...errors import StorageError
from ...models import FileRecord

if TYPE_CHECKING:  # requests.py imports this module
    from .buffers import PartBuffer
    from .requests import S3Bucket


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


def put_checked(bucket: S3Bucket, key: str, body: bytes | PartBuffer,
                sha256: str) -> dict[str, Any]:
    """PutObject of a whole file with its SHA-256 (hex *sha256*), S3's answer checked
    against it (asked for with a HEAD where the PUT's answer has none); what
    ``archive.json`` records of it."""
    answer, checksum = bucket.put(key, body, sha256_hex=sha256)
    reported = answer.get("ChecksumSHA256") or bucket.head_checksum(key)
    check_reported(key, reported, checksum)
    return facts(key, answer, checksum=checksum, kind="FULL_OBJECT",
                 verified=reported is not None)


def complete_checked(bucket: S3Bucket, key: str, upload_id: str, parts: list[Part], *,
                     on_final: Callable[[], None]) -> dict[str, Any]:
    """CompleteMultipartUpload of *parts* (in order), then S3's composite checksum
    checked against the one the parts' digests give; *on_final* is called as soon as
    S3 has made the object (before the check). What ``archive.json`` records of it."""
    expected = composite_checksum(p.digest for p in parts)
    answer = bucket.complete_upload(key, upload_id, [
        {"PartNumber": p.number, "ETag": p.etag, "ChecksumSHA256": p.checksum}
        for p in parts])
    on_final()
    # S3 answers the composite checksum here; some stores (moto among them) only on a
    # HEAD with ChecksumMode=ENABLED.
    reported = answer.get("ChecksumSHA256") or bucket.head_checksum(key)
    check_reported(key, reported, expected)
    return facts(key, answer, checksum=expected, kind="COMPOSITE",
                 verified=reported is not None)
