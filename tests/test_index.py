"""``archiver index``: the archive's static pages, from real runs against the stand-in,
on local disk and S3 (moto); what a real browser makes of them is test_index_browser.py.

The pages are no item: ``verify``, ``status``, the skip check and ``gc`` (at its most
eager, ``min_age`` 0) must leave them alone and say nothing about them.
"""

from __future__ import annotations

import html
import json
import re

import pytest

from archiver.archive import Archive
from archiver.archive.index import write_index
from archiver.archive.record import ArchiveRecord
from archiver.config import Config
from archiver.manifest import Manifest, ManifestItem
from archiver.models import FileRecord, Outcome
from archiver.pages.index import IndexFile, IndexItem, newest_first, render
from archiver.run import archive
from archiver.storage.names import index_page_name, is_index_page
from archiver.testing.memory import MemoryBackend

from .conftest import API_KEY, ID1, ID2, ID3, config_dict, run_cli, write_yaml
from .s3server import (  # noqa: F401 - fixtures: moto_endpoint, s3
    S3Fixture,
    aws_env,
    moto_endpoint_fixture,
    s3_fixture,
)

HOSTILE = '<img src=x onerror="window.pwned=1"></script><script>window.pwned=2</script>&amp;'


def articles(page: str) -> list[str]:
    """The ids of the items a page shows, in order."""
    return re.findall(r'<code class="id">([^<]*)</code>', page)


async def archive_three(standin, make_config, **storage: object) -> Config:
    """A real run of three ids (one with a hostile label) into the configured storage."""
    for job_id in (ID1, ID2, ID3):
        standin.add_job(job_id, files=("video", "original_srt"))
    config: Config = make_config(**({"storage": storage} if storage else {}))
    manifest = Manifest.from_ids([ManifestItem(ID1, "onboarding-es"),
                                  ManifestItem(ID2, HOSTILE), ID3])
    result = await archive(config, manifest)
    assert result.exit_status == 0
    return config


# ------------------------------------------------------------------ the page itself

def test_render_escapes_every_string_and_keeps_the_script_constant():
    """A hostile label, id, family, file name and error reach the page as text only."""
    items = [IndexItem(ID1, label=HOSTILE, family=HOSTILE, archived_at="2026-01-02T03:04:05Z",
                       files=(IndexFile(HOSTILE, 3, "ab" * 32), IndexFile("video.mp4", 9, ""))),
             IndexItem(ID2, error=HOSTILE)]
    page = render(items, generated_at="now")[0][1].decode()
    assert "<img src=x" not in page and "window.pwned=2</script>" not in page
    assert html.escape(HOSTILE) in page
    # One script only, the constant one, allowed by its hash; nothing of the items in it.
    scripts = re.findall(r"<script>(.*?)</script>", page, re.S)
    assert len(scripts) == 1 and "pwned" not in scripts[0]
    other = render([IndexItem(ID3, label="plain")], generated_at="now")[0][1].decode()
    assert re.findall(r"<script>(.*?)</script>", other, re.S) == scripts
    # A name with a slash is shown, never linked out of the item's folder.
    assert 'href="' + ID1 + '/video.mp4"' in page
    assert f'href="{ID1}/%3Cimg' not in page and "href=\"../" not in page


def test_render_orders_newest_first_and_pages_link_each_other():
    """Items newest first; pages of per_page items, each linking the next and previous."""
    items = [IndexItem(f"id{n:03d}", archived_at=f"2026-01-01T00:{n // 60:02d}:{n % 60:02d}Z")
             for n in range(7)]
    pages = render(newest_first(items), generated_at="now", per_page=3)
    assert [name for name, _ in pages] == ["index.html", "index-2.html", "index-3.html"]
    texts = [data.decode() for _, data in pages]
    assert [articles(t) for t in texts] == [["id006", "id005", "id004"],
                                            ["id003", "id002", "id001"], ["id000"]]
    assert 'rel="next" href="index-2.html"' in texts[0] and 'rel="prev"' not in texts[0]
    assert 'rel="prev" href="index.html"' in texts[1]
    assert 'rel="next" href="index-3.html"' in texts[1]
    assert 'rel="prev" href="index-2.html"' in texts[2] and 'rel="next"' not in texts[2]


def test_index_page_names():
    """index.html and index-N.html (N >= 2) are pages; nothing else is."""
    assert [index_page_name(n) for n in (1, 2, 10)] == ["index.html", "index-2.html",
                                                         "index-10.html"]
    assert all(map(is_index_page, ["index.html", "index-2.html", "index-10.html"]))
    assert not any(map(is_index_page, ["index-1.html", "index-02.html", "index.htm",
                                        "index-2.html.tmp", ".index.html.tmp", ID1]))


async def test_100000_items_split_into_pages_of_1000():
    """100,000 records (through the storage contract, in memory): 100 pages of 1,000
    items, newest first across pages, each page a bounded size."""
    backend = MemoryBackend()
    for n in range(100_000):
        item_id = f"{n:024x}"
        record = ArchiveRecord(
            id=item_id, label=f"clip {n}", archived_at=f"2026-{1 + n // 10_000:02d}-01T"
            f"{(n // 3600) % 24:02d}:{(n // 60) % 60:02d}:{n % 60:02d}Z",
            archiver_version="t", video_status=3, create_time=None, expires_at=None,
            files=(FileRecord("video.mp4", 1000 + n, f"{n:064x}", "https://cdn/x"),))
        backend.store(item_id, "archive.json", record.to_bytes())
    result = await write_index(backend)
    assert result.items == 100_000 and len(result.pages) == 100
    assert result.pages[:2] == ["index.html", "index-2.html"]
    assert result.pages[-1] == "index-100.html"
    first = backend.top["index.html"].data.decode()
    last = backend.top["index-100.html"].data.decode()
    assert articles(first)[:2] == [f"{99_999:024x}", f"{99_998:024x}"]
    assert len(articles(first)) == 1000 and articles(last)[-1] == f"{0:024x}"
    assert 'href="index-100.html">oldest' in first
    assert max(len(s.data) for s in backend.top.values()) < 2_000_000


# ------------------------------------------------------------------- local archives

async def test_index_of_a_real_run_shows_every_item_and_leaves_the_archive_alone(
        standin, make_config, tmp_path):
    """index.html of a real run: every id, label, file, size and SHA-256; then verify,
    status, the skip check and gc (min_age 0) leave the page alone and see no item in it."""
    config = await archive_three(standin, make_config)
    root = tmp_path / "archive"
    store = Archive.from_config(config.storage)
    result = await store.write_index()
    page = (root / "index.html").read_text()
    assert result.pages == ["index.html"] and result.items == 3
    assert set(articles(page)) == {ID1, ID2, ID3}
    for item_id in (ID1, ID2, ID3):
        record = json.loads((root / item_id / "archive.json").read_text())
        for file in record["files"]:
            assert f'href="{item_id}/{file["name"]}"' in page
            assert file["sha256"] in page
        assert f'<video controls preload="metadata" src="{item_id}/video.mp4"' in page
    assert "onboarding-es" in page and html.escape(HOSTILE) in page
    assert "video</span>" in page  # records without a family are videos
    assert sorted(p.name for p in root.iterdir() if p.is_file()) == [".archiver.lock",
                                                                      "index.html"]
    verified = await store.verify()
    assert verified.ok and verified.items == 3
    assert await store.list_archived() == sorted([ID1, ID2, ID3])
    garbage = await store.collect_garbage(None, min_age=0, dry_run=False)
    assert garbage.removed == [] and garbage.failures == []
    assert (root / "index.html").read_bytes() == page.encode()
    again = await archive(config, Manifest.from_ids([ID1, ID2, ID3]))
    assert [i.outcome for i in again.items] == [Outcome.ALREADY_ARCHIVED] * 3


async def test_fewer_pages_remove_the_pages_no_longer_linked(standin, make_config, tmp_path):
    """Pages of an earlier, longer index go; the archive's other files stay."""
    config = await archive_three(standin, make_config)
    root = tmp_path / "archive"
    (root / "index-7.html.bak").write_text("not ours")
    store = Archive.from_config(config.storage)
    assert (await store.write_index(per_page=1)).pages == [
        "index.html", "index-2.html", "index-3.html"]
    result = await store.write_index(per_page=2)
    assert result.pages == ["index.html", "index-2.html"] and result.removed == ["index-3.html"]
    assert sorted(p.name for p in root.iterdir() if p.is_file()) == [
        ".archiver.lock", "index-2.html", "index-7.html.bak", "index.html"]
    assert not list(root.glob(".*.tmp"))


def test_cli_index_of_a_folder_then_json(workdir, served):
    """`archiver index DIR` (no configuration needed), then --json with its document;
    an unreadable record is shown with its reason and warned about, exit 0."""
    standin, _ = served
    standin.add_job(ID1)
    standin.add_job(ID2)
    env = {"TEST_AKOOL_KEY": API_KEY}
    write_yaml(workdir / "videos.yaml", {"videos": [ID1, ID2]})
    assert run_cli("run", "videos.yaml", cwd=workdir, env=env).returncode == 0
    (workdir / "archive" / ID2 / "archive.json").write_text(
        '{"format": "<b>bold</b>"}')
    (workdir / "archiver.yaml").rename(workdir / "elsewhere.yaml")
    done = run_cli("index", "archive", cwd=workdir)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("archiver index: 2 item(s) on 1 page(s)")
    assert f"{ID2}/archive.json cannot be read as a record" in done.stderr
    page = (workdir / "archive" / "index.html").read_text()
    assert ("archive.json unreadable: format: expected a whole number, got the string "
            "&#x27;&lt;b&gt;bold&lt;/b&gt;&#x27;") in page
    done = run_cli("index", "archive", "--json", "--per-page", "1", cwd=workdir)
    document = json.loads(done.stdout)
    assert document["command"] == "index" and document["exit_status"] == 0
    assert document["totals"] == {"items": 2, "pages": 2, "bytes": document["totals"]["bytes"],
                                  "unreadable": 1}
    assert document["pages"] == ["index.html", "index-2.html"]
    assert document["unreadable"] == [ID2] and document["fatal_error"] is None
    missing = run_cli("index", "no-such-folder", cwd=workdir)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
    assert "no-such-folder: no such folder" in missing.stderr


def test_run_index_refreshes_the_page_and_a_failure_is_only_a_warning(workdir, served):
    """run --index writes index.html after the run; when it cannot be written, the run
    warns and keeps its own exit status (1 here: an id failed)."""
    standin, _ = served
    standin.add_job(ID1)
    env = {"TEST_AKOOL_KEY": API_KEY}
    write_yaml(workdir / "videos.yaml", {"videos": [ID1]})
    done = run_cli("run", "videos.yaml", "--index", cwd=workdir, env=env)
    assert done.returncode == 0, done.stderr
    assert ID1 in (workdir / "archive" / "index.html").read_text()
    # index.html a folder: the page cannot be written.
    (workdir / "archive" / "index.html").unlink()
    (workdir / "archive" / "index.html").mkdir()
    standin.add_job(ID2, outcome="failed")
    write_yaml(workdir / "videos.yaml", {"videos": [ID1, ID2]})
    done = run_cli("run", "videos.yaml", "--index", cwd=workdir, env=env)
    assert done.returncode == 1, done.stderr
    assert "archiver: warning: the index was not refreshed: cannot write" in done.stderr
    assert "index.html" in done.stderr and "Traceback" not in done.stderr


# ----------------------------------------------------------------------------- S3

async def test_s3_index_is_an_html_object_that_verify_status_and_gc_leave_alone(
        standin, make_config, s3):
    """On S3 the pages are objects under the prefix, served as text/html; gc (min_age 0),
    verify, status and the skip check leave them alone and see no item in them."""
    config = await archive_three(standin, make_config, **s3.storage())
    store = Archive.from_config(config.storage)
    await store.open()
    try:
        result = await store.write_index(per_page=2)
        assert result.location == f"s3://{s3.bucket}/akool/index.html"
        assert result.pages == ["index.html", "index-2.html"]
        head = s3.client.head_object(Bucket=s3.bucket, Key="akool/index.html")
        assert head["ContentType"] == "text/html; charset=utf-8"
        page = s3.read("akool/index.html").decode()
        assert f'src="{ID1}/video.mp4"' in page or f'src="{ID2}/video.mp4"' in page
        assert 'href="index-2.html"' in page
        verified = await store.verify()
        assert verified.ok and verified.items == 3
        assert await store.list_archived() == sorted([ID1, ID2, ID3])
        garbage = await store.collect_garbage(None, min_age=0, dry_run=False)
        assert garbage.removed == [] and garbage.failures == []
        # Back to one page: the second goes.
        assert (await store.write_index()).removed == ["index-2.html"]
    finally:
        await store.close()
    keys = s3.list_keys("akool/")
    assert "akool/index.html" in keys and "akool/index-2.html" not in keys
    again = await archive(config, Manifest.from_ids([ID1, ID2, ID3]))
    assert [i.outcome for i in again.items] == [Outcome.ALREADY_ARCHIVED] * 3


def test_cli_index_on_s3_with_a_configuration(tmp_path, s3):
    """`archiver index -c CONFIG` publishes into the configured S3 prefix."""
    data = config_dict("http://127.0.0.1:9", tmp_path / "unused")
    data["storage"] = s3.storage("a/b/")
    write_yaml(tmp_path / "archiver.yaml", data)
    done = run_cli("index", "-c", "archiver.yaml", cwd=tmp_path, env=aws_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(f"s3://{s3.bucket}/a/b/index.html")
    assert "Nothing is archived yet." in s3.read("a/b/index.html").decode()


@pytest.mark.parametrize("name", ["index.html", "index-3.html"])
async def test_memory_backend_lists_published_pages_as_strays(name):
    """The in-memory backend keeps pages at the top, listed as strays, never as items."""
    backend = MemoryBackend()
    await backend.publish(name, b"<p>x</p>", content_type="text/html")
    listing = await backend.listing(None)
    assert [e.name for e in listing.strays] == [name] and listing.folders == {}
