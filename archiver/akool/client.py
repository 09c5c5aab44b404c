"""The Akool API client: owns the HTTP session, auth, retries and error mapping.

The scheduler only ever sees a :class:`~archiver.models.JobInfo` or an exception from
:mod:`archiver.errors`; aiohttp never leaks past this module.

Credentials go to ``api.base_url``'s origin (scheme, host, port) and nowhere else:
redirects are followed by hand, within that origin only. A redirect elsewhere stops the
run (:class:`RedirectRefused`): the key would be sent to whoever answers there.

A down API is noticed once, not once per id: a circuit breaker (:class:`Breaker`) counts
the requests that got no answer after their retries and, at ``api.unavailable_after`` in
a row, refuses further requests with :class:`ApiUnavailable` - without a connection -
until a cool-down has passed; then one request at a time probes, and any answer closes
it again.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from yarl import URL

from .._http import USER_AGENT, describe_transport_error, parse_retry_after
from ..config import ApiConfig
from ..errors import (
    APIError,
    ApiUnavailable,
    ConfigError,
    CredentialsError,
    FatalRunError,
    TransientAPIError,
)
from ..fleet.limits import api_bucket
from ..models import RESULT_FILES, JobInfo, RemoteFile, redact_url
from ..retry import with_retries

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
#: Seconds the breaker refuses requests once open, before one request probes the API.
#: A run stops polling when it opens, so this matters to long-lived clients (``serve``).
UNAVAILABLE_COOLDOWN = 60.0


class RedirectRefused(FatalRunError):
    """The API redirected to another origin: following would hand it the credentials."""

    def __init__(self, base_url: str, target: URL) -> None:
        # Origins only: a query string may carry a signature or the id.
        super().__init__(f"the API at {redact_url(base_url)} redirected to "
                         f"{_origin_text(target)}; refusing to send credentials there "
                         "(set api.base_url to the right address)")


class Breaker:
    """The API's circuit breaker, shared by every request of one client.

    Closed, it lets requests through and counts those that got no answer once their
    retries ran out (:attr:`TransientAPIError.no_answer`). Any answer from the API - a
    result, a business code, a 4xx, a 429 - resets the count: the API is up. At
    *threshold* in a row it opens: :meth:`admit` raises :class:`ApiUnavailable` for
    every attempt (even the next attempt of a request already retrying) until *cooldown*
    seconds have passed; then one call at a time is let through as a probe, and its
    answer closes the breaker, its failure opens it again. *threshold* 0: never opens.

    Counting whole requests, not attempts, keeps a blip the retries ride out (a load
    balancer restarting for two seconds) from stopping a run.
    """

    def __init__(self, threshold: int, origin: str, *, cooldown: float = UNAVAILABLE_COOLDOWN,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._threshold = threshold
        self._origin = origin
        self._cooldown = cooldown
        self._clock = clock
        self._failures = 0
        self._last = ""
        #: What opened the breaker (failures, last error): every id says the same.
        self._cause = (0, "")
        self._open_until: float | None = None
        self._probe: object | None = None

    @property
    def is_open(self) -> bool:
        return self._open_until is not None

    def error(self) -> ApiUnavailable:
        """The error of a request refused (or failed) while the breaker is open."""
        return ApiUnavailable(self._origin, *self._cause)

    def admit(self, call: object) -> None:
        """Before each attempt of *call* (any object, one per request): raise
        :class:`ApiUnavailable` unless the breaker is closed or *call* is the probe."""
        if self._open_until is None or self._probe is call:
            return
        if self._probe is None and self._clock() >= self._open_until:
            self._probe = call
            return
        raise self.error()

    def answered(self) -> None:
        """The API answered something: it is up."""
        if self._open_until is not None:
            log.warning("the Akool API at %s answers again", self._origin)
        self._failures = 0
        self._open_until = None
        self._probe = None

    def no_answer(self, call: object, error: TransientAPIError) -> None:
        """*call* ran out of retries without an answer from the API."""
        if not self._threshold:
            return
        self._failures += 1
        self._last = error.msg
        if self._failures < self._threshold:
            return
        was_open, probing = self._open_until is not None, self._probe is call
        self._open_until = self._clock() + self._cooldown
        if not was_open:
            self._cause = (self._failures, self._last)
        if probing:
            self._probe = None
            log.warning("the Akool API at %s still does not answer (%s)", self._origin,
                        self._last)
        elif not was_open:
            # The one line that says why the rest of the run is pending.
            log.error("%s; no new polls: ids not finished are left pending for a later run",
                      self.error())

    def release(self, call: object) -> None:
        """*call* is over, whatever its end: a probe that ended otherwise (cancelled, a
        redirect refused...) hands the probe to the next call."""
        if self._probe is call:
            self._probe = None


class AkoolClient:
    """Asks Akool about jobs. Use as ``async with AkoolClient(cfg, limit=16) as client``."""

    def __init__(self, config: ApiConfig, *, limit: int = 16, shares: int = 1,
                 breaker: Breaker | None = None) -> None:
        """*shares*: how many processes split ``api.requests_per_second`` (the account's
        budget) equally - N for a run of ``--shard K/N`` - this one taking one part.
        *breaker*: the API's circuit breaker; by default one that opens after
        ``api.unavailable_after`` requests in a row got no answer."""
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
        self.breaker = breaker or Breaker(config.unavailable_after, _origin_text(
            URL(config.base_url)))

    def __repr__(self) -> str:
        # Never the key: repr() ends up in tracebacks and debug logs.
        return f"AkoolClient(base_url={self._config.base_url!r})"

    async def __aenter__(self) -> AkoolClient:
        if not self._config.has_credentials:
            # Akool would answer 1101 to every poll; say what is missing instead.
            raise ConfigError("no Akool credentials: set api.api_key (e.g. "
                              "api_key: ${AKOOL_API_KEY}) or api.token")
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if self._config.token is not None:
            headers["Authorization"] = f"Bearer {self._config.token.get_secret_value()}"
        elif self._config.api_key is not None:
            headers["x-api-key"] = self._config.api_key.get_secret_value()
        # An answer is one small JSON object: the total bounds it. No sock_read: aiohttp
        # would arm a timer per request and re-arm it per read (~6% of a poll's CPU).
        timeout = aiohttp.ClientTimeout(
            total=self._config.connect_timeout + self._config.read_timeout,
            sock_connect=self._config.connect_timeout,
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

        Raises :class:`CredentialsError` (fatal), :class:`APIError` (this id),
        :class:`TransientAPIError` (retries exhausted) or :class:`ApiUnavailable` (the
        API is down: this request, or enough before it, got no answer; see
        :class:`Breaker`).
        """
        call = object()  # this request, as the breaker knows it
        try:
            data = await with_retries(
                lambda: self._get_info(video_model_id, call), retryable=_worth_retrying,
                policy=self._config.retries,
                on_retry=lambda n: log.info("%s: retrying the API request (attempt %d)",
                                            video_model_id, n))
        except ApiUnavailable:
            raise
        except TransientAPIError as exc:
            if not exc.no_answer:
                raise
            self.breaker.no_answer(call, exc)
            if self.breaker.is_open:
                raise self.breaker.error() from None
            raise
        finally:
            self.breaker.release(call)
        return parse_job_info(video_model_id, data)

    async def _get_info(self, video_model_id: str, call: object) -> dict[str, Any]:
        if self._session is None:
            raise RuntimeError("AkoolClient used outside 'async with'")
        if self._info_url is None:
            self._info_url = URL(self._config.base_url + INFO_PATH)
        url = self._info_url.update_query(video_model_id=video_model_id)
        if self._bucket is not None:
            await self._bucket.acquire()
        self.breaker.admit(call)  # after the bucket's wait: the breaker may have opened
        self.requests += 1
        try:
            status, body, retry_after = await self._get(self._session, url)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            reason = describe_transport_error(exc)
            if reason == type(exc).__name__ and isinstance(exc, OSError) and exc.strerror:
                reason = exc.strerror  # "Connection reset by peer", not "ClientOSError"
            raise TransientAPIError(None, f"request failed: {reason}", no_answer=True) from None
        answered = True  # whatever it says, unless it is a gateway's error page
        try:
            return _parse_envelope(status, body, retry_after)
        except TransientAPIError as exc:
            answered = not exc.no_answer
            raise
        finally:
            if answered:
                self.breaker.answered()

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


def _worth_retrying(exc: BaseException) -> bool:
    # An open breaker is final for this request: retrying is what it is there to stop.
    return isinstance(exc, TransientAPIError) and not isinstance(exc, ApiUnavailable)


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
        # A gateway's answer for an API that is down, as often as the API's own.
        raise TransientAPIError(None, f"HTTP {status} from the API", retry_after,
                                no_answer=True)
    if status != 200:
        raise APIError(None, f"unexpected HTTP {status} from the API")
    try:
        envelope = json.loads(body)
    except ValueError:
        raise TransientAPIError(None, "the API answered something that is not JSON",
                                no_answer=True) from None
    if not isinstance(envelope, dict) or not isinstance(envelope.get("code"), int):
        raise TransientAPIError(None, "the API answered JSON without a numeric 'code'",
                                no_answer=True)
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
