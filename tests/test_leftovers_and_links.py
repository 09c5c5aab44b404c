"""What a failed item leaves behind, and symbolic links planted below the archive root.

Kept bytes: an item keeps its partial downloads only when a later run can resume them
(interrupted, network trouble, time limit, a refused URL that is not expired); an item
that failed for good or expired leaves nothing. verify and status do not trip over the
temporaries kept.

Planted links: whoever can write into the archive root could plant symbolic links where
a run writes. For each spot a link points at a file outside the root (a victim with known
content) or at a path outside that does not exist; after the run the victim is unchanged
and nothing was created outside. Decided per spot:

- ``.video.mp4.part``, its sidecar, ``.info.json.tmp``, ``.archive.json.tmp``: the link is
  replaced (never followed) and the item archives correctly;
- ``<root>/<id>`` itself: that item fails with one line naming the folder; others archive;
- ``<root>/.archiver.lock``: the run does not start (StorageUnavailable, exit 2);
- a link at a final name of an archived item: verify reports it, never follows it.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from archiver.archive import Archive
from archiver.archive.verify import verify
from archiver.errors import StorageUnavailable
from archiver.manifest import Manifest
from archiver.models import Outcome
from archiver.run import archive
from archiver.storage import LocalBackend
from archiver.storage.s3 import S3Backend

from .conftest import ID1, ID2, ID3
from .s3server import (  # noqa: F401 - fixtures: moto_endpoint, s3
    S3Fixture,
    moto_endpoint_fixture,
    s3_fixture,
)

DAY_MS = 24 * 3600 * 1000
VICTIM = b"precious data outside the archive\n"
#: Big enough for several 64 KiB chunks: the sidecar is written from the second one.
SIZE = 300_000
#: A stall, not a truncation, cuts transfers short here: the half sent before it surely
#: reaches the client (a truncated body's last bytes may be dropped with the connection).
CUT = {"read_timeout": 0.25, "retries": {"attempts": 1, "wait_initial": 0.01, "wait_max": 0.05}}
RETRY_ONCE = {**CUT["retries"], "attempts": 2}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


async def keep_a_partial(standin, make_config, job: str = ID1, **scenario) -> Path:
    """A first run whose transfer is cut short: the item fails, its bytes are kept."""
    standin.add_job(job, video_size=SIZE, file_faults={"video": ["stall"]}, **scenario)
    result = await archive(make_config(downloads=CUT), Manifest.from_ids([job]))
    assert result.items[0].outcome is Outcome.FAILED
    assert result.items[0].error_kind == "download_transient"
    folder = make_config().storage.local.root / job
    assert {".video.mp4.part", ".video.mp4.part.json"} <= set(entries(folder))
    assert (folder / ".video.mp4.part").stat().st_size > 0  # bytes really were stored
    return folder


# ----------------------------------------------------------- what failed items leave

async def test_expired_item_discards_partial_kept_by_an_earlier_run(standin, make_config):
    """Bytes kept by a run cut short go once a later run finds the results expired."""
    folder = await keep_a_partial(standin, make_config)
    standin.add_job(ID1, create_time=int(time.time() * 1000) - 8 * DAY_MS, expired=True)
    result = await archive(make_config(), Manifest.from_ids([ID1]))
    assert result.items[0].outcome is Outcome.EXPIRED
    assert not folder.exists()


async def test_item_expiring_within_a_run_discards_its_partial(standin, make_config, tmp_path):
    """A transfer cut short, then 403 (results past 7 days): expired, nothing kept."""
    standin.add_job(ID1, video_size=SIZE, create_time=int(time.time() * 1000) - 8 * DAY_MS,
                    expired=True, file_faults={"video": ["stall"]})  # before the 403s
    result = await archive(make_config(downloads={**CUT, "retries": RETRY_ONCE}),
                           Manifest.from_ids([ID1]))
    assert result.items[0].outcome is Outcome.EXPIRED
    assert standin.file_bytes_sent[(ID1, "video.mp4")] >= SIZE // 2  # a prefix was stored
    assert standin.file_requests[(ID1, "video.mp4")] >= 2  # and the resume was refused
    assert not (tmp_path / "archive" / ID1).exists()


async def test_content_rejected_item_discards_every_partial(standin, make_config):
    """A rejected file fails the item for good: the other file's kept partial goes too."""
    files = ("video", "no_caption")
    standin.add_job(ID1, files=files, no_caption_size=SIZE,
                    file_faults={"no_caption": ["stall"]})
    first = await archive(make_config(downloads=CUT), Manifest.from_ids([ID1]))
    folder = make_config().storage.local.root / ID1
    assert first.items[0].outcome is Outcome.FAILED
    assert ".no_caption.mp4.part" in entries(folder)

    standin.add_job(ID1, files=files, no_caption_size=SIZE,
                    file_faults={"video": ["html200"] * 5})
    # One download slot: no_caption.mp4 waits for it and never opens its partial.
    second = await archive(make_config(concurrency={"downloads": 1}), Manifest.from_ids([ID1]))
    assert second.items[0].outcome is Outcome.FAILED
    assert second.items[0].error_kind == "content"
    assert not folder.exists()


async def test_job_failed_at_akool_discards_kept_partial(standin, make_config):
    """A job that now fails at Akool (no download attempted) loses the bytes kept for it."""
    folder = await keep_a_partial(standin, make_config)
    standin.add_job(ID1, outcome="failed")
    result = await archive(make_config(), Manifest.from_ids([ID1]))
    assert result.items[0].outcome is Outcome.FAILED
    assert result.items[0].error_kind == "job_failed"
    assert not folder.exists()


async def test_refused_url_not_expired_keeps_partial(standin, make_config):
    """A 404 on a recent job may be refreshed next run: its partial bytes are kept."""
    folder = await keep_a_partial(standin, make_config)
    standin.add_job(ID1, video_size=SIZE, file_faults={"video": [404] * 10})
    result = await archive(make_config(), Manifest.from_ids([ID1]))
    assert result.items[0].outcome is Outcome.FAILED
    assert result.items[0].error_kind == "url_gone"
    assert ".video.mp4.part" in entries(folder)


# ---------------------------------------------------------------- verify and status

@pytest.fixture(params=["local", "s3"])
async def reader(request, tmp_path):
    """An opened storage of either backend plus a function planting a temporary in it."""
    if request.param == "local":
        root = tmp_path / "archive"
        storage = LocalBackend(root)

        def plant(item: str, name: str) -> None:
            (root / item).mkdir(parents=True, exist_ok=True)
            (root / item / name).write_bytes(b"kept bytes")
    else:
        s3: S3Fixture = request.getfixturevalue("s3")
        storage = S3Backend(s3.bucket, "archive/", endpoint_url=s3.endpoint,
                            region="us-east-1", addressing_style="path")

        def plant(item: str, name: str) -> None:
            s3.client.put_object(Bucket=s3.bucket, Key=f"archive/{item}/{name}",
                                 Body=b"kept bytes")
    await storage.open()
    try:
        yield storage, plant
    finally:
        await storage.close()


TEMPORARIES = (".no_caption.mp4.part", ".no_caption.mp4.part.json", ".info.json.tmp")


async def test_verify_and_status_ignore_kept_temporaries(reader, standin, make_config):
    """Temporaries in an archived item and in an unarchived one: verify OK, status right."""
    storage, plant = reader
    standin.add_job(ID1)
    result = await archive(make_config(), Manifest.from_ids([ID1]), storage=Archive(storage))
    assert result.exit_status == 0
    await storage.open()
    for name in TEMPORARIES:
        plant(ID1, name)  # e.g. an earlier run's partial of a file no longer offered
        plant(ID2, name)  # an item whose transfer was cut short: bytes kept to resume
    for ids in (None, [ID1, ID2, ID3]):
        checked = await verify(storage, ids)
        assert checked.ok, [str(p) for p in checked.problems]
        assert (checked.items, checked.files) == (1, 1)
    assert await Archive(storage).item_states([ID1, ID2, ID3]) == {
        ID1: "archived", ID2: "partial", ID3: "absent"}
    assert await Archive(storage).list_archived() == [ID1]


# ------------------------------------------------------------- links in item folders

@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder outside the archive root holding a victim file."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "victim").write_bytes(VICTIM)
    return folder


def untouched(outside: Path) -> None:
    assert entries(outside) == ["victim"]  # nothing created outside the root
    assert (outside / "victim").read_bytes() == VICTIM


@pytest.mark.parametrize("target", ["victim", "missing"])
@pytest.mark.parametrize("spot", [".video.mp4.part", ".video.mp4.part.json",
                                  ".info.json.tmp", ".archive.json.tmp"])
async def test_link_planted_at_a_temporary_name_is_replaced(standin, make_config, outside,
                                                            spot, target):
    """A link at a temporary name is never written or read through; the item archives."""
    folder = await keep_a_partial(standin, make_config)
    link = folder / spot
    link.unlink(missing_ok=True)
    link.symlink_to(outside / target)
    # Cut short once more, then resumed: every temporary name is written this run (a
    # loopback transfer in one piece never writes a sidecar).
    standin.add_file_faults(ID1, "video", "stall")
    result = await archive(make_config(downloads={**CUT, "retries": RETRY_ONCE}),
                           Manifest.from_ids([ID1]))
    assert result.items[0].outcome is Outcome.ARCHIVED, result.items[0].error
    assert standin.file_requests[(ID1, "video.mp4")] == 3
    untouched(outside)
    assert sha256(folder / "video.mp4") == standin.file_sha256(ID1, "video.mp4")
    assert entries(folder) == ["SHA256SUMS", "archive.json", "info.json", "video.mp4"]
    assert not [p for p in folder.iterdir() if p.is_symlink()]
    assert (await verify(LocalBackend(folder.parent), None)).ok


@pytest.mark.parametrize("target", ["folder", "archived-looking folder", "missing"])
async def test_item_folder_that_is_a_link_fails_only_that_item(standin, make_config,
                                                               outside, tmp_path, target):
    """<root>/<id> as a link: that item fails naming it, nothing outside is touched."""
    root = tmp_path / "archive"
    root.mkdir()
    if target == "archived-looking folder":
        (outside / "archive.json").write_text('{"files": []}')
    pointed = outside if target != "missing" else outside / "nowhere"
    (root / ID1).symlink_to(pointed)
    before = {p.name: p.read_bytes() for p in outside.iterdir()}
    standin.add_job(ID1, video_size=SIZE)
    standin.add_job(ID2)
    result = await archive(make_config(), Manifest.from_ids([ID1, ID2]))
    bad, good = result.items
    assert bad.outcome is Outcome.FAILED
    assert bad.error == f"item folder {root / ID1} is a symbolic link: refusing to use it"
    assert good.outcome is Outcome.ARCHIVED
    assert {p.name: p.read_bytes() for p in outside.iterdir()} == before
    assert (root / ID1).is_symlink()
    storage = LocalBackend(root)
    assert await Archive(storage).item_states([ID1, ID2]) == {ID1: "absent", ID2: "archived"}
    assert await Archive(storage).list_archived() == [ID2]


@pytest.mark.parametrize("target", ["victim", "missing"])
async def test_lock_file_that_is_a_link_stops_the_run(standin, make_config, outside,
                                                      tmp_path, target):
    """A link at <root>/.archiver.lock: the run does not start and nothing is truncated."""
    root = tmp_path / "archive"
    root.mkdir()
    (root / ".archiver.lock").symlink_to(outside / target)
    standin.add_job(ID1)
    with pytest.raises(StorageUnavailable, match=r"lock file .*\.archiver\.lock is a symbolic"):
        await archive(make_config(), Manifest.from_ids([ID1]))
    untouched(outside)
    assert entries(root) == [".archiver.lock"]
    assert standin.api_calls == 0


@pytest.mark.parametrize("name", ["video.mp4", "info.json"])
async def test_verify_reports_a_link_at_a_final_name(standin, make_config, tmp_path, name):
    """A final file swapped for a link to an identical copy outside: reported, not followed."""
    standin.add_job(ID1)
    assert (await archive(make_config(), Manifest.from_ids([ID1]))).exit_status == 0
    final = tmp_path / "archive" / ID1 / name
    copy = tmp_path / "copy"
    copy.write_bytes(final.read_bytes())
    final.unlink()
    final.symlink_to(copy)
    checked = await verify(LocalBackend(tmp_path / "archive"), None)
    assert [(p.id, p.file, p.kind) for p in checked.problems] == [(ID1, name, "corrupted")]
    assert "not followed" in checked.problems[0].detail
    os.unlink(final)
    final.write_bytes(copy.read_bytes())
    assert (await verify(LocalBackend(tmp_path / "archive"), None)).ok


async def test_archive_root_that_is_a_link_is_the_users_choice(standin, make_config, tmp_path):
    """The root itself may be a link (only entries below it are untrusted): all works."""
    (tmp_path / "real").mkdir()
    (tmp_path / "archive").symlink_to(tmp_path / "real")
    standin.add_job(ID1)
    first = await archive(make_config(), Manifest.from_ids([ID1]))
    assert first.items[0].outcome is Outcome.ARCHIVED
    assert sha256(tmp_path / "real" / ID1 / "video.mp4") == standin.file_sha256(ID1, "video.mp4")
    again = await archive(make_config(), Manifest.from_ids([ID1]))
    assert again.items[0].outcome is Outcome.ALREADY_ARCHIVED
    checked = await verify(LocalBackend(tmp_path / "archive"), None)
    assert checked.ok and checked.items == 1
