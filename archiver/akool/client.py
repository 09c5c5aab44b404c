"""The Akool API client: owns the HTTP session, auth, retries and error mapping.

The scheduler only ever sees a :class:`~archiver.models.JobInfo` or an exception from
:mod:`archiver.errors`; aiohttp never leaks past this module. It asks each result family
(:mod:`archiver.akool.families`) at its own endpoint: :meth:`AkoolClient.job_info`.

- **Read-only.** The client can call the families' poll endpoints and ``getToken``, and
  nothing else (:class:`PathRefused`): no code path can reach Akool's delete endpoints
  (``faceswap/result/delbyids``, ``image2Video/delbyids``), which lose results for good.
- **Batched polling** for the families whose endpoint takes several ids: concurrent
  callers are coalesced into one request of up to ``polling.batch_size`` ids
  (:mod:`.batching`), one request for the rate limiter and the breaker; an id the
  answer leaves out is not found (code 1008), for that id alone.
- **Credentials** go to ``api.base_url``'s origin (scheme, host, port) and nowhere else:
  redirects are followed by hand, within that origin only. A redirect elsewhere stops
  the run (:class:`RedirectRefused`). With client credentials the Bearer token comes from
  ``getToken``, is kept in memory only, and is fetched again once when Akool answers
  1101 (the request is then retried once).
- A down API is noticed once, not once per id: the circuit breaker (:class:`Breaker`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import aiohttp
from yarl import URL

from .._http import USER_AGENT, describe_transport_error, parse_retry_after
from ..config import ApiConfig, Config
from ..errors import (
    APIError,
    ApiUnavailable,
    ConfigError,
    CredentialsError,
    ItemError,
    TransientAPIError,
)
from ..fleet.limits import api_bucket
from ..models import JobInfo
from ..retry import retry_failed, with_retries
from .answers import (
    OK,
    TOKEN_EXPIRED,
    data_object,
    parse_batch,
    parse_envelope,
    parse_token,
)
from .batching import Answers, Coalescer, linger_for
from .breaker import UNAVAILABLE_COOLDOWN, Breaker
from .families import FAMILIES, Family
from .families.video import parse as parse_job_info
from .origin import (
    MAX_REDIRECTS,
    REDIRECTS,
    Endpoints,
    PathRefused,
    RedirectRefused,
    origin_text,
    redirect_target,
)

__all__ = ["UNAVAILABLE_COOLDOWN", "AkoolClient", "Breaker", "PathRefused",
           "RedirectRefused", "parse_job_info"]

log = logging.getLogger(__name__)

INFO_PATH = FAMILIES["video"].path


class AkoolClient:
    """Asks Akool about jobs. Use as ``async with AkoolClient(cfg, limit=16) as client``."""

    def __init__(self, config: ApiConfig, *, limit: int = 16, shares: int = 1,
                 breaker: Breaker | None = None, batch_size: int = 50,
                 batch_linger: float = 0.0) -> None:
        """*shares*: how many processes split ``api.requests_per_second`` (the account's
        budget) equally - N for a run of ``--shard K/N`` - this one taking one part.
        *breaker*: the API's circuit breaker; by default one that opens after
        ``api.unavailable_after`` requests in a row got no answer. *batch_size*: most
        ids per request of a batched family (``polling.batch_size``); *batch_linger*:
        seconds a batch waits for more callers before it is sent."""
        self._config = config
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None
        base = URL(config.base_url)
        self._endpoints = Endpoints(config.base_url)
        # One bucket for the whole run: the cap holds however many workers poll.
        self._bucket = api_bucket(config.requests_per_second, shares)
        self._batch_size = batch_size
        self._batch_linger = batch_linger
        self._coalescers: dict[str, Coalescer] = {}
        self._slots = asyncio.Semaphore(limit)
        # Client credentials: the token getToken gave, in memory only.
        self._token: str | None = None
        self._token_lock = asyncio.Lock()
        #: Requests sent, including retries and getToken (for reports and tests).
        self.requests = 0
        #: getToken requests sent.
        self.token_requests = 0
        self.breaker = breaker or Breaker(config.unavailable_after, origin_text(base))

    @classmethod
    def for_run(cls, config: Config, *, shares: int = 1) -> AkoolClient:
        """The client a run (or ``serve``, or ``status --remote``) of *config* uses:
        ``concurrency.polls`` requests at once, batches of ``polling.batch_size`` that
        wait a tenth of ``polling.interval`` (at most 1 s) to fill, *shares* of the
        account's request budget."""
        return cls(config.api, limit=config.concurrency.polls, shares=shares,
                   batch_size=config.polling.batch_size,
                   batch_linger=linger_for(config.polling.interval))

    def __repr__(self) -> str:
        # Never the key: repr() ends up in tracebacks and debug logs.
        return f"AkoolClient(base_url={self._config.base_url!r})"

    async def __aenter__(self) -> AkoolClient:
        if not self._config.has_credentials:
            # Akool would answer 1101 to every poll; say what is missing instead.
            raise ConfigError("no Akool credentials: set api.api_key (e.g. "
                              "api_key: ${AKOOL_API_KEY}), api.token, or "
                              "api.client_id and api.client_secret")
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
        for coalescer in self._coalescers.values():
            await coalescer.close()
        self._coalescers.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def batches(self) -> int:
        """Batched requests sent (before retries), every family together."""
        return sum(c.batches for c in self._coalescers.values())

    async def video_info(self, video_model_id: str) -> JobInfo:
        """``job_info(video_model_id, "video")``."""
        return await self.job_info(video_model_id, "video")

    async def job_info(self, item_id: str, family: str = "video") -> JobInfo:
        """The job's current state, asked of its *family*'s endpoint; transient failures
        are retried within the configured bounds. Callers of a batched family are
        coalesced into shared requests, transparently.

        Raises :class:`CredentialsError` (fatal), :class:`APIError` (this id; code 1008
        when the family's endpoint does not know it), :class:`TransientAPIError`
        (retries exhausted) or :class:`ApiUnavailable` (the API is down: this request,
        or enough before it, got no answer; see :class:`Breaker`).
        """
        fam = FAMILIES.get(family)
        if fam is None:
            raise ValueError(f"unknown result family {family!r}")
        if fam.batched and self._batch_size > 1:
            coalescer = self._coalescers.get(fam.name)
            if coalescer is None:
                coalescer = self._coalescers[fam.name] = Coalescer(
                    lambda ids: self._ask_batch(fam, ids), size=self._batch_size,
                    linger=self._batch_linger, fits=lambda ids: self._endpoints.fits(fam, ids))
            return await coalescer.get(item_id)
        answer = (await self._ask_batch(fam, [item_id]))[item_id] if fam.batched \
            else fam.parse(item_id, data_object(await self._request(fam, [item_id])))
        if isinstance(answer, ItemError):
            raise answer
        return answer

    # ------------------------------------------------------------- batches

    async def _ask_batch(self, fam: Family, ids: list[str]) -> Answers:
        """One answer per id of *ids*, asked in one request.

        A business code answered to the whole batch (1003, 1008...) may be one id's
        doing: each id is then asked alone, so that one bad id fails no other.
        """
        try:
            data = await self._request(fam, ids)
        except TransientAPIError:
            raise
        except APIError as exc:
            if len(ids) == 1 or exc.code in (None, OK):
                raise
            log.info("%s: the API answered code %s to a batch of %d ids; asking for "
                     "each alone", fam.name, exc.code, len(ids))
            answers: Answers = {}
            for item_id in ids:
                try:
                    answers.update(await self._ask_batch(fam, [item_id]))
                except TransientAPIError:
                    raise
                except APIError as one:
                    answers[item_id] = one
            return answers
        return parse_batch(fam, ids, data)

    # ------------------------------------------------------------- one request

    async def _request(self, fam: Family, ids: list[str]) -> Any:
        """The ``data`` of *fam*'s answer for *ids* (one request, with its retries).

        The first attempt is awaited here, not through :func:`with_retries`: nearly
        every poll succeeds at once, and each coroutine layer is paid on every poll."""
        call = object()  # this request, as the breaker knows it
        try:
            try:
                return await self._attempt(fam, ids, call)
            except Exception as exc:  # sorted by retry_failed
                what = ids[0] if len(ids) == 1 else f"{fam.name} batch of {len(ids)} ids"
                return await retry_failed(
                    lambda: self._attempt(fam, ids, call), exc, retryable=_worth_retrying,
                    policy=self._config.retries,
                    on_retry=lambda n: log.info("%s: retrying the API request (attempt %d)",
                                                what, n))
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

    async def _attempt(self, fam: Family, ids: list[str], call: object) -> Any:
        """One attempt; with client credentials, a 1101 gets a new token and one retry."""
        method, value = fam.method, ",".join(ids)
        url = self._endpoints.poll(fam, value)
        body = None if method == "GET" else json.dumps({fam.id_param: value}).encode()
        token = None if self._config.client_id is None else await self._bearer()
        renewed = False
        while True:
            headers = {"Authorization": f"Bearer {token}"} if token is not None else None
            status, answer, retry_after = await self._send(method, url, body, headers, call)
            try:
                return self._answered(parse_envelope, status, answer, retry_after)
            except CredentialsError as exc:
                if token is None or exc.code != TOKEN_EXPIRED or renewed:
                    raise
                log.info("Akool refused the token (code %d); asking getToken for a new "
                         "one", exc.code)
                token, renewed = await self._bearer(stale=token), True

    def _answered(self, parse: Any, status: int, body: bytes,
                  retry_after: float | None) -> Any:
        """*parse* the answer; the breaker learns the API answered - whatever it said,
        unless it is a gateway's error page."""
        answered = True
        try:
            return parse(status, body, retry_after)
        except TransientAPIError as exc:
            answered = not exc.no_answer
            raise
        finally:
            if answered:
                self.breaker.answered()

    async def _send(self, method: str, url: URL, body: bytes | None,
                    headers: dict[str, str] | None,
                    call: object) -> tuple[int, bytes, float | None]:
        """One request through the rate limit and the breaker: *method* to *url* (made
        by :class:`Endpoints`, checked against the allowlist), following
        redirects only within the API's origin, only for a GET, and only to paths that
        read."""
        session = self._session
        if session is None:
            raise RuntimeError("AkoolClient used outside 'async with'")
        # At most *limit* requests at once, however many callers wait (a run polling
        # batched families has more poll workers than connections): they wait here,
        # not in aiohttp's pool, where the wait would count against the timeout.
        async with self._slots:
            if self._bucket is not None:
                await self._bucket.acquire()
            self.breaker.admit(call)  # after the bucket's wait: the breaker may have opened
            self.requests += 1
            if body is not None:
                headers = {**(headers or {}), "Content-Type": "application/json"}
            try:
                for _hop in range(MAX_REDIRECTS + 1):
                    # aiohttp would follow any redirect with the session's headers: it
                    # drops Authorization on a change of origin, but not x-api-key.
                    async with session.request(method, url, data=body, headers=headers,
                                               allow_redirects=False) as resp:
                        if resp.status not in REDIRECTS:
                            return (resp.status, await resp.read(),
                                    parse_retry_after(resp.headers.get("Retry-After")))
                        location = resp.headers.get("Location")
                    if method != "GET":
                        raise APIError(None, f"HTTP redirect of a {method} from {url.path}; "
                                             "not followed")
                    url = redirect_target(url, location, self._endpoints.home,
                                          self._config.base_url)
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                reason = describe_transport_error(exc)
                if reason == type(exc).__name__ and isinstance(exc, OSError) and exc.strerror:
                    reason = exc.strerror  # "Connection reset by peer", not "ClientOSError"
                raise TransientAPIError(None, f"request failed: {reason}",
                                        no_answer=True) from None
        raise APIError(None, f"the API redirected more than {MAX_REDIRECTS} times")

    # ------------------------------------------------------------- client credentials

    async def _bearer(self, stale: str | None = None) -> str:
        """The Bearer token from getToken: the one in memory, unless it is *stale* (Akool
        refused it) - then a new one, asked once however many requests were refused."""
        async with self._token_lock:
            if self._token is not None and self._token != stale:
                return self._token
            self._token = None
            self._token = await self._get_token()
            return self._token

    async def _get_token(self) -> str:
        config = self._config
        assert config.client_id is not None and config.client_secret is not None
        body = json.dumps({"clientId": config.client_id.get_secret_value(),
                           "clientSecret": config.client_secret.get_secret_value()}).encode()
        url = self._endpoints.token()

        async def attempt() -> str:
            self.token_requests += 1
            status, answer, retry_after = await self._send("POST", url, body, None, object())
            token: str = self._answered(parse_token, status, answer, retry_after)
            return token

        token = await with_retries(attempt, retryable=_worth_retrying, policy=config.retries,
                                   on_retry=lambda n: log.info(
                                       "getToken: retrying (attempt %d)", n))
        log.info("got a new API token from getToken")
        return token


def _worth_retrying(exc: BaseException) -> bool:
    # An open breaker is final for this request: retrying is what it is there to stop.
    return isinstance(exc, TransientAPIError) and not isinstance(exc, ApiUnavailable)
