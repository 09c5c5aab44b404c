"""What S3's answers mean: the one reading of botocore's errors, and the store's clock.

Every module of this package that sees a botocore exception asks here whether it is
worth another attempt (:func:`is_transient`), what HTTP status and error code it carries
(:func:`http_status`, :func:`error_code`) and how to say it in one line
(:func:`describe`); the time of an answer, by the store's clock, is :func:`server_time`.
So the store's writers, its reader, the skip check, ``gc``, the run lease and the
manifest read all retry the same errors and word them alike - and nothing outside this
package reads a botocore error: it is mapped to :class:`~archiver.errors.StorageError`
or :class:`~archiver.errors.StorageUnavailable` before it leaves.
"""

from __future__ import annotations

import datetime as dt
import email.utils
from typing import Any

import botocore.exceptions as bce

#: What a request to S3 raises (besides our own errors).
BOTO_ERRORS = (bce.BotoCoreError, bce.ClientError)
#: Error codes worth another attempt: throttling, S3's own transient failures, and a
#: conditional write racing another one (AWS documents retrying that 409).
RETRYABLE_CODES = frozenset({
    "SlowDown", "Throttling", "ThrottlingException", "RequestThrottled",
    "TooManyRequestsException", "RequestTimeout", "InternalError", "ServiceUnavailable",
    "ConditionalRequestConflict",
})
#: HTTP statuses worth another attempt. Not 501 (a store that lacks a feature keeps
#: lacking it) nor 505 and above (a protocol or storage problem does not pass by itself).
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
#: Answers of a failed conditional write (If-None-Match / If-Match): the key exists, or
#: changed; 409 when another conditional write raced ours.
CONFLICT = frozenset({409, 412})


def is_transient(exc: BaseException) -> bool:
    """Whether *exc*, raised by one S3 request, is worth retrying: throttling and 5xx
    (but 501 and 505+), connection errors and timeouts, a response that failed its
    checksum. Never a certificate problem or missing credentials: they stay."""
    if isinstance(exc, bce.ClientError):
        return error_code(exc) in RETRYABLE_CODES or http_status(exc) in RETRYABLE_STATUS
    if isinstance(exc, bce.SSLError):
        return False  # a certificate problem does not fix itself
    # Connection refused/reset/closed, connect and read timeouts; s3transfer does not retry
    # FlexibleChecksumError (a response that failed its checksum), so it is ours to retry.
    return isinstance(exc, bce.ConnectionError | bce.HTTPClientError
                      | bce.FlexibleChecksumError)


def error_code(exc: bce.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def http_status(exc: bce.ClientError) -> int | None:
    """The HTTP status of a failed request (a ``NoSuchKey`` without one counts as 404)."""
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if status is None and error_code(exc) == "NoSuchKey":
        return 404
    return int(status) if status is not None else None


def describe(exc: BaseException) -> str:
    """One line about a botocore error: code and message, or the transport problem."""
    if isinstance(exc, bce.ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code") or "error"
        status = http_status(exc)
        message = str(error.get("Message") or "").strip()
        if code.isdigit():  # HEAD answers carry no body: only a status
            return f"HTTP {code}"
        return f"{code} (HTTP {status}): {message}"[:300] if message else f"{code} ({status})"
    if isinstance(exc, bce.NoCredentialsError | bce.PartialCredentialsError):
        return "no usable AWS credentials found (environment, shared config/profile, role)"
    return str(exc)[:300] or type(exc).__name__


def server_time(answer: dict[str, Any]) -> float | None:
    """The ``Date`` of an S3 answer as a timestamp: the store's clock (None if missing
    or unreadable). Ages judged by it (a lease's expiry, ``gc``'s ``min_age``) do not
    depend on any host's clock."""
    date = answer.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    if not date:
        return None
    try:
        when = email.utils.parsedate_to_datetime(date)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000": no zone given, and HTTP dates are UTC
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()
