"""What every page of the archiver shares (see :mod:`archiver.pages`).

Every string that comes from outside - Akool's answers, a manifest's labels, a record
read back from the archive, an error's text - goes into a page through :func:`text` or
:func:`url_path` and nowhere else, and never into a script: a page's script is a
constant, allowed by its hash in the page's Content-Security-Policy
(:func:`content_security_policy`), so even markup that escaped escaping could not run
script.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import re
from urllib.parse import quote

# Pages of 1,000 items escape some 20,000 strings, nearly all of them harmless: those
# pass through untouched (one scan), the others are escaped.
_NEEDS_ESCAPING = re.compile(r"[&<>\"']").search


def text(value: object) -> str:
    """*value* as HTML text or a quoted attribute's value: ``& < > " '`` escaped."""
    value = str(value)
    return html.escape(value, quote=True) if _NEEDS_ESCAPING(value) else value


def url_path(*segments: str) -> str:
    """A relative URL of path *segments*, each percent-encoded whole (a ``/``, ``?`` or
    ``#`` in a name stays in its segment), ready for an attribute."""
    return text("/".join(map(_segment, segments)))


@functools.lru_cache(maxsize=1024)
def _segment(name: str) -> str:
    # Cached: the same few file names (video.mp4...) come back item after item.
    return quote(name, safe="")


def source_hash(source: str) -> str:
    """The CSP source of an inline ``<script>`` or ``<style>`` whose text is *source*."""
    digest = hashlib.sha256(source.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


def content_security_policy(*, script: str | None, style: str) -> str:
    """A policy admitting nothing but the page's own inline *style* and *script* (by
    hash: no ``'unsafe-inline'``) and images and media from the page's own origin (the
    archive's files, by relative links; images also inline, ``data:``, which runs
    nothing: the page's empty icon): no connection, no frame, no form, no base."""
    scripts = source_hash(script) if script is not None else "'none'"
    return (f"default-src 'none'; script-src {scripts}; style-src {source_hash(style)}; "
            "img-src 'self' data:; media-src 'self'; base-uri 'none'; form-action 'none'")


def size_words(size: int | None) -> str:
    """``1.4 MiB``; ``-`` when unknown."""
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover - the loop always returns
