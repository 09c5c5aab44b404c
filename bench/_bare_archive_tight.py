"""The tightest bare archiving loop with the archiver's durability (issue 13's baseline).

    python bench/_bare_archive_tight.py BASE_URL API_KEY MANIFEST ROOT
                                        [--in-flight 64] [--api 64] [--files 16]
                                        [--force-close]

IN_FLIGHT ids at once under one semaphore; per id: poll back to back until status 3
(the stand-in says 1, 2, 3), GET each result file hashing while receiving (chunks past
1 MiB are written as they come), then ONE ``asyncio.to_thread`` call: write the rest,
fsync the file, rename it; write + fsync + rename ``info.json`` and ``SHA256SUMS``; fsync
the folder; write + fsync + rename ``archive.json``; fsync the folder. The API key goes
only to the API (a second session fetches the files). Prints the number of ids archived.
With ``--force-close`` the file session opens a new connection per file, as the
archiver did from issue 9 until issue 13 (it now reuses a connection only when nothing
followed the last body on it).
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


def write_atomic(dir_fd: int, name: str, data: bytes) -> None:
    temp = f".{name}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644, dir_fd=dir_fd)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


class Received:
    """One result file: its temporary file (opened once a chunk must be written)."""

    def __init__(self, name: str, url: str) -> None:
        self.name, self.url = name, url
        self.hasher = hashlib.sha256()
        self.size = 0
        self.tail: list[bytes] = []
        self.fd: int | None = None


def finish(folder: Path, job_id: str, data: dict, files: list[Received]) -> None:
    """Everything after the network, in one thread hop."""
    folder.mkdir(exist_ok=True)
    dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        records = []
        for f in files:
            fd = f.fd if f.fd is not None else os.open(
                f".{f.name}.part", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644, dir_fd=dir_fd)
            try:
                for chunk in f.tail:
                    os.write(fd, chunk)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(f".{f.name}.part", f.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            records.append({"name": f.name, "size": f.size, "sha256": f.hasher.hexdigest(),
                            "source_url": f.url})
        write_atomic(dir_fd, "info.json", json.dumps(data, indent=2).encode())
        sums = "".join(f"{r['sha256']}  {r['name']}\n" for r in records)
        write_atomic(dir_fd, "SHA256SUMS", sums.encode())
        os.fsync(dir_fd)
        record = {"format": 1, "id": job_id, "archived_at": time.time(), "files": records}
        write_atomic(dir_fd, "archive.json", json.dumps(record, indent=2).encode())
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def open_part(folder: Path, name: str) -> int:
    folder.mkdir(exist_ok=True)
    return os.open(folder / f".{name}.part", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)


async def receive(session: aiohttp.ClientSession, folder: Path, name: str,
                  url: str) -> Received:
    got = Received(name, url)
    buffered = 0
    async with session.get(url) as resp:
        resp.raise_for_status()
        async for data in resp.content.iter_any():
            got.hasher.update(data)
            got.size += len(data)
            got.tail.append(data)
            buffered += len(data)
            if buffered >= CHUNK:  # a large file: write as it comes
                if got.fd is None:
                    got.fd = await asyncio.to_thread(open_part, folder, name)
                chunk = b"".join(got.tail)
                got.tail, buffered = [], 0
                await asyncio.to_thread(os.write, got.fd, chunk)
        if resp.content_length is not None and got.size != resp.content_length:
            raise RuntimeError(f"{url}: short body")
    return got


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base_url")
    parser.add_argument("api_key")
    parser.add_argument("manifest", type=Path)
    parser.add_argument("root", type=Path)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--api", type=int, default=64)
    parser.add_argument("--files", type=int, default=16)
    parser.add_argument("--force-close", action="store_true")
    args = parser.parse_args()
    ids = [str(i) for i in yaml.safe_load(args.manifest.read_text())["videos"]]
    args.root.mkdir(parents=True, exist_ok=True)
    url = args.base_url + INFO_PATH
    gate = asyncio.Semaphore(args.in_flight)
    archived = 0

    api = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=args.api),
                                headers={"x-api-key": args.api_key})
    files = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=args.files,
                                                                 force_close=args.force_close),
                                  auto_decompress=False, read_bufsize=2**18)

    async def one(job_id: str) -> None:
        nonlocal archived
        async with gate:
            while True:
                async with api.get(url, params={"video_model_id": job_id}) as resp:
                    data = json.loads(await resp.read())["data"]
                if data["video_status"] == 3:
                    break
                if data["video_status"] not in (1, 2):
                    return
            folder = args.root / job_id
            got = [await receive(files, folder, name, file_url)
                   for name, file_url in result_files(data)]
            await asyncio.to_thread(finish, folder, job_id, data, got)
            archived += 1

    async with api, files:
        await asyncio.gather(*(one(i) for i in ids))
    print(f"archived {archived}")


if __name__ == "__main__":
    asyncio.run(main())
