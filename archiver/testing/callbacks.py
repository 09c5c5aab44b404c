"""Akool's side of a webhook: sign, encrypt and POST callbacks, good and bad.

Written from ``akool-api.md`` ("Webhooks") alone, independently of the receiver in
:mod:`archiver.akool.webhook`, so that a mistake in one is not mirrored in the other:

- ``dataEncrypt`` = Base64(AES-CBC(key = client secret bytes, IV = the first 16 bytes
  of the client id, PKCS#7(JSON payload))) - or hex, as one of Akool's samples has it.
  Real client ids are 24 characters and Akool's own demos cut the IV to 16 bytes
  (akool-families.md, section 8); the signature uses the whole client id;
- ``signature`` = hex SHA-1 of ``clientId``, ``timestamp``, ``nonce``, ``dataEncrypt``
  (as strings) sorted and concatenated. Akool's samples write ``timestamp`` as a number
  or a string and ``nonce`` as a string or a number: the string signed is the value's
  JSON text for a number, the string itself otherwise.

:class:`CallbackSender` also produces the faults a receiver must refuse: a tampered
signature, a stale timestamp, bodies built to crash a parser (:func:`hostile_bodies`);
and what it must accept harmlessly: the very same body again (Akool retrying a 200 it
did not see), the same news under a fresh nonce, two different callbacks that share a
nonce and a timestamp.

The decrypted payload is ``{"_id", "status", "type", "url"}`` (``url`` with status 3).
``type`` is one of :data:`CALLBACK_TYPES`, the values Akool documents, or anything else
(Akool documents none for image-to-video, character swap, reage...), or missing
(``callback_type=None``): a receiver must take them all.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = ["CALLBACK_TYPES", "CallbackSender", "Delivery", "encrypt_payload",
           "hostile_bodies", "sign", "signed_body"]

Encoding = Literal["base64", "hex"]

#: The payload ``type`` values Akool's webhook page lists, one per product.
CALLBACK_TYPES = ("faceswap", "image", "audio", "talking photo", "video translate",
                  "background change", "avatar", "lipsync")


def encrypt_payload(payload: dict[str, Any] | bytes, client_id: str, client_secret: str,
                    encoding: Encoding = "base64") -> str:
    """``dataEncrypt`` for *payload* (an object as JSON, or bytes as they are)."""
    plain = payload if isinstance(payload, bytes) else json.dumps(payload).encode("utf-8")
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plain) + padder.finalize()
    encryptor = Cipher(algorithms.AES(client_secret.encode()),
                       modes.CBC(client_id.encode()[:16])).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    if encoding == "hex":
        return ciphertext.hex()
    return base64.b64encode(ciphertext).decode("ascii")


def _text(value: int | float | str) -> str:
    # What the receiver sees in the body: a number's JSON text, a string as it is.
    return value if isinstance(value, str) else json.dumps(value)


def sign(client_id: str, timestamp: int | float | str, nonce: int | float | str,
         data_encrypt: str) -> str:
    """The callback's ``signature``."""
    joined = "".join(sorted([client_id, _text(timestamp), _text(nonce), data_encrypt]))
    return hashlib.sha1(joined.encode("utf-8")).hexdigest()


def signed_body(payload: dict[str, Any] | bytes, client_id: str, client_secret: str, *,
                timestamp: int | float | str | None = None,
                nonce: int | float | str | None = None,
                encoding: Encoding = "base64") -> dict[str, Any]:
    """The JSON object Akool POSTs for *payload*: timestamp now in ms, a random string
    nonce; either may be given in any form Akool uses (number or string)."""
    timestamp = int(time.time() * 1000) if timestamp is None else timestamp
    nonce = str(secrets.randbelow(10**9)) if nonce is None else nonce
    data = encrypt_payload(payload, client_id, client_secret, encoding)
    return {"signature": sign(client_id, timestamp, nonce, data), "dataEncrypt": data,
            "timestamp": timestamp, "nonce": nonce}


def hostile_bodies(client_id: str, client_secret: str) -> dict[str, tuple[bytes, int, str]]:
    """Bodies built to crash a receiver, by name: (body, the HTTP status and reason a
    careful receiver answers). Each fits in 64 KiB. Those marked "signed" carry a valid
    signature (a sender who has the credentials, or a bug on Akool's side); the others
    need none."""
    now = int(time.time() * 1000)

    def unsigned(**fields: Any) -> bytes:
        return json.dumps({"signature": "0" * 40, "dataEncrypt": "AAAA", "timestamp": now,
                           "nonce": "1", **fields}).encode()

    def signed(payload: dict[str, Any] | bytes, nonce: str, **kwargs: Any) -> bytes:
        return json.dumps(signed_body(payload, client_id, client_secret, nonce=nonce,
                                      **kwargs)).encode()

    digits = "7" * 5_000
    unsigned_text = unsigned().decode()
    return {
        "nested 10,000 deep": (b"[" * 10_000 + b"]" * 10_000, 400, "bad_json"),
        "opening 10,000 arrays": (b'{"a": ' + b"[" * 10_000, 400, "bad_json"),
        "a timestamp of 5,000 digits": (
            unsigned_text.replace(f'"timestamp": {now}', f'"timestamp": {digits}').encode(),
            400, "bad_shape"),
        "a nonce of 5,000 digits": (
            unsigned_text.replace('"nonce": "1"', f'"nonce": {digits}').encode(),
            400, "bad_shape"),
        "an integer of 5,000 digits elsewhere": (
            unsigned_text[:-1].encode() + b', "n": ' + digits.encode() + b"}",
            401, "bad_signature"),
        "a signature with a lone surrogate": (unsigned(signature="\ud800" * 40), 401,
                                              "bad_signature"),
        "a nonce with a lone surrogate": (unsigned(nonce="\udfff"), 400, "bad_shape"),
        "signed: a timestamp of 10^400 ms": (signed({"_id": "h1", "status": 3}, "1",
                                                    timestamp=10**400), 400, "bad_shape"),
        "signed: a payload nested 20,000 deep": (signed(b"[" * 20_000 + b"]" * 20_000, "2"),
                                                 400, "bad_payload"),
        "signed: a payload opening 20,000 arrays": (
            signed(b'{"_id": "h3", "status": 3, "a": ' + b"[" * 20_000, "3"),
            400, "bad_payload"),
        "signed: a payload with an integer of 5,000 digits": (
            signed(b'{"_id": "h6", "status": 3, "n": ' + digits.encode() + b"}", "6"),
            400, "bad_payload"),
        "signed: a status that is a list": (signed({"_id": "h4", "status": [3]}, "4"),
                                            400, "bad_payload"),
        "signed: a url with a lone surrogate": (
            signed({"_id": "h5", "status": 3, "url": "https://x/\ud800"}, "5"),
            400, "bad_payload"),
    }


@dataclass(frozen=True, slots=True)
class Delivery:
    """One POST and its answer."""

    body: dict[str, Any]
    status: int
    text: str


class CallbackSender:
    """POSTs callbacks to *url*; use as ``async with CallbackSender(url, cid, secret)``."""

    def __init__(self, url: str, client_id: str, client_secret: str, *,
                 connections: int = 100) -> None:
        self.url = url
        self.client_id = client_id
        self.client_secret = client_secret
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> CallbackSender:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._connections),
            timeout=aiohttp.ClientTimeout(total=60))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    def body(self, job_id: str, status: int = 3, *, url: str | None = None,
             callback_type: str | None = "talking photo",
             extra: dict[str, Any] | None = None, timestamp: int | float | str | None = None,
             nonce: int | float | str | None = None,
             encoding: Encoding = "base64") -> dict[str, Any]:
        """A correctly signed and encrypted body saying *job_id* reached *status*, of
        *callback_type* (``None``: the payload has no ``type``)."""
        payload: dict[str, Any] = {"_id": job_id, "status": status}
        if callback_type is not None:
            payload["type"] = callback_type
        if url is not None:
            payload["url"] = url
        payload.update(extra or {})
        return signed_body(payload, self.client_id, self.client_secret,
                           timestamp=timestamp, nonce=nonce, encoding=encoding)

    async def notify(self, job_id: str, status: int = 3, **kwargs: Any) -> Delivery:
        """Deliver one good callback."""
        return await self.post(self.body(job_id, status, **kwargs))

    async def post(self, body: dict[str, Any] | bytes | str) -> Delivery:
        """POST *body* (an object is sent as JSON; bytes/str as they are)."""
        if self._session is None:
            raise RuntimeError("use CallbackSender as `async with`")
        data = body if isinstance(body, bytes | str) else json.dumps(body)
        async with self._session.post(self.url, data=data,
                                      headers={"Content-Type": "application/json"}) as resp:
            text = await resp.text()
        return Delivery(body if isinstance(body, dict) else {}, resp.status, text)

    # ----------------------------------------------------------------- faults

    def tampered(self, body: dict[str, Any]) -> dict[str, Any]:
        """*body* with one hex digit of the signature changed."""
        sig = body["signature"]
        flipped = ("0" if sig[-1] != "0" else "1")
        return {**body, "signature": sig[:-1] + flipped}

    def stale(self, job_id: str, age: float, status: int = 3, **kwargs: Any) -> dict[str, Any]:
        """A correctly signed body whose timestamp is *age* seconds old (negative: future)."""
        return self.body(job_id, status, timestamp=int((time.time() - age) * 1000), **kwargs)

    async def replay(self, delivery: Delivery) -> Delivery:
        """Send the very same body again: Akool retrying a 200 it did not see, or an
        eavesdropper replaying it (within ``max_age``: later, it is stale)."""
        return await self.post(delivery.body)

    async def duplicate(self, job_id: str, status: int = 3, **kwargs: Any) -> Delivery:
        """The same news again, freshly signed (a new nonce): must be harmless."""
        return await self.notify(job_id, status, **kwargs)
