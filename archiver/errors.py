"""The archiver's one exception tree.

Third-party exceptions (aiohttp, OSError, yaml, pydantic, botocore) are wrapped where
they enter the archiver (``raise X(...) from exc``) so callers only ever see these::

    ArchiverError                 base; str() is a one-line, secret-free message
    ├── UsageError                bad input before any network call (exit 2)
    │   ├── ConfigError           configuration file: unknown key, wrong type, missing value
    │   └── ManifestError         manifest file: malformed YAML, invalid id
    ├── FatalRunError             stops the whole run at once (exit 2)
    │   ├── CredentialsError      Akool said 1101 / 1102 / 1200: no point polling the rest
    │   ├── RedirectRefused       the API redirected to another origin (api.py): key stays home
    │   └── StorageUnavailable    the destination cannot be written at all
    ├── ItemError                 one id failed; the others go on (exit 1)
    │   ├── APIError              a business code for this id (``code``, ``msg``)
    │   │   └── TransientAPIError 429 / 5xx / non-JSON / 1005 / 2001 after retries ran out
    │   │       └── ApiUnavailable    the API gave no answer to api.unavailable_after requests
    │   │                             in a row: no new polls, unfinished ids stay pending
    │   ├── JobFailed             Akool reports video_status 4 (``code``, ``reason``)
    │   ├── DownloadError         a result file could not be fetched
    │   │   ├── TransientDownloadError   connection cut, stall, short body, 5xx: retried
    │   │   ├── UrlGone                  403 / 404 / 410: ask the API for a fresh URL
    │   │   ├── ContentRejected          an error page or wrong kind of file (validate.py)
    │   │   └── ItemTimeout              the item took longer than downloads.item_timeout
    │   ├── StorageError          the destination failed to store this item's files
    │   └── Interrupted           the run was stopped (SIGINT / SIGTERM) before this id
    │       └── LeaseLost         the run's lock is no longer confirmed: no new work
    └── Transient                 mixed into the errors worth retrying (``retry_after``);
                                  :mod:`archiver.retry` retries these by default

Every error carrying a number names it ``code`` (Akool's code, or the HTTP status).

Messages never contain the API key, bearer token or credentials: the API client never
puts request headers into an exception, and URLs are logged without their query string.
"""

from __future__ import annotations


class ArchiverError(Exception):
    """Base of every error the archiver raises on purpose."""


class UsageError(ArchiverError):
    """The run cannot start: the user must fix an input."""


class ConfigError(UsageError):
    """The configuration file is invalid."""


class ManifestError(UsageError):
    """The manifest file is invalid."""


class FatalRunError(ArchiverError):
    """Something that makes every remaining id pointless to try."""


class CredentialsError(FatalRunError):
    """Akool rejected the credentials (codes 1101, 1102, 1200)."""

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(f"Akool rejected the credentials (code {code}: {msg})")
        self.code = code
        self.msg = msg


class StorageUnavailable(FatalRunError):
    """The storage backend cannot be used (no permission, missing bucket...)."""


class Transient(ArchiverError):
    """Base of the errors worth trying again (see :mod:`archiver.retry`).

    ``retry_after``: seconds the other side asked us to wait (a Retry-After header), if any.
    """

    retry_after: float | None = None


class ItemError(ArchiverError):
    """One id could not be archived in this run."""

    #: Short machine-readable kind, used in reports.
    kind = "error"


class APIError(ItemError):
    """Akool answered a business error code for this id."""

    kind = "api"

    def __init__(self, code: int | None, msg: str) -> None:
        label = f"code {code}" if code is not None else "no code"
        super().__init__(f"Akool API error ({label}): {msg}")
        self.code = code
        self.msg = msg


class TransientAPIError(APIError, Transient):
    """A failure worth retrying: HTTP 429/5xx, a body that is not JSON, 1005, 2001, I/O.

    ``no_answer``: the API itself did not answer - the connection failed, timed out or
    was cut, or something in front of it answered a 5xx or a page that is not Akool's
    JSON. Such failures, once their retries ran out, count towards
    :class:`ApiUnavailable`; a 429 or a business code is an answer and does not.
    """

    kind = "api_transient"

    def __init__(self, code: int | None, msg: str, retry_after: float | None = None,
                 *, no_answer: bool = False) -> None:
        super().__init__(code, msg)
        self.retry_after = retry_after
        self.no_answer = no_answer


class ApiUnavailable(TransientAPIError):
    """The API gave no answer to ``api.unavailable_after`` requests in a row, each after
    its retries: it is down (or unreachable from here). Not retried: polls stop, the ids
    not finished stay pending for a later run (exit status 69)."""

    kind = "api_unavailable"

    def __init__(self, origin: str, failures: int, last: str) -> None:
        text = (f"the Akool API at {origin} is unavailable: {failures} requests in a row "
                f"got no answer (last: {last})")
        # Not APIError's "Akool API error (no code): ..." wording: Akool said nothing.
        ItemError.__init__(self, text)
        self.code = None
        self.msg = text
        self.retry_after = None
        self.no_answer = True
        self.origin = origin


class JobFailed(ItemError):
    """The Akool job itself failed (video_status 4)."""

    kind = "job_failed"

    def __init__(self, code: int | None, reason: str | None) -> None:
        # "error_code" in the message: that is the field's name in Akool's answer.
        detail = reason or "no reason given"
        if code is not None:
            detail = f"{detail} (error_code {code})"
        super().__init__(f"Akool job failed: {detail}")
        self.code = code
        self.reason = reason


class DownloadError(ItemError):
    """A result file could not be downloaded or stored."""

    kind = "download"


class UrlGone(DownloadError):
    """The file host answered 403/404/410: the URL expired or was revoked."""

    kind = "url_gone"

    def __init__(self, msg: str, status: int) -> None:
        super().__init__(msg)
        self.code = status


class ItemTimeout(DownloadError):
    """One item took longer than its time limit."""

    kind = "timeout"


class StorageError(ItemError):
    """The destination failed to store this item's files (disk full, S3 errors after
    retries ran out...); other items may still be stored. See StorageUnavailable for
    a destination that cannot be used at all."""

    kind = "storage"


class Interrupted(ItemError):
    """The run was asked to stop before this id was done."""

    kind = "interrupted"


class LeaseLost(Interrupted):
    """The run's lease is lost, or could not be confirmed in time: work may not start.

    A fence (:class:`archiver.fleet.lock.Fence`) raises it before a poll, a download or a
    commit; the item stays pending for whichever run holds the lease now.
    """

    kind = "lease_lost"


class TransientDownloadError(DownloadError, Transient):
    """A download failure worth retrying (connection cut, timeout, 5xx, short body)."""

    kind = "download_transient"

    def __init__(self, msg: str, retry_after: float | None = None) -> None:
        super().__init__(msg)
        self.retry_after = retry_after
