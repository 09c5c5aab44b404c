"""Akool's webhook callbacks: check the signature, decrypt the payload, validate its shape.

Akool POSTs ``{"signature", "dataEncrypt", "timestamp", "nonce"}`` (``akool-api.md``,
"Webhooks"):

- ``signature`` is the hex SHA-1 of ``clientId``, ``timestamp``, ``nonce`` and
  ``dataEncrypt`` as strings, sorted, concatenated with no separator;
- ``dataEncrypt`` is Base64 of AES-CBC ciphertext with PKCS#7 padding, key = the client
  secret's bytes (24 bytes: AES-192), IV = the client id's bytes (16);
- the plaintext is JSON with ``_id``, ``status`` (2, 3, 4) and, at 3, ``url``.

Pure functions, no I/O: :mod:`archiver.serve` calls :func:`open_callback` on each body.
Every failure is a :class:`CallbackRejected` with a short machine ``reason`` (a metrics
label) and a message that never quotes the secret or the decrypted payload.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .manifest import ID_PATTERN

#: Statuses a callback may carry (akool-api.md): 2 processing, 3 success, 4 failed.
CALLBACK_STATUSES = frozenset({2, 3, 4})
_FIELDS = ("signature", "dataEncrypt", "timestamp", "nonce")
_NONCE_MAX = 256


class CallbackRejected(Exception):
    """A callback that must not be recorded. ``status`` is the HTTP answer."""

    def __init__(self, reason: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        #: A short label for metrics and logs: ``bad_json``, ``bad_signature``...
        self.reason = reason
        self.status = status


@dataclass(frozen=True, slots=True)
class Envelope:
    """The outer, signed body of a callback (still encrypted)."""

    signature: str
    data_encrypt: str
    timestamp: int
    nonce: str


@dataclass(frozen=True, slots=True)
class Notification:
    """A verified, decrypted callback: one job reached ``status``."""

    job_id: str
    status: int
    url: str | None
    timestamp: int
    nonce: str
    #: The decrypted object as it came, unknown fields kept.
    payload: dict[str, Any] = field(repr=False)


def signature_of(client_id: str, timestamp: int | str, nonce: str, data_encrypt: str) -> str:
    """The documented signature: hex SHA-1 of the four strings, sorted and joined."""
    parts = sorted([client_id, str(timestamp), nonce, data_encrypt])
    return hashlib.sha1("".join(parts).encode("utf-8")).hexdigest()


def check_credentials(client_id: str, client_secret: str) -> None:
    """Raise ValueError unless the pair can be an AES key (16/24/32 bytes) and IV (16)."""
    if len(client_id.encode("utf-8")) != 16:
        raise ValueError("webhook.client_id must be 16 bytes (it is the AES-CBC IV)")
    if len(client_secret.encode("utf-8")) not in (16, 24, 32):
        raise ValueError("webhook.client_secret must be 16, 24 or 32 bytes (the AES key; "
                         "Akool's is 24)")


def parse_envelope(body: bytes) -> Envelope:
    """The outer JSON object, with every field of the right type."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CallbackRejected("bad_json", "body is not JSON") from None
    if not isinstance(data, dict):
        raise CallbackRejected("bad_shape", "body is not a JSON object")
    missing = [name for name in _FIELDS if name not in data]
    if missing:
        raise CallbackRejected("bad_shape", f"missing field(s): {', '.join(missing)}")
    signature, data_encrypt, timestamp, nonce = (data[name] for name in _FIELDS)
    if not isinstance(signature, str) or not isinstance(data_encrypt, str):
        raise CallbackRejected("bad_shape", "signature and dataEncrypt must be strings")
    # bool is an int in Python; a timestamp of `true` is not a time.
    if isinstance(timestamp, bool) or not isinstance(timestamp, int):
        raise CallbackRejected("bad_shape", "timestamp must be an integer (milliseconds)")
    if not isinstance(nonce, str) or not nonce or len(nonce) > _NONCE_MAX:
        raise CallbackRejected("bad_shape", "nonce must be a non-empty string")
    return Envelope(signature, data_encrypt, timestamp, nonce)


def verify_signature(envelope: Envelope, client_id: str) -> None:
    """Raise (401) unless the signature matches; the comparison takes constant time."""
    expected = signature_of(client_id, envelope.timestamp, envelope.nonce, envelope.data_encrypt)
    if not hmac.compare_digest(expected.encode(), envelope.signature.lower().encode("utf-8")):
        raise CallbackRejected("bad_signature", "signature does not match", status=401)


def check_fresh(envelope: Envelope, now: float, max_age: float) -> None:
    """Raise (401) if the timestamp is more than *max_age* seconds from *now*, either way."""
    skew = abs(now - envelope.timestamp / 1000)
    if skew > max_age:
        raise CallbackRejected(
            "stale", f"timestamp is {skew:.0f}s away from now (webhook.max_age is "
                     f"{max_age:g}s)", status=401)


def decrypt(data_encrypt: str, client_id: str, client_secret: str) -> bytes:
    """Base64 -> AES-CBC (key = secret, IV = client id) -> PKCS#7 unpadded plaintext."""
    try:
        ciphertext = base64.b64decode(data_encrypt, validate=True)
    except (binascii.Error, ValueError):
        raise CallbackRejected("bad_payload", "dataEncrypt is not Base64") from None
    if not ciphertext or len(ciphertext) % 16:
        raise CallbackRejected("bad_payload", "dataEncrypt is not whole AES blocks")
    cipher = Cipher(algorithms.AES(client_secret.encode("utf-8")),
                    modes.CBC(client_id.encode("utf-8")))
    decryptor = cipher.decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise CallbackRejected("bad_payload", "dataEncrypt does not decrypt (bad padding)") \
            from None


def parse_payload(plaintext: bytes, envelope: Envelope) -> Notification:
    """The decrypted JSON as a :class:`Notification`; unknown fields are kept."""
    try:
        data = json.loads(plaintext)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CallbackRejected("bad_payload", "decrypted data is not JSON") from None
    if not isinstance(data, dict):
        raise CallbackRejected("bad_payload", "decrypted data is not a JSON object")
    job_id, status, url = data.get("_id"), data.get("status"), data.get("url")
    # The id becomes a folder or key name: the manifest's rule applies here too.
    if not isinstance(job_id, str) or not ID_PATTERN.fullmatch(job_id):
        raise CallbackRejected("bad_payload", "decrypted data has no valid _id")
    if isinstance(status, bool) or status not in CALLBACK_STATUSES:
        raise CallbackRejected("bad_payload", "decrypted data has no status 2, 3 or 4")
    if url is not None and not isinstance(url, str):
        raise CallbackRejected("bad_payload", "decrypted url is not a string")
    return Notification(job_id, status, url or None, envelope.timestamp, envelope.nonce, data)


def open_callback(body: bytes, *, client_id: str, client_secret: str, now: float,
                  max_age: float) -> Notification:
    """Everything but the replay check (which needs the journal), in the safe order:
    shape, signature, freshness, and only then decryption of authenticated bytes."""
    envelope = parse_envelope(body)
    verify_signature(envelope, client_id)
    check_fresh(envelope, now, max_age)
    return parse_payload(decrypt(envelope.data_encrypt, client_id, client_secret), envelope)
