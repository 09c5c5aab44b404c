"""A real S3 endpoint on loopback for the tests: moto's server in a subprocess.

Real HTTP and real boto3 - nothing in botocore is stubbed. The server is started once per
test session; each test gets its own bucket and dummy credentials in its environment.
Test modules use the fixtures ``moto_endpoint`` and ``s3`` after
``from .s3server import moto_endpoint_fixture, s3_fixture``.

Two settings make moto closer to what the tests need:

- ``S3_UPLOAD_PART_MIN_SIZE``: moto enforces S3's minimum part size (5 MiB) on
  CompleteMultipartUpload, like S3. The tests lower it to :data:`TEST_PART_SIZE` so that
  part boundaries can be exercised with small files - and moto still rejects any
  non-final part smaller than that, so a sink that cut a short part would fail.
- moto stores whatever checksum a client claims and never rejects a wrong one, so no test
  here expects it to.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig

#: Part size the contract tests use; moto is told to accept parts this small.
TEST_PART_SIZE = 256 * 1024

#: Dummy credentials, distinctive enough to grep for in everything a run writes.
ACCESS_KEY_ID = "AKIAARCHIVERTEST7Q2Z"
SECRET_ACCESS_KEY = "archiver-test-secret/Zq8v+T3mK9pW2xR7cN4bL6hJ1sD5fG0a"
SESSION_TOKEN = "archiver-test-session-token-0c1d2e3f4a5b6c7d8e9f"
SECRETS = (ACCESS_KEY_ID, SECRET_ACCESS_KEY, SESSION_TOKEN)
REGION = "us-east-1"


def aws_env(home: Path | None = None) -> dict[str, str]:
    """Environment for boto3 (in-process or a subprocess): dummy keys, no host config."""
    devnull = os.devnull
    env = {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
        "AWS_SESSION_TOKEN": SESSION_TOKEN,
        "AWS_DEFAULT_REGION": REGION,
        # Never read the developer's real ~/.aws, never wait for an instance role.
        "AWS_CONFIG_FILE": devnull,
        "AWS_SHARED_CREDENTIALS_FILE": devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    if home is not None:
        env["HOME"] = str(home)
    return env


def moto_command(host: str, port: int) -> list[str]:
    """The moto_server command line: the script next to this Python, else ``-m``."""
    script = Path(sys.executable).parent / "moto_server"
    if script.exists():
        return [str(script), "-H", host, "-p", str(port)]
    return [sys.executable, "-m", "moto.server", "-H", host, "-p", str(port)]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def moto_server(*, part_min_size: int = TEST_PART_SIZE, log: Path | None = None,
                extra_env: dict[str, str] | None = None,
                timeout: float = 30.0) -> Iterator[str]:
    """Start ``moto_server`` on a free loopback port; yield its URL; stop it on exit.

    With *log*, the server's output goes there and its request recorder (off until a
    test starts it) writes next to it instead of into the working directory.
    """
    env = {
        **os.environ,
        "S3_UPLOAD_PART_MIN_SIZE": str(part_min_size),
        # moto spools keys above this to temp files; its default follows the part minimum,
        # which the tests make tiny. Keep objects in memory: faster, nothing on disk.
        "MOTO_S3_DEFAULT_KEY_BUFFER_SIZE": str(64 * 1024 * 1024),
        "MOTO_RECORDER_FILEPATH": str(log.with_suffix(".recording")) if log else os.devnull,
        **(extra_env or {}),
    }
    for attempt in range(3):  # the port may be taken between free_port() and bind
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        out = open(log, "ab") if log is not None else subprocess.DEVNULL  # noqa: SIM115
        proc = subprocess.Popen(moto_command("127.0.0.1", port), env=env,
                                stdout=out, stderr=subprocess.STDOUT)
        try:
            if _wait_ready(url, proc, timeout):
                break
        except BaseException:
            _stop(proc)
            raise
        _stop(proc)
        if attempt == 2:
            raise RuntimeError("moto_server did not start")
    try:
        yield url
    finally:
        _stop(proc)
        if out is not subprocess.DEVNULL:
            out.close()


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"{url}/moto-api/data.json", timeout=1):
                return True
        except (urllib.error.URLError, OSError):
            time.sleep(0.05)
    return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def moto_api(endpoint: str, path: str, data: bytes | None = None) -> bytes:
    """Call one of moto's ``/moto-api/`` endpoints (e.g. the request recorder)."""
    request = urllib.request.Request(f"{endpoint}/moto-api/{path}", data=data,
                                     method="POST" if data is not None else "GET")
    with urllib.request.urlopen(request, timeout=10) as resp:
        return bytes(resp.read())


@contextlib.contextmanager
def recording(endpoint: str) -> Iterator[list[dict[str, Any]]]:
    """Record the requests moto receives inside the block; the list is filled on exit.

    Each entry has ``method``, ``url`` and ``headers`` (the body too: keep it small).
    """
    requests: list[dict[str, Any]] = []
    moto_api(endpoint, "recorder/reset-recording", b"")
    moto_api(endpoint, "recorder/start-recording", b"")
    try:
        yield requests
    finally:
        moto_api(endpoint, "recorder/stop-recording", b"")
        text = moto_api(endpoint, "recorder/download-recording").decode()
        requests.extend(json.loads(line) for line in text.splitlines() if line.strip())
        moto_api(endpoint, "recorder/reset-recording", b"")


@dataclass
class S3Fixture:
    """One test's view of the moto server: endpoint, a client, a fresh bucket."""

    endpoint: str
    bucket: str
    client: Any

    def list_keys(self, prefix: str = "") -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix)
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))

    def read(self, key: str) -> bytes:
        return bytes(self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def open_uploads(self) -> list[dict[str, Any]]:
        answer = self.client.list_multipart_uploads(Bucket=self.bucket)
        return list(answer.get("Uploads", []))


def make_client(endpoint: str) -> Any:
    return boto3.session.Session(
        aws_access_key_id=ACCESS_KEY_ID, aws_secret_access_key=SECRET_ACCESS_KEY,
        region_name=REGION,
    ).client("s3", endpoint_url=endpoint,
             config=BotoConfig(s3={"addressing_style": "path"}))


class _Shared:
    """One moto server per test session, however many modules import the fixture.

    A fixture imported into several test modules is registered once per module; the
    reference count makes them share one server, stopped when the last one tears down.
    """

    users = 0
    url: str | None = None
    stack = contextlib.ExitStack()


@pytest.fixture(scope="session", name="moto_endpoint")
def moto_endpoint_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of the moto server of this test session."""
    if _Shared.url is None:
        log = tmp_path_factory.mktemp("moto") / "moto_server.log"
        _Shared.url = _Shared.stack.enter_context(moto_server(log=log))
    _Shared.users += 1
    try:
        yield _Shared.url
    finally:
        _Shared.users -= 1
        if _Shared.users == 0:
            _Shared.url = None
            _Shared.stack.close()


@pytest.fixture(name="s3")
def s3_fixture(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> S3Fixture:
    """A fresh bucket on the session's moto server; dummy credentials in os.environ."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL",
                 "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    for name, value in aws_env().items():
        monkeypatch.setenv(name, value)
    client = make_client(moto_endpoint)
    bucket = f"archiver-test-{uuid.uuid4().hex[:16]}"
    client.create_bucket(Bucket=bucket)
    return S3Fixture(moto_endpoint, bucket, client)
