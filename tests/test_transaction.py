"""The one "keep partial bytes or not" decision (archiver.archive.transaction), seen from `run`
and from `archiver serve`: bytes kept by an interrupted attempt go once the job fails."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from archiver.archive import Archive
from archiver.config import Config
from archiver.manifest import Manifest
from archiver.models import Outcome
from archiver.run import archive
from archiver.service.serve import Server
from archiver.testing.callbacks import CallbackSender
from archiver.testing.standin import AkoolStandIn
from tests.conftest import API_KEY, ID1, ID2, config_dict
from tests.test_serve import CLIENT_ID, CLIENT_SECRET, WEBHOOK, all_done, wait_for

SIZE = 512 * 1024


@pytest.fixture
def standin() -> AkoolStandIn:
    return AkoolStandIn(api_key=API_KEY, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)


async def keep_a_partial(standin: AkoolStandIn, base_url: str, root: Path) -> Path:
    """A run whose transfer stalls half-way (no retries) keeps the prefix; its path."""
    # A stall, not a cut: after a cut aiohttp may raise before handing over what it
    # buffered, and then there is no prefix to keep.
    standin.add_job(ID1, video_size=SIZE, file_faults={"video": ["stall"]})
    config = config_dict(base_url, root,
                         downloads={"read_timeout": 0.5, "retries": {"attempts": 1}})
    first = await archive(_config(config), Manifest.from_ids([ID1]))
    assert first.items[0].outcome is Outcome.FAILED
    kept = root / ID1 / ".video.mp4.part"
    assert 0 < kept.stat().st_size < SIZE
    return kept


def _config(data: dict[str, Any]) -> Config:
    return Config.model_validate(data)


async def test_run_discards_kept_bytes_of_a_job_that_failed_since(standin, base_url, tmp_path):
    """A later run polling the job as failed removes the bytes an earlier run kept."""
    root = tmp_path / "archive"
    await keep_a_partial(standin, base_url, root)
    standin.add_job(ID1, outcome="failed", error_reason="face not detected")
    second = await archive(_config(config_dict(base_url, root)), Manifest.from_ids([ID1]))
    assert second.items[0].outcome is Outcome.FAILED
    assert second.items[0].error_kind == "job_failed"
    assert not (root / ID1).exists()


async def test_skip_check_names_the_ids_holding_kept_bytes(standin, base_url, tmp_path):
    """The skip check tells an id holding kept bytes (its failure must discard them) from
    one with nothing stored (its failure has nothing to discard, so touches nothing)."""
    root = tmp_path / "archive"
    await keep_a_partial(standin, base_url, root)
    archive = Archive.from_config(_config(config_dict(base_url, root)).storage)
    check = await archive.skip_check([ID1, ID2])
    assert (check.archived, check.partial) == (set(), {ID1})


async def test_serve_discards_kept_bytes_on_a_failed_callback(standin, base_url, tmp_path):
    """A status-4 callback makes `archiver serve` remove the bytes a `run` kept for that job."""
    root = tmp_path / "archive"
    await keep_a_partial(standin, base_url, root)
    standin.add_job(ID1, outcome="failed", error_reason="face not detected")
    server = Server(_config(config_dict(base_url, root, webhook=WEBHOOK)))
    async with server.running() as url, CallbackSender(url, CLIENT_ID, CLIENT_SECRET) as sender:
        assert (await standin.deliver(sender, ID1)).status == 200
        await wait_for(all_done(root, 1))
    assert not (root / ID1).exists()
    assert standin.polls[ID1] == 1  # only the first run's poll: the callback said "failed"
