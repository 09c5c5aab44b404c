"""`archiver serve` for every result family: callbacks routed by their ``type``, unknown
types found by asking each family, the journal's family column, `run --from-journal`."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from archiver.akool.families import FAMILIES
from archiver.akool.webhook import TYPE_FAMILIES, family_of_type
from archiver.config import Config
from archiver.service.journal import JobRow, Journal
from archiver.service.serve import Server
from archiver.testing.callbacks import CALLBACK_TYPES
from archiver.testing.standin import AkoolStandIn, JobScenario, generated_job_id, sample_jobs
from tests.conftest import API_KEY, CLI_ENV, config_dict, run_cli
from tests.old_journal import old_journal_v1
from tests.s3server import S3Fixture, moto_endpoint_fixture, s3_fixture  # noqa: F401
from tests.servers import wait_for

# Akool's sizes: a 24-character client id (the IV is its first 16 bytes), a 24-byte secret.
CLIENT_ID = "64db241f6d9e5c4bd136c187"
CLIENT_SECRET = "secret-key-of-24-bytes!!"
WEBHOOK = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "listen": "127.0.0.1:0",
           "repoll_interval": 30}
FAMILY_NAMES = tuple(FAMILIES)


@pytest.fixture
def standin() -> AkoolStandIn:
    return AkoolStandIn(api_key=API_KEY, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)


def make(base_url: str, root: Path, storage: dict[str, Any] | None = None,
         **sections: dict[str, Any]) -> Config:
    data = config_dict(base_url, root, webhook={**WEBHOOK, **sections.pop("webhook", {})},
                       **sections)
    if storage is not None:
        data["storage"] = storage
    return Config.model_validate(data)


@pytest.fixture
def serve(base_url: str, tmp_path: Path) -> Callable[..., Any]:
    """``async with serve(**sections) as (server, url)``: a real server on loopback."""
    import contextlib

    @contextlib.asynccontextmanager
    async def start(storage: dict[str, Any] | None = None,
                    **sections: dict[str, Any]) -> AsyncIterator[tuple[Server, str]]:
        server = Server(make(base_url, tmp_path / "archive", storage,
                             webhook={"journal": str(tmp_path / "journal.sqlite3"),
                                      **sections.pop("webhook", {})}, **sections))
        async with server.running() as url:
            yield server, url

    return start


async def journal_rows(path: Path) -> dict[str, JobRow]:
    async with Journal(path) as journal:
        return {r.id: r for r in await journal.jobs()}


def all_done(path: Path, count: int) -> Callable[[], Any]:
    async def check() -> bool:
        jobs = await journal_rows(path)
        return len(jobs) == count and all(r.state == "done" for r in jobs.values())
    return check


def one_of_each_family() -> dict[str, JobScenario]:
    """The first successful sample job of each family, final at the first poll (a
    callback comes once a job is final)."""
    chosen: dict[str, JobScenario] = {}
    for job_id, scen in sample_jobs(FAMILY_NAMES).items():
        if scen.outcome == "success" and scen.family not in {s.family for s in chosen.values()}:
            chosen[job_id] = dataclasses.replace(scen, polls_until_done=1)
    assert sorted(s.family for s in chosen.values()) == sorted(FAMILY_NAMES)
    return chosen


def archived_hashes(record: dict[str, Any]) -> set[str]:
    return {f["sha256"] for f in record["files"]}


def job_hashes(standin: AkoolStandIn, job_id: str, scen: JobScenario) -> set[str]:
    return {standin.file_sha256(job_id, kind) for kind in scen.files}


# ------------------------------------------------------------------- the types

@pytest.mark.parametrize(("kind", "family"), [
    ("faceswap", "faceswap"), ("image", "image"), ("background change", "image"),
    ("audio", "audio"), ("talking photo", "video"), ("video translate", "video"),
    ("avatar", "video"), ("lipsync", "video"),
    # Case and spacing as a sender may vary them.
    ("Talking Photo", "video"), ("talking_photo", "video"), ("talkingPhoto", "video"),
    ("VIDEO  TRANSLATE", "video"), ("Background-Change", "image"), ("face swap", "faceswap"),
    ("lip sync", "video"), (" image ", "image"),
    # Image-to-video: no type documented; the likely spellings.
    ("image2video", "image2video"), ("Image to Video", "image2video"),
    # Not documented, not guessed: unknown, found by asking each family.
    ("reage", None), ("character swap", None), ("", None), ("video", None), (None, None),
    (2, None), (["image"], None), ("image" * 20, None),
])
def test_callback_types_name_their_family(kind: object, family: str | None) -> None:
    """Each documented type names its family, whatever the case and spacing; anything
    else names none (and is not refused: see the end-to-end tests)."""
    assert family_of_type(kind) == family


def test_every_documented_type_names_a_family_the_client_knows() -> None:
    """The stand-in's list of Akool's types (written from the docs) all route, each to a
    family of the client's FAMILIES."""
    assert all(family_of_type(kind) in FAMILIES for kind in CALLBACK_TYPES)
    assert set(TYPE_FAMILIES.values()) == set(FAMILIES)


# --------------------------------------------------------------- end to end

async def test_every_family_archived_from_its_callbacks(
        standin: AkoolStandIn, base_url: str, serve: Any, tmp_path: Path) -> None:
    """One job of each family, its callback sent by the stand-in as Akool would (the
    type its product has; none for image-to-video, found by asking each family): each
    archived under its family with every result file; no delete endpoint ever called.
    The same news again with a number nonce, a string timestamp and hex ciphertext:
    verified and harmless, for every family. /metrics counts by family."""
    jobs = one_of_each_family()
    scenarios = {job_id: standin.add_job(job_id, scen) for job_id, scen in jobs.items()}
    journal = tmp_path / "journal.sqlite3"
    async with serve() as (server, url), standin.callbacks(url) as sender:
        answers = {job_id: await standin.deliver(sender, job_id) for job_id in jobs}
        assert {a.status for a in answers.values()} == {200}
        await wait_for(all_done(journal, len(jobs)))
        for job_id in jobs:
            main = scenarios[job_id].files[0]
            again = await sender.notify(job_id, 3, url=standin.file_url(job_id, main),
                                        callback_type=_type_sent(answers[job_id].body),
                                        nonce=int(time.time()) % 10_000 + 1,
                                        timestamp=str(int(time.time() * 1000)),
                                        encoding="hex")
            assert (again.status, again.text) == (200, "ok\n"), job_id
        async with aiohttp.ClientSession() as http, \
                http.get(url.rsplit("/", 2)[0] + "/metrics") as resp:
            metrics = await resp.text()
    rows = await journal_rows(journal)
    for job_id, scen in jobs.items():
        assert (rows[job_id].outcome, rows[job_id].family) == ("archived", scen.family)
        record = json.loads((tmp_path / "archive" / job_id / "archive.json").read_text())
        assert record["family"] == scen.family
        archived = archived_hashes(record)
        main = next(k for k in standin.families[scen.family].callback_files
                    if k in scenarios[job_id].files)
        assert standin.file_sha256(job_id, main) in archived
        assert archived <= job_hashes(standin, job_id, scenarios[job_id])
    assert standin.delete_calls == []
    # The image-to-video callback had no type: counted as unknown on arrival, archived
    # under the family it was found in.
    assert 'archiver_webhook_accepted_total{result="new",family="unknown"} 1' in metrics
    for family in FAMILY_NAMES:
        accepted_new = 0 if family == "image2video" else 1
        assert f'archiver_webhook_accepted_total{{result="new",family="{family}"}} ' \
               f'{accepted_new}' in metrics
        assert f'archiver_webhook_items_total{{outcome="archived",family="{family}"}} 1' \
            in metrics
    assert server.counters.recorded["duplicate", "faceswap"] == 1


def _type_sent(body: dict[str, Any]) -> str | None:
    """The type a delivered callback carried (decrypted with the stand-in's credentials)."""
    from archiver.akool.webhook import decrypt

    kind = json.loads(decrypt(body["dataEncrypt"], CLIENT_ID, CLIENT_SECRET)).get("type")
    return kind if isinstance(kind, str) else None


async def test_unknown_type_no_family_knows_stays_pending_until_one_does(
        standin: AkoolStandIn, base_url: str, serve: Any, tmp_path: Path) -> None:
    """A callback of an undocumented type for an id no family knows yet: 200, recorded
    with the family unknown, asked again each re-poll; once the face-swap endpoint knows
    it, it is archived there and the journal says so."""
    job = generated_job_id(1, "reage")
    journal = tmp_path / "journal.sqlite3"
    async with serve(webhook={"repoll_interval": 0.3}) as (_, url), \
            standin.callbacks(url) as sender:
        answer = await sender.notify(job, 3, url="https://example.invalid/r.mp4",
                                     callback_type="reage")
        assert (answer.status, answer.text) == (200, "ok\n")

        async def asked_twice() -> bool:
            row = (await journal_rows(journal))[job]
            return row.attempts >= 2
        await wait_for(asked_twice)
        row = (await journal_rows(journal))[job]
        assert (row.state, row.family) == ("pending", None)
        assert row.error is not None and "no result family knows this id" in row.error
        standin.add_job(job, family="faceswap", polls_until_done=1)
        await wait_for(all_done(journal, 1))
    row = (await journal_rows(journal))[job]
    assert (row.outcome, row.family) == ("archived", "faceswap")
    assert json.loads((tmp_path / "archive" / job / "archive.json").read_text())["family"] \
        == "faceswap"
    assert standin.delete_calls == []


async def test_a_type_naming_the_wrong_family_is_corrected_by_asking_the_others(
        standin: AkoolStandIn, base_url: str, serve: Any, tmp_path: Path) -> None:
    """A face-swap job whose callback says "image" (a product Akool types differently
    than documented): the image endpoint does not know it, the face-swap one does; it
    is archived there, not failed. A job no family knows keeps the typed family's
    answer (failed: not found), as before families."""
    swap, ghost = generated_job_id(1, "misrouted"), generated_job_id(2, "misrouted")
    standin.add_job(swap, family="faceswap", polls_until_done=1)
    journal = tmp_path / "journal.sqlite3"
    async with serve() as (_, url), standin.callbacks(url) as sender:
        for job in (swap, ghost):
            assert (await sender.notify(job, 3, url="https://example.invalid/x.png",
                                        callback_type="image")).status == 200
        await wait_for(all_done(journal, 2))
    rows = await journal_rows(journal)
    assert (rows[swap].outcome, rows[swap].family) == ("archived", "faceswap")
    assert (rows[ghost].outcome, rows[ghost].family) == ("failed", "image")
    assert "1008" in (rows[ghost].error or "")
    assert (tmp_path / "archive" / swap / "archive.json").is_file()


async def test_one_family_end_to_end_on_s3(
        standin: AkoolStandIn, base_url: str, serve: Any, s3: S3Fixture) -> None:
    """An image job (with upscales) from its callback into S3: every file, its family."""
    job_id, scen = next((i, s) for i, s in one_of_each_family().items() if s.family == "image")
    scen = standin.add_job(job_id, scen)
    storage = {"backend": "s3", "s3": {"bucket": s3.bucket, "prefix": "akool/",
                                       "endpoint_url": s3.endpoint, "region": "us-east-1",
                                       "addressing_style": "path"}}
    async with serve(storage) as (server, url), standin.callbacks(url) as sender:
        assert (await standin.deliver(sender, job_id)).status == 200
        assert server.journal_path is not None
        await wait_for(all_done(server.journal_path, 1))
        row = (await journal_rows(server.journal_path))[job_id]
    assert (row.outcome, row.family, row.error) == ("archived", "image", None), s3.list_keys()
    record = json.loads(s3.read(f"akool/{job_id}/archive.json"))
    assert record["family"] == "image"
    assert archived_hashes(record) == job_hashes(standin, job_id, scen)
    assert standin.delete_calls == []


async def test_a_version_1_journal_left_pending_is_archived_under_the_right_families(
        standin: AkoolStandIn, base_url: str, serve: Any, tmp_path: Path) -> None:
    """The previous release recorded an image and an audio callback and polled the
    video endpoint for them; after the upgrade, their rows (family unknown) are found
    in their families and archived."""
    image, audio = generated_job_id(1, "v1-image"), generated_job_id(2, "v1-audio")
    standin.add_job(image, family="image", polls_until_done=1)
    standin.add_job(audio, family="audio", polls_until_done=1)
    journal = tmp_path / "journal.sqlite3"
    old_journal_v1(journal, {image: 3, audio: 3}, done=generated_job_id(3, "v1-done"))
    async with serve():
        await wait_for(all_done(journal, 3))
    rows = await journal_rows(journal)
    assert {j: (rows[j].outcome, rows[j].family) for j in (image, audio)} == \
        {image: ("archived", "image"), audio: ("archived", "audio")}
    db = sqlite3.connect(journal)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 2
    db.close()


# ------------------------------------------------------------ run --from-journal

def test_run_from_journal_takes_each_id_with_its_family(
        served: tuple[AkoolStandIn, str], tmp_path: Path) -> None:
    """Pending rows of a journal: one with its family, one unknown (found by asking),
    one no family knows (left out with one line, still pending): the first two are
    archived under their families by `run --from-journal`, exit 0."""
    standin, base_url = served
    audio, swap, ghost = (generated_job_id(i, "from-journal") for i in range(3))
    standin.add_job(audio, family="audio", polls_until_done=1)
    standin.add_job(swap, family="faceswap", polls_until_done=1)
    journal = tmp_path / "journal.sqlite3"
    old_journal_v1(journal, {audio: 3, swap: 3, ghost: 3}, done=generated_job_id(9, "x"))

    async def name_one() -> None:
        async with Journal(journal) as open_journal:  # migrates to v2
            await open_journal.set_family(audio, "audio")
    asyncio.run(name_one())
    data = config_dict(base_url, tmp_path / "archive")
    data["api"]["api_key"] = "${TEST_AKOOL_KEY}"
    (tmp_path / "archiver.yaml").write_text(yaml.safe_dump(data))
    done = run_cli("run", "--from-journal", str(journal), "-c", "archiver.yaml",
                   cwd=tmp_path, env=CLI_ENV)
    assert done.returncode == 0, done.stderr
    for job, family in ((audio, "audio"), (swap, "faceswap")):
        record = json.loads((tmp_path / "archive" / job / "archive.json").read_text())
        assert record["family"] == family
    assert not (tmp_path / "archive" / ghost).exists()
    assert f"{ghost}: left pending: no result family knows this id" in done.stderr
    # The audio job's family was known: never asked of another family.
    assert standin.polls[audio] == 1
    assert standin.delete_calls == []
