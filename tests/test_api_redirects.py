"""The API key and token go to api.base_url's origin and nowhere else, redirects or not."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from aiohttp import web

from archiver.akool.client import RedirectRefused
from archiver.config import Config
from archiver.manifest import Manifest
from archiver.models import Outcome
from archiver.run import archive
from archiver.testing.standin import INFO_PATH

from .conftest import API_KEY, ID1, ID2, config_dict, write_yaml
from .servers import aiohttp_server, redirect_to


class _Recorder:
    """Requests a server received: the headers of each."""

    def __init__(self) -> None:
        self.headers: list[dict[str, str]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.headers.append({k.lower(): v for k, v in request.headers.items()})
        return web.json_response({"code": 1000, "data": {"video_status": 2}})


async def _archiver(*args: str, cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    """Run ``python -m archiver`` without blocking this loop (it serves the test's servers)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "archiver", *args, cwd=cwd, env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, stderr = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, stderr.decode()


@pytest.mark.parametrize("credential", ["api_key", "token"])
async def test_api_redirect_to_another_origin_stops_the_run(tmp_path, credential):
    """A 302 from the API to another origin: exit 2, one line, the other host sees no key."""
    elsewhere = _Recorder()
    api = _Recorder()
    async with aiohttp_server({"/{tail:.*}": elsewhere.handle}) as other_url:

        async def moved(request: web.Request) -> web.Response:
            await api.handle(request)
            raise web.HTTPFound(f"{other_url}{request.path_qs}")

        async with aiohttp_server({INFO_PATH: moved}) as api_url:
            data = config_dict(api_url, tmp_path / "archive")
            del data["api"]["api_key"]
            data["api"][credential] = "${TEST_SECRET}"
            write_yaml(tmp_path / "archiver.yaml", data)
            write_yaml(tmp_path / "videos.yaml", [ID1])
            status, stderr = await _archiver("run", "videos.yaml", cwd=tmp_path,
                                             env={"TEST_SECRET": API_KEY})
    assert status == 2
    assert stderr == (f"archiver: error: the API at {api_url} redirected to {other_url}; "
                      "refusing to send credentials there (set api.base_url to the right "
                      "address)\n")
    sent = api.headers[0].get("x-api-key") or api.headers[0].get("authorization")
    assert sent is not None and API_KEY in sent  # the API itself did get the credential
    assert elsewhere.headers == []  # the other origin saw nothing at all
    assert API_KEY not in stderr
    assert not (tmp_path / "archive" / ID1).exists()


async def test_api_redirect_within_its_origin_is_followed(tmp_path):
    """A redirect to another path of the same origin is followed, key included."""
    api = _Recorder()

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPMovedPermanently(f"/v4/info?{request.query_string}")

    async def answer(request: web.Request) -> web.Response:
        await api.handle(request)
        return web.json_response({"code": 1000, "data": {
            "video_status": 4, "error_code": 1015, "error_reason": "no face"}})

    async with aiohttp_server({INFO_PATH: moved, "/v4/info": answer}) as api_url:
        config = Config.model_validate(config_dict(api_url, tmp_path / "archive"))
        result = await archive(config, Manifest.from_ids([ID1]))
    assert result.items[0].outcome is Outcome.FAILED
    assert result.items[0].error == "Akool job failed: no face (error_code 1015)"
    assert api.headers[0]["x-api-key"] == API_KEY


async def test_api_redirect_refusal_is_fatal_for_the_library(tmp_path):
    """archive() raises RedirectRefused (a FatalRunError) naming both origins, no query."""
    async with aiohttp_server({INFO_PATH: redirect_to("http://10.11.12.13:8443/steal?k=1")}) \
            as api_url:
        config = Config.model_validate(config_dict(api_url, tmp_path / "archive"))
        with pytest.raises(RedirectRefused) as err:
            await archive(config, Manifest.from_ids([ID1, ID2]))
    assert str(err.value) == (f"the API at {api_url} redirected to http://10.11.12.13:8443; "
                              "refusing to send credentials there (set api.base_url to the "
                              "right address)")
