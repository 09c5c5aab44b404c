"""Every result family end to end against the stand-in: manifest -> run -> archive, on
local disk and S3 (moto), with file faults, batched polling (an id missing from a batch,
a hostile batch answer), client credentials whose token expires mid-run, and never a
delete or an unknown path at Akool."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from archiver.akool.answers import parse_batch
from archiver.akool.client import AkoolClient, PathRefused
from archiver.akool.families import FAMILIES
from archiver.archive.layer import Archive
from archiver.archive.verify import verify
from archiver.config import ApiConfig
from archiver.errors import APIError, ManifestError
from archiver.manifest import Manifest, ManifestItem, parse_manifest
from archiver.models import Outcome
from archiver.run import archive
from archiver.storage import make_backend
from archiver.testing.standin import AkoolStandIn, JobScenario

from .conftest import API_KEY
from .s3server import S3Fixture, moto_endpoint_fixture, s3_fixture  # noqa: F401 - fixtures
from .servers import aiohttp_server

#: family -> (job scenario, {archived name: the stand-in's file name}). Each one lies
#: where it can: a JPEG served as .png, an M4A and an MP4 without extension.
CASES: dict[str, tuple[JobScenario, dict[str, str]]] = {
    "video": (JobScenario(polls_until_done=2, video_size=40_000),
              {"video.mp4": "video.mp4"}),
    "image": (JobScenario(family="image", polls_until_done=2, image_format="jpeg",
                          files=("image", "upscaled_1", "upscaled_2"), image_size=6_000,
                          file_names={"image": "image.png"}),
              {"image.jpg": "image.png", "upscaled-1.jpg": "upscaled-1.jpg",
               "upscaled-2.jpg": "upscaled-2.jpg"}),
    "audio": (JobScenario(family="audio", polls_until_done=2, audio_format="m4a",
                          audio_size=9_000, file_names={"audio": "speech"}),
              {"audio.m4a": "speech"}),
    "faceswap": (JobScenario(family="faceswap", polls_until_done=2, files=("video",),
                             video_size=30_000, file_names={"video": "result"},
                             early_urls=True),
                 {"result.mp4": "result"}),
    "image2video": (JobScenario(family="image2video", polls_until_done=2,
                                files=("video", "audio", "cover"), video_size=30_000,
                                audio_size=8_000, image_size=5_000),
                    {"video.mp4": "video.mp4", "audio.mp3": "audio.mp3",
                     "cover.jpg": "cover.jpg"}),
}
IDS = {name: hashlib.sha256(name.encode()).hexdigest()[:24] for name in CASES}


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    if request.param == "local":
        return {"backend": "local", "local": {"root": str(tmp_path / "archive")}}
    return request.getfixturevalue("s3").storage()


async def _stored(config: Any, item_id: str, name: str) -> bytes | None:
    backend = make_backend(config.storage)
    await backend.open(readonly=True)
    try:
        return await backend.read(item_id, name)
    finally:
        await backend.close()


@pytest.mark.parametrize("family", list(CASES))
async def test_each_family_is_archived_with_its_files_named_by_content(
        family, standin, make_config, storage):
    """One job of each family, a file fault on each of its files: every result file is
    archived under its role and the extension its bytes prove, checksums match, the
    record names the family, verify passes, and Akool saw no delete and no unknown path."""
    scenario, names = CASES[family]
    item_id = IDS[family]
    standin.add_job(item_id, scenario)
    for served in names.values():
        standin.add_file_faults(item_id, served, "truncate", 503)
    config = make_config(storage=storage)
    manifest = parse_manifest(f"{FAMILIES[family].section}:\n  - {item_id}\n")

    result = await archive(config, manifest)

    [item] = result.items
    assert item.outcome is Outcome.ARCHIVED, item.error
    assert item.family == family
    assert {f.name for f in item.files} == set(names)
    for f in item.files:
        assert f.sha256 == standin.file_sha256(item_id, names[f.name]), f.name
    record = json.loads(await _stored(config, item_id, "archive.json") or b"{}")
    assert record["family"] == family
    assert [f["name"] for f in record["files"]] == list(names)
    sums = (await _stored(config, item_id, "SHA256SUMS") or b"").decode()
    assert sorted(line.split()[1] for line in sums.splitlines()) == sorted(names)
    backend = make_backend(config.storage)
    await backend.open(readonly=True)
    try:
        checked = await verify(backend, None, deep=True)
    finally:
        await backend.close()
    assert checked.ok and checked.items == 1, [str(p) for p in checked.problems]
    assert standin.delete_calls == [] and standin.unknown_requests == []
    # The rerun skips it: already archived, nothing asked.
    again = await archive(config, manifest)
    assert again.items[0].outcome is Outcome.ALREADY_ARCHIVED


async def test_input_image_of_image2video_is_never_archived(standin, make_config, tmp_path):
    """image_url is the job's input: its file is not fetched."""
    standin.add_job(IDS["image2video"], JobScenario(family="image2video", polls_until_done=1))
    result = await archive(make_config(), Manifest.from_ids([IDS["image2video"]],
                                                            family="image2video"))
    assert result.items[0].outcome is Outcome.ARCHIVED
    assert [f.name for f in result.items[0].files] == ["video.mp4"]
    assert standin.file_requests[(IDS["image2video"], "input.png")] == 0


async def test_a_file_of_the_wrong_kind_is_refused(standin, make_config, tmp_path):
    """An audio URL answering a PNG (or HTML) is refused, one line, nothing final."""
    bad, html = "a" * 24, "b" * 24
    standin.add_job(bad, JobScenario(family="audio", polls_until_done=1,
                                     file_bytes={"audio": b"\x89PNG\r\n\x1a\n" + b"x" * 200}))
    standin.add_job(html, JobScenario(family="audio", polls_until_done=1),
                    file_faults={"audio": ["html200"] * 5})
    result = await archive(make_config(), Manifest.from_ids([bad, html], family="audio"))
    first, second = result.items
    assert first.outcome is Outcome.FAILED and "expected MP3, WAV, M4A" in first.error
    assert "a PNG file" in first.error
    assert second.outcome is Outcome.FAILED and "text/html" in second.error
    assert not [p for p in (tmp_path / "archive").rglob("*") if p.is_file()
                and not p.name.startswith(".")]


async def test_batches_coalesce_and_a_missing_id_fails_alone(standin, make_config):
    """Twelve face swaps and one id Akool does not know, batch size 5: the known ones
    are archived from shared requests, the unknown one is not found (1008), alone."""
    ids = [f"{n:024x}" for n in range(1, 13)]
    for item_id in ids:
        standin.add_job(item_id, JobScenario(family="faceswap", polls_until_done=2,
                                             files=("image",), image_size=2_000))
    unknown = "f" * 24
    config = make_config(polling={"batch_size": 5})
    result = await archive(config, Manifest.from_ids([*ids, unknown], family="faceswap"))
    by_id = {i.id: i for i in result.items}
    assert all(by_id[i].outcome is Outcome.ARCHIVED for i in ids)
    assert by_id[unknown].outcome is Outcome.FAILED and by_id[unknown].error_code == 1008
    lookups = standin.lookups
    assert max(len(lk.video_model_id.split(",")) for lk in lookups) == 5
    # 13 ids polled 2-3 times each would be 26+ requests one by one.
    assert len(lookups) < 13


async def test_status_of_many_ids_one_batched_request_each_family(standin):
    """Concurrent job_info callers of one batched family share one request."""
    ids = [f"{n:024x}" for n in range(100, 140)]
    for item_id in ids:
        standin.add_job(item_id, JobScenario(family="image2video", polls_until_done=5))
    async with standin.serve() as url:
        api = ApiConfig(base_url=url, api_key=API_KEY)
        async with AkoolClient(api, batch_size=50, batch_linger=0.05) as client:
            infos = await asyncio.gather(*(client.job_info(i, "image2video") for i in ids))
    assert [i.id for i in infos] == ids and {i.family for i in infos} == {"image2video"}
    assert client.requests == 1


def test_hostile_batch_answers_are_one_line_errors_per_id():
    """A batch answer that is not a list, too long, or with bad entries: each id gets a
    bounded one-line error; other ids keep their good entries."""
    fam = FAMILIES["faceswap"]
    ids = ["a" * 24, "b" * 24, "c" * 24]
    for data in ({"result": "nope"}, {"result": {"_id": ids[0]}}, {"x": 1}):
        answers = parse_batch(fam, ids, data)
        assert all(isinstance(a, APIError) and "data.result is not a list" in str(a)
                   for a in answers.values())
    huge = parse_batch(fam, ids, {"result": [{}] * 20_000})
    assert "20000 entries" in str(huge[ids[0]])
    answers = parse_batch(fam, ids, {"result": [
        "junk", {"_id": 7}, {"_id": ids[0], "faceswap_status": "9" * 10_000},
        {"_id": ids[1], "faceswap_status": 3, "url": "javascript:alert(1)"},
        {"_id": ids[2], "faceswap_status": 3, "url": "https://cdn.example/r",
         "createdAt": "2024-03-18T10:33:01.609Z"}]})
    assert "faceswap_status is not a number" in str(answers[ids[0]])
    assert len(str(answers[ids[0]])) < 200
    assert "data.url is not an http(s) URL" in str(answers[ids[1]])
    good = answers[ids[2]]
    assert not isinstance(good, APIError)
    assert good.create_time_ms == 1710757981609 and good.files[0].name == "result"


async def test_hostile_batch_answer_over_http_fails_the_batch_not_the_run(make_config):
    """A server answering garbage to resultsByIds: every id of the batch fails with a
    one-line error, the run ends normally."""
    async def garbage(request: web.Request) -> web.Response:
        return web.json_response({"code": 1000, "data": {"result": {"x": "y" * 5000}}})

    path = FAMILIES["image2video"].path
    async with aiohttp_server({path: garbage}, method="POST") as url:
        config = make_config(api={"base_url": url})
        ids = [f"{n:024x}" for n in range(3)]
        result = await archive(config, Manifest.from_ids(ids, family="image2video"))
    assert [i.outcome for i in result.items] == [Outcome.FAILED] * 3
    assert all("data.result is not a list" in (i.error or "") for i in result.items)


async def test_client_credentials_token_expires_mid_run():
    """With client credentials the token comes from getToken, once; when Akool starts
    answering 1101 (expired), one new token is fetched and the request retried."""
    standin = AkoolStandIn(api_key=None)
    ids = [f"{n:024x}" for n in range(200, 204)]
    for item_id in ids:
        standin.add_job(item_id, JobScenario(family="faceswap", polls_until_done=9))
    standin.add_job("c" * 24, JobScenario(family="image", polls_until_done=9))
    async with standin.serve() as url:
        api = ApiConfig(base_url=url, client_id="standin-clientid",
                        client_secret="standin-client-secret-24")
        async with AkoolClient(api) as client:
            assert (await client.job_info(ids[0], "faceswap")).status in (1, 2)
            assert standin.token_requests == 1
            standin.rotate_token()
            infos = await asyncio.gather(*(client.job_info(i, "faceswap") for i in ids),
                                         client.job_info("c" * 24, "image"))
            assert len(infos) == 5
            assert standin.token_requests == 2  # one new token for every refused request
            text = repr(client)
    assert "standin-client-secret-24" not in text and standin.token not in text


async def test_full_run_with_client_credentials(make_config, tmp_path):
    """archive() with api.client_id/client_secret and no API key: every family archived."""
    standin = AkoolStandIn(api_key=None)
    for family, (scenario, _) in CASES.items():
        standin.add_job(IDS[family], scenario)
    async with standin.serve() as url:
        config = make_config(api={"base_url": url, "api_key": None,
                                  "client_id": "standin-clientid",
                                  "client_secret": "standin-client-secret-24"})
        manifest = Manifest.from_ids([ManifestItem(IDS[f], None, f) for f in CASES])
        result = await archive(config, manifest)
    assert [i.outcome for i in result.items] == [Outcome.ARCHIVED] * len(CASES)
    assert standin.token_requests == 1
    assert standin.delete_calls == [] and standin.unknown_requests == []


def test_manifest_sections_and_an_id_in_two_sections():
    """Every section takes bare ids and {id, label}; an id in two is one line naming both."""
    text = ("videos: [v1]\nimages: [{id: i1, label: cat}]\naudios: [a1]\n"
            "faceswaps: [f1]\nimage2videos: [m1]\n")
    manifest = parse_manifest(text)
    assert [(i.id, i.family) for i in manifest] == [
        ("v1", "video"), ("i1", "image"), ("a1", "audio"), ("f1", "faceswap"),
        ("m1", "image2video")]
    assert manifest.items[1].label == "cat"
    with pytest.raises(ManifestError, match="id v1 is in both 'videos' and 'faceswaps'"):
        parse_manifest("videos: [v1]\nfaceswaps: [v1]\n")
    assert Manifest.from_ids(["x1"]).items[0].family == "video"


async def test_archive_layer_reads_old_records_as_video(standin, make_config, tmp_path):
    """A record written before families (no "family") reads as a video."""
    standin.add_job(IDS["video"], CASES["video"][0])
    config = make_config()
    await archive(config, Manifest.from_ids([IDS["video"]]))
    path = tmp_path / "archive" / IDS["video"] / "archive.json"
    record = json.loads(path.read_text())
    del record["family"]
    path.write_text(json.dumps(record))
    from archiver.archive.record import ArchiveRecord
    assert ArchiveRecord.parse(path.read_bytes()).family == "video"
    assert await Archive.from_config(config.storage).item_states([IDS["video"]]) == {
        IDS["video"]: "archived"}


async def test_a_redirect_to_a_delete_endpoint_is_refused(make_config):
    """The client only reads: a poll redirected to Akool's delete endpoint stops the run
    instead of following it (the delete endpoint is never reached)."""
    deleted: list[str] = []

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound("/api/open/v3/faceswap/result/delbyids?_ids=" +
                            request.query.get("_ids", ""))

    async def delete(request: web.Request) -> web.Response:
        deleted.append(request.path)
        return web.json_response({"code": 1000, "data": {}})

    path = FAMILIES["faceswap"].path
    async with aiohttp_server({path: moved,
                               "/api/open/v3/faceswap/result/delbyids": delete}) as url:
        api = ApiConfig(base_url=url, api_key=API_KEY)
        async with AkoolClient(api) as client:
            with pytest.raises(PathRefused, match="delbyids"):
                await client.job_info("a" * 24, "faceswap")
    assert deleted == []


#: family -> (a job whose main file is large enough to be cut, its main file as served
#: and as archived).
RESUMED: dict[str, tuple[JobScenario, str, str]] = {
    "image": (JobScenario(family="image", image_size=300_000), "image.png", "image.png"),
    "audio": (JobScenario(family="audio", audio_size=300_000), "audio.mp3", "audio.mp3"),
    "faceswap": (JobScenario(family="faceswap", files=("video",), video_size=300_000),
                 "video.mp4", "result.mp4"),
    "image2video": (JobScenario(family="image2video", files=("video",), video_size=300_000),
                    "video.mp4", "video.mp4"),
}


@pytest.mark.parametrize("family", sorted(RESUMED))
async def test_a_transfer_cut_short_is_resumed_by_the_next_run(family, standin, make_config,
                                                                tmp_path):
    """A run cut short keeps the bytes of each family's file under its role's temporary
    name; the next run resumes them with a Range request and archives the file whole."""
    scenario, served, archived = RESUMED[family]
    item_id = IDS[family]
    standin.add_job(item_id, scenario)
    standin.add_file_faults(item_id, served, "stall")
    manifest = parse_manifest(f"{FAMILIES[family].section}:\n  - {item_id}\n")
    cut = {"read_timeout": 0.25, "retries": {"attempts": 1, "wait_initial": 0.01,
                                             "wait_max": 0.05}}
    first = await archive(make_config(downloads=cut), manifest)
    assert first.items[0].outcome is Outcome.FAILED
    folder = tmp_path / "archive" / item_id
    kept = [p for p in folder.iterdir() if p.name.endswith(".part")]
    assert len(kept) == 1 and kept[0].stat().st_size > 0
    assert not (folder / "archive.json").exists()

    second = await archive(make_config(), manifest)
    [item] = second.items
    assert item.outcome is Outcome.ARCHIVED, item.error
    assert [f.name for f in item.files] == [archived]
    assert item.files[0].sha256 == standin.file_sha256(item_id, served)
    assert any(job == item_id and ranged.startswith("bytes=") and ranged != "bytes=0-"
               for job, _, ranged in standin.file_ranges)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [archived, "info.json", "SHA256SUMS", "archive.json"])


def test_status_remote_asks_each_family_at_its_endpoint(served, workdir):
    """`status --remote` over a manifest of every family: each id's state as its own
    family's endpoint says (nothing archived yet), the batched families in one request."""
    from .conftest import CLI_ENV, run_cli

    standin, cwd = served[0], workdir
    lines = []
    for family, (scenario, _) in CASES.items():
        standin.add_job(IDS[family], scenario)
        lines.append(f"{FAMILIES[family].section}:\n  - {IDS[family]}")
    (cwd / "jobs.yaml").write_text("\n".join(lines) + "\n")
    result = run_cli("status", "--json", "--remote", "jobs.yaml", cwd=cwd, env=CLI_ENV)
    assert result.returncode == 0, result.stderr
    items = {i["id"]: i for i in json.loads(result.stdout)["items"]}
    for family in CASES:
        remote = items[IDS[family]]["remote"]
        assert items[IDS[family]]["state"] == "absent"
        assert (remote["status"], remote["error"]) in ((1, None), (2, None)), (family, remote)
    assert standin.delete_calls == [] and standin.unknown_requests == []


async def test_the_report_counts_each_family(standin, make_config):
    """The run report's totals say, per family the run had ids of, how each ended."""
    from archiver.report import build_report

    standin.add_job(IDS["video"], JobScenario(outcome="failed"))
    standin.add_job(IDS["image"], CASES["image"][0])
    standin.add_job(IDS["audio"], CASES["audio"][0])
    manifest = parse_manifest(f"videos: [{IDS['video']}]\nimages: [{IDS['image']}]\n"
                              f"audios: [{IDS['audio']}]\n")
    result = await archive(make_config(), manifest)
    report = build_report(result, result.exit_status)
    assert report["totals"]["families"] == {"video": {"ids": 1, "failed": 1},
                                            "image": {"ids": 1, "archived": 1},
                                            "audio": {"ids": 1, "archived": 1}}
    assert {i["id"]: i["family"] for i in report["items"]} == {
        IDS["video"]: "video", IDS["image"]: "image", IDS["audio"]: "audio"}


@pytest.mark.parametrize("family", ["image", "audio", "faceswap", "image2video"])
async def test_api_faults_at_each_family_endpoint_are_retried(family, standin, make_config):
    """A 429 with Retry-After, an HTML error page and a reset connection at a family's
    endpoint (a batched one answers the whole batch so): retried, then archived."""
    scenario, names = CASES[family]
    item_id = IDS[family]
    standin.add_job(item_id, scenario, api_faults=[(429, 0), "html", "reset"])
    other = hashlib.sha256(f"{family}-2".encode()).hexdigest()[:24]
    standin.add_job(other, scenario)
    section = FAMILIES[family].section
    result = await archive(make_config(), parse_manifest(f"{section}: [{item_id}, {other}]\n"))
    assert [i.outcome for i in result.items] == [Outcome.ARCHIVED] * 2, \
        [i.error for i in result.items]
    assert {f.name for f in result.items[0].files} == set(names)
    assert standin.api_calls >= 3 + 2  # the three faults, then two polls to "done"
    assert standin.delete_calls == [] and standin.unknown_requests == []


@pytest.mark.parametrize("family", sorted(RESUMED))
async def test_gc_removes_what_a_cut_run_left_of_each_family(family, standin, make_config,
                                                              tmp_path):
    """The temporaries a cut run keeps under a family's role names are garbage gc knows
    (and removes, once old enough) for an id nobody committed; a committed id's files
    are never touched."""
    scenario, served, _ = RESUMED[family]
    item_id, done_id = IDS[family], hashlib.sha256(family.encode()).hexdigest()[24:48]
    standin.add_job(item_id, scenario)
    standin.add_job(done_id, scenario)
    standin.add_file_faults(item_id, served, "stall")
    section = FAMILIES[family].section
    cut = {"read_timeout": 0.25, "retries": {"attempts": 1, "wait_initial": 0.01,
                                             "wait_max": 0.05}}
    config = make_config(downloads=cut)
    result = await archive(config, parse_manifest(f"{section}: [{item_id}, {done_id}]\n"))
    assert [i.outcome for i in result.items] == [Outcome.FAILED, Outcome.ARCHIVED]
    root = tmp_path / "archive"
    kept = sorted(p.name for p in (root / item_id).iterdir())
    assert kept and all(name.startswith(".") for name in kept), kept
    committed = sorted(p.name for p in (root / done_id).iterdir())

    layer = Archive.from_config(config.storage)
    await layer.open()
    try:
        collected = await layer.collect_garbage(None, 0.0, False)
    finally:
        await layer.close()
    assert sorted(Path(g.where).name for g in collected.files) == kept
    assert {g.item for g in collected.files} == {item_id}
    assert not (root / item_id).exists()
    assert sorted(p.name for p in (root / done_id).iterdir()) == committed


async def test_a_resumed_file_keeps_the_name_its_first_bytes_gave(standin, make_config,
                                                                  tmp_path):
    """An image that is a JPEG, cut short: the next run resumes it past its first bytes
    and still names it image.jpg (the kind comes from the bytes kept, not the new ones)."""
    item_id = IDS["image"]
    standin.add_job(item_id, JobScenario(family="image", image_size=300_000,
                                         image_format="jpeg"))
    standin.add_file_faults(item_id, "image.jpg", "stall")
    manifest = parse_manifest(f"images:\n  - {item_id}\n")
    cut = {"read_timeout": 0.25, "retries": {"attempts": 1, "wait_initial": 0.01,
                                             "wait_max": 0.05}}
    assert (await archive(make_config(downloads=cut), manifest)).items[0].outcome \
        is Outcome.FAILED
    [item] = (await archive(make_config(), manifest)).items
    assert item.outcome is Outcome.ARCHIVED, item.error
    assert [f.name for f in item.files] == ["image.jpg"]
    assert any(job == item_id and ranged != "bytes=0-" for job, _, ranged in standin.file_ranges)
    assert (tmp_path / "archive" / item_id / "image.jpg").read_bytes()[:3] == b"\xff\xd8\xff"
