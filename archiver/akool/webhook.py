"""Akool's webhook callbacks: check the signature, decrypt the payload, validate its shape.

Akool POSTs ``{"signature", "dataEncrypt", "timestamp", "nonce"}`` (``akool-api.md``,
"Webhooks"):

- ``signature`` is the hex SHA-1 of ``clientId``, ``timestamp``, ``nonce`` and
  ``dataEncrypt`` as strings, sorted, concatenated with no separator;
- ``dataEncrypt`` is AES-CBC ciphertext with PKCS#7 padding, key = the client secret's
  bytes (24 bytes: AES-192), IV = the client id's bytes (16), in Base64 - or in hex, as
  one of Akool's samples has it (see :func:`ciphertext_of`);
- the plaintext is JSON with ``_id``, ``status`` (2, 3, 4), ``type`` (the product:
  ``faceswap``, ``image``, ``talking photo``...) and, at 3, ``url``. ``type`` names the
  result family to poll (:func:`family_of_type`); a missing or unknown one is accepted
  all the same, with the family unknown (``None``): the worker finds it by asking each
  family (:mod:`archiver.service.probe`).

Akool's samples differ on the types: ``timestamp`` comes as a number or a string of
digits, ``nonce`` as a string or a number. Both forms are accepted and the signature is
checked over the *text* that came (a number's JSON text as written), never over a
re-formatted value.

Pure functions, no I/O: :mod:`archiver.service.serve` calls :func:`open_callback` on each body.
Every failure is a :class:`CallbackRejected` with a short machine ``reason`` (a metrics
label) and a message that never quotes the secret, the body or the decrypted payload.
Nothing a sender controls can make them raise anything else: JSON is parsed by
:func:`~.untrusted_json.load_json`, which bounds nesting and integer length before :mod:`json` could
recurse or convert without limit, and timestamps are compared as integers.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ..manifest import ID_PATTERN
from .untrusted_json import JSONRefused, Number, load_json

#: Statuses a callback may carry (akool-api.md): 2 processing, 3 success, 4 failed.
CALLBACK_STATUSES = frozenset({2, 3, 4})
_FIELDS = ("signature", "dataEncrypt", "timestamp", "nonce")
_NONCE_MAX = 256
#: Timestamps (ms) must lie in [0, 2**53): what Akool's JavaScript can send exactly
#: (year 287,396). Anything else is not a time, refused before any arithmetic.
_TIMESTAMP_LIMIT = 2**53
_HEX_SIGNATURE = re.compile(r"[0-9a-fA-F]{40}")
_DIGITS = re.compile(r"[0-9]{1,20}")
#: A JSON number's text whose exponent, if any, is short enough for Decimal to handle.
_SHORT_EXPONENT = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]{1,4})?")
_HEX_BLOCKS = re.compile(r"(?:[0-9a-fA-F]{32})+")
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

    #: Lower-case hex, 40 digits.
    signature: str
    data_encrypt: str
    #: Milliseconds since 1970, and the text the sender wrote for it (what is signed).
    timestamp: int
    timestamp_text: str
    #: The nonce's text: a string as it came, or a number's JSON text.
    nonce: str

    @property
    def key(self) -> bytes:
        """What makes this delivery unique: SHA-256 of everything the signature covers
        (timestamp, nonce, ciphertext), each length-prefixed so that two different
        envelopes never hash the same text, cut to 16 bytes (a collision needs ~2^64
        deliveries; the journal keeps those of the last minutes). The same body sent
        again has the same key."""
        digest = hashlib.sha256()
        for part in (self.timestamp_text, self.nonce, self.data_encrypt):
            data = part.encode("utf-8")
            digest.update(b"%d:" % len(data) + data)
        return digest.digest()[:16]


#: Akool's webhook ``type`` values (normalised by :func:`normalise_type`) and the result
#: family whose endpoint polls each (akool-families.md, sections 0 and 8). Akool documents
#: none for image-to-video: the spellings it would most likely use are taken, anything
#: else is unknown and probed. Character swap, head swap and reage have none documented
#: either: unknown, probed (video first, where character swap lives).
TYPE_FAMILIES: dict[str, str] = {
    "faceswap": "faceswap",
    "image": "image",
    "backgroundchange": "image",
    "audio": "audio",
    "talkingphoto": "video",
    "videotranslate": "video",
    "videotranslation": "video",
    "avatar": "video",
    "talkingavatar": "video",
    "lipsync": "video",
    "image2video": "image2video",
    "imagetovideo": "image2video",
}
#: What :func:`normalise_type` drops: case aside, "talking photo", "Talking_Photo",
#: "talking-photo" and "talkingPhoto" are one type.
_TYPE_SEPARATORS = re.compile(r"[\s_\-]+")


def normalise_type(value: object) -> str | None:
    """A callback's ``type`` reduced for lookup (lower case, no spaces, ``_`` or ``-``),
    or None if it is not a short string."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    return _TYPE_SEPARATORS.sub("", value).lower() or None


def family_of_type(value: object) -> str | None:
    """The result family a callback's ``type`` names, or None (missing, not a string,
    or a type Akool has not documented): never a reason to refuse the callback."""
    key = normalise_type(value)
    return TYPE_FAMILIES.get(key) if key is not None else None


@dataclass(frozen=True, slots=True)
class Notification:
    """A verified, decrypted callback: one job reached ``status``."""

    job_id: str
    status: int
    url: str | None
    timestamp: int
    nonce: str
    #: The delivery's :attr:`Envelope.key`: the journal's guard against recording the
    #: same delivery twice.
    key: bytes
    #: The decrypted object as it came, unknown fields kept.
    payload: dict[str, Any] = field(repr=False)
    #: The result family its ``type`` names (:func:`family_of_type`); None: unknown.
    family: str | None = None


def signature_of(client_id: str, timestamp: int | str, nonce: str, data_encrypt: str) -> str:
    """The documented signature: hex SHA-1 of the four strings, sorted and joined."""
    parts = sorted([client_id, str(timestamp), nonce, data_encrypt])
    return hashlib.sha1("".join(parts).encode("utf-8")).hexdigest()


def check_credentials(client_id: str, client_secret: str) -> None:
    """Raise ValueError unless the pair can be an AES key (16/24/32 bytes) and give an
    IV (:func:`iv_of`: the client id's first 16 bytes; Akool's ids are 24 characters)."""
    if len(client_id.encode("utf-8")) < 16:
        raise ValueError("webhook.client_id must be at least 16 bytes (its first 16 are "
                         "the AES-CBC IV; Akool's client ids are 24 characters)")
    if len(client_secret.encode("utf-8")) not in (16, 24, 32):
        raise ValueError("webhook.client_secret must be 16, 24 or 32 bytes (the AES key; "
                         "Akool's is 24)")


def iv_of(client_id: str) -> bytes:
    """The AES-CBC IV: the client id's first 16 bytes. Akool's docs say "clientId is used
    as the IV" but show 24-character ids; Akool's own webhook demos take the first 16
    bytes. The signature still covers the whole client id."""
    return client_id.encode("utf-8")[:16]


def _load(data: bytes, reason: str, *, exact_numbers: bool = False) -> Any:
    """:func:`~.untrusted_json.load_json`, a refusal a :class:`CallbackRejected` with
    *reason*."""
    try:
        return load_json(data, exact_numbers=exact_numbers)
    except JSONRefused as exc:
        raise CallbackRejected(reason, str(exc)) from None


# -------------------------------------------------------------------- envelope

def parse_envelope(body: bytes) -> Envelope:
    """The outer JSON object, with every field of an acceptable type and range."""
    data = _load(body, "bad_json", exact_numbers=True)
    if not isinstance(data, dict):
        raise CallbackRejected("bad_shape", "body is not a JSON object")
    missing = [name for name in _FIELDS if name not in data]
    if missing:
        raise CallbackRejected("bad_shape", f"missing field(s): {', '.join(missing)}")
    signature, data_encrypt, timestamp, nonce = (data[name] for name in _FIELDS)
    if not isinstance(signature, str) or not isinstance(data_encrypt, str):
        raise CallbackRejected("bad_shape", "signature and dataEncrypt must be strings")
    if not data_encrypt.isascii():
        raise CallbackRejected("bad_shape", "dataEncrypt must be Base64 or hex")
    if not _HEX_SIGNATURE.fullmatch(signature):
        # It cannot match a hex SHA-1: refused as unsigned, before any other work.
        raise CallbackRejected("bad_signature", "signature is not 40 hex digits", status=401)
    stamp, stamp_text = _timestamp(timestamp)
    return Envelope(signature.lower(), data_encrypt, stamp, stamp_text, _nonce(nonce))


def _timestamp(value: object) -> tuple[int, str]:
    """(milliseconds, the text signed) of a timestamp written as an integer (``1710...``,
    or integral: ``1710....0``) or as a string of digits (``"1710..."``)."""
    if isinstance(value, Number):
        text = value.text
        if _DIGITS.fullmatch(text):  # Akool's usual form: no Decimal needed
            stamp: int | None = int(text)
        else:
            number = _integral(text)
            stamp = int(number) if number is not None and abs(number) < _TIMESTAMP_LIMIT \
                else None
    elif isinstance(value, str) and _DIGITS.fullmatch(value):
        text = value
        stamp = int(value)
    else:
        raise CallbackRejected("bad_shape", "timestamp must be an integer or a string of "
                                            "digits (milliseconds)")
    if stamp is None or not 0 <= stamp < _TIMESTAMP_LIMIT:
        raise CallbackRejected("bad_shape", "timestamp is not a time in milliseconds "
                                            "(an integer from 0 to 2^53)")
    return stamp, text


def _nonce(value: object) -> str:
    """The nonce's text: a non-empty string, or an integer's JSON text."""
    if isinstance(value, Number):
        if len(value.text) > _NONCE_MAX or _integral(value.text) is None:
            raise CallbackRejected("bad_shape", "a number nonce must be an integer of at "
                                                f"most {_NONCE_MAX} characters")
        value = value.text
    if not isinstance(value, str) or not value or len(value) > _NONCE_MAX:
        raise CallbackRejected("bad_shape", f"nonce must be a non-empty string of at most "
                                            f"{_NONCE_MAX} characters, or an integer")
    try:
        value.encode("utf-8")  # a lone surrogate ("\ud800") cannot be signed
    except UnicodeEncodeError:
        raise CallbackRejected("bad_shape", "nonce is not valid Unicode") from None
    return value


def _integral(text: str) -> Decimal | None:
    """The exact value of a JSON number's *text* if it is an integer (``12``, ``12.0``,
    ``1.2e1``), else None. No float is involved: no rounding, no overflow; the text is
    at most 256 characters and its exponent 4 digits, so Decimal's work is bounded."""
    if len(text) > _NONCE_MAX or not _SHORT_EXPONENT.fullmatch(text):
        return None
    number = Decimal(text)
    return number if number == number.to_integral_value() else None


def verify_signature(envelope: Envelope, client_id: str) -> None:
    """Raise (401) unless the signature matches; the comparison takes constant time."""
    expected = signature_of(client_id, envelope.timestamp_text, envelope.nonce,
                            envelope.data_encrypt)
    if not hmac.compare_digest(expected, envelope.signature):
        raise CallbackRejected("bad_signature", "signature does not match", status=401)


def check_fresh(envelope: Envelope, now: float, max_age: float) -> None:
    """Raise (401) if the timestamp is more than *max_age* seconds from *now*, either way."""
    # In integer milliseconds: exact, and no float conversion of the sender's number.
    skew_ms = abs(int(now * 1000) - envelope.timestamp)
    if skew_ms > max_age * 1000:
        raise CallbackRejected(
            "stale", f"timestamp is {skew_ms // 1000}s away from now (webhook.max_age is "
                     f"{max_age:g}s)", status=401)


# --------------------------------------------------------------------- payload

def ciphertext_of(data_encrypt: str) -> bytes:
    """The ciphertext bytes of ``dataEncrypt``: hex if it is nothing but hex digits in
    whole AES blocks (32 digits each), else Base64.

    Unambiguous for genuine callbacks: Base64 of ciphertext is written with 64 symbols
    and ends in ``=`` unless its byte count is a multiple of 3; that it would use only
    the 22 hex symbols over 44 or more characters (a callback is 2+ blocks) has a
    chance below 10^-20 - and if it did, decryption fails (400), nothing is recorded.
    """
    if _HEX_BLOCKS.fullmatch(data_encrypt):
        return bytes.fromhex(data_encrypt)
    try:
        ciphertext = base64.b64decode(data_encrypt, validate=True)
    except (binascii.Error, ValueError):
        raise CallbackRejected("bad_payload", "dataEncrypt is neither Base64 nor hex") \
            from None
    if not ciphertext or len(ciphertext) % 16:
        raise CallbackRejected("bad_payload", "dataEncrypt is not whole AES blocks")
    return ciphertext


def decrypt(data_encrypt: str, client_id: str, client_secret: str) -> bytes:
    """Base64 or hex -> AES-CBC (key = secret, IV = client id) -> PKCS#7 unpadded."""
    ciphertext = ciphertext_of(data_encrypt)
    cipher = Cipher(algorithms.AES(client_secret.encode("utf-8")),
                    modes.CBC(iv_of(client_id)))
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
    data = _load(plaintext, "bad_payload")
    if not isinstance(data, dict):
        raise CallbackRejected("bad_payload", "decrypted data is not a JSON object")
    job_id, status, url = data.get("_id"), data.get("status"), data.get("url")
    # The id becomes a folder or key name: the manifest's rule applies here too.
    if not isinstance(job_id, str) or not ID_PATTERN.fullmatch(job_id):
        raise CallbackRejected("bad_payload", "decrypted data has no valid _id")
    if type(status) is not int or status not in CALLBACK_STATUSES:
        raise CallbackRejected("bad_payload", "decrypted data has no status 2, 3 or 4")
    if url is not None and not isinstance(url, str):
        raise CallbackRejected("bad_payload", "decrypted url is not a string")
    # The journal stores it as UTF-8 text: a lone surrogate ("\ud800") would fail there,
    # with every other callback of the same commit. Only a \u escape can make one.
    if b"\\u" in plaintext:
        try:
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise CallbackRejected("bad_payload", "decrypted data is not valid Unicode") \
                from None
    return Notification(job_id, status, url or None, envelope.timestamp, envelope.nonce,
                        envelope.key, data, family_of_type(data.get("type")))


def open_callback(body: bytes, *, client_id: str, client_secret: str, now: float,
                  max_age: float) -> Notification:
    """Everything but the duplicate check (which needs the journal), in the safe order:
    shape, signature, freshness, and only then decryption of authenticated bytes."""
    envelope = parse_envelope(body)
    verify_signature(envelope, client_id)
    check_fresh(envelope, now, max_age)
    return parse_payload(decrypt(envelope.data_encrypt, client_id, client_secret), envelope)
