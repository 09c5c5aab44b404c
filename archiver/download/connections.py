"""The clean-connection guard: a file connection is reused only when nothing followed a body.

aiohttp reads exactly Content-Length bytes and parses whatever follows as the next
response on the connection. A server whose declared length is short would then have its
surplus bytes taken for the answer to the *next* file's request. So a file connection
goes back to the pool only once the read that ended the body is fully parsed and left
nothing behind - no queued answer, no parse error (:class:`FileResponse`) - and is
checked again before reuse (:class:`FileConnector`). A body followed by anything is an
overrun (:func:`overran`): its connection is closed, and the fetcher drops the bytes.

**This module is why aiohttp is pinned below 3.15** (``pyproject.toml``): it subclasses
aiohttp internals - ``ClientResponse._response_eof`` and ``_release_connection``,
``TCPConnector._get``, the response protocol's ``exception()``, ``len()`` and
``force_close()`` - which aiohttp may change in any minor release. Nothing else in the
archiver touches them; ``tests/test_file_connections.py`` pins the behaviour. Reusing
connections this way (rather than one connection per file) matters: a connect and a
close per file showed in the per-item CPU.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp.client_reqrep import ConnectionKey
from aiohttp.connector import Connection
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.tracing import Trace


def overran(resp: aiohttp.ClientResponse) -> bool:
    """Whether bytes followed *resp*'s body on its connection (a wrong Content-Length).

    Decided when the connection left the response (:meth:`FileResponse._release_connection`);
    while it is still attached, its protocol is looked at now.
    """
    if getattr(resp, "overran", False):
        return True
    connection = resp.connection
    return connection is not None and _dirty(connection.protocol)


def _dirty(protocol: Any) -> bool:
    """Whether a file connection's protocol holds anything past the body it served.

    aiohttp reads on past a body for the next response on the connection: bytes that
    came in the same read as the body's end either fail to parse - the protocol then
    holds an HttpProcessingError (a later disconnect does not replace it) - or parse
    as whole responses left in its queue. (A clean end shows None or the
    ServerDisconnectedError of our own close.)
    """
    if protocol is None:
        return False
    return isinstance(protocol.exception(), HttpProcessingError) or len(protocol) > 0


class FileResponse(aiohttp.ClientResponse):
    """A file answer whose connection is pooled only if nothing followed its body.

    aiohttp releases the connection from inside the read that ends the body, before
    the rest of that read is parsed: deferring the release by one loop step lets the
    parser finish, so what followed the body is visible (:func:`_dirty`) before the
    connection could serve another request. A dirty connection is closed, never pooled,
    and the answer remembers it (:attr:`overran`).
    """

    #: Bytes followed the body on its connection (set when the connection is let go).
    overran = False

    def _response_eof(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            super()._response_eof()
            return
        loop.call_soon(super()._response_eof)

    def _release_connection(self) -> None:
        connection = self._connection
        if connection is not None and _dirty(connection.protocol):
            self.overran = True
            assert connection.protocol is not None
            connection.protocol.force_close()  # the connector closes it instead of pooling
        super()._release_connection()


class FileConnector(aiohttp.TCPConnector):
    """Hands out a pooled connection only if nothing arrived on it while it was idle.

    A server that sends bytes after a body, once the connection is back in the pool,
    would otherwise have them parsed as the answer to the next request.
    """

    async def _get(self, key: ConnectionKey, traces: list[Trace]) -> Connection | None:
        while (connection := await super()._get(key, traces)) is not None:
            protocol = connection.protocol
            if protocol is not None and not protocol.should_close and not _dirty(protocol):
                return connection
            connection.close()  # bytes came while idle: never reused
        return None
