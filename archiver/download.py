"""Fetches result files: streamed in chunks, hashed while streaming, into a storage sink.

Its HTTP session is separate from the API client's and carries no credentials: result
files live on a CDN, which must never see the Akool key.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable

import aiohttp
import stamina

from ._http import USER_AGENT, describe_transport_error, parse_retry_after
from .config import DownloadConfig
from .errors import DownloadError, TransientDownloadError
from .models import FileRecord, RemoteFile, redact_url
from .storage.base import FileSink, ItemWriter

log = logging.getLogger(__name__)

#: Called with the number of bytes just received (for progress and totals).
ProgressCallback = Callable[[int], None]


class Downloader:
    """Streams result files into storage. Use as ``async with Downloader(cfg, limit=8)``."""

    def __init__(self, config: DownloadConfig, *, limit: int = 8) -> None:
        self._config = config
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Downloader:
        timeout = aiohttp.ClientTimeout(
            total=None,  # a 2 GiB file may take long; stalls are caught by sock_read
            sock_connect=self._config.connect_timeout,
            sock_read=self._config.read_timeout,
        )
        connector = aiohttp.TCPConnector(limit=self._limit)
        self._session = aiohttp.ClientSession(
            headers={"User-Agent": USER_AGENT},
            timeout=timeout,
            connector=connector,
            # Store the bytes exactly as served: Content-Length and checksums refer to them.
            auto_decompress=False,
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def fetch(self, remote: RemoteFile, writer: ItemWriter,
                    progress: ProgressCallback | None = None) -> FileRecord:
        """Download *remote* into *writer*, retrying transient failures from the start."""
        retries = self._config.retries
        async for attempt in stamina.retry_context(
            on=_retry_hook,
            attempts=retries.attempts,
            timeout=retries.timeout,
            wait_initial=retries.wait_initial,
            wait_max=retries.wait_max,
            wait_jitter=retries.wait_initial,
        ):
            with attempt:
                if attempt.num > 1:
                    log.info("retrying %s (attempt %d)", redact_url(remote.url), attempt.num)
                return await self._fetch_once(remote, writer, progress)
        raise AssertionError("unreachable")  # pragma: no cover - stamina re-raises

    async def _fetch_once(self, remote: RemoteFile, writer: ItemWriter,
                          progress: ProgressCallback | None) -> FileRecord:
        if self._session is None:
            raise RuntimeError("Downloader used outside 'async with'")
        shown = redact_url(remote.url)
        sink: FileSink | None = None
        try:
            async with self._session.get(remote.url) as resp:
                _check_status(resp.status, shown, resp.headers.get("Retry-After"))
                expected = resp.content_length
                sink = await writer.open_file(remote.name)
                size, digest = await self._stream(resp, sink, progress)
            if expected is not None and size != expected:
                raise TransientDownloadError(
                    f"{shown}: got {size} of {expected} bytes (Content-Length)")
            extra = await sink.commit(size, digest)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            if sink is not None:
                await sink.abort()
            raise TransientDownloadError(f"{shown}: {describe_transport_error(exc)}") from None
        except BaseException:
            # Includes cancellation: never leave a temporary file behind.
            if sink is not None:
                await sink.abort()
            raise
        log.debug("stored %s (%d bytes) from %s", remote.name, size, shown)
        return FileRecord(name=remote.name, size=size, sha256=digest, source_url=shown,
                          extra=extra)

    async def _stream(self, resp: aiohttp.ClientResponse, sink: FileSink,
                      progress: ProgressCallback | None) -> tuple[int, str]:
        chunk_size = self._config.chunk_size
        hasher = hashlib.sha256()
        buffer = bytearray()
        size = 0
        # Coalesce the network's small reads into chunk_size writes: fewer thread hops
        # and syscalls; memory per transfer stays about one chunk whatever the file size.
        async for data in resp.content.iter_any():
            buffer += data
            size += len(data)
            if progress is not None:
                progress(len(data))
            if len(buffer) >= chunk_size:
                chunk = bytes(buffer)
                buffer.clear()
                hasher.update(chunk)
                await sink.write(chunk)
        if buffer:
            chunk = bytes(buffer)
            hasher.update(chunk)
            await sink.write(chunk)
        return size, hasher.hexdigest()


def _check_status(status: int, shown: str, retry_after: str | None) -> None:
    if status == 200:
        return
    if status == 429 or status >= 500:
        raise TransientDownloadError(f"{shown}: HTTP {status}", parse_retry_after(retry_after))
    raise DownloadError(f"{shown}: HTTP {status}")


def _retry_hook(exc: Exception) -> bool | float:
    if not isinstance(exc, TransientDownloadError):
        return False
    if exc.retry_after is not None:
        return min(exc.retry_after, 60.0)
    return True

