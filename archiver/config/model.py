"""The configuration's schema: plain data with every default in one place (pydantic
models, one per section; reading the file is :mod:`.load`'s)."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from ..fleet.limits import parse_rate, parse_size
from ..retry import S3_RETRIES, RetryPolicy

DEFAULT_CONFIG_PATH = Path("archiver.yaml")

log = logging.getLogger(__name__)

PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]


class _Model(BaseModel):
    # Unknown keys are errors: a typo'd key silently ignored is a setting silently lost.
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _empty_sections(cls, data: Any) -> Any:
        # "limits:" with every key commented out is YAML null: take it as "all defaults".
        if isinstance(data, dict):
            for name, info in cls.model_fields.items():
                kind = info.annotation
                if data.get(name, 0) is None and isinstance(kind, type) \
                        and issubclass(kind, BaseModel):
                    data = {k: v for k, v in data.items() if k != name}
        return data


class ApiConfig(_Model):
    """Where Akool is and how to authenticate."""

    base_url: str = "https://openapi.akool.com"
    api_key: SecretStr | None = None
    token: SecretStr | None = None
    #: Client credentials (Akool's legacy auth): the archiver asks ``getToken`` for a
    #: Bearer token with them, keeps it in memory only, and asks again once when Akool
    #: answers 1101 (expired or invalid). Set both, or neither.
    client_id: SecretStr | None = None
    client_secret: SecretStr | None = None
    connect_timeout: PositiveFloat = 10.0
    #: Seconds to wait for an answer: a request ends after connect_timeout +
    #: read_timeout at most (one bound per request, not a timer per read).
    read_timeout: PositiveFloat = 30.0
    retries: RetryPolicy = RetryPolicy()
    #: Cap on API requests per second of the whole Akool account (None: no cap): a run
    #: takes all of it, each of N ``--shard K/N`` runs 1/N (:func:`archiver.fleet.shard.api_share`).
    requests_per_second: PositiveFloat | None = None
    #: After this many API requests in a row got no answer (connection refused or cut,
    #: timeout, DNS or TLS failure, a 5xx or non-JSON page), each once its ``retries``
    #: ran out, with no answer in between: the API is down. The run starts no new poll
    #: and leaves the ids not finished pending (exit status 69). 0: never give up.
    unavailable_after: Annotated[int, Field(ge=0, le=1_000_000)] = 8

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an http:// or https:// URL, e.g. https://openapi.akool.com")
        return value.rstrip("/")

    @field_validator("api_key", "token", "client_id", "client_secret")
    @classmethod
    def _not_blank(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("is empty")
        return value

    @model_validator(mode="after")
    def _one_credential(self) -> ApiConfig:
        # None at all is fine here: verify, status and gc never call Akool. The commands
        # that do check with require_credentials().
        if (self.client_id is None) != (self.client_secret is None):
            raise ValueError("set both api.client_id and api.client_secret, or neither")
        given = [name for name, value in (("api.api_key", self.api_key),
                                          ("api.token", self.token),
                                          ("api.client_id/client_secret", self.client_id))
                 if value is not None]
        if len(given) == 2:
            raise ValueError(f"set only one of {given[0]} and {given[1]}, not both")
        if len(given) > 2:
            raise ValueError("set only one of api.api_key, api.token and "
                             "api.client_id/client_secret")
        return self

    @property
    def has_credentials(self) -> bool:
        return (self.api_key is not None or self.token is not None
                or self.client_id is not None)


class PollingConfig(_Model):
    """How often to ask Akool about unfinished jobs, and for how long."""

    interval: PositiveFloat = 10.0
    max_interval: PositiveFloat = 120.0
    #: Seconds one run waits for a job before leaving it pending for the next run.
    deadline: NonNegativeFloat = 1800.0
    #: Most ids asked for in one request by the families whose endpoint takes several
    #: (face swap, image-to-video); a GET's URL is also kept under 4,000 characters.
    #: 1: one request per id.
    batch_size: Annotated[int, Field(ge=1, le=500)] = 50

    @model_validator(mode="after")
    def _ordered(self) -> PollingConfig:
        if self.max_interval < self.interval:
            raise ValueError("polling.max_interval must be >= polling.interval")
        return self


class ConcurrencyConfig(_Model):
    """Separate bounds for API polls and file downloads."""

    polls: Annotated[int, Field(ge=1, le=1024)] = 16
    downloads: Annotated[int, Field(ge=1, le=256)] = 8


class DownloadConfig(_Model):
    """How result files are fetched."""

    #: Bytes handed to storage per write; memory per transfer is about this much.
    chunk_size: Annotated[int, Field(ge=4096, le=64 * 1024 * 1024)] = 1024 * 1024
    connect_timeout: PositiveFloat = 10.0
    #: Abort a transfer that sends nothing for this long (it is then retried).
    read_timeout: PositiveFloat = 60.0
    #: One item (all its files) may take at most this long, retries included.
    item_timeout: PositiveFloat = 3600.0
    retries: RetryPolicy = RetryPolicy(attempts=4)
    #: Redirects followed per request (only to http/https).
    max_redirects: Annotated[int, Field(ge=0, le=20)] = 5
    #: If set, result files (and redirect targets) may only come from these hosts;
    #: ``*.cloudfront.net`` matches any subdomain.
    allowed_hosts: tuple[str, ...] | None = None
    #: Times to ask the API for fresh URLs after a 403/404/410, per item.
    url_refreshes: Annotated[int, Field(ge=0, le=10)] = 2
    #: Largest result file accepted, in bytes (``20GiB`` / ``500MB`` strings work too).
    max_file_size: int = 20 * 1024**3
    #: Fetch result files from loopback, private, link-local... addresses too.
    allow_private: bool = False
    #: A file with more than this many bytes left to fetch is fetched over several
    #: connections (``downloads.segments``) when its server honours Range requests.
    segment_threshold: int = 64 * 1024**2
    #: Connections per large file (1 = always one stream). Memory per file is about
    #: two ``chunk_size`` buffers per segment. 8, as aria2c -x 8: behind a CDN that
    #: caps each connection, 4 took 1.8 x aria2c's time; uncapped, 8 cost nothing
    #: over one stream but ~25 MiB of RSS (bench/README.md, issue 21).
    segments: Annotated[int, Field(ge=1, le=16)] = 8

    @field_validator("max_file_size", "segment_threshold", mode="before")
    @classmethod
    def _size(cls, value: object) -> int:
        if not isinstance(value, int | str):
            raise ValueError("must be a size like 20GiB, 500MB or 1000000")
        return parse_size(value)

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None:
            for host in value:
                if not re.fullmatch(r"(\*\.)?[A-Za-z0-9.-]+(:\d+)?", host):
                    raise ValueError(f"{host!r} is not a host name (e.g. cdn.example.com, "
                                     "*.cloudfront.net)")
            value = tuple(h.lower() for h in value)
        return value


class LocalStorageConfig(_Model):
    root: Path = Path("./archive")


MiB = 1024 * 1024
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")


class S3StorageConfig(_Model):
    """An S3 (or S3-compatible) bucket. Credentials come from boto3's standard chain."""

    bucket: str
    #: Keys are ``<prefix><video_model_id>/<file>``.
    prefix: str = ""
    #: For MinIO, Ceph, R2 and other S3-compatible stores.
    endpoint_url: str | None = None
    region: str | None = None
    #: A profile of the shared AWS config/credentials files.
    profile: str | None = None
    addressing_style: Literal["auto", "path", "virtual"] = "auto"
    #: Server-side encryption: AES256 (SSE-S3) or aws:kms (with kms_key_id, optional).
    sse: Literal["AES256", "aws:kms"] | None = None
    kms_key_id: str | None = None
    storage_class: str | None = None
    #: Files up to this size go in one PutObject; larger ones as multipart uploads.
    #: S3 requires parts of at least 5 MiB (except the last one).
    part_size: Annotated[int, Field(ge=5 * MiB, le=5 * 1024 * MiB)] = 8 * MiB
    #: Parts of one file held in memory at once: the one being filled and those uploading.
    #: Memory: part_size x this x concurrency.downloads (8 MiB x 1 x 8 = 64 MiB by default);
    #: 2 lets a file's next part download while the previous one uploads.
    parts_in_flight: Annotated[int, Field(ge=1, le=64)] = 1
    #: Where a file fetched over several connections (downloads.segments) is spooled
    #: before its parts go up: anonymous temporary files, up to the size of the files
    #: fetched that way at once. None: the system's temporary directory.
    spool_dir: Path | None = None
    #: Every S3 request (and the run lease's) is retried within these bounds on
    #: throttling, 5xx and connection errors.
    retries: RetryPolicy = S3_RETRIES

    @field_validator("bucket")
    @classmethod
    def _check_bucket(cls, value: str) -> str:
        if not _BUCKET.fullmatch(value):
            raise ValueError("not a valid S3 bucket name (3-63 of a-z 0-9 . -)")
        return value

    @field_validator("prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        if value.startswith("/") or ".." in value.split("/"):
            raise ValueError("must not start with '/' or contain '..'")
        return value

    @field_validator("endpoint_url")
    @classmethod
    def _check_endpoint(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _kms(self) -> S3StorageConfig:
        if self.kms_key_id is not None and self.sse != "aws:kms":
            raise ValueError("storage.s3.kms_key_id needs storage.s3.sse: aws:kms")
        return self


class StorageConfig(_Model):
    backend: Literal["local", "s3"] = "local"
    local: LocalStorageConfig = LocalStorageConfig()
    s3: S3StorageConfig | None = None

    @model_validator(mode="after")
    def _backend_configured(self) -> StorageConfig:
        if self.backend == "s3" and self.s3 is None:
            raise ValueError("storage.backend is s3 but there is no storage.s3 section")
        return self


class LimitsConfig(_Model):
    """Throughput caps, e.g. for runs during office hours."""

    #: Download throughput cap across all transfers, e.g. ``50MB/s`` or ``800KiB/s``.
    bandwidth: str | None = None

    @field_validator("bandwidth")
    @classmethod
    def _rate(cls, value: str | int | None) -> str | None:
        if value is not None:
            parse_rate(str(value))
        return None if value is None else str(value)

    @property
    def bandwidth_bytes(self) -> float | None:
        return parse_rate(self.bandwidth) if self.bandwidth is not None else None


class RunConfig(_Model):
    """How a run behaves as a process."""

    #: Lock file (flock) that keeps two runs apart. Default: ``<root>/.archiver.lock``
    #: for local storage; for S3, no file but a lease object under the prefix, which also
    #: keeps out runs on other hosts (see :mod:`archiver.storage.s3.lease`). Setting it on S3
    #: replaces the lease by this host-local file.
    lock_file: Path | None = None
    #: After SIGINT/SIGTERM, in-flight transfers get this long to finish, then are cancelled.
    shutdown_grace: NonNegativeFloat = 10.0
    #: S3 (without lock_file): seconds the run's lease object lives after its last renewal
    #: (renewed every third of it). A run killed without releasing it (SIGKILL, a pod
    #: evicted) keeps its shard from other runs this long at most.
    lease_ttl: Annotated[float, Field(ge=2, le=86400)] = 120.0


class WebhookConfig(_Model):
    """``archiver serve``: where Akool's callbacks arrive and how they are checked."""

    #: Akool's clientId (24 characters; its first 16 bytes are the AES-CBC IV) and
    #: clientSecret (the AES key: 16, 24 or 32 bytes; Akool's is 24).
    client_id: SecretStr
    client_secret: SecretStr
    #: Listen address when --listen is not given.
    listen: str = "127.0.0.1:8080"
    #: The URL path Akool POSTs to (the rest of webhookUrl is your proxy's business).
    path: str = "/akool/webhook"
    #: Largest body accepted, in bytes (a callback is a few hundred bytes).
    max_body: Annotated[int, Field(ge=256, le=16 * MiB)] = 64 * 1024
    #: Reject callbacks whose timestamp is further than this from now (seconds, either way).
    max_age: Annotated[float, Field(gt=0, le=7 * 24 * 3600)] = 300.0
    #: The SQLite journal. Default: ``<root>/.archiver-journal.sqlite3`` for local storage,
    #: ``$XDG_STATE_HOME/archiver/journal-<hash of bucket+prefix>.sqlite3`` for S3.
    journal: Path | None = None
    #: Re-poll jobs heard of but not final (lost callbacks) this often, in seconds.
    repoll_interval: Annotated[float, Field(gt=0)] = 300.0
    #: The status page (``GET /``, ``GET /status.json``): pending jobs and their time
    #: left, outcomes, failures, callback counts; read-only, no secret, no URL. ``false``:
    #: 404.
    status_page: bool = True
    #: Basic auth for the status page: with ``status_user`` and ``status_password`` set,
    #: it asks every client for them; with neither, it answers only clients on loopback
    #: (127.0.0.0/8, ::1) and 403 to others. The webhook, /healthz and /metrics never ask.
    status_user: str | None = None
    #: The status page's password (``${VAR}``; compared in constant time, never logged).
    status_password: SecretStr | None = None

    @field_validator("max_body", mode="before")
    @classmethod
    def _body_size(cls, value: object) -> int:
        if not isinstance(value, int | str):
            raise ValueError("must be a size like 64KiB or 65536")
        return parse_size(value)

    @field_validator("path")
    @classmethod
    def _check_path(cls, value: str) -> str:
        if not re.fullmatch(r"/[A-Za-z0-9._~/-]*", value) or value in ("/healthz", "/metrics"):
            raise ValueError("must be a URL path like /akool/webhook (not /healthz or /metrics)")
        return value

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        parse_listen(value)
        return value

    @model_validator(mode="after")
    def _credentials(self) -> WebhookConfig:
        from ..akool.webhook import check_credentials

        check_credentials(self.client_id.get_secret_value(),
                          self.client_secret.get_secret_value())
        return self

    @field_validator("status_user")
    @classmethod
    def _check_status_user(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or ":" in value):
            raise ValueError("must be a non-empty user name without ':' (basic auth)")
        return value

    @field_validator("status_password")
    @classmethod
    def _check_status_password(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            raise ValueError("is empty")
        return value

    @model_validator(mode="after")
    def _status_auth(self) -> WebhookConfig:
        if (self.status_user is None) != (self.status_password is None):
            raise ValueError("status_user and status_password go together: set both "
                             "(basic auth for the status page) or neither")
        return self


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8080`` for IPv6) -> (host, port); ValueError if malformed."""
    match = re.fullmatch(r"\[?([^\[\]\s]*?)\]?:(\d{1,5})", value)
    if match is None or not 0 <= int(match.group(2)) <= 65535:
        raise ValueError(f"{value!r} is not HOST:PORT (e.g. 127.0.0.1:8080, 0.0.0.0:8080)")
    return match.group(1) or "0.0.0.0", int(match.group(2))


class Config(_Model):
    """The whole configuration. ``Config(api={"api_key": "..."})`` works for libraries."""

    #: Only the commands that call Akool need its credentials (see require_credentials).
    api: ApiConfig = ApiConfig()
    run: RunConfig = RunConfig()
    polling: PollingConfig = PollingConfig()
    concurrency: ConcurrencyConfig = ConcurrencyConfig()
    downloads: DownloadConfig = DownloadConfig()
    limits: LimitsConfig = LimitsConfig()
    storage: StorageConfig = StorageConfig()
    #: Only ``archiver serve`` needs it.
    webhook: WebhookConfig | None = None
