"""The file transport: one HTTP session for result files, and the rules every request obeys.

The session is separate from the API client's and carries no credentials: result files
live on a CDN, which must never see the Akool key. Every request - redirect hops
included - goes only to an http(s) URL whose host passes ``downloads.allowed_hosts``
and, unless ``downloads.allow_private`` is set, to a public address: IP literals are
checked here before each request, names at connect time by the resolver
(:class:`~archiver._http.PublicOnlyResolver`). Connections are pooled only while
provably clean (:mod:`.connections`). ``limits.bandwidth`` is one token bucket for the
whole run (:attr:`Transport.bandwidth`), which the fetchers draw from per read.

The fetchers use only :meth:`Transport.get` and these names; aiohttp's response is what
they read (``status``, ``headers``, ``content``), as an async context manager.
"""

from __future__ import annotations

import fnmatch
from urllib.parse import urljoin, urlsplit

import aiohttp

from .._http import USER_AGENT, BlockedAddress, PublicOnlyResolver, check_public_literal
from ..config import DownloadConfig
from ..errors import DownloadError
from ..fleet.limits import TokenBucket
from ..models import redact_url
from .connections import FileConnector, FileResponse

#: What ends a body early: the connection broke, stalled or was cut short. The bytes
#: that did arrive are a good prefix of the file.
BROKEN: tuple[type[BaseException], ...] = (aiohttp.ClientError, TimeoutError)
#: Every failure of the transport itself (a connect included): worth another attempt.
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (*BROKEN, OSError)

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
#: Bytes aiohttp reads from the socket at a time (its default is 64 KiB).
_READ_BUFSIZE = 2**18


class Transport:
    """The file session. Use as ``async with Transport(config, limit=8)``."""

    def __init__(self, config: DownloadConfig, *, limit: int = 8,
                 bandwidth: float | None = None) -> None:
        self._config = config
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None
        self._resolver: PublicOnlyResolver | None = None
        #: Shared by every transfer: limits.bandwidth caps the run, not each file.
        self.bandwidth = TokenBucket(bandwidth) if bandwidth else None
        #: Requests sent (redirect hops included), for reports and tests.
        self.requests = 0

    async def __aenter__(self) -> Transport:
        timeout = aiohttp.ClientTimeout(
            total=None,  # a 2 GiB file may take long; stalls are caught by sock_read
            sock_connect=self._config.connect_timeout,
            sock_read=self._config.read_timeout,
        )
        if not self._config.allow_private:
            self._resolver = PublicOnlyResolver()
        self._session = aiohttp.ClientSession(
            headers={"User-Agent": USER_AGENT},
            timeout=timeout,
            connector=FileConnector(limit=self._limit, resolver=self._resolver),
            response_class=FileResponse,
            # Store the bytes exactly as served: Content-Length and checksums refer to them.
            auto_decompress=False,
            read_bufsize=_READ_BUFSIZE,
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._resolver is not None:  # the connector does not own a resolver passed in
            await self._resolver.close()
            self._resolver = None

    async def get(self, url: str, headers: dict[str, str],
                  method: str = "GET") -> aiohttp.ClientResponse:
        """Request *url*, following a bounded number of redirects to allowed hosts.

        The answer is not a redirect; the caller reads it ``async with`` it. Raises
        :class:`DownloadError` for a URL the policy refuses (the hop's included), a
        redirect without a Location, or too many; aiohttp's errors for the transport.
        """
        session = self._session
        if session is None:
            raise RuntimeError("Downloader used outside 'async with'")
        for _hop in range(self._config.max_redirects + 1):
            self._check_url(url)
            self.requests += 1
            try:
                resp = await session.request(method, url, headers=headers,
                                             allow_redirects=False)
            except BlockedAddress as exc:  # raised by the resolver, before connecting
                raise DownloadError(_blocked_message(url, exc)) from None
            if resp.status not in _REDIRECTS:
                return resp
            location = resp.headers.get("Location")
            resp.release()
            if not location:
                raise DownloadError(f"{redact_url(url)}: redirect without a Location")
            url = urljoin(url, location)
        raise DownloadError(f"{redact_url(url)}: more than {self._config.max_redirects} redirects")

    def _check_url(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise DownloadError(f"refusing to fetch a {parts.scheme or 'scheme-less'}: URL "
                                "(only http and https)")
        allowed = self._config.allowed_hosts
        host = (parts.hostname or "").lower()
        if allowed is not None and not any(_host_matches(host, parts.port, p) for p in allowed):
            raise DownloadError(f"{redact_url(url)}: host {host!r} is not in "
                                "downloads.allowed_hosts")
        if not self._config.allow_private:
            try:
                check_public_literal(host)  # aiohttp asks no resolver about IP literals
            except BlockedAddress as exc:
                raise DownloadError(_blocked_message(url, exc)) from None


def _blocked_message(url: str, exc: BlockedAddress) -> str:
    return (f"{redact_url(url)}: refusing to connect to {exc.address} ({exc.reason}); "
            "set downloads.allow_private to allow it")


def _host_matches(host: str, port: int | None, pattern: str) -> bool:
    name, _, want_port = pattern.partition(":")
    if want_port and str(port) != want_port:
        return False
    if name.startswith("*."):
        return host.endswith(name[1:]) or fnmatch.fnmatchcase(host, name)
    return host == name
