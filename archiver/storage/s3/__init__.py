"""S3 (and S3-compatible) storage: streamed, checksummed end to end, nothing orphaned.

Keys are ``<prefix><video_model_id>/<file>``, the same layout as on local disk, with
``archive.json`` written last as the commit marker. One module per concern:

- :mod:`.backend` - :class:`S3Backend`: the contract's backend: open (bucket and write
  checks), the run lease, listing, reading, digests, removal; hands out the writers.
- :mod:`.requests` - :class:`S3Bucket`: clients, thread pool, the retry policy and the
  wording of errors; the one interface the other modules (and ``s3://`` manifests) use
  to reach S3.
- :mod:`.answers` - the one reading of botocore's errors (retry or not, status, one
  line) and of the store's clock.
- :mod:`.listing` - the seek listing of id folders (the skip check's), and the whole prefix.
- :mod:`.removal` - removing only what is unchanged since listed (``gc``).
- :mod:`.writer` - :class:`S3ItemWriter`: one item; aborting it deletes nothing.
- :mod:`.multipart` - :class:`S3FileSink`: one file, one PutObject or a multipart upload;
  :mod:`.spool` its local spool of ranges written by position, :mod:`.checksums` S3's
  SHA-256 checksums, :mod:`.buffers` part buffers, :mod:`.cleanups` undo actions.
- :mod:`.lease` - the run lock: a lease object kept with conditional writes, and its
  fence; :mod:`.lease_state` what a lease object says.

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
  and the ``s3://`` manifest read use the same policy and the same rule.
- botocore exceptions never leave this package (nothing else imports botocore):
  :meth:`S3Backend.open` and the reads raise :class:`~archiver.errors.StorageUnavailable`
  (exit 2), item and file operations :class:`~archiver.errors.StorageError`. Messages
  name the bucket and key, never credentials.
- Failed items never delete final keys, only abort their own multipart uploads
  (:mod:`.writer` says why); ``archiver gc`` reaps what nobody committed.
"""

from __future__ import annotations

from ...retry import S3_RETRIES
from .answers import is_transient
from .backend import S3Backend
from .checksums import composite_checksum
from .multipart import MAX_PARTS, S3FileSink
from .requests import Connection, ObjectTooLarge, S3Bucket
from .writer import S3ItemWriter

#: The name of :class:`S3Backend` before the storage contract was narrowed (issue 19).
S3Storage = S3Backend

__all__ = [
    "MAX_PARTS", "S3_RETRIES", "Connection", "ObjectTooLarge", "S3Backend", "S3Bucket",
    "S3FileSink", "S3ItemWriter", "S3Storage", "composite_checksum", "is_transient",
]
