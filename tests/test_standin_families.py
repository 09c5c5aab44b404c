"""The stand-in's family seam: a result family is one ``Family`` registered with the
server, and the batched kind (several ids per request, a list answered) works through
the shared API plumbing. The family here is made up for the test, shaped like Akool's
image-to-video (POST, ids as one comma-separated string) and face swap (GET) lookups."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from archiver.testing.standin import (
    FAMILIES,
    INFO_PATH,
    VIDEO,
    AkoolStandIn,
    Family,
    JobScenario,
    JobView,
)
from archiver.testing.standin.content import File, bytes_file, mp4_file

AUTH = {"x-api-key": "test-key"}
CLIP_PATH = "/api/test/v4/clip/resultsByIds"
CLIP_LIST_PATH = "/api/test/v3/clip/listbyids"


def _clip_files(job_id: str, scen: JobScenario, create_time: int) -> dict[str, File]:
    files = {"video.mp4": mp4_file(scen.video_size, job_id.encode(), create_time)}
    if "cover" in scen.files:
        files["cover.jpg"] = bytes_file(b"\xff\xd8cover\xff\xd9", "image/jpeg", create_time)
    return files


def _clip_entry(view: JobView) -> dict[str, Any]:
    return {"_id": view.job_id, "status": view.status, "video_url": view.url("video"),
            "cover_url": view.url("cover"), "image_url": "https://example.invalid/input.png"}


CLIP = Family(name="clip", path=CLIP_PATH, id_param="_ids",
              files={"video": "video.mp4", "cover": "cover.jpg"},
              render=_clip_entry, make_files=_clip_files, method="POST", batched=True,
              callback_file="video")
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
    assert set(standin.families) == {"video", "clip", "clip_list"}
    assert set(AkoolStandIn().families) == {VIDEO.name}
    with pytest.raises(ValueError, match="unknown family 'image'"):
        standin.add_job("a", family="image")
    with pytest.raises(ValueError, match="unknown file kinds"):
        standin.add_job("a", family="clip", files=("original_srt",))
    with pytest.raises(ValueError, match="unknown file"):
        standin.add_job("a", family="clip", file_faults={"original_srt": [500]})
    with pytest.raises(ValueError, match="already served"):
        AkoolStandIn(families=(VIDEO, CLIP, Family(**{**CLIP.__dict__, "name": "other"})))
