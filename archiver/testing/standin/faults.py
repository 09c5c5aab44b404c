"""The faults a test can inject, and how they look on the wire.

An API fault replaces one lookup's answer; a file fault replaces (or cuts short) one file
answer. Both are checked when they are queued, so that a typo in a test fails at
``add_job``, not as a puzzling answer in the middle of a run.
"""

from __future__ import annotations

import contextlib
import html
import http
import socket
import struct
from typing import TypeAlias

from aiohttp import web

#: An API fault: an HTTP status (``429``), an HTTP status with a ``Retry-After``
#: value (``(429, 5)``), ``"html"``, ``"reset"``, or a business code (``("code", 1005)``).
ApiFault: TypeAlias = int | str | tuple[int, int | float | str] | tuple[str, int]
#: A file fault: an HTTP status (``403``), ``"html200"``, ``"truncate"``, ``"stall"``
#: or ``"reset"``.
FileFault: TypeAlias = int | str

_API_FAULT_WORDS = frozenset({"html", "reset"})
_FILE_FAULT_WORDS = frozenset({"html200", "truncate", "stall", "reset"})


def check_api_fault(fault: object) -> ApiFault:
    """Return *fault* if it is a valid :data:`ApiFault`; raise ``ValueError`` otherwise."""
    if isinstance(fault, bool):
        raise ValueError(f"invalid API fault {fault!r}")
    if isinstance(fault, int) and 100 <= fault <= 599:
        return fault
    if isinstance(fault, str) and fault in _API_FAULT_WORDS:
        return fault
    if isinstance(fault, tuple) and len(fault) == 2:
        first, second = fault
        if first == "code" and isinstance(second, int) and not isinstance(second, bool):
            return ("code", second)
        if (
            isinstance(first, int)
            and not isinstance(first, bool)
            and 100 <= first <= 599
            and isinstance(second, int | float | str)
            and not isinstance(second, bool)
        ):
            return (first, second)
    raise ValueError(
        f"invalid API fault {fault!r}: use an HTTP status, (status, retry_after), "
        "'html', 'reset' or ('code', N)"
    )


def check_file_fault(fault: object) -> FileFault:
    """Return *fault* if it is a valid :data:`FileFault`; raise ``ValueError`` otherwise."""
    if isinstance(fault, int) and not isinstance(fault, bool) and 100 <= fault <= 599:
        return fault
    if isinstance(fault, str) and fault in _FILE_FAULT_WORDS:
        return fault
    raise ValueError(
        f"invalid file fault {fault!r}: use an HTTP status, 'html200', 'truncate', "
        "'stall' or 'reset'"
    )


def error_page(status: int, detail: str = "") -> str:
    """A CDN/proxy-style HTML error page."""
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    title = html.escape(f"{status} {phrase}")
    body = f"<p>{html.escape(detail)}</p>" if detail else ""
    return (
        f"<!DOCTYPE html>\n<html><head><title>{title}</title></head>\n"
        f"<body><h1>{title}</h1>{body}<hr><address>akool-standin</address></body></html>\n"
    )


def html_error(status: int, detail: str, headers: dict[str, str] | None = None) -> web.Response:
    """An HTML error page answered with *status*."""
    return web.Response(
        status=status, text=error_page(status, detail), content_type="text/html", headers=headers
    )


def reset_connection(request: web.BaseRequest) -> web.Response:
    """Drop the connection with a TCP RST and no answer.

    Returns a placeholder response for the handler to return: aiohttp cannot
    send it any more, and 444 ("no response", as nginx logs it) makes the
    access log honest about what happened.
    """
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # SO_LINGER with a zero timeout turns close() into a RST, which is
            # what a crashing proxy looks like to the client.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    return web.Response(status=444)
