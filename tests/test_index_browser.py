"""The index page in a real headless browser (Debian's chromium over the DevTools
protocol, ``tests/browser.py``), on an archive made by a real ``archiver run --index``
against the stand-in: opened from the folder (file://) and from a web server serving
it, with no console error; its players load the archived files; the search filters;
a hostile label stays text; a screenshot is kept in ``test-artifacts/`` (and copied to
``docs/img/index-page.png`` with ``ARCHIVER_UPDATE_SCREENSHOTS=1``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web

from archiver.archive.record import ArchiveRecord, sha256sums
from archiver.models import FileRecord
from archiver.storage.local import LocalBackend
from archiver.testing import media

from .browser import Chromium, Page, artifact, running_chromium
from .conftest import API_KEY, ID1, ID2, ID3, run_cli, write_yaml

#: Written into a label: it would set window.pwned if it ever ran.
HOSTILE = ('<img src=x onerror="window.pwned=1"></script>'
           '<script>window.pwned=2</script>"\'&amp;')
AUDIO_ID = "64dd92c1f0b6684651e90eff"
DOCS_SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "img" / "index-page.png"


@pytest.fixture(scope="module")
def chromium() -> Iterator[Chromium]:
    """One browser for the module's tests (each opens its own tab)."""
    with running_chromium() as browser:
        yield browser


async def plant_audio_item(root: Path) -> None:
    """An item with a sound and a picture, committed through the storage contract (the
    run archives Akool's video family; the page must show the other kinds too)."""
    files = {"speech.mp3": media.mp3_bytes(30_000, b"a"), "cover.png": media.png_bytes(3000)}
    backend = LocalBackend(root)
    await backend.open()
    writer = backend.item(AUDIO_ID)
    records = []
    for name, data in files.items():
        sink = await writer.open_file(name)
        await sink.write(data)
        digest = hashlib.sha256(data).hexdigest()
        await sink.commit(len(data), digest)
        records.append(FileRecord(name, len(data), digest, f"https://cdn.example/{name}"))
    await writer.put_small("info.json", b"{}\n")
    await writer.put_small("SHA256SUMS", sha256sums(records))
    record = ArchiveRecord(id=AUDIO_ID, label="welcome voice-over", archived_at="2020-01-01T"
                           "00:00:00Z", archiver_version="t", video_status=3,
                           create_time=None, expires_at=None, files=tuple(records))
    assert await writer.commit(record.to_bytes())


@pytest.fixture
async def archive_root(workdir: Path, served) -> Path:
    """A real `archiver run --index` of three ids (one playable video, one hostile
    label) beside a planted audio item: the folder holding index.html."""
    standin, _ = served
    standin.add_job(ID1, files=("video", "original_srt"),
                    video_bytes=media.m4a_bytes(60_000, b"v"))  # an MP4 Chromium can play
    standin.add_job(ID2)
    standin.add_job(ID3, files=("video", "translated_srt"))
    root = workdir / "archive"
    await plant_audio_item(root)
    write_yaml(workdir / "videos.yaml", {"videos": [
        {"id": ID1, "label": "onboarding-es"}, {"id": ID2, "label": HOSTILE},
        {"id": ID3, "label": "launch teaser"}]})
    done = await asyncio.to_thread(run_cli, "run", "videos.yaml", "--index", cwd=workdir,
                                   env={"TEST_AKOOL_KEY": API_KEY})
    assert done.returncode == 0, done.stderr
    assert (root / "index.html").is_file()
    return root


@pytest.fixture
async def web_server(archive_root: Path) -> AsyncIterator[str]:
    """A plain static web server of the archive folder, on loopback."""
    app = web.Application()
    app.router.add_static("/", archive_root)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def player(item_id: str, name: str) -> str:
    return f'document.querySelector(\'[src="{item_id}/{name}"]\')'


async def check_players(page: Page) -> None:
    """The video and audio players loaded their files' metadata, the thumbnail drew."""
    for item_id, name in ((ID1, "video.mp4"), (AUDIO_ID, "speech.mp3")):
        await page.wait_for(f"{player(item_id, name)}.readyState > 0")
        duration = await page.evaluate(f"{player(item_id, name)}.duration")
        assert duration > 0, (item_id, name)
    await page.wait_for(f"{player(AUDIO_ID, 'cover.png')}.naturalWidth > 0")


async def test_index_page_from_the_folder(chromium, archive_root):
    """file://: no console error, players loaded, search filters, the hostile label is
    shown as text and ran nothing; screenshot kept."""
    async with chromium.page() as page:
        await page.goto((archive_root / "index.html").as_uri())
        await check_players(page)
        ids = await page.evaluate(
            "[...document.querySelectorAll('article code.id')].map(e => e.textContent)")
        assert sorted(ids[:3]) == sorted([ID1, ID2, ID3]) and ids[3] == AUDIO_ID  # newest first
        # The hostile label: literally there, and nothing of it ran.
        assert await page.evaluate("typeof window.pwned") == "undefined"
        labels = await page.evaluate(
            "[...document.querySelectorAll('article .label')].map(e => e.textContent)")
        assert HOSTILE in labels
        assert await page.evaluate("document.scripts.length") == 1
        assert await page.evaluate("document.querySelectorAll('article img').length") == 1
        await page.screenshot(artifact("index-page.png"))
        # The search: words of a label, of a file name; then nothing; then everything.
        shown = "[...document.querySelectorAll('article')].filter(a => !a.hidden).length"
        search = ("(words) => { const box = document.getElementById('search'); "
                  "box.value = words; box.dispatchEvent(new Event('input')); }")
        for words, expected in (("onboarding", 1), ("translated.srt", 1), ("SPEECH mp3", 1),
                                ("video", 4), ("no such thing", 0), ("", 4)):
            await page.evaluate(f"({search})({json.dumps(words)})")
            assert await page.evaluate(shown) == expected, words
        assert await page.evaluate("document.getElementById('none').hidden") is True
        assert page.problems == [], page.problems
    if os.environ.get("ARCHIVER_UPDATE_SCREENSHOTS"):  # the docs' copy, on request only
        DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(artifact("index-page.png"), DOCS_SCREENSHOT)


async def test_index_pages_over_http(chromium, archive_root, web_server, workdir):
    """Served by a web server: no console error, players loaded; then the pages of a
    paged index lead from one to the next, the last holding the oldest item."""
    async with chromium.page() as page:
        await page.goto(f"{web_server}/index.html")
        await check_players(page)
        done = await asyncio.to_thread(run_cli, "index", "archive", "--per-page", "2",
                                       cwd=workdir)
        assert done.returncode == 0, done.stderr
        await page.goto(f"{web_server}/index.html")
        assert await page.evaluate("document.querySelectorAll('article').length") == 2
        await page.goto(await page.evaluate("document.querySelector('a[rel=next]').href"))
        assert await page.evaluate("location.pathname") == "/index-2.html"
        await page.wait_for(f"{player(AUDIO_ID, 'speech.mp3')}.readyState > 0")
        assert await page.evaluate("typeof window.pwned") == "undefined"
        assert page.problems == [], page.problems
