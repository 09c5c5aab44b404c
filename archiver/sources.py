"""Where a manifest comes from: a local file, standard input, S3 or an https:// URL.

Pods rarely have the manifest on their disk; they can read it from

- ``-``: standard input (``kubectl exec ... archiver run - < videos.yaml``);
- ``s3://bucket/key``: read through the S3 backend's own bucket object
  (:meth:`archiver.storage.s3.S3Bucket.read_object`: boto3's standard credential chain,
  ``storage.s3.retries``, its error mapping); when the configuration has a
  ``storage.s3`` section, its ``endpoint_url``, ``region``, ``profile`` and
  ``addressing_style`` are used too (MinIO, R2: the manifest is usually on the same store);
- ``https://...``: a plain GET with no credentials of any kind (a presigned URL carries
  its own in the query string, which is never shown in messages or reports), redirects
  only to ``https://``, connect/read timeouts and an overall deadline. ``http://`` is
  accepted only for loopback hosts (a sidecar, tests): elsewhere anyone on the path
  could change which ids are archived;
- anything else: a local path, read as before (:func:`archiver.manifest.load_manifest`).

Remote and piped manifests are capped at :data:`MAX_MANIFEST_BYTES` (a million ids take
about 30 MiB). Errors name the source and, for bad content, the line, as for a file.
"""

from __future__ import annotations

import ipaddress
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import IO, TYPE_CHECKING, Any

from . import __version__
from .errors import ManifestError, StorageUnavailable
from .manifest import Manifest, load_manifest, parse_manifest
from .retry import S3_RETRIES

if TYPE_CHECKING:
    from .config import S3StorageConfig

MAX_MANIFEST_BYTES = 64 * 1024 * 1024
#: Per connect / read of an https:// manifest, and for the whole download.
TIMEOUT = 30.0
DEADLINE = 300.0
_MAX_REDIRECTS = 5


def load_manifest_from(spec: str, *, s3: S3StorageConfig | None = None,
                       stdin: IO[bytes] | None = None,
                       limit: int = MAX_MANIFEST_BYTES) -> Manifest:
    """Read and validate the manifest *spec* names (see the module docstring)."""
    if spec == "-":
        source = "<stdin>"
        stream = stdin if stdin is not None else sys.stdin.buffer
        data = _read_capped(stream, source, limit)
    elif spec.startswith("s3://"):
        source = spec
        data = _read_s3(spec, s3, limit)
    elif spec.lower().startswith(("https://", "http://")):
        source, url = _check_url(spec)
        data = _read_url(url, source, limit)
    else:
        return load_manifest(spec)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{source}: cannot read manifest: not UTF-8 text "
                            f"(byte {exc.start})") from None
    return parse_manifest(text, source=source)


def _read_capped(stream: Any, source: str, limit: int, deadline: float | None = None) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = stream.read(min(1024 * 1024, limit + 1 - size))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise ManifestError(f"{source}: manifest larger than {limit // (1024 * 1024)} MiB; "
                                "split it")
        if deadline is not None and time.monotonic() > deadline:
            raise ManifestError(f"{source}: cannot read manifest: took longer than "
                                f"{DEADLINE:g}s")


# ------------------------------------------------------------------------- S3

def _read_s3(spec: str, cfg: S3StorageConfig | None, limit: int) -> bytes:
    # Imported here: boto3 takes a while to import and most manifests are files.
    from .storage.s3 import Connection, ObjectTooLarge, S3Bucket

    bucket_name, _, key = spec[len("s3://"):].partition("/")
    if not bucket_name or not key:
        raise ManifestError(f"{spec}: expected s3://BUCKET/KEY")
    # The archive's own bucket object, on the storage's endpoint when there is one: the
    # same clients, retries (storage.s3.retries) and error mapping as every S3 request.
    bucket = S3Bucket(bucket_name, Connection.of(cfg), description=f"s3://{bucket_name}/",
                      retry=cfg.retries if cfg is not None else S3_RETRIES,
                      timeouts=(TIMEOUT, TIMEOUT))
    try:
        bucket.connect()
        data = bucket.read_object(key, limit=limit, deadline=DEADLINE)
    except ObjectTooLarge:
        raise ManifestError(f"{spec}: manifest larger than {limit // (1024 * 1024)} MiB; "
                            "split it") from None
    except StorageUnavailable as exc:
        raise ManifestError(f"{spec}: cannot read manifest: {exc}") from None
    finally:
        bucket.close_clients()
    if data is None:
        raise ManifestError(f"{spec}: manifest not found")
    return data


# ---------------------------------------------------------------------- https

def _check_url(spec: str) -> tuple[str, str]:
    """(the URL as messages show it: no query, no fragment; the URL to fetch)."""
    parts = urllib.parse.urlsplit(spec)
    shown = urllib.parse.urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2],
                                     parts.path, "", ""))
    _check_target(parts, shown)
    return shown, spec


def _check_target(parts: urllib.parse.SplitResult, shown: str) -> None:
    if parts.username is not None or parts.password is not None:
        raise ManifestError(f"{shown}: a manifest URL must not carry a user name or "
                            "password (no credentials are sent; use a presigned URL)")
    if not parts.hostname:
        raise ManifestError(f"{shown}: not a URL with a host")
    scheme = parts.scheme.lower()
    if scheme == "http" and not _loopback(parts.hostname):
        raise ManifestError(f"{shown}: use https:// (http:// is accepted only for loopback "
                            "hosts: anyone on the path could change the manifest)")
    if scheme not in ("http", "https"):
        raise ManifestError(f"{shown}: only https:// URLs are read")


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _SafeRedirects(urllib.request.HTTPRedirectHandler):
    """Follow at most a few redirects, and only to targets a manifest URL may name."""

    max_redirections = _MAX_REDIRECTS

    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str,
                         headers: Any, newurl: str) -> urllib.request.Request | None:
        parts = urllib.parse.urlsplit(newurl)
        shown = urllib.parse.urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2],
                                         parts.path, "", ""))
        try:
            _check_target(parts, shown)
        except ManifestError as exc:
            raise ManifestError(f"redirected to {exc}") from None
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _read_url(url: str, source: str, limit: int) -> bytes:
    # Only these handlers: no cookies, no netrc/basic auth, no file:// or ftp:// targets.
    opener = urllib.request.OpenerDirector()
    for handler in (urllib.request.ProxyHandler(), urllib.request.UnknownHandler(),
                    urllib.request.HTTPHandler(), urllib.request.HTTPSHandler(),
                    urllib.request.HTTPDefaultErrorHandler(), _SafeRedirects(),
                    urllib.request.HTTPErrorProcessor()):
        opener.add_handler(handler)
    request = urllib.request.Request(url, headers={"User-Agent": f"archiver/{__version__}"})
    try:
        with opener.open(request, timeout=TIMEOUT) as answer:
            length = answer.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > limit:
                raise ManifestError(f"{source}: manifest larger than "
                                    f"{limit // (1024 * 1024)} MiB; split it")
            return _read_capped(answer, source, limit, time.monotonic() + DEADLINE)
    except ManifestError as exc:
        if str(exc).startswith("redirected to"):
            raise ManifestError(f"{source}: cannot read manifest: {exc}") from None
        raise
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise ManifestError(f"{source}: manifest not found (HTTP 404)") from None
        if 300 <= exc.code < 400:  # urllib refused the target (not http/https) itself
            raise ManifestError(f"{source}: cannot read manifest: redirected (HTTP "
                                f"{exc.code}) to a target that is not https://") from None
        raise ManifestError(f"{source}: cannot read manifest: HTTP {exc.code}") from None
    except urllib.error.URLError as exc:
        raise ManifestError(f"{source}: cannot read manifest: {exc.reason}") from None
    except (OSError, ValueError) as exc:
        raise ManifestError(f"{source}: cannot read manifest: {type(exc).__name__}: "
                            f"{exc}") from None
