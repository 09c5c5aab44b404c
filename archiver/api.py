"""The Akool API client: owns the HTTP session, auth, retries and error mapping.

The scheduler only ever sees a :class:`~archiver.models.JobInfo` or an exception from
:mod:`archiver.errors`; aiohttp never leaks past this module.

Credentials go to ``api.base_url``'s origin (scheme, host, port) and nowhere else:
redirects are followed by hand, within that origin only. A redirect elsewhere stops the
run (:class:`RedirectRefused`): the key would be sent to whoever answers there.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import aiohttp
from yarl import URL

from ._http import USER_AGENT, describe_transport_error, parse_retry_after
from .config import ApiConfig
from .errors import APIError, CredentialsError, FatalRunError, TransientAPIError
from .limits import api_bucket
from .models import RESULT_FILES, JobInfo, RemoteFile, redact_url
from .retry import with_retries

log = logging.getLogger(__name__)

INFO_PATH = "/api/open/v3/content/video/infobymodelid"

OK = 1000
#: Business codes that mean "try again later".
TRANSIENT_CODES = frozenset({1005, 2001})
#: Business codes that mean the credentials are bad: stop the whole run.
CREDENTIAL_CODES = frozenset({1101, 1102, 1200})

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
#: Same-origin redirects followed per request (an API moving paths, a trailing slash).
MAX_REDIRECTS = 5


class RedirectRefused(FatalRunError):
    """The API redirected to another origin: following would hand it the credentials."""

    def __init__(self, base_url: str, target: URL) -> None:
        # Origins only: a query string may carry a signature or the id.
        super().__init__(f"the API at {redact_url(base_url)} redirected to "
                         f"{_origin_text(target)}; refusing to send credentials there "
                         "(set api.base_url to the right address)")


class AkoolClient:
    """Asks Akool about jobs. Use as ``async with AkoolClient(cfg, limit=16) as client``."""

    def __init__(self, config: ApiConfig, *, limit: int = 16, shares: int = 1) -> None:
        """*shares*: how many processes split ``api.requests_per_second`` (the account's
        budget) equally - N for a run of ``--shard K/N`` - this one taking one part."""
        self._config = config
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None
        # Parsed on first use, then kept: parsing them per poll showed in the profile.
        self._info_url: URL | None = None
        self._home: URL | None = None
        # One bucket for the whole run: the cap holds however many workers poll.
        self._bucket = api_bucket(config.requests_per_second, shares)
        #: Requests sent, including retries (for reports and tests).
        self.requests = 0

    def __repr__(self) -> str:
        # Never the key: repr() ends up in tracebacks and debug logs.
        return f"AkoolClient(base_url={self._config.base_url!r})"

    async def __aenter__(self) -> AkoolClient:
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if self._config.token is not None:
            headers["Authorization"] = f"Bearer {self._config.token.get_secret_value()}"
        elif self._config.api_key is not None:
            headers["x-api-key"] = self._config.api_key.get_secret_value()
        timeout = aiohttp.ClientTimeout(
            total=self._config.connect_timeout + self._config.read_timeout,
            sock_connect=self._config.connect_timeout,
            sock_read=self._config.read_timeout,
        )
        # One pool sized to the poll concurrency: polls never open more connections.
        connector = aiohttp.TCPConnector(limit=self._limit, limit_per_host=self._limit)
        self._session = aiohttp.ClientSession(
            headers=headers, timeout=timeout, connector=connector, raise_for_status=False
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def video_info(self, video_model_id: str) -> JobInfo:
        """The job's current state; transient failures are retried within the configured bounds.

        Raises :class:`CredentialsError` (fatal), :class:`APIError` (this id) or
        :class:`TransientAPIError` (retries exhausted).
        """
        data = await with_retries(
            lambda: self._get_info(video_model_id), retryable=TransientAPIError,
            policy=self._config.retries,
            on_retry=lambda n: log.info("%s: retrying the API request (attempt %d)",
                                        video_model_id, n))
        return parse_job_info(video_model_id, data)

    async def _get_info(self, video_model_id: str) -> dict[str, Any]:
        if self._session is None:
            raise RuntimeError("AkoolClient used outside 'async with'")
        if self._info_url is None:
            self._info_url = URL(self._config.base_url + INFO_PATH)
        url = self._info_url.update_query(video_model_id=video_model_id)
        if self._bucket is not None:
            await self._bucket.acquire()
        self.requests += 1
        try:
            status, body, retry_after = await self._get(self._session, url)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            reason = describe_transport_error(exc)
            raise TransientAPIError(None, f"request failed: {reason}") from None
        return _parse_envelope(status, body, retry_after)

    async def _get(self, session: aiohttp.ClientSession,
                   url: URL) -> tuple[int, bytes, float | None]:
        """GET *url*, following redirects only within the API's origin."""
        if self._home is None:
            self._home = URL(self._config.base_url).origin()
        home = self._home
        for _hop in range(MAX_REDIRECTS + 1):
            # aiohttp would follow any redirect with the session's headers: it drops
            # Authorization on a change of origin, but not x-api-key.
            async with session.get(url, allow_redirects=False) as resp:
                if resp.status not in _REDIRECTS:
                    body = await resp.read()
                    return resp.status, body, parse_retry_after(resp.headers.get("Retry-After"))
                location = resp.headers.get("Location")
            if not location:
                raise APIError(None, f"HTTP redirect without a Location from {url.path}")
            try:
                target = url.join(URL(location))
                same = target.absolute and target.origin() == home
            except ValueError:
                raise APIError(None, "the API redirected to an invalid URL") from None
            if not same:
                raise RedirectRefused(self._config.base_url, target)
            url = target
        raise APIError(None, f"the API redirected more than {MAX_REDIRECTS} times")


def _origin_text(url: URL) -> str:
    try:
        return str(url.origin())
    except ValueError:
        return redact_url(str(url))


def _parse_envelope(status: int, body: bytes, retry_after: float | None) -> dict[str, Any]:
    """The ``data`` object of a successful answer, or the right exception."""
    if status == 429:
        raise TransientAPIError(None, "HTTP 429 Too Many Requests", retry_after)
    if status >= 500:
        raise TransientAPIError(None, f"HTTP {status} from the API", retry_after)
    if status != 200:
        raise APIError(None, f"unexpected HTTP {status} from the API")
    try:
        envelope = json.loads(body)
    except ValueError:
        raise TransientAPIError(None, "the API answered something that is not JSON") from None
    if not isinstance(envelope, dict) or not isinstance(envelope.get("code"), int):
        raise TransientAPIError(None, "the API answered JSON without a numeric 'code'")
    code = envelope["code"]
    msg = str(envelope.get("msg") or "")[:200]
    if code == OK:
        data = envelope.get("data")
        if not isinstance(data, dict):
            raise APIError(code, f"answer has no 'data' object (got {type(data).__name__})")
        return data
    if code in CREDENTIAL_CODES:
        raise CredentialsError(code, msg)
    if code in TRANSIENT_CODES:
        raise TransientAPIError(code, msg, retry_after)
    raise APIError(code, msg)


def parse_job_info(video_model_id: str, data: dict[str, Any]) -> JobInfo:
    """Type the ``data`` object; unknown fields stay in ``raw``."""
    status = data.get("video_status")
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    if not isinstance(status, int) or isinstance(status, bool):
        raise APIError(OK, f"data.video_status is not a number: {str(status)[:40]!r}")

    files: list[RemoteFile] = []
    splits = data.get("audio_splits")
    splits = splits if isinstance(splits, dict) else {}
    for field_name, file_name in RESULT_FILES:
        value = data.get(field_name) if field_name == "video" else splits.get(field_name)
        if value in (None, ""):
            continue
        if not isinstance(value, str) or not value.lower().startswith(("http://", "https://")):
            raise APIError(OK, f"data.{field_name} is not an http(s) URL")
        files.append(RemoteFile(file_name, value))

    create_time = data.get("create_time")
    error_code = data.get("error_code")
    error_reason = data.get("error_reason")
    return JobInfo(
        id=video_model_id,
        status=status,
        files=tuple(files),
        create_time_ms=create_time if isinstance(create_time, int) else None,
        error_code=error_code if isinstance(error_code, int) else None,
        error_reason=str(error_reason) if error_reason not in (None, "") else None,
        raw=data,
    )
