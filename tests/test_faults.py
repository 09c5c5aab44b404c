"""Real-world faults, produced for real by the stand-in: nothing lost, nothing wrong kept."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest

from archiver.archive import Archive
from archiver.manifest import Manifest
from archiver.models import Outcome, redact_url
from archiver.run import archive
from archiver.storage import LocalBackend

from .conftest import ID1, ID2, ID3, all_files

MiB = 1024 * 1024
DAY_MS = 24 * 3600 * 1000


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def final_files(root: Path) -> list[Path]:
    """Files under names that look archived (not hidden temporaries)."""
    return [p for p in all_files(root) if not p.name.startswith(".")]


# ------------------------------------------------------------- 1. truncated transfers

async def test_truncated_transfer_resumes_with_range(standin, make_config, tmp_path):
    """A body cut at half its Content-Length is resumed: exactly `size` bytes cross the wire."""
    size = 3 * MiB
    standin.add_job(ID1, video_size=size, file_faults={"video": ["truncate"]})
    result = await archive(make_config(), Manifest.from_ids([ID1]))
    assert result.items[0].outcome is Outcome.ARCHIVED
    assert sha256(tmp_path / "archive" / ID1 / "video.mp4") == standin.file_sha256(ID1, "video.mp4")
    assert standin.file_requests[(ID1, "video.mp4")] == 2
    # Half in the cut transfer, the rest in the resumed one. A restart would make it
    # 1.5 x size; what exceeds `size` is only what sat in the client's socket buffer.
    assert size <= standin.file_bytes_sent[(ID1, "video.mp4")] < 1.25 * size


async def test_partial_from_earlier_run_resumes_or_restarts(standin, make_config, tmp_path):
    """A partial kept by a failed run is resumed next run; if the file changed, restarted."""
    size = 2 * MiB
    standin.add_job(ID1, video_size=size, file_faults={"video": ["truncate"]})
    standin.add_job(ID2, video_size=size, file_faults={"video": ["truncate"]})
    config = make_config(downloads={"retries": {"attempts": 1}})
    first = await archive(config, Manifest.from_ids([ID1, ID2]))
    assert [i.outcome for i in first.items] == [Outcome.FAILED, Outcome.FAILED]
    kept = {}
    for job in (ID1, ID2):
        kept[job] = (tmp_path / "archive" / job / ".video.mp4.part").stat().st_size
        assert 0 < kept[job] <= size // 2  # the good prefix was kept

    # ID2's file changes on the server (new size, new ETag): If-Range makes it send it all.
    standin.add_job(ID2, video_size=size + 1000)
    sent_before = dict(standin.file_bytes_sent)
    second = await archive(make_config(), Manifest.from_ids([ID1, ID2]))
    assert [i.outcome for i in second.items] == [Outcome.ARCHIVED, Outcome.ARCHIVED]
    for job in (ID1, ID2):
        assert sha256(tmp_path / "archive" / job / "video.mp4") == standin.file_sha256(
            job, "video.mp4")
    sent = {k: standin.file_bytes_sent[k] - sent_before.get(k, 0) for k in sent_before}
    assert sent[(ID1, "video.mp4")] == size - kept[ID1]  # resumed
    assert standin.file_bytes_sent[(ID2, "video.mp4")] - sent_before[(ID2, "video.mp4")] \
        == size + 1000  # restarted from zero
    assert [p for p in all_files(tmp_path / "archive") if p.name.startswith(".")] == []


# ------------------------------------------------------------ 2. error pages as media

@pytest.mark.parametrize(("scenario", "reason"), [
    ({"file_faults": {"video": ["html200"] * 5}}, "text/html"),
    ({"video_bytes": b"<html><body>Access Denied</body></html>" + b" " * 100}, "HTML/XML/JSON"),
    ({"video_bytes": b'{"error": "expired"}'}, "HTML/XML/JSON"),
    ({"video_bytes": b"\x00\x00\x00\x18moov" + b"\x00" * 100}, "not an MP4 file"),
    ({"video_bytes": b""}, "empty body"),
])
async def test_error_pages_are_never_saved_as_media(standin, make_config, tmp_path,
                                                    scenario, reason):
    """A 200 with an HTML/JSON body, a non-MP4 or an empty body fails the item, nothing kept."""
    standin.add_job(ID1, **scenario)
    standin.add_job(ID2)
    result = await archive(make_config(), Manifest.from_ids([ID1, ID2]))
    bad, good = result.items
    assert bad.outcome is Outcome.FAILED and reason in bad.error
    assert bad.error_kind == "content"
    assert good.outcome is Outcome.ARCHIVED
    assert not (tmp_path / "archive" / ID1).exists()


async def test_subtitle_that_is_not_srt_is_rejected(standin, make_config, tmp_path, base_url):
    """An .srt URL that serves binary data (here: another job's video) is rejected."""
    standin.add_job(ID2, video_size=50_000)
    standin.add_job(ID1, files=("video", "original_srt", "translated_srt", "no_caption"),
                    redirects={"translated_srt": f"{base_url}/files/{ID2}/video.mp4"})
    result = await archive(make_config(), Manifest.from_ids([ID1]))
    item = result.items[0]
    assert item.outcome is Outcome.FAILED
    assert "translated.srt" in item.error
    assert final_files(tmp_path / "archive") == []


# ------------------------------------------------------------ 3. expired / revoked URLs

async def test_revoked_url_is_refreshed_from_the_api(standin, make_config, tmp_path):
    """A 403 from the file host makes the archiver ask the API again, then succeed."""
    standin.add_job(ID1, files=("video", "original_srt"), file_faults={"video": [403]})
    result = await archive(make_config(), Manifest.from_ids([ID1]))
    assert result.items[0].outcome is Outcome.ARCHIVED
    assert standin.polls[ID1] == 2  # the first poll, and one for a fresh URL
    assert sha256(tmp_path / "archive" / ID1 / "video.mp4") == standin.file_sha256(
        ID1, "video.mp4")


async def test_results_past_seven_days_are_expired(standin, make_config, tmp_path):
    """A job created 8 days ago whose URLs answer 403 is `expired`, not `failed` (exit 1)."""
    standin.add_job(ID1, create_time=int(time.time() * 1000) - 8 * DAY_MS, expired=True)
    standin.add_job(ID2, file_faults={"video": [404] * 10})  # recent: just failed
    result = await archive(make_config(), Manifest.from_ids([ID1, ID2]))
    expired, failed = result.items
    assert expired.outcome is Outcome.EXPIRED
    assert "expired on" in expired.error and "7 days" in expired.error
    assert failed.outcome is Outcome.FAILED
    assert result.exit_status == 1
    assert final_files(tmp_path / "archive") == []


# -------------------------------------------------------------------- 4. redirects

async def test_redirects_are_followed_within_bounds(standin, make_config, tmp_path, base_url):
    """A CDN redirect is followed; a redirect to file:// or an endless chain is refused."""
    standin.add_job(ID3, video_size=10_000)
    standin.add_job(ID1, redirects={"video": f"{base_url}/mirror/{ID3}/video.mp4"})
    standin.add_job(ID2, redirects={"video": "file:///etc/passwd"})
    standin.add_job("loop", redirects={"video": f"{base_url}/files/loop/video.mp4"})
    result = await archive(make_config(), Manifest.from_ids([ID1, ID2, "loop"]))
    ok, scheme, loop = result.items
    assert ok.outcome is Outcome.ARCHIVED
    assert sha256(tmp_path / "archive" / ID1 / "video.mp4") == standin.file_sha256(
        ID3, "video.mp4")
    assert scheme.outcome is Outcome.FAILED and "only http and https" in scheme.error
    assert loop.outcome is Outcome.FAILED and "more than 5 redirects" in loop.error
    assert standin.file_requests[("loop", "video.mp4")] == 6


async def test_allowed_hosts_restricts_file_hosts(standin, make_config, base_url):
    """With downloads.allowed_hosts, files (and redirect targets) come only from those hosts."""
    port = base_url.rsplit(":", 1)[1]
    standin.add_job(ID1)
    standin.add_job(ID2, redirects={"video": f"http://localhost:{port}/mirror/{ID1}/video.mp4"})
    allowed = make_config(downloads={"allowed_hosts": ["127.0.0.1"]})
    result = await archive(allowed, Manifest.from_ids([ID1, ID2]))
    assert result.items[0].outcome is Outcome.ARCHIVED
    assert result.items[1].outcome is Outcome.FAILED
    assert "'localhost' is not in downloads.allowed_hosts" in result.items[1].error
    elsewhere = make_config(downloads={"allowed_hosts": ["*.cloudfront.net"]})
    standin.add_job(ID3)
    result = await archive(elsewhere, Manifest.from_ids([ID3]))
    assert "not in downloads.allowed_hosts" in result.items[0].error


# ----------------------------------------------------------------------- 5. stalls

async def test_stalled_transfer_is_aborted_and_resumed(standin, make_config, tmp_path):
    """A connection that goes silent mid-body is aborted after read_timeout and resumed."""
    size = 2 * MiB
    standin.add_job(ID1, video_size=size, file_faults={"video": ["stall"]})
    config = make_config(downloads={"read_timeout": 0.5})
    started = time.monotonic()
    result = await archive(config, Manifest.from_ids([ID1]))
    assert result.items[0].outcome is Outcome.ARCHIVED
    assert time.monotonic() - started < 10
    assert sha256(tmp_path / "archive" / ID1 / "video.mp4") == standin.file_sha256(
        ID1, "video.mp4")
    assert standin.file_bytes_sent[(ID1, "video.mp4")] < 1.25 * size  # resumed, not restarted


async def test_item_time_limit_stops_a_slow_item(standin, make_config, tmp_path):
    """An item that keeps stalling is given up after downloads.item_timeout; others go on."""
    standin.add_job(ID1, file_faults={"video": ["stall"] * 20})
    standin.add_job(ID2)
    config = make_config(downloads={"read_timeout": 30, "item_timeout": 1.0})
    started = time.monotonic()
    result = await archive(config, Manifest.from_ids([ID1, ID2]))
    slow, ok = result.items
    assert slow.outcome is Outcome.FAILED and slow.error_kind == "timeout"
    assert "item_timeout" in slow.error
    assert ok.outcome is Outcome.ARCHIVED
    assert time.monotonic() - started < 10


# ------------------------------------------- 6. kept bytes only where a resume is guarded

#: Stalls forever half-way (until the item's time limit), chunked: no Content-Length.
STALLED = {"video_size": 2 * MiB, "chunked": True, "file_faults": {"video": ["stall"]}}
TIMED_OUT = {"read_timeout": 30, "item_timeout": 1.0}


@pytest.mark.parametrize("validators", [(), ("last_modified",)],
                         ids=["no validator", "Last-Modified within a minute of Date"])
async def test_timed_out_item_drops_bytes_no_validator_can_guard(standin, make_config,
                                                                 tmp_path, validators):
    """A chunked body without ETag (and no Last-Modified, or one too recent to be strong)
    that hits item_timeout: nothing is kept, the item is absent; the next run starts at 0."""
    standin.add_job(ID1, validators=validators, **STALLED)
    config = make_config(downloads=TIMED_OUT)
    result = await archive(config, Manifest.from_ids([ID1]))
    assert result.items[0].outcome is Outcome.FAILED and result.items[0].error_kind == "timeout"
    assert standin.file_bytes_sent[(ID1, "video.mp4")] >= MiB  # half the file did arrive
    assert all_files(tmp_path / "archive") == []  # no .video.mp4.part, no sidecar
    assert await Archive(LocalBackend(tmp_path / "archive")).item_states([ID1]) == {ID1: "absent"}
    second = await archive(make_config(), Manifest.from_ids([ID1]))
    assert second.items[0].outcome is Outcome.ARCHIVED
    assert standin.file_ranges == []  # never a Range request without If-Range


@pytest.mark.parametrize("validators", [("etag",), ("last_modified",)])
async def test_timed_out_item_keeps_guarded_bytes_and_resumes_with_if_range(
        standin, make_config, tmp_path, validators):
    """The same stall with a strong validator (an ETag, or a Last-Modified an hour before
    Date): the bytes are kept, and the next run resumes them with Range + If-Range."""
    hour_ago = int(time.time() * 1000) - 3600 * 1000
    standin.add_job(ID1, validators=validators, create_time=hour_ago, **STALLED)
    first = await archive(make_config(downloads=TIMED_OUT), Manifest.from_ids([ID1]))
    assert first.items[0].error_kind == "timeout"
    folder = tmp_path / "archive" / ID1
    kept = (folder / ".video.mp4.part").stat().st_size
    validator = json.loads((folder / ".video.mp4.part.json").read_text())["validator"]
    assert validator and 0 < kept < 2 * MiB
    assert await Archive(LocalBackend(tmp_path / "archive")).item_states([ID1]) == {ID1: "partial"}

    second = await archive(make_config(), Manifest.from_ids([ID1]))
    assert second.items[0].outcome is Outcome.ARCHIVED
    assert sha256(folder / "video.mp4") == standin.file_sha256(ID1, "video.mp4")
    assert standin.file_if_ranges == [(ID1, "video.mp4", f"bytes={kept}-", validator)]
    if validators == ("etag",):
        assert validator.startswith('"')
    else:
        assert validator.endswith(" GMT")


async def test_cut_transfer_without_validator_restarts_from_zero(standin, make_config,
                                                                 tmp_path):
    """Within one run too: a body cut short with no validator is fetched again whole,
    never resumed with a bare Range."""
    size = 2 * MiB
    standin.add_job(ID1, video_size=size, validators=(), file_faults={"video": ["truncate"]})
    result = await archive(make_config(), Manifest.from_ids([ID1]))
    assert result.items[0].outcome is Outcome.ARCHIVED
    assert sha256(tmp_path / "archive" / ID1 / "video.mp4") == standin.file_sha256(ID1, "video")
    assert standin.file_ranges == []
    assert standin.file_requests[(ID1, "video.mp4")] == 2


async def test_old_partial_without_validator_is_dropped_not_resumed(standin, make_config,
                                                                    tmp_path, base_url):
    """A partial an earlier version kept with ``"validator": null`` is never resumed: the
    file is fetched from zero (a Range without If-Range could splice two versions)."""
    size = 2 * MiB
    standin.add_job(ID1, video_size=size)
    folder = tmp_path / "archive" / ID1
    folder.mkdir(parents=True)
    (folder / ".video.mp4.part").write_bytes(standin.file_bytes(ID1, "video")[:MiB])
    source = redact_url(standin.file_url(ID1, "video"))
    (folder / ".video.mp4.part.json").write_text(
        json.dumps({"source": source, "validator": None}))
    result = await archive(make_config(), Manifest.from_ids([ID1]))
    assert result.items[0].outcome is Outcome.ARCHIVED
    assert sha256(folder / "video.mp4") == standin.file_sha256(ID1, "video")
    assert standin.file_ranges == []
    assert standin.file_bytes_sent[(ID1, "video.mp4")] == size
    assert sorted(p.name for p in folder.iterdir()) == [
        "SHA256SUMS", "archive.json", "info.json", "video.mp4"]


# --------------------------------------------------------------- 8. hostile answers

async def test_malformed_api_answers_fail_only_their_id(standin, make_config):
    """Non-JSON forever, JSON without data, a non-URL video: one-line errors, others archived."""
    standin.add_job("nojson", api_faults=["html"] * 10)
    standin.add_job("nodata", api_faults=[("code", 1000)])
    standin.add_job("badurl", extra_fields={"video": "javascript:alert(1)"})
    standin.add_job("badstatus", extra_fields={"video_status": "done"})
    standin.add_job(ID1)
    result = await archive(make_config(), Manifest.from_ids(
        ["nojson", "nodata", "badurl", "badstatus", ID1]))
    by_id = {i.id: i for i in result.items}
    assert "not JSON" in by_id["nojson"].error
    assert "no 'data' object" in by_id["nodata"].error
    assert "data.video is not an http(s) URL" in by_id["badurl"].error
    assert "video_status is not a number" in by_id["badstatus"].error
    for item_id in ("nojson", "nodata", "badurl", "badstatus"):
        assert by_id[item_id].outcome is Outcome.FAILED
        assert "\n" not in by_id[item_id].error
    assert by_id[ID1].outcome is Outcome.ARCHIVED


# ---------------------------------------------------------------------- 10. disk full

@pytest.fixture
def tiny_disk(tmp_path):
    """A real 1 MiB tmpfs (needs root, as CI has); skipped where mounting is not allowed."""
    import subprocess

    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                          capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


async def test_disk_full_fails_item_cleanly(standin, make_config, tiny_disk):
    """ENOSPC fails that item with a clear message; its temp file is gone; small items land."""
    standin.add_job(ID1, video_size=3 * MiB)
    standin.add_job(ID2, video_size=20_000)
    config = make_config(storage={"backend": "local", "local": {"root": str(tiny_disk)}},
                         concurrency={"downloads": 1, "polls": 1})
    result = await archive(config, Manifest.from_ids([ID1, ID2]))
    big, small = result.items
    assert big.outcome is Outcome.FAILED
    assert "no space left on device" in big.error and big.error_kind == "storage"
    assert small.outcome is Outcome.ARCHIVED
    assert not (tiny_disk / ID1).exists()
    record = json.loads((tiny_disk / ID2 / "archive.json").read_text())
    assert record["files"][0]["size"] == 20_000


async def test_commit_refused_at_the_record_leaves_no_final_file(standin, make_config,
                                                                 tmp_path):
    """The disk refuses archive.json (here: a folder in the way of its temporary) after
    the item's files took their final names: the item fails, and no file of it stays
    under a final name - before, video.mp4 stayed, uncommitted, looking archived."""
    standin.add_job(ID1, video_size=20_000)
    folder = tmp_path / "archive" / ID1
    (folder / ".archive.json.tmp").mkdir(parents=True)
    result = await archive(make_config(), Manifest.from_ids([ID1]))
    assert result.items[0].outcome is Outcome.FAILED
    assert result.items[0].error_kind == "storage"
    assert sorted(p.name for p in folder.iterdir()) == [".archive.json.tmp"]
