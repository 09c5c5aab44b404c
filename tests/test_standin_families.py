"""The stand-in's result families over real HTTP: the family seam (a made-up family,
shaped like Akool's batched lookups), then each of Akool's five families - their
answers' shapes, status progression, batched answers without unknown ids, faults, the
files' bytes parsed as what they claim to be - and what every family shares: token
rotation, the destructive endpoints counted, unknown paths recorded, webhook callbacks
of each type, sample jobs and the command line."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from archiver.testing.callbacks import CALLBACK_TYPES
from archiver.testing.standin import (
    AUDIO,
    DESTRUCTIVE,
    FACESWAP,
    FAMILIES,
    FAMILY_NAMES,
    IMAGE,
    IMAGE2VIDEO,
    INFO_PATH,
    TOKEN_PATH,
    VIDEO,
    AkoolStandIn,
    Family,
    JobScenario,
    JobView,
    sample_jobs,
)
from archiver.testing.standin.content import File, bytes_file, mp4_file
from archiver.testing.standin.serving import serve_app
from tests.media_checks import (
    PARSERS,
    parse_jpeg,
    parse_m4a,
    parse_mp3,
    parse_mp4,
    parse_png,
    parse_webp,
)

AUTH = {"x-api-key": "test-key"}
REPO_ROOT = Path(__file__).resolve().parent.parent
CLIP_PATH = "/api/test/v4/clip/resultsByIds"
CLIP_LIST_PATH = "/api/test/v3/clip/listbyids"


def _clip_files(job_id: str, scen: JobScenario, create_time: int) -> dict[str, File]:
    files = {"video": mp4_file(scen.video_size, job_id.encode(), create_time)}
    if "cover" in scen.files:
        files["cover"] = bytes_file(b"\xff\xd8cover\xff\xd9", "image/jpeg", create_time)
    return files


def _clip_entry(view: JobView) -> dict[str, Any]:
    return {"_id": view.job_id, "status": view.status, "video_url": view.url("video"),
            "cover_url": view.url("cover"), "image_url": "https://example.invalid/input.png"}


CLIP = Family(name="clip", path=CLIP_PATH, id_param="_ids",
              files={"video": "video.mp4", "cover": "cover.jpg"},
              render=_clip_entry, make_files=_clip_files, method="POST", batched=True,
              callback_files=("video",))
CLIP_LIST = Family(name="clip_list", path=CLIP_LIST_PATH, id_param="_ids",
                   files={"video": "video.mp4"}, render=_clip_entry, make_files=_clip_files,
                   batched=True)


@pytest.fixture
def standin() -> AkoolStandIn:
    return AkoolStandIn(families=(*FAMILIES, CLIP, CLIP_LIST))


@pytest_asyncio.fixture
async def served(standin: AkoolStandIn) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    async with standin.serve() as url, aiohttp.ClientSession() as session:
        yield url, session


async def _post(served: tuple[str, aiohttp.ClientSession], body: Any,
                headers: dict[str, str] = AUTH) -> dict[str, Any]:
    url, session = served
    async with session.post(url + CLIP_PATH, json=body, headers=headers) as resp:
        assert resp.status == 200
        answer: dict[str, Any] = await resp.json()
        return answer


def _statuses(answer: dict[str, Any]) -> list[tuple[str, int]]:
    assert answer["code"] == 1000, answer
    return [(entry["_id"], entry["status"]) for entry in answer["data"]["result"]]


async def test_batched_post_answers_known_ids_in_order_and_leaves_out_the_rest(
    standin: AkoolStandIn, served: tuple[str, aiohttp.ClientSession]
) -> None:
    """One POST asks for several ids: each known one advances and is listed, in request
    order; unknown ids, repeats and blanks are not."""
    standin.add_job("b", family="clip", polls_until_done=2, files=("video", "cover"))
    standin.add_job("a", family="clip", polls_until_done=1)

    first = await _post(served, {"_ids": "b, nope,a,,b"})
    assert _statuses(first) == [("b", 1), ("a", 3)]
    assert first["data"]["result"][0]["video_url"] == ""
    second = await _post(served, {"_ids": "b"})
    assert _statuses(second) == [("b", 3)]
    assert standin.polls == {"a": 1, "b": 2, "nope": 1}
    assert [lookup.video_model_id for lookup in standin.lookups] == ["b,nope,a", "b"]

    _, session = served
    entry = second["data"]["result"][0]
    async with session.get(entry["video_url"]) as resp:
        body = await resp.read()
    assert hashlib.sha256(body).hexdigest() == standin.file_sha256("b", "video")
    async with session.get(entry["cover_url"]) as resp:
        assert (resp.status, await resp.read()) == (200, b"\xff\xd8cover\xff\xd9")
    assert await _post(served, {"_ids": "nope"}) == {"code": 1000, "msg": "OK",
                                                     "data": {"result": []}}


@pytest.mark.parametrize("body", [{"_ids": ["a", "b"]}, {"ids": "a"}, {"_ids": " , "}, "a,b"])
async def test_batched_post_wants_the_ids_as_one_string(
    standin: AkoolStandIn, served: tuple[str, aiohttp.ClientSession], body: Any
) -> None:
    """An array, another key, no id or a body that is not an object answer 1003."""
    standin.add_job("a", family="clip")
    assert (await _post(served, body))["code"] == 1003
    assert standin.polls == {}


async def test_batched_get_reads_the_ids_from_the_query(
    standin: AkoolStandIn, served: tuple[str, aiohttp.ClientSession]
) -> None:
    """A GET family takes the comma-separated ids from its query parameter."""
    standin.add_job("a", family="clip_list")
    standin.add_job("c", family="clip")  # another family's job: not in this list
    url, session = served
    async with session.get(url + CLIP_LIST_PATH, params={"_ids": "a,c"}, headers=AUTH) as r:
        assert _statuses(await r.json()) == [("a", 3)]
    async with session.get(url + CLIP_LIST_PATH, headers=AUTH) as r:
        assert (await r.json())["code"] == 1003


async def test_a_fault_of_one_job_answers_the_whole_request(
    standin: AkoolStandIn, served: tuple[str, aiohttp.ClientSession]
) -> None:
    """A queued API fault (or business code) of any listed job answers for the request,
    and no job in it advances."""
    standin.add_job("a", family="clip", polls_until_done=2)
    standin.add_job("b", family="clip", api_faults=[("code", 1009)])
    standin.add_job("c", family="clip", business_code=1200)

    assert (await _post(served, {"_ids": "a,b"}))["code"] == 1009
    assert _statuses(await _post(served, {"_ids": "a,b"})) == [("a", 1), ("b", 3)]
    assert (await _post(served, {"_ids": "a,c"}))["code"] == 1200
    assert _statuses(await _post(served, {"_ids": "a"})) == [("a", 3)]


async def test_a_batched_request_is_one_lookup_for_the_rate_limit() -> None:
    """The account's limit counts requests, however many ids each carries."""
    standin = AkoolStandIn(families=(*FAMILIES, CLIP), requests_per_second=0.01, burst=1)
    for job_id in "abc":
        standin.add_job(job_id, family="clip")
    async with standin.serve() as url, aiohttp.ClientSession() as session:
        served = (url, session)
        assert _statuses(await _post(served, {"_ids": "a,b,c"})) == [("a", 3), ("b", 3),
                                                                      ("c", 3)]
        assert (await _post(served, {"_ids": "a"}))["code"] == 1005
    assert standin.throttled == 1


async def test_families_share_auth_and_keep_their_jobs_apart(
    standin: AkoolStandIn, served: tuple[str, aiohttp.ClientSession]
) -> None:
    """Credentials are checked alike everywhere; the video endpoint knows no clip job."""
    standin.add_job("a", family="clip")
    assert (await _post(served, {"_ids": "a"}, headers={}))["code"] == 1102
    url, session = served
    params = {"video_model_id": "a"}
    async with session.get(url + INFO_PATH, params=params, headers=AUTH) as resp:
        assert (await resp.json())["code"] == 1008


def test_family_registration_is_checked(standin: AkoolStandIn) -> None:
    """Unknown families, kinds outside the family and clashing endpoints are refused."""
    assert set(standin.families) == {*FAMILY_NAMES, "clip", "clip_list"}
    assert set(AkoolStandIn().families) == {"video", "image", "audio", "faceswap",
                                             "image2video"}
    with pytest.raises(ValueError, match="unknown family 'headswap'"):
        standin.add_job("a", family="headswap")
    with pytest.raises(ValueError, match="unknown file kinds"):
        standin.add_job("a", family="clip", files=("original_srt",))
    with pytest.raises(ValueError, match="unknown file"):
        standin.add_job("a", family="clip", file_faults={"original_srt": [500]})
    with pytest.raises(ValueError, match="already served"):
        AkoolStandIn(families=(VIDEO, CLIP, Family(**{**CLIP.__dict__, "name": "other"})))


# ===================================================================== Akool's families

JOB = "64dd92c1f0b6684651e90e09"
OTHER = "662a10df4197b3af58532e89"
THIRD = "68919a464b4dbdd4ab3d3034"
Served = tuple[str, aiohttp.ClientSession]


async def lookup(served: Served, family: Family, ids: str,
                 headers: dict[str, str] = AUTH) -> dict[str, Any]:
    """One lookup of *ids* as the family takes them (query or JSON body); HTTP 200."""
    url, session = served
    if family.method == "GET":
        request = session.get(url + family.path, params={family.id_param: ids},
                              headers=headers)
    else:
        request = session.post(url + family.path, json={family.id_param: ids},
                               headers=headers)
    async with request as resp:
        assert resp.status == 200
        answer: dict[str, Any] = await resp.json()
        return answer


def entries(answer: dict[str, Any], family: Family) -> list[dict[str, Any]]:
    """The answer's jobs: ``data`` (single) or ``data.result`` (batched)."""
    assert answer["code"] == 1000, answer
    result: list[dict[str, Any]] = (answer["data"]["result"] if family.batched
                                    else [answer["data"]])
    return result


async def fetch(served: Served, url: str) -> tuple[int, str, bytes]:
    """Status, Content-Type and body of a file URL."""
    async with served[1].get(url) as resp:
        return resp.status, resp.content_type, await resp.read()


def file_name(url: str) -> str:
    """The last path segment of a result URL."""
    return url.split("?", 1)[0].rsplit("/", 1)[1]


# ------------------------------------------------------------------------------ image


async def test_image_job_progresses_to_its_image_and_upscales(
    standin: AkoolStandIn, served: Served
) -> None:
    """``image_status`` 1, 2, 3; ``image`` and ``upscaled_urls`` empty until done, then
    valid PNGs of the size asked for, each different; the documented fields."""
    standin.add_job(JOB, family="image", polls_until_done=3, image_size=5000,
                    files=("image", "upscaled_1", "upscaled_3"), create_time=1714032863272)
    answers = [entries(await lookup(served, IMAGE, JOB), IMAGE)[0] for _ in range(3)]
    assert [a["image_status"] for a in answers] == [1, 2, 3]
    first, done = answers[0], answers[2]
    assert (first["image"], first["upscaled_urls"], first["used_buttons"]) == ("", [], [])
    assert done["_id"] == JOB and done["create_time"] == 1714032863272
    for key in ("uid", "type", "buttons", "deduction_credit", "faceswap_quality"):
        assert key in done
    assert done["used_buttons"] == ["U1", "U3"] and "error_code" not in done
    assert done["image"].startswith(f"{served[0]}/files/{JOB}/image.png?Expires=")
    assert [file_name(u) for u in done["upscaled_urls"]] == ["upscaled-1.png",
                                                             "upscaled-3.png"]
    bodies = set()
    for url in (done["image"], *done["upscaled_urls"]):
        status, content_type, body = await fetch(served, url)
        assert (status, content_type, len(body)) == (200, "image/png", 5000)
        assert parse_png(body) == (8, 8)
        bodies.add(body)
    assert len(bodies) == 3
    assert (await lookup(served, IMAGE, OTHER)) == {"code": 1008, "msg": "content not found",
                                                    "data": None}
    async with served[1].get(served[0] + IMAGE.path, headers=AUTH) as resp:
        assert (await resp.json())["code"] == 1003


async def test_image_formats_misleading_names_and_failure(
    standin: AkoolStandIn, served: Served
) -> None:
    """A JPEG behind a ``.png`` URL, a WebP, a Content-Type that lies, and a failed job
    with ``error_code`` / ``error_reason`` and no image."""
    standin.add_job(JOB, family="image", image_format="jpeg", file_names={"image": "image.png"})
    standin.add_job(OTHER, family="image", image_format="webp", image_size=3000,
                    content_types={"image": "application/octet-stream"})
    standin.add_job(THIRD, family="image", outcome="failed", error_code=1108,
                    error_reason="Image generate error")
    jpeg = entries(await lookup(served, IMAGE, JOB), IMAGE)[0]["image"]
    assert file_name(jpeg) == "image.png"
    status, content_type, body = await fetch(served, jpeg)
    assert (status, content_type) == (200, "image/jpeg") and parse_jpeg(body) == (8, 8)
    webp = entries(await lookup(served, IMAGE, OTHER), IMAGE)[0]["image"]
    status, content_type, body = await fetch(served, webp)
    assert (file_name(webp), content_type, len(body)) == ("image.webp",
                                                          "application/octet-stream", 3000)
    assert parse_webp(body) == (8, 8)
    failed = entries(await lookup(served, IMAGE, THIRD), IMAGE)[0]
    assert (failed["image_status"], failed["image"], failed["upscaled_urls"]) == (4, "", [])
    assert (failed["error_code"], failed["error_reason"]) == (1108, "Image generate error")


# ------------------------------------------------------------------------------ audio


@pytest.mark.parametrize("audio_format", ["mp3", "wav", "m4a"])
async def test_audio_job_in_each_format(
    standin: AkoolStandIn, served: Served, audio_format: str
) -> None:
    """``status`` then ``url``: an audio file of the format and size asked for."""
    standin.add_job(JOB, family="audio", polls_until_done=2, audio_format=audio_format,
                    audio_size=20_000, create_time=1710752127995)
    first, done = [entries(await lookup(served, AUDIO, JOB), AUDIO)[0] for _ in range(2)]
    assert (first["status"], first["url"], done["status"]) == (1, "", 3)
    assert done["_id"] == JOB and done["create_time"] == 1710752127995
    extension = {"mp3": "mp3", "wav": "wav", "m4a": "m4a"}[audio_format]
    assert file_name(done["url"]) == f"audio.{extension}"
    status, content_type, body = await fetch(served, done["url"])
    assert (status, len(body)) == (200, 20_000)
    assert content_type == {"mp3": "audio/mpeg", "wav": "audio/wav",
                            "m4a": "audio/mp4"}[audio_format]
    PARSERS[audio_format](body)


async def test_audio_without_extension_and_failed(
    standin: AkoolStandIn, served: Served
) -> None:
    """An M4A behind a URL with no extension; a failed job has no url and says why."""
    standin.add_job(JOB, family="audio", audio_format="m4a", file_names={"audio": "speech"})
    standin.add_job(OTHER, family="audio", outcome="failed", error_reason="voice not found")
    url = entries(await lookup(served, AUDIO, JOB), AUDIO)[0]["url"]
    assert file_name(url) == "speech"
    assert parse_m4a((await fetch(served, url))[2]) == "soun"
    failed = entries(await lookup(served, AUDIO, OTHER), AUDIO)[0]
    assert (failed["status"], failed["url"], failed["error_reason"]) == (4, "",
                                                                         "voice not found")


# -------------------------------------------------------------------------- face swap


async def test_faceswap_lists_known_ids_in_request_order(
    standin: AkoolStandIn, served: Served
) -> None:
    """``_ids`` in the query: known face swap ids answered in request order, unknown ids
    and other families' left out; image or video behind ``url``; ``createdAt`` an ISO
    string and no ``create_time``."""
    standin.add_job(JOB, family="faceswap", files=("image",), create_time=1710757981609)
    standin.add_job(OTHER, family="faceswap", polls_until_done=2, video_size=50_000,
                    file_names={"video": "result"})
    standin.add_job(THIRD, family="image")
    unknown = "ffffffffffffffffffffffff"
    first = entries(await lookup(served, FACESWAP, f"{OTHER},{unknown},{JOB},{THIRD}"),
                    FACESWAP)
    assert [(e["_id"], e["faceswap_status"]) for e in first] == [(OTHER, 1), (JOB, 3)]
    queued, image = first
    assert queued["url"] == "" and "create_time" not in image
    assert image["createdAt"] == "2024-03-18T10:33:01.609Z"
    parsed = datetime.fromisoformat(image["createdAt"].replace("Z", "+00:00"))
    assert int(parsed.timestamp() * 1000) == 1710757981609
    assert (image["image"], queued["image"]) == (1, 0)
    for key in ("faceswap_type", "faceswap_quality", "deduction_status", "video_duration",
                "update_time", "userId", "uid"):
        assert key in image
    status, content_type, body = await fetch(served, image["url"])
    assert (status, content_type) == (200, "image/png") and parse_png(body) == (8, 8)

    (video,) = entries(await lookup(served, FACESWAP, OTHER), FACESWAP)
    assert video["faceswap_status"] == 3 and file_name(video["url"]) == "result"
    status, content_type, body = await fetch(served, video["url"])
    assert (status, content_type, len(body)) == (200, "video/mp4", 50_000)
    assert parse_mp4(body)[:2] == [b"ftyp", b"moov"]
    assert standin.polls == {OTHER: 2, unknown: 1, JOB: 1, THIRD: 1}
    assert entries(await lookup(served, FACESWAP, unknown), FACESWAP) == []


async def test_faceswap_failure_and_early_url(standin: AkoolStandIn, served: Served) -> None:
    """A failed swap says why in ``alg_msg``; with ``early_urls`` the URL comes with
    status 1, as the create call hands it out, and its file 404s until status 3."""
    standin.add_job(JOB, family="faceswap", outcome="failed", error_reason="no face")
    standin.add_job(OTHER, family="faceswap", polls_until_done=2, early_urls=True)
    failed, early = entries(await lookup(served, FACESWAP, f"{JOB},{OTHER}"), FACESWAP)
    assert (failed["faceswap_status"], failed["url"], failed["alg_msg"]) == (4, "", "no face")
    assert "error_code" not in failed
    assert early["faceswap_status"] == 1 and file_name(early["url"]) == "video.mp4"
    assert (await fetch(served, early["url"]))[0] == 404
    (done,) = entries(await lookup(served, FACESWAP, OTHER), FACESWAP)
    assert done["faceswap_status"] == 3 and done["url"] == early["url"]
    status, _, body = await fetch(served, done["url"])
    assert status == 200 and body == standin.file_bytes(OTHER, "video")


# --------------------------------------------------------------------- image to video


async def test_image2video_posts_the_ids_as_one_string(
    standin: AkoolStandIn, served: Served
) -> None:
    """``{"_ids": "a,b"}``: known ids in order; ``video_url``, ``audio_url``,
    ``cover_url`` once done; ``image_url`` - the input - from the first answer on."""
    standin.add_job(JOB, family="image2video", files=("video", "audio", "cover"),
                    create_time=1754372678000)
    standin.add_job(OTHER, family="image2video", polls_until_done=2)
    done, queued = entries(await lookup(served, IMAGE2VIDEO, f"{JOB},nope,{OTHER}"),
                           IMAGE2VIDEO)
    assert (done["_id"], done["status"], queued["_id"], queued["status"]) == (JOB, 3, OTHER, 1)
    assert done["create_time"] == 1754372678000 and done["update_time"] > 1754372678000
    assert (done["audio_type"], queued["audio_type"]) == (1, 3)
    assert (queued["video_url"], queued["audio_url"]) == ("", "")
    assert "cover_url" not in queued
    expected = {"video_url": ("video/mp4", parse_mp4), "audio_url": ("audio/mpeg", parse_mp3),
                "cover_url": ("image/jpeg", parse_jpeg), "image_url": ("image/png", parse_png)}
    for field_name, (content_type, parse) in expected.items():
        status, served_type, body = await fetch(served, done[field_name])
        assert (status, served_type) == (200, content_type), field_name
        parse(body)
    assert file_name(queued["image_url"]) == "input.png"
    assert (await fetch(served, queued["image_url"]))[0] == 200  # an input: there at once
    for body in ({"_ids": [JOB]}, {"ids": JOB}, {"_ids": ""}):
        url, session = served
        async with session.post(url + IMAGE2VIDEO.path, json=body, headers=AUTH) as resp:
            assert (await resp.json())["code"] == 1003


async def test_image2video_failure(standin: AkoolStandIn, served: Served) -> None:
    """A failed job: status 4, no video, ``error_code`` / ``error_reason``."""
    standin.add_job(JOB, family="image2video", outcome="failed", error_code=1015,
                    error_reason="Create video error")
    (failed,) = entries(await lookup(served, IMAGE2VIDEO, JOB), IMAGE2VIDEO)
    assert (failed["status"], failed["video_url"], failed["error_code"],
            failed["error_reason"]) == (4, "", 1015, "Create video error")


# ----------------------------------------------------------------- faults, every family


NEW_FAMILIES = [IMAGE, AUDIO, FACESWAP, IMAGE2VIDEO]


@pytest.mark.parametrize("family", NEW_FAMILIES, ids=lambda f: f.name)
async def test_faults_in_every_family(
    standin: AkoolStandIn, served: Served, family: Family
) -> None:
    """API faults in order, then the answer; business codes (for a batch: the whole
    request); file faults, then the file; an expired file 403."""
    scenario = standin.add_job(JOB, family=family.name,
                               api_faults=[503, ("code", 1005), "html", ("code", 1003)])
    kind = scenario.files[0]
    standin.add_file_faults(JOB, kind, 403, "truncate")
    standin.add_job(OTHER, family=family.name, business_code=1009)
    standin.add_job(THIRD, family=family.name, expired=True)
    url, session = served
    body = {family.id_param: JOB}

    async def raw() -> tuple[int, str]:
        request = (session.get(url + family.path, params=body, headers=AUTH)
                   if family.method == "GET" else
                   session.post(url + family.path, json=body, headers=AUTH))
        async with request as resp:
            return resp.status, resp.content_type

    assert await raw() == (503, "text/html")
    assert (await lookup(served, family, JOB))["code"] == 1005
    assert await raw() == (200, "text/html")
    assert (await lookup(served, family, JOB))["code"] == 1003
    assert len(entries(await lookup(served, family, JOB), family)) == 1
    assert standin.polls[JOB] == 5

    file_url = standin.file_url(JOB, kind)
    assert (await fetch(served, file_url))[0] == 403
    with pytest.raises(aiohttp.ClientPayloadError):
        await fetch(served, file_url)
    status, _, data = await fetch(served, file_url)
    assert status == 200 and data == standin.file_bytes(JOB, kind)

    assert (await lookup(served, family, f"{JOB},{OTHER}" if family.batched else OTHER)
            )["code"] == 1009
    entries(await lookup(served, family, THIRD), family)
    assert (await fetch(served, standin.file_url(THIRD, kind)))[0] == 403
    unknown = await lookup(served, family, "ffffffffffffffffffffffff")
    assert unknown == ({"code": 1000, "msg": "OK", "data": {"result": []}} if family.batched
                       else {"code": 1008, "msg": "content not found", "data": None})


async def test_the_account_limit_spans_the_families() -> None:
    """One account, one limit: lookups of any family draw from the same bucket."""
    standin = AkoolStandIn(requests_per_second=0.01, burst=2)
    standin.add_job(JOB, family="image")
    standin.add_job(OTHER, family="faceswap")
    async with standin.serve() as url, aiohttp.ClientSession() as session:
        served = (url, session)
        assert (await lookup(served, IMAGE, JOB))["code"] == 1000
        assert (await lookup(served, FACESWAP, OTHER))["code"] == 1000
        assert (await lookup(served, AUDIO, JOB))["code"] == 1005
    assert standin.throttled == 1


def test_scenarios_a_family_cannot_play(standin: AkoolStandIn) -> None:
    """Each refused at ``add_job`` with a message naming what is wrong."""
    refused = {
        "an image job has the kind 'image'": {"family": "image", "files": ("upscaled_1",)},
        "image_size: a synthetic PNG needs at least": {"family": "image", "image_size": 10},
        "an even size": {"family": "faceswap", "files": ("image",), "image_format": "webp",
                         "image_size": 5001},
        "unknown image_format 'gif'": {"family": "image", "image_format": "gif"},
        "unknown audio_format 'ogg'": {"family": "audio", "audio_format": "ogg"},
        "not a file name": {"family": "image", "file_names": {"image": "a/b.png"}},
        "two files share a name": {"family": "image", "file_names": {"image": "upscaled-1.png"}},
        "file_names: .'video'. not among": {"family": "audio", "file_names": {"video": "x"}},
        "content_types: .'image'. not among": {"family": "audio",
                                               "content_types": {"image": "x/y"}},
        "file_bytes: .'upscaled_2'. not among": {"family": "image",
                                                 "file_bytes": {"upscaled_2": b"x"}},
        "one result": {"family": "faceswap", "files": ("image", "video")},
        "the kind 'video'": {"family": "image2video", "files": ("audio",)},
        "audio_size": {"family": "image2video", "files": ("video", "audio"),
                       "audio_size": 100},
    }
    for message, fields in refused.items():
        with pytest.raises(ValueError, match=message):
            standin.add_job(JOB, **fields)
    assert standin.job_ids == []


async def test_exact_bytes_for_any_kind(standin: AkoolStandIn, served: Served) -> None:
    """``file_bytes`` serves what a test wants in place of any generated file, with the
    kind's Content-Type unless ``content_types`` says otherwise."""
    standin.add_job(JOB, family="image", file_bytes={"image": b"<html>no</html>"})
    standin.add_job(OTHER, family="faceswap", file_bytes={"video": b"short"},
                    content_types={"video": "binary/octet-stream"})
    url = entries(await lookup(served, IMAGE, JOB), IMAGE)[0]["image"]
    assert await fetch(served, url) == (200, "image/png", b"<html>no</html>")
    (swap,) = entries(await lookup(served, FACESWAP, OTHER), FACESWAP)
    assert await fetch(served, swap["url"]) == (200, "binary/octet-stream", b"short")


# ------------------------------------------------- what must never happen, and tokens


async def test_destructive_endpoints_are_counted_and_delete(
    standin: AkoolStandIn, served: Served
) -> None:
    """Every call of an endpoint that deletes at Akool is recorded, authenticated or not;
    answered as documented, and the deleted jobs are gone (left out, files 404)."""
    url, session = served
    standin.add_job(JOB, family="faceswap")
    standin.add_job(OTHER, family="faceswap")
    standin.add_job("c" * 24, family="image2video")
    standin.add_job("d" * 24, family="image2video", polls_until_done=3)
    await lookup(served, IMAGE2VIDEO, f"{'c' * 24},{'d' * 24}")
    await lookup(served, IMAGE2VIDEO, "d" * 24)  # status 2: processing
    swap_file = standin.file_url(JOB, "video")
    faceswap_del = url + "/api/open/v3/faceswap/result/delbyids"
    i2v_del = url + "/api/open/v4/image2Video/delbyids"

    async def call(method: str, target: str, body: Any, headers: dict[str, str] = AUTH
                   ) -> dict[str, Any]:
        async with session.request(method, target, json=body, headers=headers) as resp:
            assert resp.status == 200
            answer: dict[str, Any] = await resp.json()
            return answer

    assert (await call("POST", faceswap_del, {"_ids": JOB}, headers={}))["code"] == 1102
    assert standin.job_ids == [JOB, OTHER, "c" * 24, "d" * 24]
    assert await call("POST", faceswap_del, {"_ids": f"{JOB},nope"}) == {"code": 1000,
                                                                        "msg": "OK"}
    assert [e["_id"] for e in entries(await lookup(served, FACESWAP, f"{JOB},{OTHER}"),
                                      FACESWAP)] == [OTHER]
    assert (await fetch(served, swap_file))[0] == 404
    answer = await call("POST", i2v_del, {"_ids": f"{'c' * 24},{'d' * 24},{OTHER}"})
    assert answer["msg"] == "Delete successfully"
    assert answer["data"]["successIds"] == ["c" * 24]
    assert [item["_id"] for item in answer["data"]["noPermissionItems"]] == ["d" * 24, OTHER]
    assert (await call("DELETE", url + "/api/open/v4/knowledge/delete", {"id": "k1"})
            )["code"] == 1000
    assert (await call("POST", url + "/api/open/v4/liveAvatar/session/close", {}))["code"] \
        == 1003
    assert [(c.method, c.path, c.ids) for c in standin.delete_calls] == [
        ("POST", "/api/open/v3/faceswap/result/delbyids", (JOB,)),
        ("POST", "/api/open/v3/faceswap/result/delbyids", (JOB, "nope")),
        ("POST", "/api/open/v4/image2Video/delbyids", ("c" * 24, "d" * 24, OTHER)),
        ("DELETE", "/api/open/v4/knowledge/delete", ("k1",)),
        ("POST", "/api/open/v4/liveAvatar/session/close", ()),
    ]
    assert {(d.method, d.path) for d in DESTRUCTIVE} == {
        (c.method, c.path) for c in standin.delete_calls}
    standin.reset_counters()
    assert standin.delete_calls == []


async def test_unknown_paths_are_answered_404_and_recorded(
    standin: AkoolStandIn, served: Served
) -> None:
    """A path the stand-in does not serve, or a served path with another method, is a
    404 recorded in ``unknown_requests``; served paths are not recorded there."""
    url, session = served
    standin.add_job(JOB, family="image")
    await lookup(served, IMAGE, JOB)
    async with session.get(url + "/api/open/v3/content/image/delete", params={"x": "1"},
                           headers=AUTH) as resp:
        assert resp.status == 404
    async with session.get(url + IMAGE2VIDEO.path, headers=AUTH) as resp:
        assert resp.status == 404
    async with session.get(url + f"/files/{JOB}/nothing.png") as resp:
        assert resp.status == 404  # a file that is not there: the CDN's 404, not recorded
    assert [(r.method, r.path, r.query) for r in standin.unknown_requests] == [
        ("GET", "/api/open/v3/content/image/delete", {"x": "1"}),
        ("GET", IMAGE2VIDEO.path, {}),
    ]
    assert standin.unknown_requests[0].headers["x-api-key"] == "test-key"


async def test_routes_added_to_the_application_still_answer(standin: AkoolStandIn) -> None:
    """An embedding application (the benchmarks' stand-in) adds its own routes after
    ``make_app()``: they answer, and only what no route takes is an unknown path."""
    async def extra(request: web.Request) -> web.Response:
        return web.Response(text="mine")

    app = standin.make_app()
    app.router.add_get("/_bench/stats", extra)
    async with serve_app(app, "127.0.0.1", 0) as url, aiohttp.ClientSession() as session:
        async with session.get(url + "/_bench/stats") as resp:
            assert (resp.status, await resp.text()) == (200, "mine")
        async with session.get(url + "/_bench/other") as resp:
            assert resp.status == 404
    assert [r.path for r in standin.unknown_requests] == ["/_bench/other"]


async def test_get_token_and_its_rotation(standin: AkoolStandIn, served: Served) -> None:
    """``getToken`` answers ``{"code": 1000, "token": ...}`` as documented; once the token
    is rotated the old one gets 1101 in every family, and ``getToken`` gives the new one."""
    url, session = served
    standin.add_job(JOB, family="faceswap")
    standin.add_job(OTHER, family="image")
    credentials = {"clientId": "standin-clientid", "clientSecret": "standin-client-secret-24"}

    async def get_token(body: Any) -> dict[str, Any]:
        async with session.post(url + TOKEN_PATH, json=body) as resp:
            assert resp.status == 200
            answer: dict[str, Any] = await resp.json()
            return answer

    old = await get_token(credentials)
    assert old == {"code": 1000, "token": standin.token}
    bearer = {"Authorization": f"Bearer {old['token']}"}
    assert (await lookup(served, FACESWAP, JOB, headers=bearer))["code"] == 1000
    new_token = standin.rotate_token()
    assert new_token != old["token"]
    assert (await lookup(served, FACESWAP, JOB, headers=bearer))["code"] == 1101
    assert (await lookup(served, IMAGE, OTHER, headers=bearer))["code"] == 1101
    new = await get_token(credentials)
    assert new == {"code": 1000, "token": new_token}
    fresh = {"Authorization": f"Bearer {new_token}"}
    assert (await lookup(served, IMAGE, OTHER, headers=fresh))["code"] == 1000
    assert (await get_token({**credentials, "clientSecret": "wrong"}))["code"] == 1101
    assert (await get_token({"clientId": "standin-clientid"}))["code"] == 1003
    assert standin.token_requests == 4


# ------------------------------------------------------------------------- callbacks

# A 24-character client id, as real ones are: the IV is its first 16 bytes.
CLIENT_ID = "64db241f6d9e5c4bd136c187"
CLIENT_SECRET = "standin-client-secret-24"


def open_callback(body: dict[str, Any]) -> dict[str, Any]:
    """Check a callback's signature and decrypt it, straight from Akool's docs."""
    signed = "".join(sorted([CLIENT_ID, str(body["timestamp"]), str(body["nonce"]),
                             body["dataEncrypt"]]))
    assert hashlib.sha1(signed.encode()).hexdigest() == body["signature"]
    decryptor = Cipher(algorithms.AES(CLIENT_SECRET.encode()),
                       modes.CBC(CLIENT_ID.encode()[:16])).decryptor()
    padded = decryptor.update(base64.b64decode(body["dataEncrypt"])) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    payload: dict[str, Any] = json.loads(unpadder.update(padded) + unpadder.finalize())
    return payload


async def test_callbacks_carry_each_family_type_and_main_result() -> None:
    """Each family's callback decrypts to its documented ``type`` and its main result as
    ``url`` (a failure: the family's failure fields); image-to-video has no ``type``; a
    scenario can send an unknown one, or none."""
    standin = AkoolStandIn(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    jobs = {
        "a" * 24: dict(family="video"),
        "b" * 24: dict(family="video", files=("video", "translated_srt")),
        "c" * 24: dict(family="video", callback_type="avatar"),
        "d" * 24: dict(family="video", callback_type="lipsync"),
        "e" * 24: dict(family="image", files=("image", "upscaled_1")),
        "f" * 24: dict(family="image", callback_type="background change"),
        "0" * 24: dict(family="audio", audio_format="wav"),
        "1" * 24: dict(family="faceswap", files=("image",)),
        "2" * 24: dict(family="faceswap", outcome="failed", error_reason="no face"),
        "3" * 24: dict(family="image2video", files=("video", "audio")),
        "4" * 24: dict(family="image2video", callback_type="image2video"),
        "5" * 24: dict(family="video", callback_type=""),
        "6" * 24: dict(family="audio", outcome="never"),
    }
    for job_id, fields in jobs.items():
        standin.add_job(job_id, **fields)
    received: list[dict[str, Any]] = []

    async def receive(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", receive)
    async with standin.serve() as base, serve_app(app, "127.0.0.1", 0) as hook, \
            standin.callbacks(hook + "/hook") as sender:
        for job_id in jobs:
            assert (await standin.deliver(sender, job_id)).status == 200
        payloads = {p["_id"]: p for p in map(open_callback, received)}

        def done(job_id: str, kind: str, callback_type: str | None) -> dict[str, Any]:
            typed = {} if callback_type is None else {"type": callback_type}
            return {"_id": job_id, "status": 3, **typed,
                    "url": standin.file_url(job_id, kind, base)}

        assert payloads == {
            "a" * 24: done("a" * 24, "video", "talking photo"),
            "b" * 24: done("b" * 24, "video", "video translate"),
            "c" * 24: done("c" * 24, "video", "avatar"),
            "d" * 24: done("d" * 24, "video", "lipsync"),
            "e" * 24: done("e" * 24, "image", "image"),
            "f" * 24: done("f" * 24, "image", "background change"),
            "0" * 24: done("0" * 24, "audio", "audio"),
            "1" * 24: done("1" * 24, "image", "faceswap"),
            "2" * 24: {"_id": "2" * 24, "status": 4, "type": "faceswap", "alg_msg": "no face"},
            "3" * 24: done("3" * 24, "video", None),
            "4" * 24: done("4" * 24, "video", "image2video"),
            "5" * 24: done("5" * 24, "video", None),
            "6" * 24: {"_id": "6" * 24, "status": 2, "type": "audio"},
        }
    assert set(CALLBACK_TYPES) <= {p.get("type") for p in payloads.values()}
    assert file_name(payloads["0" * 24]["url"]) == "audio.wav"


# ---------------------------------------------------------------- samples, command line


def test_sample_jobs_of_every_family() -> None:
    """``sample_jobs()`` stays the six video jobs of ``archiver demo``; with families,
    each has successes and exactly one failure, all servable, ids distinct."""
    assert {s.family for s in sample_jobs().values()} == {"video"}
    assert len(sample_jobs()) == 6
    jobs = sample_jobs(FAMILY_NAMES)
    assert len(jobs) == 19 and all(re.fullmatch(r"[0-9a-f]{24}", i) for i in jobs)
    for name in FAMILY_NAMES:
        outcomes = [s.outcome for s in jobs.values() if s.family == name]
        assert outcomes.count("failed") == 1 and outcomes.count("success") >= 2, name
    standin = AkoolStandIn()
    standin.add_jobs(jobs)
    assert standin.job_ids == list(jobs)
    with pytest.raises(ValueError, match="unknown family 'nope'"):
        sample_jobs(["nope"])


def test_cli_serves_samples_of_every_family_and_shows_their_lookups() -> None:
    """``--samples``: the base URL, then one line per job saying how to look it up;
    every line, followed to the letter, reaches a final status."""
    command = [sys.executable, "-m", "archiver.testing", "--port", "0", "--samples",
               "--api-key", "k"]
    with subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            base = proc.stdout.readline().strip()
            assert re.fullmatch(r"http://127\.0\.0\.1:\d+", base)
            lines = [proc.stdout.readline().strip() for _ in range(19)]
            families = set()
            for line in lines:
                job_id, family, method, rest = line.split(" ", 3)
                families.add(family)
                url, _, body = rest.partition(" ")
                assert url.startswith(base + "/api/open/")
                statuses = []
                for _ in range(3):
                    request = urllib.request.Request(
                        url, data=body.encode() if body else None, method=method,
                        headers={"x-api-key": "k", "Content-Type": "application/json"})
                    with urllib.request.urlopen(request, timeout=5) as resp:
                        data = json.load(resp)["data"]
                    entry = data["result"][0] if "result" in data else data
                    assert entry["_id"] == job_id
                    statuses.append(next(v for k, v in entry.items() if k.endswith("status")))
                assert statuses[-1] in (3, 4), line
            assert families == set(FAMILY_NAMES)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0


def test_cli_generates_jobs_of_a_family(tmp_path: Path) -> None:
    """``--family`` with its own kinds and formats; kinds of another family are refused
    in one line."""
    bad = subprocess.run([sys.executable, "-m", "archiver.testing", "--family", "image",
                          "--files", "video"], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=30, check=False)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "python -m archiver.testing: --files video: not a file kind of the image family "
        "(image,upscaled_1,upscaled_2,upscaled_3,upscaled_4)"]
    command = [sys.executable, "-m", "archiver.testing", "--port", "0", "--jobs", "2",
               "--api-key", "k", "--family", "image", "--files", "image,upscaled_2",
               "--image-format", "jpeg", "--image-size", "3000"]
    with subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            base = proc.stdout.readline().strip()
            job_id = proc.stdout.readline().strip()
            request = urllib.request.Request(
                f"{base}{IMAGE.path}?image_model_id={job_id}", headers={"x-api-key": "k"})
            with urllib.request.urlopen(request, timeout=5) as resp:
                data = json.load(resp)["data"]
            assert len(data["upscaled_urls"]) == 1
            with urllib.request.urlopen(data["image"], timeout=5) as resp:
                assert parse_jpeg(resp.read()) == (8, 8)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
