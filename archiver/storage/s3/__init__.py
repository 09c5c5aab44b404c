"""S3 (and S3-compatible) storage: streamed, checksummed end to end, nothing orphaned.

Keys are ``<prefix><video_model_id>/<file>``, the same layout as on local disk, with
``archive.json`` written last as the commit marker. One module per concern:

- :mod:`.requests` - :class:`S3Bucket`: clients, thread pool, the retry policy and the
  wording of errors; the one interface the other modules use to reach S3.
- :mod:`.store` - :class:`S3Storage`: open (bucket and write checks), the skip check, the
  run lease; hands out the writers and delegates reading to the reader.
- :mod:`.reader` - :class:`S3Reader`: ``verify``, ``status`` and ``gc``.
- :mod:`.writer` - :class:`S3ItemWriter`: one item; aborting it deletes nothing.
- :mod:`.multipart` - :class:`S3FileSink`: one file, one PutObject or a multipart upload.
- :mod:`.buffers` - part buffers (memory maps) and their pool.

What ``archive.json`` gets for each media file (the dict :meth:`S3FileSink.commit`
returns, under ``"s3"``): ``key``, ``etag``, ``checksum_sha256`` (base64, ``-N`` suffixed
for a multipart upload), ``checksum_type`` (``FULL_OBJECT`` or ``COMPOSITE``),
``part_size`` and ``parts`` for a multipart upload, ``version_id`` and
``server_side_encryption`` when S3 reports them, and ``checksum_verified``: whether S3
itself reported a checksum equal to the one computed while streaming (a store that does
not report checksums gets ``false``, and the computed value is recorded).

Failure handling:

- Requests are retried in :class:`S3Bucket` through :func:`archiver.retry.with_retries_sync`,
  within ``storage.s3.retries`` (attempts and time), on throttling (SlowDown, 503 and
  friends), connection errors and ``FlexibleChecksumError``; botocore's own retry loop
  is switched off so that there is exactly one, explicit, retry policy. The run lease
  uses the same policy.
- botocore exceptions never leave this package: :meth:`S3Storage.open` and the reads
  raise :class:`~archiver.errors.StorageUnavailable` (exit 2), item operations
  :class:`~archiver.errors.StorageError`. Messages name the bucket and key, never
  credentials.
- Failed items never delete final keys, only abort their own multipart uploads
  (:mod:`.writer` says why); ``archiver gc`` reaps what nobody committed.
"""

from __future__ import annotations

from ...config import S3_RETRIES
from .answers import is_transient
from .checksums import composite_checksum
from .multipart import MAX_PARTS, S3FileSink
from .reader import ITEM_NAMES, MEDIA_NAMES, PROBE_PREFIX, S3Reader
from .requests import Connection, ObjectTooLarge, S3Bucket
from .store import S3Storage
from .writer import S3ItemWriter

__all__ = [
    "ITEM_NAMES",
    "MAX_PARTS",
    "MEDIA_NAMES",
    "PROBE_PREFIX",
    "S3_RETRIES",
    "Connection",
    "ObjectTooLarge",
    "S3Bucket",
    "S3FileSink",
    "S3ItemWriter",
    "S3Reader",
    "S3Storage",
    "composite_checksum",
    "is_transient",
]
