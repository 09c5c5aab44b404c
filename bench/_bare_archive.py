"""A bare aiohttp archiving loop: the same work as `archiver run`, done the plain way.

    python bench/_bare_archive.py BASE_URL API_KEY MANIFEST ROOT
                                  [--polls 16] [--downloads 8] [--interval 0.001]

POLLS tasks poll the result endpoint (a job at status 1/2 is re-queued after INTERVAL by
a timer); a job at status 3 goes to DOWNLOADS tasks, which for each of its files stream
it with SHA-256 into ``ROOT/<id>/.<name>.part``, fsync it and rename it; then write
``info.json`` and ``SHA256SUMS`` (each: temporary file, fsync, rename), fsync the folder,
and write ``archive.json`` last the same way, and fsync the folder again. The API key
goes only to the API (the result files are fetched with a second session). Prints the
number of ids archived.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import time
from pathlib import Path

import aiohttp
import yaml

INFO_PATH = "/api/open/v3/content/video/infobymodelid"
CHUNK = 1024 * 1024
SPLITS = (("original_srt_url", "original.srt"), ("translated_srt_url", "translated.srt"),
          ("no_caption_video_url", "no_caption.mp4"))


def result_files(data: dict) -> list[tuple[str, str]]:
    files = [("video.mp4", data["video"])]
    splits = data.get("audio_splits") or {}
    files += [(name, splits[key]) for key, name in SPLITS if splits.get(key)]
    return files


def write_atomic(path: Path, data: bytes) -> None:
    temp = path.with_name(f".{path.name}.tmp")
    with open(temp, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temp, path)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def finish_file(out, temp: Path, final: Path) -> None:  # type: ignore[no-untyped-def]
    out.flush()
    os.fsync(out.fileno())
    out.close()
    os.replace(temp, final)


def commit(folder: Path, job_id: str, data: dict, records: list[dict]) -> None:
    write_atomic(folder / "info.json", json.dumps(data, indent=2).encode())
    sums = "".join(f"{r['sha256']}  {r['name']}\n" for r in records)
    write_atomic(folder / "SHA256SUMS", sums.encode())
    fsync_dir(folder)
    record = {"format": 1, "id": job_id, "archived_at": time.time(), "files": records}
    write_atomic(folder / "archive.json", json.dumps(record, indent=2).encode())
    fsync_dir(folder)


async def download(session: aiohttp.ClientSession, url: str, folder: Path, name: str) -> dict:
    temp, final = folder / f".{name}.part", folder / name
    hasher = hashlib.sha256()
    size = 0
    out = await asyncio.to_thread(open, temp, "wb")
    try:
        async with session.get(url) as resp:
            resp.raise_for_status()
            buffer = bytearray()
            async for data in resp.content.iter_any():
                buffer += data
                size += len(data)
                if len(buffer) >= CHUNK:
                    chunk = bytes(buffer)
                    buffer.clear()
                    hasher.update(chunk)
                    await asyncio.to_thread(out.write, chunk)
            if buffer:
                hasher.update(buffer)
                await asyncio.to_thread(out.write, bytes(buffer))
            if resp.content_length is not None and size != resp.content_length:
                raise RuntimeError(f"{url}: short body")
        await asyncio.to_thread(finish_file, out, temp, final)
    except BaseException:
        out.close()
        raise
    return {"name": name, "size": size, "sha256": hasher.hexdigest(), "source_url": url}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base_url")
    parser.add_argument("api_key")
    parser.add_argument("manifest", type=Path)
    parser.add_argument("root", type=Path)
    parser.add_argument("--polls", type=int, default=16)
    parser.add_argument("--downloads", type=int, default=8)
    parser.add_argument("--interval", type=float, default=0.001)
    args = parser.parse_args()
    ids = [str(i) for i in yaml.safe_load(args.manifest.read_text())["videos"]]
    args.root.mkdir(parents=True, exist_ok=True)

    loop = asyncio.get_running_loop()
    polls: asyncio.Queue[str] = asyncio.Queue()
    ready: asyncio.Queue[tuple[str, dict]] = asyncio.Queue()
    for job_id in ids:
        polls.put_nowait(job_id)
    remaining = len(ids)
    archived = 0
    done = asyncio.Event()
    url = args.base_url + INFO_PATH

    def finished() -> None:
        nonlocal remaining
        remaining -= 1
        if remaining == 0:
            done.set()

    api = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=args.polls),
                                headers={"x-api-key": args.api_key})
    files = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=args.downloads),
                                  auto_decompress=False, read_bufsize=2**18)

    async def poller() -> None:
        while True:
            job_id = await polls.get()
            async with api.get(url, params={"video_model_id": job_id}) as resp:
                body = await resp.read()
            data = json.loads(body)["data"]
            status = data["video_status"]
            if status == 3:
                ready.put_nowait((job_id, data))
            elif status in (1, 2):
                loop.call_later(args.interval, polls.put_nowait, job_id)
            else:
                finished()

    async def downloader() -> None:
        nonlocal archived
        while True:
            job_id, data = await ready.get()
            folder = args.root / job_id
            await asyncio.to_thread(folder.mkdir, exist_ok=True)
            records = [await download(files, file_url, folder, name)
                       for name, file_url in result_files(data)]
            await asyncio.to_thread(commit, folder, job_id, data, records)
            archived += 1
            finished()

    async with api, files:
        workers = [asyncio.create_task(poller()) for _ in range(args.polls)]
        workers += [asyncio.create_task(downloader()) for _ in range(args.downloads)]
        waiter = asyncio.create_task(done.wait())
        await asyncio.wait([waiter, *workers], return_when=asyncio.FIRST_COMPLETED)
        for task in [waiter, *workers]:
            task.cancel()
        results = await asyncio.gather(*workers, return_exceptions=True)
        errors = [r for r in results if not isinstance(r, asyncio.CancelledError)]
        if errors:
            raise errors[0]
    print(f"archived {archived}")


if __name__ == "__main__":
    asyncio.run(main())
