"""The core pipeline against the Akool stand-in on loopback: poll, download, commit."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from archiver.errors import CredentialsError
from archiver.manifest import Manifest
from archiver.models import Outcome
from archiver.run import archive

from .conftest import API_KEY, ID1, ID2, ID3, all_files, config_dict

ALL_FILES = ("video", "original_srt", "translated_srt", "no_caption")
NAMES = {"video": "video.mp4", "original_srt": "original.srt",
         "translated_srt": "translated.srt", "no_caption": "no_caption.mp4"}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_translation_job_archives_all_four_files(standin, make_config, tmp_path):
    """A job with subtitles gets all four files, checksums, info.json and archive.json."""
    standin.add_job(ID1, files=ALL_FILES, polls_until_done=3, video_size=300_000,
                    extra_fields={"video_duration": 12.5, "brand_new_field": {"x": 1}})
    config = make_config()
    result = await archive(config, Manifest.from_ids([ID1]))

    assert result.exit_status == 0
    [item] = result.items
    assert item.outcome is Outcome.ARCHIVED
    assert item.polls == 3
    folder = tmp_path / "archive" / ID1
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["video.mp4", "original.srt", "translated.srt", "no_caption.mp4",
         "info.json", "SHA256SUMS", "archive.json"])
    for kind in ALL_FILES:
        name = NAMES[kind]
        assert sha256(folder / name) == standin.file_sha256(ID1, name), name
    assert (folder / "video.mp4").stat().st_size == 300_000

    info = json.loads((folder / "info.json").read_text())
    assert info["_id"] == ID1 and info["video_status"] == 3
    assert info["brand_new_field"] == {"x": 1}  # unknown fields kept

    record = json.loads((folder / "archive.json").read_text())
    assert record["id"] == ID1
    assert record["archived_at"].endswith("Z")
    by_name = {f["name"]: f for f in record["files"]}
    assert set(by_name) == {"video.mp4", "original.srt", "translated.srt", "no_caption.mp4"}
    for name, entry in by_name.items():
        assert entry["size"] == (folder / name).stat().st_size
        assert entry["sha256"] == sha256(folder / name)
        assert entry["source_url"].startswith("http://127.0.0.1:")
        assert "?" not in entry["source_url"]  # signed query strings are not recorded


async def test_sha256sums_verifies_with_coreutils(standin, make_config, tmp_path):
    """SHA256SUMS is in the format `sha256sum -c` accepts."""
    standin.add_job(ID1, files=ALL_FILES)
    await archive(make_config(), Manifest.from_ids([ID1]))
    folder = tmp_path / "archive" / ID1
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=folder,
                           capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.count(": OK") == 4


async def test_talking_photo_job_archives_video_only(standin, make_config, tmp_path):
    """A job without audio_splits gets video.mp4 and the metadata files only."""
    standin.add_job(ID1, files=("video",), polls_until_done=2)
    result = await archive(make_config(), Manifest.from_ids([ID1]))
    assert result.items[0].outcome is Outcome.ARCHIVED
    folder = tmp_path / "archive" / ID1
    assert sorted(p.name for p in folder.iterdir()) == [
        "SHA256SUMS", "archive.json", "info.json", "video.mp4"]
    assert (folder / "SHA256SUMS").read_text() == (
        f"{standin.file_sha256(ID1, 'video.mp4')}  video.mp4\n")
    assert (folder / "video.mp4").read_bytes()[4:8] == b"ftyp"


async def test_failed_job_keeps_error_and_writes_nothing(standin, make_config, tmp_path):
    """Status 4 fails the id with Akool's error fields; no folder is created."""
    standin.add_job(ID1, outcome="failed", error_code=1015, error_reason="face not detected")
    standin.add_job(ID2)
    result = await archive(make_config(), Manifest.from_ids([ID1, ID2]))
    failed, ok = result.items
    assert failed.outcome is Outcome.FAILED
    assert failed.status == 4
    assert "face not detected" in failed.error and failed.error_code == 1015
    assert ok.outcome is Outcome.ARCHIVED
    assert result.exit_status == 1
    assert not (tmp_path / "archive" / ID1).exists()


async def test_job_that_never_finishes_is_pending(standin, make_config):
    """A job still processing at the deadline is left pending: exit status 3."""
    standin.add_job(ID1, outcome="never")
    standin.add_job(ID2)
    result = await archive(make_config(polling={"deadline": 0.3}), Manifest.from_ids([ID1, ID2]))
    pending, ok = result.items
    assert pending.outcome is Outcome.PENDING and pending.status == 2
    assert pending.polls >= 2  # polled again before giving up
    assert ok.outcome is Outcome.ARCHIVED
    assert result.exit_status == 3


async def test_permanent_business_codes_fail_that_id_only(standin, make_config):
    """1008 (unknown id), 1009 and an unknown code fail their id without retries."""
    standin.add_job(ID2, business_code=1009)
    standin.add_job(ID3, business_code=4242)
    standin.add_job("ok-job", files=("video",))
    result = await archive(make_config(), Manifest.from_ids(["not-on-akool", ID2, ID3, "ok-job"]))
    outcomes = {i.id: i for i in result.items}
    assert outcomes["not-on-akool"].error_code == 1008
    assert outcomes[ID2].error_code == 1009
    assert outcomes[ID3].error_code == 4242
    for item_id in ("not-on-akool", ID2, ID3):
        assert outcomes[item_id].outcome is Outcome.FAILED
        assert outcomes[item_id].polls == 1
    assert standin.polls[ID2] == 1 and standin.polls[ID3] == 1  # not retried
    assert outcomes["ok-job"].outcome is Outcome.ARCHIVED


async def test_transient_api_failures_are_retried(standin, make_config):
    """429 (with Retry-After), 5xx, an HTML page, a reset and code 1005 are retried."""
    standin.add_job(ID1, api_faults=[(429, 0), 502, "html", ("code", 1005), "reset"])
    result = await archive(make_config(api={"retries": {"attempts": 6, "wait_initial": 0.01,
                                                        "wait_max": 0.05}}),
                           Manifest.from_ids([ID1]))
    assert result.items[0].outcome is Outcome.ARCHIVED
    assert standin.polls[ID1] >= 6


async def test_transient_failures_give_up_after_bounded_attempts(standin, make_config):
    """A job whose API answers 503 forever fails after `attempts` requests, no more."""
    standin.add_job(ID1, api_faults=[503] * 50)
    result = await archive(make_config(), Manifest.from_ids([ID1]))
    assert result.items[0].outcome is Outcome.FAILED
    assert "503" in result.items[0].error
    assert standin.polls[ID1] == 4  # api.retries.attempts


async def test_bad_credentials_stop_the_run(standin, make_config, tmp_path):
    """Code 1101 stops everything at once: few API calls, nothing archived."""
    ids = [f"job{n:04d}" for n in range(200)]
    for i in ids:
        standin.add_job(i)
    config = make_config(api={"api_key": "wrong-key"})
    with pytest.raises(CredentialsError) as caught:
        await archive(config, Manifest.from_ids(ids))
    assert "1101" in str(caught.value)
    assert standin.api_calls <= config.concurrency.polls
    assert all_files(tmp_path / "archive") == []


async def test_bearer_token_is_sent_as_authorization(standin, make_config):
    """api.token authenticates with `Authorization: Bearer` and no x-api-key."""
    standin.add_job(ID1)
    config = make_config(api={"api_key": None, "token": "bearer-token-for-tests-31337"})
    result = await archive(config, Manifest.from_ids([ID1]))
    assert result.items[0].outcome is Outcome.ARCHIVED
    headers = standin.api_headers[-1]
    assert headers["Authorization"] == "Bearer bearer-token-for-tests-31337"
    assert "x-api-key" not in headers


async def test_rerun_makes_no_api_call_and_downloads_nothing(standin, make_config, tmp_path):
    """Ids whose archive.json exists are skipped before any network call."""
    for i in (ID1, ID2):
        standin.add_job(i, files=ALL_FILES)
    manifest = Manifest.from_ids([ID1, ID2])
    first = await archive(make_config(), manifest)
    assert first.count(Outcome.ARCHIVED) == 2
    calls, file_requests = standin.api_calls, sum(standin.file_requests.values())
    before = {p: p.stat().st_mtime_ns for p in all_files(tmp_path / "archive")}

    second = await archive(make_config(), manifest)
    assert second.count(Outcome.ALREADY_ARCHIVED) == 2 and second.exit_status == 0
    assert standin.api_calls == calls
    assert sum(standin.file_requests.values()) == file_requests
    assert {p: p.stat().st_mtime_ns for p in all_files(tmp_path / "archive")} == before


async def test_truncated_download_is_retried_and_complete(standin, make_config, tmp_path):
    """A body cut short of its Content-Length is never committed; the retry gets it all."""
    standin.add_job(ID1, video_size=500_000, file_faults={"video": ["truncate", 503]})
    result = await archive(make_config(), Manifest.from_ids([ID1]))
    assert result.items[0].outcome is Outcome.ARCHIVED
    video = tmp_path / "archive" / ID1 / "video.mp4"
    assert sha256(video) == standin.file_sha256(ID1, "video.mp4")
    assert standin.file_requests[(ID1, "video.mp4")] == 3


async def test_failed_download_leaves_nothing_under_final_names(standin, make_config, tmp_path):
    """A file that keeps failing fails the item: no final file, only resumable partials."""
    standin.add_job(ID1, files=ALL_FILES, video_size=400_000,
                    file_faults={"translated_srt": [404] * 10})
    standin.add_job(ID2, video_size=400_000, file_faults={"video": ["truncate"] * 10})
    standin.add_job(ID3, file_faults={"video": [400]})
    result = await archive(make_config(), Manifest.from_ids([ID1, ID2, ID3]))
    assert [i.outcome for i in result.items] == [Outcome.FAILED] * 3
    assert "404" in result.items[0].error
    assert "bytes" in result.items[1].error or "cut short" in result.items[1].error
    assert "HTTP 400" in result.items[2].error
    leftovers = [p.relative_to(tmp_path / "archive") for p in all_files(tmp_path / "archive")]
    # Only hidden temporary names: nothing that looks like an archived file.
    assert all(p.name.startswith(".") and ".part" in p.name for p in leftovers), leftovers
    assert not (tmp_path / "archive" / ID3).exists()  # a permanent error keeps nothing


async def test_no_temporary_files_after_success(standin, make_config, tmp_path):
    """After a clean run only final names exist: no .part or .tmp file."""
    for n in range(6):
        standin.add_job(f"job{n}", files=ALL_FILES, file_faults={"no_caption": [500]})
    await archive(make_config(), Manifest.from_ids([f"job{n}" for n in range(6)]))
    names = [p.name for p in all_files(tmp_path / "archive")]
    assert len(names) == 6 * 7
    assert not [n for n in names if n.startswith(".")]


async def test_api_key_appears_nowhere(standin, make_config, tmp_path, caplog):
    """The key is in no archived file, no log line and no result field."""
    caplog.set_level("DEBUG", logger="archiver")
    standin.add_job(ID1, files=ALL_FILES, polls_until_done=2, api_faults=[500])
    standin.add_job(ID2, outcome="failed")
    result = await archive(make_config(), Manifest.from_ids([ID1, ID2, "missing"]))
    assert result.count(Outcome.ARCHIVED) == 1
    for path in all_files(tmp_path / "archive"):
        assert API_KEY.encode() not in path.read_bytes(), path
    assert API_KEY not in caplog.text
    assert API_KEY not in repr(result)
    # The key really was sent to the API - and never to the file host.
    assert standin.api_headers[-1]["x-api-key"] == API_KEY


async def test_concurrency_is_bounded_by_workers_not_ids(standin, make_config):
    """300 ids never mean 300 tasks: the run uses a fixed pool of workers."""
    ids = [f"bulk{n:05d}" for n in range(300)]
    for i in ids:
        standin.add_job(i, polls_until_done=2, video_size=2048)
    peak = 0
    stop = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, len(asyncio.all_tasks()))
            await asyncio.sleep(0.005)

    sampler = asyncio.create_task(sample())
    config = make_config(concurrency={"polls": 8, "downloads": 4})
    result = await archive(config, Manifest.from_ids(ids))
    stop.set()
    await sampler
    assert result.count(Outcome.ARCHIVED) == 300
    # 8 pollers + 4 downloaders + 4 file tasks + the server's handlers and this test's own.
    assert peak < 60, peak


def test_archive_sync_takes_archives_keywords(served, tmp_path):
    """The library's blocking entry point passes every keyword on, typed: a dry run
    writes nothing; a run on a given Archive (here: one in memory) archives into it."""
    from archiver.archive import Archive
    from archiver.config import Config
    from archiver.manifest import Manifest
    from archiver.run import archive_sync
    from archiver.testing.memory import MemoryBackend

    standin, url = served
    standin.add_job(ID1)
    config = Config.model_validate(config_dict(url, tmp_path / "archive"))
    dry = archive_sync(config, Manifest.from_ids([ID1]), dry_run=True)
    assert dry.items[0].outcome is Outcome.READY and not (tmp_path / "archive").exists()
    memory = MemoryBackend()
    result = archive_sync(config, Manifest.from_ids([ID1]), storage=Archive(memory))
    assert result.items[0].outcome is Outcome.ARCHIVED
    assert "archive.json" in memory.files[ID1]
