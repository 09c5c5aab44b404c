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

from archiver.manifest import Manifest
from archiver.models import Outcome
from archiver.run import archive

from .conftest import ID1, ID2, ID3, all_files

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
