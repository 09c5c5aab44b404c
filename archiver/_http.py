"""Small HTTP helpers shared by the API client and the downloader."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import socket
import time
from email.utils import parsedate_to_datetime

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from . import __version__

USER_AGENT = f"akool-archiver/{__version__}"


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def describe_transport_error(exc: BaseException) -> str:
    """A short, secret-free description of a transport error."""
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect ({exc.os_error.strerror or type(exc.os_error).__name__})"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server closed the connection"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "the answer was cut short"
    return type(exc).__name__


# ----------------------------------------------------------------- address policy

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class BlockedAddress(Exception):
    """A host name or literal stands for an address the policy refuses.

    Deliberately not an ``OSError``: aiohttp would wrap that into a connection error,
    which the downloader retries; a refused address is final.
    """

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(f"refusing to connect to {address} ({reason})")
        self.address = address
        self.reason = reason


@functools.lru_cache(maxsize=4096)
def non_public_reason(address: str) -> str | None:
    """Why *address* (an IP literal) is not a public destination, or None if it is.

    IPv4-mapped and 6to4 IPv6 addresses (``::ffff:169.254.169.254``) are judged by the
    IPv4 address inside: connecting to one reaches that IPv4 host. Cached: the answer
    for an address never changes, and every file request (and resolution) asks.
    """
    try:
        ip: IPAddress = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        ip = ip.ipv4_mapped or ip.sixtofour or ip
    # Most specific first: 169.254.0.0/16 is also "private", 127/8 also "reserved".
    checks = (("unspecified", ip.is_unspecified), ("loopback", ip.is_loopback),
              ("link-local", ip.is_link_local), ("multicast", ip.is_multicast),
              ("private", ip.is_private), ("reserved", ip.is_reserved),
              ("non-public", not ip.is_global))
    for reason, hit in checks:
        if hit:
            return f"{reason} address"
    return None


def check_public_literal(host: str) -> None:
    """Raise :class:`BlockedAddress` if *host* is an IP literal that is not public.

    aiohttp connects to IP literals without asking the resolver, so they are checked
    here, before any request.
    """
    reason = non_public_reason(host.strip("[]"))
    if reason is not None:
        raise BlockedAddress(host.strip("[]"), reason)


class PublicOnlyResolver(AbstractResolver):
    """Resolves names like the default resolver, then drops non-public addresses.

    aiohttp connects only to the addresses its resolver returns, so checking them
    here - at connect time, on every resolution - leaves no window for DNS rebinding
    (a name that resolves to a public address when checked and a private one when
    used). A name with no public address at all raises :class:`BlockedAddress`.
    """

    def __init__(self) -> None:
        self._inner = aiohttp.DefaultResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        public = [r for r in results if non_public_reason(r["host"]) is None]
        if not public:
            first = results[0]["host"] if results else host
            raise BlockedAddress(first, non_public_reason(first) or "non-public address")
        return public

    async def close(self) -> None:
        await self._inner.close()


def url_host(host: str) -> str:
    """Host part of a base URL for a bind address (wildcards -> loopback)."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]"
    return host
