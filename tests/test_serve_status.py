"""`archiver serve`'s status page (GET /, GET /status.json): a real server fed real
signed callbacks by the stand-in, the page and its JSON checked for content, no signed
URL anywhere, a hostile error text inert in a real headless chromium (tests/browser.py),
and the listener's basic auth on a real `archiver serve` process."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import socket
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from archiver.config import parse_config
from archiver.errors import ConfigError
from archiver.models import RETENTION_SECONDS
from archiver.service.overview import read_overview
from archiver.service.serve import JOURNAL_NAME, Server
from archiver.service.status import LIMIT, check_basic_auth, is_loopback
from archiver.testing.standin import AkoolStandIn, generated_job_id
from tests.browser import Chromium, artifact, running_chromium
from tests.conftest import API_KEY, write_yaml
from tests.servers import wait_for
from tests.test_serve import CLIENT_ID, CLIENT_SECRET, make

#: Would set window.pwned if any of it ever ran; shown literally instead.
HOSTILE = ('<img src=x onerror="window.pwned=1"></script><script>window.pwned=2</script>'
           "\"'&amp; see https://cdn.example/v.mp4?Expires=1&Signature=LEAKED-SIG")
HOSTILE_TYPE = '<b onmouseover="window.pwned=3">reage</b>'
DOCS_SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "img" / "serve-status.png"
DAY = 86400.0


@pytest.fixture(scope="module")
def chromium() -> Iterator[Chromium]:
    """One browser for the module."""
    with running_chromium() as browser:
        yield browser


@pytest.fixture
def standin() -> AkoolStandIn:
    return AkoolStandIn(api_key=API_KEY, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)


async def get(url: str, **kwargs: Any) -> tuple[int, str, dict[str, str]]:
    async with aiohttp.ClientSession() as http, http.get(url, **kwargs) as resp:
        return resp.status, await resp.text(), dict(resp.headers)


def age_jobs(journal: Path, days: dict[str, float]) -> None:
    """Move jobs' first callback *days* back: the days a test cannot wait for."""
    db = sqlite3.connect(journal, timeout=30)
    with db:
        for job, back in days.items():
            db.execute("UPDATE jobs SET received_at = received_at - ? WHERE id = ?",
                       (back * DAY, job))
    db.close()


def journal_payloads(journal: Path) -> str:
    """Every payload the journal holds (the result URLs Akool sent are in them)."""
    db = sqlite3.connect(journal, timeout=30)
    try:
        return " ".join(row[0] for row in db.execute("SELECT payload FROM jobs"))
    finally:
        db.close()


@dataclass(frozen=True)
class Scene:
    """A server that has received the callbacks of :func:`scene` and finished them."""

    base: str  # http://127.0.0.1:PORT
    root: Path
    archived: list[str]
    late: str  # pending, first callback 6.5 days ago
    soon: str  # pending, 5.5 days ago
    fresh: str  # pending, now
    failed: str  # failed at Akool with a hostile reason and type


@contextlib.asynccontextmanager
async def scene(standin: AkoolStandIn, base_url: str, tmp_path: Path) -> AsyncIterator[Scene]:
    """A real server fed real signed callbacks: three jobs archived, three pending (two
    moved days back), one failed at Akool with a hostile reason and type, one tampered
    and one stale callback refused; yielded once every final job is done."""
    archived = [generated_job_id(i, "ok") for i in range(3)]
    late, soon, fresh = (generated_job_id(i, "wait") for i in range(3))
    failed = generated_job_id(1, "bad")
    for job in archived:
        standin.add_job(job, video_size=4096)
    for job in (late, soon, fresh):
        standin.add_job(job, outcome="never")
    standin.add_job(failed, outcome="failed", error_reason=HOSTILE, callback_type=HOSTILE_TYPE)
    root = tmp_path / "archive"
    server = Server(make(base_url, root))
    async with server.running() as url, standin.callbacks(url) as sender:
        for job in [*archived, fresh, soon, late, failed]:
            assert (await standin.deliver(sender, job)).status == 200
        assert (await sender.post(sender.tampered(sender.body(fresh)))).status == 401
        assert (await sender.post(sender.stale(fresh, 3600))).status == 401
        age_jobs(root / JOURNAL_NAME, {late: 6.5, soon: 5.5})
        base = url.rsplit("/akool/", 1)[0]

        async def finished() -> bool:
            _, body, _ = await get(f"{base}/status.json")
            return len(json.loads(body)["latest"]) == 4
        await wait_for(finished)
        yield Scene(base, root, archived, late, soon, fresh, failed)


async def test_json_and_page_show_pending_outcomes_failures_and_no_url(
        standin: AkoolStandIn, base_url: str, tmp_path: Path) -> None:
    """The JSON lists the pending jobs most urgent first with their time left (from the
    first callback), the outcomes, the failure with its reason, the callbacks by result
    and reason; neither it nor the page holds a signed URL; the page escapes."""
    async with scene(standin, base_url, tmp_path) as s:
        status, body, headers = await get(f"{s.base}/status.json")
        assert status == 200 and headers["Content-Type"].startswith("application/json")
        status, page, page_headers = await get(f"{s.base}/")
        assert status == 200 and page_headers["Content-Type"].startswith("text/html")
        assert (await get(f"{s.base}/metrics"))[0] == 200  # /metrics stays open
        signed = standin.file_url(s.archived[0], "video")
        payloads = journal_payloads(s.root / JOURNAL_NAME)

    doc = json.loads(body)
    assert doc["schema"] == 1 and doc["server"]["uptime_seconds"] >= 0
    # Pending: most urgent first; time left counted from the first callback.
    assert [j["id"] for j in doc["pending"]] == [s.late, s.soon, s.fresh]
    assert doc["jobs"]["pending"] == 3
    for job, back in zip(doc["pending"], (6.5, 5.5, 0.0), strict=True):
        assert job["akool_status"] == 2 and job["akool_status_text"] == "processing"
        left = job["seconds_left_at_most"]
        assert (7 - back) * DAY - 600 < left <= (7 - back) * DAY, job
        first = time.mktime(time.strptime(job["first_callback_at"], "%Y-%m-%dT%H:%M:%SZ"))
        deadline = time.mktime(time.strptime(job["deadline_at_latest"], "%Y-%m-%dT%H:%M:%SZ"))
        assert deadline - first == RETENTION_SECONDS
    # Outcomes, failures with their reason, counts.
    outcomes = {j["id"]: j["outcome"] for j in doc["latest"]}
    assert outcomes == {**dict.fromkeys(s.archived, "archived"), s.failed: "failed"}
    [failure] = doc["failures"]
    assert failure["id"] == s.failed and failure["type"] == HOSTILE_TYPE
    # The family the type named (talking photo: video); the hostile type named none.
    assert {j["family"] for j in doc["pending"]} == {"video"}
    assert failure["family"] is None
    assert "(not known)" in page
    assert "<script>window.pwned=2</script>" in failure["error"]
    assert "error_code 1015" in failure["error"]
    assert doc["jobs"]["done"] == {"archived": 3, "failed": 1}
    assert doc["rates"]["finished_in_window"] == {"archived": 3, "failed": 1}
    assert doc["rates"]["finished_since_start"] == {"archived": 3, "failed": 1}
    assert doc["callbacks"] == {"received": 9, "accepted": {"new": 7, "duplicate": 0},
                                "refused": {"bad_signature": 1, "stale": 1}}
    # No signed URL: the result URL was in the payloads, its query is nowhere.
    assert "Signature=" in signed and signed in payloads
    for text in (body, page):
        assert signed not in text and "Signature" not in text and "LEAKED-SIG" not in text
        assert "Expires=" not in text and CLIENT_SECRET not in text and API_KEY not in text
    assert "https://cdn.example/v.mp4 (error_code 1015)" in failure["error"]
    # The page: every job, escaped, under a policy that runs no script.
    for job in (s.late, s.soon, s.fresh, s.failed, *s.archived):
        assert job in page
    assert "<script>window" not in page and "&lt;script&gt;window.pwned=2" in page
    policy = page_headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script" not in policy
    assert "unsafe" not in policy and page_headers["X-Content-Type-Options"] == "nosniff"


async def test_in_a_browser_hostile_text_stays_text(
        standin: AkoolStandIn, base_url: str, tmp_path: Path, chromium: Chromium) -> None:
    """In chromium: no console error or CSP report, the hostile error text and type are
    shown literally and nothing of them ran; urgency is marked; screenshot kept."""
    async with scene(standin, base_url, tmp_path) as s, chromium.page() as tab:
        await tab.goto(f"{s.base}/")
        cells = await tab.evaluate(
            "[...document.querySelectorAll('td')].map(e => e.textContent)")
        pwned = await tab.evaluate("typeof window.pwned")
        counts = await tab.evaluate("[document.scripts.length, document.images.length, "
                                    "document.querySelectorAll('td b').length]")
        marked = await tab.evaluate("[...document.querySelectorAll('td.late, td.soon')]"
                                    ".map(e => e.className)")
        shown = await tab.evaluate("document.body.innerText")
        await tab.screenshot(artifact("serve-status.png"), full_page=True)
        problems = tab.problems
    assert pwned == "undefined" and counts == [0, 0, 0]
    assert HOSTILE_TYPE in cells and any(HOSTILE.split(" see ")[0] in c for c in cells)
    assert marked == ["num late", "num soon"]
    assert "Pending: 3" in shown and "time left at most" in shown
    assert problems == [], problems
    if os.environ.get("ARCHIVER_UPDATE_SCREENSHOTS"):  # the docs' copy, on request only
        shutil.copyfile(artifact("serve-status.png"), DOCS_SCREENSHOT)


async def test_overview_is_bounded_and_reads_no_payload(tmp_path: Path, standin: AkoolStandIn,
                                                        base_url: str) -> None:
    """However many jobs the journal holds, the overview reads LIMIT rows per list
    and counts the rest; the page says how many are not shown."""
    jobs = [generated_job_id(i, "many") for i in range(LIMIT + 10)]
    for job in jobs:
        standin.add_job(job, outcome="never")
    root = tmp_path / "archive"
    server = Server(make(base_url, root))
    async with server.running() as url, standin.callbacks(url) as sender:
        await asyncio.gather(*(sender.notify(job, 2) for job in jobs))
        status, page, _ = await get(url.rsplit("/akool/", 1)[0] + "/")
    overview = await asyncio.to_thread(read_overview, root / JOURNAL_NAME, LIMIT, 0)
    assert overview["pending"] == LIMIT + 10 and len(overview["urgent"]) == LIMIT
    assert all("payload" not in row and "url" not in row for row in overview["urgent"])
    assert status == 200 and f"Pending: {LIMIT + 10} (the {LIMIT} most urgent shown)" in page
    assert page.count('<td class="id">') == LIMIT


async def test_status_page_off(standin: AkoolStandIn, base_url: str, tmp_path: Path) -> None:
    """webhook.status_page: false answers 404 on / and /status.json; the webhook works."""
    job = generated_job_id(1, "off")
    standin.add_job(job, outcome="never")
    server = Server(make(base_url, tmp_path / "archive", webhook={"status_page": False}))
    async with server.running() as url, standin.callbacks(url) as sender:
        assert (await sender.notify(job, 2)).status == 200
        base = url.rsplit("/akool/", 1)[0]
        assert (await get(f"{base}/"))[0] == 404
        assert (await get(f"{base}/status.json"))[0] == 404


# ------------------------------------------------------------------- basic auth

PASSWORD = "pa55-w0rd-for-the-status-page"


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def outward_address() -> str | None:
    """This host's address on its default route (no packet is sent), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: routing only
        except OSError:
            return None
        address: str = probe.getsockname()[0]
    return None if is_loopback(address) else address


async def test_basic_auth_on_a_real_serve_process(
        served: tuple[AkoolStandIn, str], workdir: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`archiver serve` with status_user / status_password (${VAR}): the page and its JSON
    answer 401 without them or with a wrong one, 200 with them; the webhook, /healthz and
    /metrics need none; the password is in no log line."""
    from tests.test_serve_process import ServeProcess

    standin, _ = served
    job = generated_job_id(1, "auth")
    standin.add_job(job, outcome="never")
    path = workdir / "archiver.yaml"
    data = yaml.safe_load(path.read_text())
    data["webhook"] = {"client_id": "standin-clientid",
                       "client_secret": "${TEST_WEBHOOK_SECRET}",
                       "status_user": "ops", "status_password": "${TEST_STATUS_PASSWORD}"}
    write_yaml(path, data)
    monkeypatch.setenv("TEST_STATUS_PASSWORD", PASSWORD)
    proc = ServeProcess(workdir, "-v")
    try:
        base = proc.url.rsplit("/akool/", 1)[0]
        async with standin.callbacks(proc.url) as sender:
            assert (await sender.notify(job, 2)).status == 200  # no auth on the webhook
        for where in ("/", "/status.json"):
            status, _, headers = await get(base + where)
            assert status == 401 and headers["WWW-Authenticate"].startswith("Basic ")
            assert (await get(base + where, headers=basic("ops", PASSWORD + "x")))[0] == 401
            assert (await get(base + where, headers=basic("root", PASSWORD)))[0] == 401
            assert (await get(base + where, headers={"Authorization": "Basic !!"}))[0] == 401
        status, body, _ = await get(f"{base}/status.json", headers=basic("ops", PASSWORD))
        assert status == 200 and json.loads(body)["pending"][0]["id"] == job
        status, page, _ = await get(f"{base}/", headers=basic("ops", PASSWORD))
        assert status == 200 and job in page
        assert (await get(f"{base}/metrics"))[0] == 200
        assert (await get(f"{base}/healthz"))[0] == 200
    finally:
        code, err = proc.finish()
    assert code == 0, err
    assert PASSWORD not in err and "status page at / and /status.json: basic auth" in err


async def test_without_auth_only_loopback_clients(
        standin: AkoolStandIn, base_url: str, tmp_path: Path) -> None:
    """No status_user: a client on loopback sees the page, one from another address
    gets 403 naming the keys to set (when this host has such an address)."""
    address = outward_address()
    server = Server(make(base_url, tmp_path / "archive"), listen="0.0.0.0:0")
    async with server.running() as url:
        port = url.split(":")[2].split("/")[0]
        assert (await get(f"http://127.0.0.1:{port}/status.json"))[0] == 200
        if address is None:
            pytest.skip("this host has no address but loopback")
        status, text, _ = await get(f"http://{address}:{port}/status.json")
        assert status == 403 and "webhook.status_user" in text
        assert (await get(f"http://{address}:{port}/metrics"))[0] == 200


def test_auth_checks() -> None:
    """Loopback is 127/8, ::1 and their IPv4-mapped form; basic auth takes exactly the
    pair, whatever the scheme's case, and refuses a malformed header."""
    assert all(map(is_loopback, ("127.0.0.1", "127.8.0.2", "::1", "::ffff:127.0.0.1")))
    assert not any(map(is_loopback, ("10.0.0.1", "::ffff:10.0.0.1", "", None, "host")))
    good = basic("ops", "pw:with:colons")["Authorization"]
    assert check_basic_auth(good, "ops", "pw:with:colons")
    assert check_basic_auth(good.replace("Basic", "basic"), "ops", "pw:with:colons")
    for header in (good, "Bearer x", "Basic", "Basic %%%", "Basic " + base64.b64encode(
            b"ops").decode(), "Basic " + base64.b64encode(b"\xff:\xff").decode()):
        assert not check_basic_auth(header, "ops", "pw")


@pytest.mark.parametrize(("webhook", "message"), [
    ({"status_user": "ops"}, "status_user and status_password go together"),
    ({"status_password": "pw"}, "status_user and status_password go together"),
    ({"status_user": "a:b", "status_password": "pw"}, "webhook.status_user: must be"),
    ({"status_user": "ops", "status_password": ""}, "webhook.status_password: is empty"),
])
def test_auth_config_errors(webhook: dict[str, str], message: str) -> None:
    """A half-configured auth is a one-line configuration error naming the keys."""
    text = yaml.safe_dump({"webhook": {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                                       **webhook}})
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "archiver.yaml")
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert "pw" not in str(caught.value).replace("password", "")

