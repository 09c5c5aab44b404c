"""The API down (issue 17, point 7): the run notices once, stops polling, leaves the rest
pending and exits 69 - instead of trying every id against a dead API for hours.

The faults are real: a port nothing listens on (connection refused), and a TCP server
that accepts each connection and resets it at once, counting them.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from archiver.akool.client import AkoolClient, Breaker
from archiver.config import Config
from archiver.errors import ApiUnavailable, TransientAPIError
from archiver.exitstatus import ExitStatus
from archiver.manifest import Manifest
from archiver.models import Outcome
from archiver.run import archive
from archiver.service.serve import JOURNAL_NAME, Server
from archiver.testing.callbacks import CallbackSender
from archiver.testing.standin import generated_job_id

from .conftest import API_KEY, CLI_ENV, config_dict, run_cli, write_yaml
from .test_serve import CLIENT_ID, CLIENT_SECRET, WEBHOOK, rows, wait_for

#: conftest's API retry policy: requests per poll at most.
ATTEMPTS = 4
#: conftest's concurrency.polls.
POLLS = 4
#: The default of api.unavailable_after.
DEFAULT_AFTER = 8


def _bound(after: int = DEFAULT_AFTER) -> int:
    """Requests a run can make against a dead API: the polls that ran out of retries
    before the breaker opened, plus those in flight when it did."""
    return (after - 1 + POLLS) * ATTEMPTS


class ResettingServer:
    """A real TCP server that accepts every connection and resets it at once (a crashed
    API behind a live load balancer); counts the connections."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0), backlog=256)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self.connections = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed: stop
            self.connections += 1
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    def __enter__(self) -> ResettingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(timeout=10)


def _closed_port_url() -> str:
    """The URL of a loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def _dead_api(how: str) -> Iterator[tuple[str, ResettingServer | None]]:
    if how == "refused":
        yield _closed_port_url(), None
    else:
        with ResettingServer() as server:
            yield server.url, server


def _workdir(tmp_path: Path, api_url: str, ids: list[str], **api: Any) -> Path:
    data = config_dict(api_url, tmp_path / "archive")
    data["api"].update(api_key="${TEST_AKOOL_KEY}", **api)
    write_yaml(tmp_path / "archiver.yaml", data)
    write_yaml(tmp_path / "videos.yaml", ids)
    return tmp_path


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if " ERROR " in line]


# --------------------------------------------------------------- a run, API down

@pytest.mark.parametrize("how", ["refused", "reset"])
def test_dead_api_stops_the_run_after_a_bounded_number_of_requests(tmp_path, how):
    """200 ids against a dead API: a bounded number of requests, every id pending,
    exit 69, one error line naming the API's origin and the cause."""
    ids = [generated_job_id(n, "down") for n in range(200)]
    with _dead_api(how) as (url, server):
        cwd = _workdir(tmp_path, url, ids)
        result = run_cli("run", "videos.yaml", "--report", "report.json",
                         "--metrics-file", "archiver.prom", cwd=cwd, env=CLI_ENV)
    assert result.returncode == ExitStatus.UNAVAILABLE == 69, result.stderr
    report = json.loads((cwd / "report.json").read_text())
    # Before: every id was tried, each ATTEMPTS times (800 requests here).
    assert report["totals"]["api_requests"] <= _bound()
    if server is not None:
        # aiohttp sends a GET again, once, on a connection cut before the answer.
        assert 0 < server.connections <= 2 * _bound()
    assert report["exit_status"] == 69 and report["api_unavailable"] is True
    assert report["totals"]["pending"] == len(ids) and report["totals"]["failed"] == 0
    for item in report["items"]:
        # Those that ran out of retries before the breaker opened too: the same outage.
        assert item["outcome"] == "pending", item
        assert item["error"]["kind"] == "api_unavailable"
    errors = _errors(result.stderr)
    assert len(errors) == 1, result.stderr
    assert url in errors[0] and "requests in a row got no answer" in errors[0]
    # The cause: refused, or whichever way a reset connection failed last.
    cause = "cannot connect" if how == "refused" else ""
    assert f"(last: request failed: {cause}" in errors[0], errors[0]
    assert "pending" in errors[0]
    assert len(result.stderr.splitlines()) == 1, result.stderr  # no line per id
    assert API_KEY not in result.stderr + result.stdout
    assert "API unavailable" in result.stdout and "69" in result.stdout
    metrics = (cwd / "archiver.prom").read_text()
    assert "archiver_exit_status 69" in metrics and "archiver_api_unavailable 1" in metrics
    assert not (cwd / "archive").exists() or not any((cwd / "archive").iterdir()) \
        or all(p.name.startswith(".") for p in (cwd / "archive").iterdir())


def test_unavailable_after_0_tries_every_id(tmp_path):
    """api.unavailable_after: 0 turns the breaker off: every id is tried and fails."""
    ids = [generated_job_id(n, "off") for n in range(12)]
    with ResettingServer() as server:
        cwd = _workdir(tmp_path, server.url, ids, unavailable_after=0)
        result = run_cli("run", "videos.yaml", "--report", "report.json", cwd=cwd,
                         env=CLI_ENV)
    assert result.returncode == 1, result.stderr
    assert server.connections >= len(ids) * ATTEMPTS
    report = json.loads((cwd / "report.json").read_text())
    assert {i["error"]["kind"] for i in report["items"]} == {"api_transient"}


# ---------------------------------------------------- an API that does answer

async def test_scattered_failures_do_not_open_the_breaker(standin, make_config):
    """Two ids in a row get no answer, then one does: with unavailable_after 3 the run
    never stops polling; the two fail as before, the rest are archived (exit 1)."""
    ids = []
    for n in range(15):
        item = generated_job_id(n, "scattered")
        # Each "bad" id resets every connection: ATTEMPTS requests, all without answer.
        standin.add_job(item, video_size=2048,
                        api_faults=["reset"] * 20 if n % 3 != 2 else [])
        ids.append(item)
    async with standin.serve() as url:
        config = Config.model_validate(config_dict(
            url, make_config().storage.local.root,
            api={"unavailable_after": 3}, concurrency={"polls": 1}))
        result = await archive(config, Manifest.from_ids(ids))
    outcomes = {i.id: i for i in result.items}
    for n, item in enumerate(ids):
        if n % 3 == 2:
            assert outcomes[item].outcome is Outcome.ARCHIVED
        else:
            assert outcomes[item].outcome is Outcome.FAILED
            assert outcomes[item].error_kind == "api_transient"
    assert not result.api_unavailable and result.exit_status is ExitStatus.FAILED
    # Every id was polled: the bad ones ATTEMPTS times (aiohttp sends a GET again, once,
    # on a connection cut before the answer), the good ones once.
    for n, item in enumerate(ids):
        polls = standin.polls[item]
        assert polls == 1 if n % 3 == 2 else ATTEMPTS <= polls <= 2 * ATTEMPTS


async def test_jobs_already_done_are_archived_while_the_api_is_down(standin, make_config):
    """The API goes down after three jobs were found done: they are still downloaded
    (the file host is up); the rest stay pending, exit 69."""
    good = [generated_job_id(n, "before") for n in range(3)]
    bad = [generated_job_id(n, "after") for n in range(20)]
    for item in good:
        standin.add_job(item, video_size=4096)
    for item in bad:
        standin.add_job(item, api_faults=["reset"] * 20)
    async with standin.serve() as url:
        config = Config.model_validate(config_dict(
            url, make_config().storage.local.root, concurrency={"polls": 1},
            api={"unavailable_after": 2}))
        result = await archive(config, Manifest.from_ids(good + bad))
    by_id = {i.id: i for i in result.items}
    for item in good:
        assert by_id[item].outcome is Outcome.ARCHIVED
        assert (config.storage.local.root / item / "archive.json").is_file()
    for item in bad:
        assert by_id[item].outcome is Outcome.PENDING
        assert by_id[item].error_kind == "api_unavailable"
    assert result.exit_status is ExitStatus.UNAVAILABLE
    # Two polls ran out of retries; the third id's poll never left.
    assert all(standin.polls[i] >= ATTEMPTS for i in bad[:2])
    assert all(standin.polls[i] == 0 for i in bad[2:])


async def test_some_failed_for_good_then_api_down_exits_1(standin, make_config):
    """An id that failed for good (code 1008) before the outage: exit 1 wins over 69."""
    gone = generated_job_id(0, "gone")
    standin.add_job(gone, business_code=1008)
    bad = [generated_job_id(n, "later") for n in range(10)]
    for item in bad:
        standin.add_job(item, api_faults=["reset"] * 20)
    async with standin.serve() as url:
        config = Config.model_validate(config_dict(
            url, make_config().storage.local.root, concurrency={"polls": 1},
            api={"unavailable_after": 2}))
        result = await archive(config, Manifest.from_ids([gone, *bad]))
    assert result.items[0].outcome is Outcome.FAILED and result.items[0].error_kind == "api"
    assert all(i.outcome is Outcome.PENDING for i in result.items[1:])
    assert result.api_unavailable and result.exit_status is ExitStatus.FAILED


# ------------------------------------------------------------ the breaker itself

class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_breaker_opens_refuses_without_a_request_then_a_probe_closes_it(standin):
    """Open: requests fail at once, nothing sent. After the cool-down one probe goes;
    an answer closes the breaker, no answer opens it again."""
    down1, down2, down3, up1, up2 = (generated_job_id(n, "probe") for n in range(5))
    for item in (down1, down2, down3):
        standin.add_job(item, api_faults=["reset"] * 20)
    for item in (up1, up2):
        standin.add_job(item)
    clock = _Clock()
    async with standin.serve() as url:
        api = Config.model_validate(config_dict(url, Path("unused"))).api
        breaker = Breaker(2, url, cooldown=60, clock=clock)
        async with AkoolClient(api, breaker=breaker) as client:
            with pytest.raises(TransientAPIError) as first:
                await client.video_info(down1)
            assert not isinstance(first.value, ApiUnavailable)
            with pytest.raises(ApiUnavailable) as opened:
                await client.video_info(down2)
            assert url in str(opened.value) and "2 requests in a row" in str(opened.value)
            sent = client.requests
            with pytest.raises(ApiUnavailable):
                await client.video_info(up1)  # refused while open: no connection
            assert client.requests == sent and standin.polls[up1] == 0

            clock.now += 61  # cool-down over: the next call is the probe
            with pytest.raises(ApiUnavailable):
                await client.video_info(down3)  # the probe gets no answer: open again
            assert client.requests == sent + ATTEMPTS
            with pytest.raises(ApiUnavailable):
                await client.video_info(up1)

            clock.now += 61
            assert (await client.video_info(up1)).status == 3  # the probe: closed
            assert not breaker.is_open
            assert (await client.video_info(up2)).status == 3


# ----------------------------------------------------------------- archiver serve

async def test_serve_keeps_jobs_pending_while_the_api_is_down(tmp_path):
    """Callbacks arrive while the API resets every connection: the jobs stay pending in
    the journal, with the reason, after a bounded number of requests."""
    jobs = [generated_job_id(n, "served") for n in range(30)]
    with ResettingServer() as api:
        data = config_dict(api.url, tmp_path / "archive", webhook=dict(WEBHOOK))
        server = Server(Config.model_validate(data))
        async with server.running() as url, \
                CallbackSender(url, CLIENT_ID, CLIENT_SECRET) as sender:
            for job in jobs:
                delivery = await sender.notify(job, 3, url="https://cdn.example/v.mp4")
                assert delivery.status == 200

            async def all_tried() -> bool:
                found = await rows(tmp_path / "archive")
                return len(found) == len(jobs) and all(r.error for r in found.values())

            await wait_for(all_tried)
        connections = api.connections
    found = await rows(tmp_path / "archive")
    assert (tmp_path / "archive" / JOURNAL_NAME).exists()
    for job in jobs:
        assert found[job].state == "pending", found[job]
        assert found[job].outcome is None
    assert any("unavailable" in (r.error or "") for r in found.values())
    # One batch against a dead API, not 30 ids x ATTEMPTS requests (x2: aiohttp sends
    # a GET again, once, on a connection cut before the answer).
    assert connections <= 2 * _bound()


# ------------------------------------------------------------------ config, docs

def test_example_config_documents_unavailable_after():
    example = yaml.safe_load(Path(__file__).parent.parent.joinpath(
        "config.example.yaml").read_text())
    assert example["api"]["unavailable_after"] == Config.model_validate(
        config_dict("http://x", Path("r"))).api.unavailable_after == DEFAULT_AFTER

