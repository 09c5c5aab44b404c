"""Hostile file servers: wrong lengths, endless bodies, private and link-local targets.

Each fault comes from a real server on loopback (the stand-in, or a small raw asyncio /
aiohttp server written here for what the stand-in cannot do). The tests of private
destinations run under a connection guard: no socket may connect anywhere but loopback.
"""

from __future__ import annotations

import asyncio
import ipaddress
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
