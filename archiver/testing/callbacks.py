"""Akool's side of a webhook: sign, encrypt and POST callbacks, good and bad.

Written from ``akool-api.md`` ("Webhooks") alone, independently of the receiver in
:mod:`archiver.webhook`, so that a mistake in one is not mirrored in the other:

- ``dataEncrypt`` = Base64(AES-CBC(key = client secret bytes, IV = client id bytes,
  PKCS#7(JSON payload)));
- ``signature`` = hex SHA-1 of ``clientId``, ``timestamp``, ``nonce``, ``dataEncrypt``
  (as strings) sorted and concatenated.

:class:`CallbackSender` also produces the faults a receiver must refuse: a tampered
signature, a stale timestamp, a replay of the very same body; and the duplicates it must
accept harmlessly (the same news under a fresh nonce, as Akool's retries may be).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = ["CallbackSender", "Delivery", "encrypt_payload", "sign", "signed_body"]


def encrypt_payload(payload: dict[str, Any], client_id: str, client_secret: str) -> str:
    """``dataEncrypt`` for *payload*."""
    padder = padding.PKCS7(128).padder()
    plain = padder.update(json.dumps(payload).encode("utf-8")) + padder.finalize()
    encryptor = Cipher(algorithms.AES(client_secret.encode()),
                       modes.CBC(client_id.encode())).encryptor()
    return base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode("ascii")


def sign(client_id: str, timestamp: int, nonce: str, data_encrypt: str) -> str:
    """The callback's ``signature``."""
    joined = "".join(sorted([client_id, str(timestamp), nonce, data_encrypt]))
    return hashlib.sha1(joined.encode("utf-8")).hexdigest()


def signed_body(payload: dict[str, Any], client_id: str, client_secret: str, *,
                timestamp: int | None = None, nonce: str | None = None) -> dict[str, Any]:
    """The JSON object Akool POSTs for *payload* (timestamp in ms, nonce a string)."""
    timestamp = int(time.time() * 1000) if timestamp is None else timestamp
    nonce = str(secrets.randbelow(10**9)) if nonce is None else nonce
    data = encrypt_payload(payload, client_id, client_secret)
    return {"signature": sign(client_id, timestamp, nonce, data), "dataEncrypt": data,
            "timestamp": timestamp, "nonce": nonce}


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
             extra: dict[str, Any] | None = None, timestamp: int | None = None,
             nonce: str | None = None) -> dict[str, Any]:
        """A correctly signed and encrypted body saying *job_id* reached *status*."""
        payload: dict[str, Any] = {"_id": job_id, "status": status, "type": 2}
        if url is not None:
            payload["url"] = url
        payload.update(extra or {})
        return signed_body(payload, self.client_id, self.client_secret,
                           timestamp=timestamp, nonce=nonce)

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
        """Send the very same body again (same nonce and timestamp)."""
        return await self.post(delivery.body)

    async def duplicate(self, job_id: str, status: int = 3, **kwargs: Any) -> Delivery:
        """The same news again, freshly signed (a new nonce): must be harmless."""
        return await self.notify(job_id, status, **kwargs)
