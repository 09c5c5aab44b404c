"""Manifests where pods can read them: standard input, s3://bucket/key, https:// URLs."""

from __future__ import annotations

import asyncio
import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web as aioweb

from archiver.config import S3StorageConfig
from archiver.errors import ManifestError
from archiver.sources import load_manifest_from

from .conftest import API_KEY, config_dict, write_yaml
from .s3server import (  # noqa: F401 - fixtures: moto_endpoint, s3
    S3Fixture,
    aws_env,
    moto_endpoint_fixture,
    s3_fixture,
)
from .servers import aiohttp_server

IDS = ["srcid01", "srcid02", "srcid03"]


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
    seen: list[dict[str, str]] = []

    def do_GET(self) -> None:
        type(self).seen.append(dict(self.headers))
        status, headers, body = self.routes.get(self.path.split("?")[0], (404, {}, b"no"))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def web() -> Iterator[tuple[str, type[_Handler]]]:
    """A plain HTTP server on 127.0.0.1 (loopback: the one place http:// is accepted)."""
    handler = type("Handler", (_Handler,), {"routes": {}, "seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def test_url_manifest_is_read_without_credentials(web):
    """A loopback URL is fetched with no auth or cookie header; its source is named."""
    url, handler = web
    handler.routes["/m.yaml"] = (200, {}, yaml.safe_dump(IDS).encode())
    manifest = load_manifest_from(f"{url}/m.yaml?X-Amz-Signature=sig123")
    assert [i.id for i in manifest] == IDS
    assert manifest.source == f"{url}/m.yaml"  # no query string: it may be a signature
    assert not {"Authorization", "Cookie"} & set(handler.seen[0])


def test_url_errors_name_source_and_line_never_the_query(web):
    """Bad content names URL and line; 404, oversize and refused redirects are one line."""
    url, handler = web
    handler.routes["/bad.yaml"] = (200, {}, b"- srcid01\n- not an id\n")
    handler.routes["/big.yaml"] = (200, {}, b"- srcid01\n" * 200)
    handler.routes["/away"] = (302, {"Location": "http://203.0.113.9/m.yaml"}, b"")
    handler.routes["/file"] = (302, {"Location": "file:///etc/passwd"}, b"")
    with pytest.raises(ManifestError, match=rf"^{url}/bad.yaml:2: item 1: invalid"):
        load_manifest_from(f"{url}/bad.yaml?sig=sig123")
    with pytest.raises(ManifestError) as missing:
        load_manifest_from(f"{url}/missing.yaml?sig=sig123")
    assert str(missing.value) == f"{url}/missing.yaml: manifest not found (HTTP 404)"
    with pytest.raises(ManifestError, match="larger than"):
        load_manifest_from(f"{url}/big.yaml", limit=1024)
    with pytest.raises(ManifestError, match="use https://"):
        load_manifest_from(f"{url}/away")
    with pytest.raises(ManifestError, match="not https://"):
        load_manifest_from(f"{url}/file")


@pytest.mark.parametrize(("spec", "words"), [
    ("http://203.0.113.9/m.yaml", "use https://"),
    ("https://user:pw@example.com/m.yaml", "must not carry a user name or password"),
    ("s3://bucket-only", "expected s3://BUCKET/KEY"),
])
def test_refused_before_any_connection(spec, words):
    """Plain http to the network, credentials in the URL, a bucket without key: refused."""
    with pytest.raises(ManifestError, match=words) as refused:
        load_manifest_from(spec)
    assert "pw" not in str(refused.value)


def test_stdin_manifest_via_cli(tmp_path):
    """MANIFEST "-" reads standard input; an error names <stdin> and the line."""
    data = config_dict("http://127.0.0.1:9", tmp_path / "archive")
    data["api"]["api_key"] = "${TEST_AKOOL_KEY}"
    write_yaml(tmp_path / "archiver.yaml", data)
    (tmp_path / "archive").mkdir()
    env = {**os.environ, "TEST_AKOOL_KEY": API_KEY}
    ok = subprocess.run([sys.executable, "-m", "archiver", "status", "-"], cwd=tmp_path,
                        env=env, input=yaml.safe_dump(IDS), capture_output=True, text=True,
                        timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert [line.split()[0] for line in ok.stdout.splitlines()] == IDS
    bad = subprocess.run([sys.executable, "-m", "archiver", "status", "-"], cwd=tmp_path,
                         env=env, input="- srcid01\n- ../etc\n", capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2
    assert bad.stderr.startswith("archiver: error: <stdin>:2: item 1: invalid")


def test_s3_manifest_via_cli(tmp_path, s3):
    """s3://bucket/key uses the standard chain and the storage.s3 endpoint; errors named."""
    data = config_dict("http://127.0.0.1:9", tmp_path / "unused")
    data["api"]["api_key"] = "${TEST_AKOOL_KEY}"
    data["storage"] = {"backend": "s3", "s3": {
        "bucket": s3.bucket, "prefix": "akool/", "endpoint_url": s3.endpoint,
        "region": "us-east-1", "addressing_style": "path"}}
    write_yaml(tmp_path / "archiver.yaml", data)
    s3.client.put_object(Bucket=s3.bucket, Key="lists/videos.yaml",
                         Body=yaml.safe_dump({"videos": IDS}).encode())
    s3.client.put_object(Bucket=s3.bucket, Key="lists/bad.yaml", Body=b"videos:\n  - a/b\n")
    env = {**os.environ, "TEST_AKOOL_KEY": API_KEY, **aws_env(tmp_path)}

    def status(spec: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "archiver", "status", spec],
                              cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=60)

    ok = status(f"s3://{s3.bucket}/lists/videos.yaml")
    assert ok.returncode == 0, ok.stderr
    assert [line.split()[0] for line in ok.stdout.splitlines()] == IDS
    missing = status(f"s3://{s3.bucket}/lists/nope.yaml")
    assert missing.returncode == 2
    assert missing.stderr.strip() == \
        f"archiver: error: s3://{s3.bucket}/lists/nope.yaml: manifest not found"
    bad = status(f"s3://{s3.bucket}/lists/bad.yaml")
    assert bad.returncode == 2
    assert bad.stderr.startswith(
        f"archiver: error: s3://{s3.bucket}/lists/bad.yaml:2: videos[0]: invalid")
    assert Path(tmp_path / "unused").exists() is False


def _throttling_s3(failures: int) -> tuple[dict[str, Any], list[str]]:
    """Routes of a fake S3 endpoint answering 503 SlowDown *failures* times, then the
    manifest; and the list of requests it saw. (moto cannot throttle on demand.)"""
    seen: list[str] = []

    async def get_object(request: aioweb.Request) -> aioweb.Response:
        seen.append(request.path)
        if len(seen) <= failures:
            return aioweb.Response(status=503, content_type="application/xml", body=(
                b"<Error><Code>SlowDown</Code><Message>Reduce your rate</Message></Error>"))
        return aioweb.Response(body=yaml.safe_dump({"videos": IDS}).encode())

    return {"/bucket/lists/videos.yaml": get_object}, seen


def _s3_config(endpoint: str, attempts: int) -> S3StorageConfig:
    return S3StorageConfig(bucket="bucket", endpoint_url=endpoint, region="us-east-1",
                           addressing_style="path", retries={
                               "attempts": attempts, "wait_initial": 0.01, "wait_max": 0.02})


async def test_s3_manifest_read_is_retried_by_storage_s3_retries(monkeypatch, tmp_path):
    """A throttled manifest read is tried again as storage.s3.retries says, once per attempt."""
    for name, value in aws_env(tmp_path).items():
        monkeypatch.setenv(name, value)
    routes, seen = _throttling_s3(failures=2)
    async with aiohttp_server(routes) as endpoint:
        manifest = await asyncio.to_thread(
            load_manifest_from, "s3://bucket/lists/videos.yaml", s3=_s3_config(endpoint, 3))
    assert [item.id for item in manifest.items] == IDS
    assert len(seen) == 3


async def test_s3_manifest_read_gives_up_after_the_attempts(monkeypatch, tmp_path):
    """Throttled beyond the attempts: exactly that many requests, then one clear error."""
    for name, value in aws_env(tmp_path).items():
        monkeypatch.setenv(name, value)
    routes, seen = _throttling_s3(failures=10)
    async with aiohttp_server(routes) as endpoint:
        with pytest.raises(ManifestError, match=r"^s3://bucket/lists/videos.yaml: cannot read "
                                                r"manifest: SlowDown: Reduce your rate$"):
            await asyncio.to_thread(load_manifest_from, "s3://bucket/lists/videos.yaml",
                                    s3=_s3_config(endpoint, 2))
    assert len(seen) == 2
