"""Reading Akool's answers: the envelope (``code``, ``msg``, ``data``), business codes
to the archiver's exceptions, getToken's token, and a batched family's list of results
matched to the ids asked for. Pure functions of the bytes: :mod:`.client` does the I/O."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..errors import APIError, CredentialsError, ItemError, TransientAPIError
from .batching import Answers
from .families import Family
from .families.base import NOT_FOUND

OK = 1000
#: Business codes that mean "try again later".
TRANSIENT_CODES = frozenset({1005, 2001})
#: Business codes that mean the credentials are bad: stop the whole run.
CREDENTIAL_CODES = frozenset({1101, 1102, 1200})
#: "Invalid authorization or the token has expired": with client credentials, a new
#: token is asked for once.
TOKEN_EXPIRED = 1101

#: Longest token taken from getToken: anything longer is no token.
MAX_TOKEN_LENGTH = 8192


def _envelope(status: int, body: bytes, retry_after: float | None) -> dict[str, Any]:
    """The answer's JSON object, its ``code`` a number; or the right exception."""
    if status == 429:
        raise TransientAPIError(None, "HTTP 429 Too Many Requests", retry_after)
    if status >= 500:
        # A gateway's answer for an API that is down, as often as the API's own.
        raise TransientAPIError(None, f"HTTP {status} from the API", retry_after,
                                no_answer=True)
    if status != 200:
        raise APIError(None, f"unexpected HTTP {status} from the API")
    try:
        envelope = json.loads(body)
    except ValueError:
        raise TransientAPIError(None, "the API answered something that is not JSON",
                                no_answer=True) from None
    if not isinstance(envelope, dict) or not isinstance(envelope.get("code"), int):
        raise TransientAPIError(None, "the API answered JSON without a numeric 'code'",
                                no_answer=True)
    code = envelope["code"]
    if code == OK:
        return envelope
    msg = " ".join(str(envelope.get("msg") or "").split())[:200]
    if code in CREDENTIAL_CODES:
        raise CredentialsError(code, msg)
    if code in TRANSIENT_CODES:
        raise TransientAPIError(code, msg, retry_after)
    raise APIError(code, msg)


def parse_envelope(status: int, body: bytes, retry_after: float | None) -> Any:
    """The ``data`` of a successful answer (an object, or a list for a batched family
    that answers one), or the right exception."""
    data = _envelope(status, body, retry_after).get("data")
    if not isinstance(data, dict | list):
        raise APIError(OK, f"answer has no 'data' object (got {type(data).__name__})")
    return data


def parse_token(status: int, body: bytes, retry_after: float | None) -> str:
    """The token of getToken's answer: at the top level, beside ``code`` (no ``data``)."""
    token = _envelope(status, body, retry_after).get("token")
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH \
            or not token.isascii() or not token.isprintable() or " " in token:
        # Never the value: it may be a token, malformed or not.
        raise CredentialsError(OK, "getToken answered no usable token")
    return token


def data_object(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise APIError(OK, f"answer has no 'data' object (got {type(data).__name__})")
    return data


#: Most entries read from a batched answer's ``data.result``: more than were asked for
#: is already a sign of a confused server; a million is a hostile one.
MAX_BATCH_ENTRIES = 10_000


def parse_batch(fam: Family, ids: Sequence[str], data: Any) -> Answers:
    """One answer per id of *ids* from a batched family's ``data``: ``{"result": [...]}``
    (or the list itself). Entries are matched by ``_id``, never by position; an id with
    no entry is not found (code 1008), one whose entry is malformed gets that entry's
    one-line error; entries for ids not asked for are ignored."""
    entries = data.get("result") if isinstance(data, dict) else data
    if not isinstance(entries, list):
        error = APIError(OK, f"data.result is not a list (got {type(entries).__name__})")
        return dict.fromkeys(ids, error)
    if len(entries) > MAX_BATCH_ENTRIES:
        error = APIError(OK, f"data.result has {len(entries)} entries for {len(ids)} ids")
        return dict.fromkeys(ids, error)
    wanted = set(ids)
    found: dict[str, Any] = {}
    for entry in entries:
        if isinstance(entry, dict):
            entry_id = entry.get("_id")
            if isinstance(entry_id, str) and entry_id in wanted and entry_id not in found:
                found[entry_id] = entry
    answers: Answers = {}
    for item_id in ids:
        entry = found.get(item_id)
        if entry is None:
            answers[item_id] = APIError(NOT_FOUND, f"not in the {fam.name} endpoint's "
                                                   "answer (unknown id)")
            continue
        try:
            answers[item_id] = fam.parse(item_id, entry)
        except ItemError as exc:
            answers[item_id] = exc
    return answers
