"""One large file over several connections (downloads.segments), against real servers.

The stand-in serves Range / If-Range, cuts or stalls one range on request
(``range_faults``) and can ignore Range; a file that changes between two requests comes
from a small aiohttp server written here. Files are a few MiB: ``segment_threshold`` is
set low, and ranges are 1 MiB or more.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from archiver.manifest import Manifest
from archiver.models import Outcome
from archiver.run import archive
from archiver.testing.media import mp4_bytes

from .conftest import ID1
from .servers import aiohttp_server

MiB = 1024 * 1024
#: Not a multiple of anything: the last range is shorter than the others.
SIZE = 4 * MiB + 12_345
SEGMENTED = {"segment_threshold": MiB, "segments": 4}


def starts(ranges: list[tuple[str, str, str]]) -> list[int]:
    return sorted(int(header.split("=")[1].split("-")[0]) for _, _, header in ranges)


def boundaries(size: int, count: int = 4) -> list[int]:
    step = -(-size // count)
    return list(range(0, size, step))


def archived_sha(root: Path, job: str) -> tuple[str, str]:
    """(SHA-256 of the stored video, SHA-256 archive.json records for it)."""
    data = (root / job / "video.mp4").read_bytes()
    record = json.loads((root / job / "archive.json").read_text())
    [entry] = [f for f in record["files"] if f["name"] == "video.mp4"]
    return hashlib.sha256(data).hexdigest(), entry["sha256"]


async def test_ranges_are_stitched_byte_exact(standin, make_config, tmp_path):
    """A large file comes over four connections and is stored and hashed byte-exact."""
    standin.add_job(ID1, video_size=SIZE)
    result = await archive(make_config(downloads=SEGMENTED), Manifest.from_ids([ID1]))
    assert result.items[0].outcome is Outcome.ARCHIVED
    root = tmp_path / "archive"
    assert archived_sha(root, ID1) == (standin.file_sha256(ID1, "video"),) * 2
    # The first answer is range 0; the three others were asked for by range.
    assert starts(standin.file_ranges) == boundaries(SIZE)[1:]
    assert sorted(p.name for p in (root / ID1).iterdir()) == [
        "SHA256SUMS", "archive.json", "info.json", "video.mp4"]


async def test_segments_one_keeps_a_single_stream(standin, make_config, tmp_path):
    """downloads.segments: 1 fetches even a large file over one connection."""
    standin.add_job(ID1, video_size=SIZE)
    config = make_config(downloads={**SEGMENTED, "segments": 1})
    result = await archive(config, Manifest.from_ids([ID1]))
    assert result.items[0].outcome is Outcome.ARCHIVED
    assert standin.file_ranges == []
    assert standin.file_requests[(ID1, "video.mp4")] == 1


@pytest.mark.parametrize(("validators", "age"), [
    (("etag",), 0), (("last_modified",), 3600), (("last_modified",), 0), ((), 0)],
    ids=["ETag", "Last-Modified an hour old", "Last-Modified just now", "none"])
async def test_ranges_go_only_with_if_range_on_a_strong_validator(standin, make_config,
                                                                  tmp_path, validators, age):
    """Every range request carries If-Range with the first answer's strong validator; a
    file with none (or a Last-Modified within a minute of Date: weak) gets one stream."""
    created = int((time.time() - age) * 1000)
    standin.add_job(ID1, video_size=SIZE, validators=validators, create_time=created)
    result = await archive(make_config(downloads=SEGMENTED), Manifest.from_ids([ID1]))
    assert result.items[0].outcome is Outcome.ARCHIVED
    assert archived_sha(tmp_path / "archive", ID1) == (standin.file_sha256(ID1, "video"),) * 2
    guards = {if_range for _, _, _, if_range in standin.file_if_ranges}
    if validators == ("etag",) or age:
        assert starts(standin.file_ranges) == boundaries(SIZE)[1:]
        [guard] = guards
        assert guard is not None and guard.startswith('"' if age == 0 else tuple("MTWFS"))
    else:
        assert standin.file_if_ranges == []  # a Range without If-Range could mix versions
        assert standin.file_requests[(ID1, "video.mp4")] == 1


async def test_range_cut_midway_is_resumed_from_where_it_stopped(standin, make_config,
                                                                 tmp_path):
    """A range cut half-way is asked for again from its first missing byte, not from zero."""
    standin.add_job(ID1, video_size=SIZE, range_faults={"video": ["truncate"]})
    result = await archive(make_config(downloads=SEGMENTED), Manifest.from_ids([ID1]))
    assert result.items[0].outcome is Outcome.ARCHIVED
    assert archived_sha(tmp_path / "archive", ID1) == (standin.file_sha256(ID1, "video"),) * 2
    first = boundaries(SIZE)[1:]
    seen = starts(standin.file_ranges)
    assert len(seen) == 4  # three ranges and one resume
    [resumed] = [s for s in seen if s not in first]
    # The cut range sent up to half of its bytes: the resume starts after those that
    # arrived (bytes still in the client's buffer when the connection broke are lost).
    cut = max(b for b in first if b < resumed)
    length = min(cut + (first[1] - first[0]), SIZE) - cut
    assert cut < resumed <= cut + length // 2
    assert standin.file_requests[(ID1, "video.mp4")] == 5


async def test_server_ignoring_range_falls_back_to_one_stream(standin, make_config, tmp_path):
    """A server answering 200 to Range requests: the file still arrives whole and correct."""
    standin.add_job(ID1, video_size=SIZE, ignore_range=True)
    result = await archive(make_config(downloads=SEGMENTED), Manifest.from_ids([ID1]))
    assert result.items[0].outcome is Outcome.ARCHIVED, result.items[0].error
    assert archived_sha(tmp_path / "archive", ID1) == (standin.file_sha256(ID1, "video"),) * 2
    assert standin.file_ranges  # ranges were tried, and their 200s recognised


async def test_crash_keeps_only_the_checked_prefix_then_resumes(standin, make_config,
                                                                tmp_path):
    """A segmented fetch that fails keeps just its contiguous checked prefix; the next run
    resumes after it and stores the file byte-exact."""
    standin.add_job(ID1, video_size=SIZE, range_faults={"video": ["stall"] * 3 + ["reset"] * 6})
    # Each range stalls half-way (a short read timeout ends it); asked for again, it is
    # reset (twice: aiohttp itself retries a GET once after a reset): with one attempt
    # per range without progress, the item fails.
    failing = make_config(downloads={**SEGMENTED, "read_timeout": 0.5,
                                     "retries": {"attempts": 1}})
    result = await archive(failing, Manifest.from_ids([ID1]))
    assert result.items[0].outcome is Outcome.FAILED
    folder = tmp_path / "archive" / ID1
    part = folder / ".video.mp4.part"
    sidecar = json.loads((folder / ".video.mp4.part.json").read_text())
    # Range 0 (the first answer) came whole, range 1 up to its half: bytes past that,
    # written by ranges 2 and 3, are cut off.
    first = boundaries(SIZE)
    prefix = first[1] + (first[2] - first[1]) // 2
    assert sidecar["prefix"] == part.stat().st_size == prefix
    assert part.read_bytes() == standin.file_bytes(ID1, "video")[:prefix]
    # A run killed outright leaves what ranges wrote past the prefix: never trusted.
    with part.open("ab") as f:
        f.write(b"\0" * 100_000)
    standin.reset_counters()
    result = await archive(make_config(downloads=SEGMENTED), Manifest.from_ids([ID1]))
    assert result.items[0].outcome is Outcome.ARCHIVED
    assert archived_sha(tmp_path / "archive", ID1) == (standin.file_sha256(ID1, "video"),) * 2
    assert min(starts(standin.file_ranges)) == prefix


class _ChangingFile:
    """Serves version A to the first request and version B to every later one.

    With *if_range*, a Range whose If-Range is not B's ETag gets all of B (RFC 9110);
    without, the server honours Range whatever If-Range says (and sends B's ETag).
    """

    def __init__(self, *, if_range: bool) -> None:
        self.a, self.b = mp4_bytes(SIZE, seed=b"version-a"), mp4_bytes(SIZE, seed=b"version-b")
        self.if_range = if_range
        self.requests: list[str | None] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request.headers.get("Range"))
        data, tag = (self.a, '"a"') if len(self.requests) == 1 else (self.b, '"b"')
        headers: dict[str, Any] = {"ETag": tag, "Content-Type": "video/mp4",
                                   "Accept-Ranges": "bytes"}
        wanted = request.headers.get("Range")
        honoured = wanted and (not self.if_range or request.headers.get("If-Range") == tag)
        if not honoured:
            return web.Response(body=data, headers=headers)
        first, _, last = wanted.removeprefix("bytes=").partition("-")
        start, end = int(first), int(last) + 1 if last else len(data)
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
        return web.Response(status=206, body=data[start:end], headers=headers)


async def test_file_changing_between_ranges_is_never_committed_as_a_mix(standin, make_config,
                                                                        tmp_path):
    """The file changes after the first answer: never a mix of versions; B is fetched anew."""
    for if_range in (True, False):
        server = _ChangingFile(if_range=if_range)
        async with aiohttp_server({"/video.mp4": server.handle}) as url:
            job = ID1[:-1] + ("1" if if_range else "2")
            standin.add_job(job, redirects={"video": f"{url}/video.mp4"})
            result = await archive(make_config(downloads=SEGMENTED), Manifest.from_ids([job]))
        assert result.items[0].outcome is Outcome.ARCHIVED, result.items[0].error
        want = hashlib.sha256(server.b).hexdigest()
        assert archived_sha(tmp_path / "archive", job) == (want, want)
        # Ranges were asked for (and refused or caught), then B was fetched from zero.
        assert any(r is not None for r in server.requests)
        assert server.requests.count(None) == 2


class _RangeOverrun:
    """A raw HTTP server: whole answers are honest; every 206 sends bytes past its
    Content-Length right after the declared body (a wrong Content-Length)."""

    def __init__(self) -> None:
        self.data = mp4_bytes(SIZE, seed=b"overrun")
        self.ranges = 0

    async def handle(self, reader: Any, writer: Any) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
            common = b"Content-Type: video/mp4\r\nETag: \"o\"\r\nAccept-Ranges: bytes\r\n"
            wanted = [line for line in head.split("\r\n") if line.startswith("range:")]
            if not wanted:
                writer.write(b"HTTP/1.1 200 OK\r\n" + common
                             + b"Content-Length: %d\r\n\r\n" % len(self.data) + self.data)
            else:
                self.ranges += 1
                first, _, last = wanted[0].split("=")[1].strip().partition("-")
                start, end = int(first), int(last) + 1
                writer.write(b"HTTP/1.1 206 Partial Content\r\n" + common
                             + b"Content-Range: bytes %d-%d/%d\r\n" % (start, end - 1, SIZE)
                             + b"Content-Length: %d\r\n\r\n" % (end - start)
                             + self.data[start:end] + b"GARBAGE" * 100)
            await writer.drain()
        except (ConnectionError, OSError, ValueError):
            pass
        finally:
            writer.close()


async def test_range_answer_longer_than_its_content_length_is_never_committed(
        standin, make_config, tmp_path):
    """A range answer with bytes past its Content-Length: dropped, nothing committed."""
    hostile = _RangeOverrun()
    server = await asyncio.start_server(hostile.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        standin.add_job(ID1, redirects={"video": f"http://127.0.0.1:{port}/video.mp4"})
        config = make_config(downloads={**SEGMENTED, "retries": {"attempts": 2,
                                                                 "wait_initial": 0.01,
                                                                 "wait_max": 0.05}})
        result = await archive(config, Manifest.from_ids([ID1]))
    item = result.items[0]
    assert item.outcome is Outcome.FAILED
    assert "more than its Content-Length" in item.error
    assert hostile.ranges > 0
    folder = tmp_path / "archive" / ID1
    assert not (folder / "archive.json").exists() and not (folder / "video.mp4").exists()
    assert not folder.exists() or not any(folder.iterdir())
