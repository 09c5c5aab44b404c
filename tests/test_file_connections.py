"""Result-file connections are reused, but never after bytes followed a body on them.

A raw keep-alive HTTP server on loopback answers ``/a.mp4`` and ``/b.mp4`` honestly and,
when told to, follows A's body with a complete forged HTTP answer (a valid MP4 that is
neither file): what a wrong Content-Length looks like to a client that reuses the
connection. The forged answer comes either in the same write as A's body or later,
once the connection is idle in the pool.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from archiver.config import DownloadConfig
from archiver.download import Downloader
from archiver.errors import TransientDownloadError
from archiver.models import RemoteFile
from archiver.storage.local import LocalBackend
from archiver.testing.media import mp4_bytes

from .conftest import ID1

A = mp4_bytes(20_000, seed=b"file a")
B = mp4_bytes(30_000, seed=b"file b")
FORGED = mp4_bytes(25_000, seed=b"forged")


def answer(body: bytes) -> bytes:
    return (b"HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)) + body


class _KeepAlive:
    """Answers requests one after another on each connection; *forge* decides what
    follows A's body: nothing, the forged answer in the same write, or it later."""

    def __init__(self, forge: str) -> None:
        self.forge = forge
        self.connections = 0
        self.paths: list[str] = []
        self.forged_sent = asyncio.Event()
        self.handlers: set[asyncio.Task[Any]] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1].decode()
                self.paths.append(path)
                body = A if path == "/a.mp4" else B
                if path == "/a.mp4" and self.forge == "same-read":
                    writer.write(answer(body) + answer(FORGED))
                    await writer.drain()
                    self.forged_sent.set()
                    continue
                writer.write(answer(body))
                await writer.drain()
                if path == "/a.mp4" and self.forge == "later":
                    await asyncio.sleep(0.05)  # the client has released the connection
                    writer.write(answer(FORGED))
                    await writer.drain()
                    self.forged_sent.set()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client hung up: it may
        finally:
            writer.close()


async def serve(forge: str) -> tuple[_KeepAlive, asyncio.Server, str]:
    server_obj = _KeepAlive(forge)
    server = await asyncio.start_server(server_obj.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server_obj, server, f"http://127.0.0.1:{port}"


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[LocalBackend]:
    store = LocalBackend(tmp_path / "archive")
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def one_connection_downloader() -> Downloader:
    config = DownloadConfig(allow_private=True, read_timeout=2,
                            retries={"attempts": 1, "wait_initial": 0.01, "wait_max": 0.01})
    return Downloader(config, limit=1)


async def fetch(downloader: Downloader, storage: LocalBackend, base: str, path: str,
                ) -> tuple[str, bytes]:
    """Fetch *path* into its own item folder; the recorded sha256 and the stored bytes."""
    name = path.strip("/")
    writer = storage.item(f"{ID1}-{name}")
    record = await downloader.fetch(RemoteFile("video.mp4", base + path), writer)
    await writer.commit(b"{}\n")
    return record.sha256, (storage.root / f"{ID1}-{name}" / "video.mp4").read_bytes()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def test_clean_bodies_share_one_connection(storage):
    """Two honest answers in a row: the second file comes over the first file's connection."""
    hostile, server, base = await serve("none")
    async with server, one_connection_downloader() as downloader:
        assert await fetch(downloader, storage, base, "/a.mp4") == (sha256(A), A)
        assert await fetch(downloader, storage, base, "/b.mp4") == (sha256(B), B)
    assert hostile.paths == ["/a.mp4", "/b.mp4"]
    assert hostile.connections == 1


async def test_bytes_arriving_on_an_idle_connection_are_never_the_next_answer(storage):
    """A forged answer sent after A's body, while the connection waits in the pool: the
    connection is dropped, B comes over a new one and is B's bytes."""
    hostile, server, base = await serve("later")
    async with server, one_connection_downloader() as downloader:
        assert await fetch(downloader, storage, base, "/a.mp4") == (sha256(A), A)
        await hostile.forged_sent.wait()
        await asyncio.sleep(0.2)  # loopback delivers it to the idle connection meanwhile
        assert await fetch(downloader, storage, base, "/b.mp4") == (sha256(B), B)
    assert hostile.paths == ["/a.mp4", "/b.mp4"]
    assert hostile.connections == 2


async def test_bytes_past_a_body_fail_it_and_never_answer_the_next_request(storage):
    """A forged answer in the same write as A's body: A is an overrun (not stored), its
    connection is closed, and B comes over a new one with B's bytes."""
    hostile, server, base = await serve("same-read")
    async with server, one_connection_downloader() as downloader:
        with pytest.raises(TransientDownloadError, match="more than its Content-Length"):
            await fetch(downloader, storage, base, "/a.mp4")
        assert await fetch(downloader, storage, base, "/b.mp4") == (sha256(B), B)
    assert hostile.paths == ["/a.mp4", "/b.mp4"]
    assert hostile.connections == 2
    assert not (storage.root / f"{ID1}-a.mp4" / "video.mp4").exists()
