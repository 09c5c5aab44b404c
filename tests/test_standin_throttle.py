"""The stand-in's per-connection throttle (``file_rate``), which bench_shards.py uses."""

from __future__ import annotations

import asyncio
import hashlib
import time

import aiohttp

from archiver.testing.standin import AkoolStandIn


async def test_file_rate_paces_each_connection_alone():
    """Each response is paced on its own: two at once both take >= size/rate, intact.

    Only a lower bound is checked: a slow machine can make a download slower, never
    faster, than its pace, so the check cannot flake.
    """
    rate, size = 256 * 1024, 128 * 1024
    standin = AkoolStandIn(file_rate=rate)
    standin.add_job("throttled1", video_size=size)
    async with standin.serve() as url, aiohttp.ClientSession() as session:
        target = standin.file_url("throttled1", "video.mp4", url)

        async def fetch() -> tuple[float, bytes]:
            began = time.monotonic()
            async with session.get(target) as resp:
                body = await resp.read()
            return time.monotonic() - began, body

        results = await asyncio.gather(fetch(), fetch())
    expected = standin.file_sha256("throttled1", "video.mp4")
    for took, body in results:
        assert hashlib.sha256(body).hexdigest() == expected
        assert took >= size / rate * 0.9
