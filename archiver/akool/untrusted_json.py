"""JSON from a sender not trusted yet (a webhook's body, before its signature is
checked; its payload): parsed bounded by construction - nesting measured before
:mod:`json` could recurse, integers bounded as they are met, ``NaN`` refused - so that
nothing a sender writes makes the parser raise anything but :class:`JSONRefused`."""

from __future__ import annotations

import json
import re
from typing import Any

#: JSON nested deeper than this is refused before parsing. A callback's envelope is one
#: flat object and its payload a small one; :mod:`json` recurses once per level and
#: raises RecursionError near 1,000 (less on a deep stack).
MAX_DEPTH = 32
#: Integers longer than this are refused while parsing: Python refuses to convert more
#: than 4,300 digits (``sys.set_int_max_str_digits``) and takes quadratic time below
#: that. Akool's longest number is a 13-digit timestamp.
MAX_INT_DIGITS = 64
#: A JSON string, or an unterminated one running to the end of the text (possessive:
#: linear time on any input, no backtracking). On bytes: UTF-8 never puts an ASCII byte
#: (a quote, a backslash, a bracket) inside a multi-byte character.
_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+(?:"|\\?\Z)', re.S)
#: Brackets only, and of one kind: "{" -> "[", "}" -> "]", every other byte deleted.
_ONE_KIND = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")


def _nested_at_most(depth: int) -> re.Pattern[bytes]:
    # Balanced brackets nested at most *depth* deep are a regular language: this
    # pattern, nested *depth* times. Possessive, so matching is one linear pass.
    pattern = b""
    for _ in range(depth):
        pattern = rb"(?:\[" + pattern + rb"\])*+"
    return re.compile(pattern)


_BALANCED = _nested_at_most(MAX_DEPTH)


class JSONRefused(ValueError):
    """The text is not a JSON document of sane depth and numbers; the message says why
    (never quoting the text)."""


class Number:
    """A number of the envelope, kept as the text the sender wrote: the signature is
    over that text, and no conversion happens before its range is known."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


class _NotAccepted(ValueError):
    """Raised by the parser's hooks; :func:`load_json` turns it into a refusal."""


def _bounded_int(digits: str) -> int:
    if len(digits) > MAX_INT_DIGITS and len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise _NotAccepted(f"a number of more than {MAX_INT_DIGITS} digits")
    return int(digits)


def _no_constant(name: str) -> Any:
    raise _NotAccepted(f"{name} is not JSON")


# Built once: json.loads() with any option builds a new decoder on every call.
_EXACT = json.JSONDecoder(parse_int=Number, parse_float=Number, parse_constant=_no_constant)
_BOUNDED = json.JSONDecoder(parse_int=_bounded_int, parse_constant=_no_constant)


def load_json(data: bytes, *, exact_numbers: bool = False) -> Any:
    """Parse UTF-8 JSON from a sender we do not trust yet; :class:`JSONRefused` for
    anything but a document of sane depth and numbers.

    Bounded by construction rather than by catching what :mod:`json` may raise: the
    nesting depth is measured first (:func:`_check_depth`, linear time), and ``NaN`` /
    ``Infinity`` (not JSON) are refused. Numbers: with *exact_numbers* they stay
    :class:`Number` (their text), nothing is converted and each field's check judges
    its own; otherwise integers longer than :data:`MAX_INT_DIGITS` are refused as the
    parser meets them, before Python's conversion could refuse them its own way.
    """
    _check_depth(data)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise JSONRefused("body is not UTF-8") from None
    try:
        return (_EXACT if exact_numbers else _BOUNDED).decode(text)
    except _NotAccepted as exc:
        raise JSONRefused(str(exc)) from None
    except json.JSONDecodeError:
        raise JSONRefused("not JSON") from None


def _check_depth(data: bytes) -> None:
    """Refuse *data* if its arrays and objects nest deeper than :data:`MAX_DEPTH`, or
    if its brackets do not balance (invalid JSON, which the parser would still recurse
    into up to the point where it fails). Linear time, in C: the regular expressions
    and ``bytes.translate`` do the work."""
    if data.count(b"[") + data.count(b"{") <= MAX_DEPTH:
        # Cannot nest deeper (a callback's case, at the speed of bytes.count); unbalanced
        # brackets are left to the parser, which cannot recurse far here.
        return
    # Brackets inside strings are text; what remains must be balanced and shallow.
    brackets = _JSON_STRING.sub(b"", data).translate(_ONE_KIND, _NOT_BRACKET)
    if not _BALANCED.fullmatch(brackets):
        raise JSONRefused(f"JSON nested more than {MAX_DEPTH} deep, or its brackets do "
                          "not balance")
