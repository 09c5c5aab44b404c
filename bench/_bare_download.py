"""A bare aiohttp download loop: the reference for what Python + aiohttp can do here.

    python bench/_bare_download.py URL_LIST DEST_DIR [--parallel 16] [--durable]

URL_LIST has one ``URL RELATIVE_PATH`` per line. PARALLEL files at once; each streams
in 1 MiB chunks, hashed with SHA-256 on the event loop and written from a worker thread.
With ``--durable``, each file is written under a temporary name, fsynced and renamed
(and its folder fsynced), as the archiver does; without, it is written in place.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import sys
from pathlib import Path

import aiohttp

CHUNK = 1024 * 1024


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


async def fetch(session: aiohttp.ClientSession, url: str, dest: Path, durable: bool) -> str:
    await asyncio.to_thread(dest.parent.mkdir, parents=True, exist_ok=True)
    temp = dest.with_name(f".{dest.name}.part") if durable else dest
    hasher = hashlib.sha256()
    out = await asyncio.to_thread(open, temp, "wb")
    try:
        async with session.get(url) as resp:
            resp.raise_for_status()
            buffer = bytearray()
            async for data in resp.content.iter_any():
                buffer += data
                if len(buffer) >= CHUNK:
                    chunk = bytes(buffer)
                    buffer.clear()
                    hasher.update(chunk)
                    await asyncio.to_thread(out.write, chunk)
            if buffer:
                hasher.update(buffer)
                await asyncio.to_thread(out.write, bytes(buffer))
        if durable:
            await asyncio.to_thread(out.flush)
            await asyncio.to_thread(os.fsync, out.fileno())
    finally:
        await asyncio.to_thread(out.close)
    if durable:
        await asyncio.to_thread(os.replace, temp, dest)
        await asyncio.to_thread(_fsync_dir, dest.parent)
    return hasher.hexdigest()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url_list", type=Path)
    parser.add_argument("dest", type=Path)
    parser.add_argument("--parallel", type=int, default=16)
    parser.add_argument("--durable", action="store_true")
    args = parser.parse_args()
    jobs = [line.split() for line in args.url_list.read_text().splitlines() if line.strip()]
    queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    for url, rel in jobs:
        queue.put_nowait((url, rel))
    connector = aiohttp.TCPConnector(limit=args.parallel)
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                     read_bufsize=2**18) as session:
        async def worker() -> None:
            while not queue.empty():
                url, rel = queue.get_nowait()
                await fetch(session, url, args.dest / rel, args.durable)

        await asyncio.gather(*(worker() for _ in range(args.parallel)))


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
