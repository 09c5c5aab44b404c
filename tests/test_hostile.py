"""Hostile file servers: wrong lengths, endless bodies, private and link-local targets.

Each fault comes from a real server on loopback (the stand-in, or a small raw asyncio /
aiohttp server written here for what the stand-in cannot do). The tests of private
destinations run under a connection guard: no socket may connect anywhere but loopback.
"""

from __future__ import annotations

import asyncio
import ipaddress
import struct
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from archiver.config import parse_config
from archiver.errors import ConfigError
from archiver.manifest import Manifest
from archiver.models import Outcome
from archiver.run import archive
from archiver.testing.media import mp4_bytes
from archiver.validate import ContentCheck, ContentRejected

from .conftest import ID1, ID2, ID3, all_files
from .servers import aiohttp_server

#: A public address the connection guard maps onto a loopback server: the download
#: policy sees a public destination, yet no packet leaves the machine.
PUBLIC_IP = "93.184.215.14"


@pytest.fixture
async def outside_attempts(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Connections attempted to anywhere but loopback (refused: nothing leaves the machine)."""
    loop = asyncio.get_running_loop()
    real_connect = loop.sock_connect
    attempts: list[Any] = []

    async def guarded(sock: Any, address: Any) -> None:
        host = address[0]
        if host == PUBLIC_IP:
            address = ("127.0.0.1", *address[1:])
        elif not ipaddress.ip_address(host.split("%")[0]).is_loopback:
            attempts.append(address)
            raise ConnectionRefusedError(f"test guard: no connections to {host}")
        await real_connect(sock, address)

    monkeypatch.setattr(loop, "sock_connect", guarded)
    return attempts


def nothing_kept(root: Path, job: str) -> bool:
    return all_files(root / job) == []


# ------------------------------------------------ 2. Content-Length and what really comes

class _WrongLength:
    """A raw HTTP server whose file answers declare *declared* bytes but send *body*.

    The headers go out first, then the body, then (after a pause, if *late*) *extra*:
    bytes past the declared length.
    """

    def __init__(self, declared: int, body: bytes, extra: bytes, *, late: bool) -> None:
        self.declared, self.body, self.extra, self.late = declared, body, extra, late
        self.requests: list[bytes] = []
        self.handlers: set[asyncio.Task[Any]] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        try:
            self.requests.append(await reader.readuntil(b"\r\n\r\n"))
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\n"
                         b"Content-Length: %d\r\n\r\n" % self.declared)
            await writer.drain()
            await asyncio.sleep(0.05)  # headers and body in separate reads, as on a real network
            if self.late:
                writer.write(self.body)
                await writer.drain()
                await asyncio.sleep(0.1)
                writer.write(self.extra)
            else:
                writer.write(self.body + self.extra)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client hung up: it may
        finally:
            writer.close()

    @classmethod
    async def serve(cls, *args: Any, **kwargs: Any) -> tuple[_WrongLength, asyncio.Server, str]:
        server_obj = cls(*args, **kwargs)
        server = await asyncio.start_server(server_obj.handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        return server_obj, server, f"http://127.0.0.1:{port}/video.mp4"


@pytest.mark.parametrize(("case", "reason"), [
    ("valid-mp4-then-more", "the server sent more than its Content-Length"),
    ("truncated-mp4-rest-later", "incomplete MP4"),
])
async def test_body_longer_than_content_length_is_never_committed(
        standin, make_config, tmp_path, case, reason):
    """Bytes past Content-Length: no video.mp4, no archive.json, no partial; retried from zero."""
    full = mp4_bytes(30_000, seed=b"long")
    if case == "valid-mp4-then-more":
        # The declared bytes alone form a complete, valid MP4: only the overrun tells.
        short = mp4_bytes(20_000, seed=b"short")
        hostile, server, url = await _WrongLength.serve(len(short), short, full, late=False)
    else:
        # The rest comes after the declared body, in a later read.
        hostile, server, url = await _WrongLength.serve(20_000, full[:20_000], full[20_000:],
                                                        late=True)
    async with server:
        standin.add_job(ID1, redirects={"video": url})
        config = make_config(downloads={"retries": {"attempts": 2, "wait_initial": 0.01,
                                                    "wait_max": 0.05}})
        result = await archive(config, Manifest.from_ids([ID1]))
        await asyncio.gather(*hostile.handlers)
    item = result.items[0]
    assert item.outcome is Outcome.FAILED
    assert reason in item.error
    assert nothing_kept(tmp_path / "archive", ID1)
    # Never resumed onto the suspect bytes: every request asked for the whole file.
    assert hostile.requests and not any(b"range:" in r.lower() for r in hostile.requests)


async def test_truncated_mp4_with_matching_length_is_rejected(standin, make_config, tmp_path):
    """A real MP4 cut short, served with a Content-Length that matches the cut: not committed."""
    standin.add_job(ID1, video_bytes=mp4_bytes(50_000)[:30_000])
    standin.add_job(ID2, video_bytes=mp4_bytes(50_000))
    result = await archive(make_config(), Manifest.from_ids([ID1, ID2]))
    bad, good = result.items
    assert bad.outcome is Outcome.FAILED and bad.error_kind == "content"
    assert bad.error == ("video.mp4: incomplete MP4: the 'mdat' box at offset 148 declares "
                         "49852 bytes, 20000 more than the file has (size 30000)")
    assert nothing_kept(tmp_path / "archive", ID1)
    assert good.outcome is Outcome.ARCHIVED


def _large_mdat(payload: int) -> bytes:
    """An MP4 whose mdat uses the 64-bit largesize header."""
    head = mp4_bytes(200)[:148]  # ftyp + moov of a synthetic MP4
    return head + struct.pack(">I4sQ", 1, b"mdat", 16 + payload) + b"\x07" * payload


def _feed(data: bytes, step: int) -> None:
    check = ContentCheck("video.mp4", "video/mp4")
    for i in range(0, len(data), step):
        check.feed(data[i:i + step])
    check.finish(len(data))


@pytest.mark.parametrize("step", [1, 7, 4096])
@pytest.mark.parametrize(("data", "problem"), [
    (mp4_bytes(10_000), None),
    (_large_mdat(5000), None),
    (mp4_bytes(200)[:148] + struct.pack(">I4s", 0, b"mdat") + b"\x01" * 999, None),  # to EOF
    (_large_mdat(5000)[:-1], "'mdat' box at offset 148 declares 5016 bytes, 1 more"),
    (_large_mdat(5000)[:155], "ends 7 byte(s) into a box header at offset 148"),
    (mp4_bytes(10_000) + b"\0\0\0\x10free", "'free' box at offset 10000 declares 16 bytes"),
    (mp4_bytes(10_000) + b"\0\0\0\x03junk", "less than its own header"),
])
def test_mp4_box_chain_must_tile_the_file(data, problem, step):
    """Top-level boxes (32-bit, largesize, size 0) must end exactly at the end of the file."""
    if problem is None:
        _feed(data, step)
    else:
        with pytest.raises(ContentRejected, match=problem.replace("(", r"\(").replace(")", r"\)")):
            _feed(data, step)


# --------------------------------------------------------------- 3. downloads.max_file_size

async def test_endless_body_stops_at_max_file_size(standin, make_config, tmp_path):
    """A chunked body that never ends fails its item at max_file_size, nothing kept."""
    sent = 0

    async def endless(request: web.Request) -> web.StreamResponse:
        nonlocal sent
        resp = web.StreamResponse(headers={"Content-Type": "video/mp4"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(mp4_bytes(1000))
        while True:  # until the client hangs up; paced so a broken client fills no disk
            await resp.write(b"\0" * 65536)
            sent += 65536
            await asyncio.sleep(0.005)

    async with aiohttp_server({"/video.mp4": endless}) as url:
        standin.add_job(ID1, redirects={"video": url + "/video.mp4"})
        config = make_config(downloads={"max_file_size": "1MB", "item_timeout": 20})
        result = await archive(config, Manifest.from_ids([ID1]))
    item = result.items[0]
    assert item.outcome is Outcome.FAILED
    assert item.error.endswith("/video.mp4: video.mp4 is larger than downloads.max_file_size "
                               "(1MB); download stopped, nothing kept")
    assert nothing_kept(tmp_path / "archive", ID1)
    assert sent < 4 * 1_000_000  # it stopped reading soon after the cap


async def test_declared_size_above_max_file_size_fails_before_download(
        standin, make_config, tmp_path, base_url):
    """A Content-Length above max_file_size fails at once (permanent, no retry), nothing kept."""
    standin.add_job(ID1, video_size=2 * 1024 * 1024)
    standin.add_job(ID2, video_size=1024 * 1024)
    result = await archive(make_config(downloads={"max_file_size": "1MiB"}),
                           Manifest.from_ids([ID1, ID2]))
    big, fits = result.items
    assert big.outcome is Outcome.FAILED
    assert big.error == (f"{base_url}/files/{ID1}/video.mp4: video.mp4 is 2097152 bytes, more "
                         "than downloads.max_file_size (1MiB); not downloaded")
    assert standin.file_requests[(ID1, "video.mp4")] == 1
    assert nothing_kept(tmp_path / "archive", ID1)
    assert fits.outcome is Outcome.ARCHIVED


@pytest.mark.parametrize(("value", "expected"), [
    ("20GiB", 20 * 1024**3), ("500MB", 500_000_000), ("1.5KiB", 1536), (123456, 123456)])
def test_max_file_size_units(value, expected):
    """max_file_size takes bytes or a size with a unit (KB/MB/GB decimal, KiB/MiB/GiB binary)."""
    config = parse_config(f"api: {{api_key: k}}\ndownloads:\n  max_file_size: {value}\n")
    assert config.downloads.max_file_size == expected


def test_bad_max_file_size_names_the_key():
    """A size that is not one is a one-line error naming the file, line and key."""
    with pytest.raises(ConfigError) as err:
        parse_config("api: {api_key: k}\ndownloads:\n  max_file_size: lots\n", source="a.yaml")
    assert str(err.value) == ("a.yaml:3: downloads.max_file_size: 'lots' is not a size like "
                              "20GiB, 500MB or 1000000")


# ------------------------------------------------ 6. private and link-local destinations

async def test_result_url_on_loopback_is_refused_by_default(standin, make_config, base_url):
    """Without allow_private, a result URL on 127.0.0.1 fails its item before connecting."""
    standin.add_job(ID1)
    result = await archive(make_config(downloads={"allow_private": False}),
                           Manifest.from_ids([ID1]))
    item = result.items[0]
    assert item.outcome is Outcome.FAILED
    assert item.error == (f"{base_url}/files/{ID1}/video.mp4: refusing to connect to "
                          "127.0.0.1 (loopback address); set downloads.allow_private to allow it")
    assert standin.file_requests[(ID1, "video.mp4")] == 0


@pytest.mark.parametrize(("target", "address", "reason"), [
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254", "link-local"),
    ("http://[::ffff:169.254.169.254]/latest/", "::ffff:169.254.169.254", "link-local"),
    ("http://10.0.0.8:8080/x", "10.0.0.8", "private"),
    ("http://[fe80::1]/x", "fe80::1", "link-local"),
])
async def test_redirect_to_private_address_is_refused_before_connecting(
        standin, make_config, base_url, outside_attempts, target, address, reason):
    """A public file host redirecting to 169.254.169.254 & co: refused, nothing connects there."""
    standin.public_base_url = base_url.replace("127.0.0.1", PUBLIC_IP)
    standin.add_job(ID1, redirects={"video": target + "?X-Amz-Signature=secret"})
    standin.add_job(ID2)  # the same public host, no redirect: archived
    config = make_config(downloads={"allow_private": False})
    result = await archive(config, Manifest.from_ids([ID1, ID2]))
    refused, fine = result.items
    assert refused.outcome is Outcome.FAILED
    assert refused.error.endswith(f": refusing to connect to {address} ({reason} address); "
                                  "set downloads.allow_private to allow it")
    assert "secret" not in refused.error  # the URL is shown without its query
    assert fine.outcome is Outcome.ARCHIVED
    assert outside_attempts == []  # checked before connecting: nothing left the machine


async def test_name_resolving_to_loopback_is_refused(standin, make_config, base_url,
                                                     outside_attempts):
    """A host name that resolves to loopback (localhost) is refused at connect time."""
    port = base_url.rsplit(":", 1)[1]
    standin.public_base_url = base_url.replace("127.0.0.1", PUBLIC_IP)
    standin.add_job(ID3)
    standin.add_job(ID1, redirects={"video": f"http://localhost:{port}/mirror/{ID3}/video.mp4"})
    result = await archive(make_config(downloads={"allow_private": False}),
                           Manifest.from_ids([ID1]))
    item = result.items[0]
    assert item.outcome is Outcome.FAILED
    assert item.error.startswith(f"http://localhost:{port}/mirror/{ID3}/video.mp4: refusing to "
                                 "connect to ")
    assert item.error.endswith(" (loopback address); set downloads.allow_private to allow it")
    assert standin.file_requests[(ID3, "video.mp4")] == 0
    assert outside_attempts == []
