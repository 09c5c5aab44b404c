"""Removing from an S3 archive (:class:`Remover`), only what is unchanged since listed.

Runs never delete an object under a final key (:mod:`.writer` says why); ``archiver gc``
does, through here. An item's folder is listed again right before each DeleteObjects,
and only objects whose ETag, LastModified and size are still the ones ``gc`` judged are
deleted - none once the folder holds ``archive.json``: a run that has written to the id
since keeps what it wrote. A DeleteObjects that fails transiently is tried again within
``storage.s3.retries``, listing again first. What remains is one round trip between that
listing and the delete; a run that uploads in exactly that moment finds its object gone
when it checks, before writing ``archive.json``, and fails the item instead of
committing a record with a missing file.

A write probe at the top of the prefix has a name used once: it is deleted without a
second look. An unfinished multipart upload is aborted by its id, which no one else has.
"""

from __future__ import annotations

from typing import Any

from ...retry import with_retries_sync
from ..backend import Entry, Kind, Removal
from ..names import RECORD_NAME
from .answers import BOTO_ERRORS, describe, is_transient
from .listing import object_tag
from .requests import S3Bucket

#: Keys per DeleteObjects request (S3's maximum).
DELETE_BATCH = 1000


class Remover:
    """Removes entries under ``s3://<bucket>/<prefix>`` (blocking: run in the pool)."""

    def __init__(self, bucket: S3Bucket, prefix: str) -> None:
        self._bucket = bucket
        self.prefix = prefix

    def remove(self, item_id: str | None, entries: list[Entry]) -> Removal:
        """See :meth:`archiver.storage.backend.Backend.remove`."""
        result = Removal()
        folder = self.prefix if item_id is None else f"{self.prefix}{item_id}/"
        files = [e for e in entries if e.kind is Kind.FILE]
        if files and item_id is None:
            for start in range(0, len(files), DELETE_BATCH):
                self._delete(folder, files[start:start + DELETE_BATCH], result)
        elif files:
            self._delete_unchanged(folder, files, result)
        for upload in (e for e in entries if e.kind is Kind.UPLOAD):
            problem = self._bucket.abort_upload(folder + upload.name, upload.tag)
            if problem is None:
                result.removed.append(upload)
            else:
                result.failures.append(f"cannot abort the multipart upload of "
                                       f"s3://{self._bucket.name}/{folder}{upload.name}: "
                                       f"{problem}")
        return result

    def _delete(self, folder: str, batch: list[Entry], result: Removal) -> None:
        """DeleteObjects of *batch*, retried."""
        try:
            answer = self._bucket.delete_many([folder + e.name for e in batch])
        except BOTO_ERRORS as exc:
            result.failures.extend(self._cannot_delete(folder, batch, exc))
            return
        self._deleted(folder, batch, answer, result)

    def _delete_unchanged(self, folder: str, files: list[Entry], result: Removal) -> None:
        """Delete those of one id's *files* still unchanged, looking before every try."""
        def look_then_delete() -> tuple[list[Entry], dict[str, Any]] | None:
            # A run may have written to this id since it was listed: look again.
            fresh = {str(obj["Key"])[len(folder):]: obj for obj in self._bucket.objects(folder)}
            if RECORD_NAME in fresh:
                return None  # committed meanwhile: never touched
            unchanged = [e for e in files
                         if e.name in fresh and object_tag(fresh[e.name]) == e.tag]
            if not unchanged:
                return None
            try:
                # One attempt per listing: a retry after a backoff must list again first.
                keys = [folder + e.name for e in unchanged]
                return unchanged, self._bucket.delete_many_once(keys)
            except BOTO_ERRORS as exc:
                raise _DeleteFailed(unchanged, exc) from exc

        try:
            done = with_retries_sync(look_then_delete, policy=self._bucket.retry,
                                     retryable=_DeleteFailed.transient)
        except _DeleteFailed as failed:
            result.failures.extend(self._cannot_delete(folder, failed.entries, failed.cause))
            return
        if done is not None:
            self._deleted(folder, *done, result)

    def _deleted(self, folder: str, entries: list[Entry], answer: dict[str, Any],
                 result: Removal) -> None:
        errors = {e.get("Key"): e for e in answer.get("Errors", [])}
        for entry in entries:
            error = errors.get(folder + entry.name)
            if error is None:
                result.removed.append(entry)
            else:
                result.failures.append(
                    f"cannot delete s3://{self._bucket.name}/{folder}{entry.name}: "
                    f"{error.get('Code')}: {error.get('Message')}")

    def _cannot_delete(self, folder: str, entries: list[Entry],
                       exc: BaseException) -> list[str]:
        return [self._bucket.scrub(f"cannot delete s3://{self._bucket.name}/{folder}"
                                   f"{e.name}: {describe(exc)}") for e in entries]


class _DeleteFailed(Exception):
    """DeleteObjects of one id's leftovers failed: retried (after listing again) only if
    the request's failure is transient; listing failures are not wrapped, so not retried
    a second time."""

    def __init__(self, entries: list[Entry], cause: BaseException) -> None:
        super().__init__(str(cause))
        self.entries = entries
        self.cause = cause

    @staticmethod
    def transient(exc: BaseException) -> bool:
        return isinstance(exc, _DeleteFailed) and is_transient(exc.cause)
