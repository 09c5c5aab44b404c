"""Deciding the resume: which kept bytes an attempt may build on, and what the answer allows.

A transfer cut short keeps its bytes (where the backend can) and the next attempt - in
this run or the next - asks only for the rest with ``Range``, guarded by ``If-Range`` so
that a file changed in between is fetched again from zero. Only a strong validator can
guard that (:func:`validator`: an ETag that is not weak, or a Last-Modified at least a
minute older than the answer's Date): bytes that came without one are never resumed, so
storage does not keep them - a Range request without If-Range could splice two versions
of a file.

Kept bytes that turn out not to fit the file (:class:`StalePartial`) are dropped and
the file is fetched again from zero; so are bytes followed by more than the declared
length (:class:`Overrun`): the declared length was wrong, so they are no prefix to trust.
"""

from __future__ import annotations

import datetime
import email.utils
import logging

import aiohttp

from .._http import parse_retry_after
from ..errors import DownloadError, TransientDownloadError, UrlGone
from ..models import FileRecord
from ..storage.base import ItemWriter, Partial
from ..validate import named, sniff

# One logger for the whole package, named as before it was split: filters keep working.
log = logging.getLogger("archiver.download")

_GONE = frozenset({403, 404, 410})
#: Last-Modified is a strong validator only this many seconds before the answer's Date.
_STRONG_DATE = 60


class StalePartial(TransientDownloadError):
    """The partial bytes kept from an earlier attempt cannot be resumed."""


class Overrun(StalePartial):
    """More bytes came than Content-Length said: what was stored is not to be trusted."""


async def kept_partial(writer: ItemWriter, name: str, shown: str) -> Partial | None:
    """The bytes kept for *name* that this attempt may build on (complete or resumable)."""
    partial = await writer.partial(name)
    if partial is None or partial.source != shown:
        return None  # nothing kept, or bytes of some other file: start over
    if not partial.complete and not partial.validator:
        # Nothing to send as If-Range: a Range request could splice two versions of
        # the file. (Storage keeps no such bytes; an earlier version did.)
        return None
    return partial


async def reuse_complete(writer: ItemWriter, name: str, partial: Partial,
                         shown: str, kinds: tuple[str, ...] = ()) -> FileRecord:
    """Commit a copy an earlier run received and checked in full but never committed
    (*kinds*: its name is a role, its kept first bytes give the extension)."""
    log.info("%s: using the complete copy kept by an earlier attempt", name)
    kept = await writer.open_file(name, resume=partial)
    if kinds:
        kind = sniff(partial.head)
        if kind not in kinds:  # it was checked: only a changed file could get here
            await kept.abort(keep=False)
            raise StalePartial(f"{shown}: the kept copy is no longer of a known kind")
        name = named(name, kind)
        kept.rename(name)
    extra = await kept.commit(partial.size, partial.hasher.hexdigest())
    return FileRecord(name=name, size=partial.size, sha256=partial.hasher.hexdigest(),
                      source_url=shown, extra=extra)


def range_headers(partial: Partial | None) -> dict[str, str]:
    """The request headers that ask for the rest of *partial* (none to ask from zero)."""
    if partial is None:
        return {}
    assert partial.validator
    return {"Range": f"bytes={partial.size}-", "If-Range": partial.validator}


def resume_from(resp: aiohttp.ClientResponse, partial: Partial | None,
                shown: str) -> Partial | None:
    """Check the status; the partial to append to, or None to write from byte 0."""
    status = resp.status
    if status == 206 and partial is not None:
        content_range = resp.headers.get("Content-Range", "")
        if content_range.startswith(f"bytes {partial.size}-"):
            return partial
        raise StalePartial(f"{shown}: unexpected Content-Range {content_range!r}")
    if status == 200:
        return None  # a full answer: the file changed, or the server ignores Range
    if status == 416 and partial is not None:
        # We hold more than the file has: it changed. Start over on the next attempt.
        raise StalePartial(f"{shown}: stored partial no longer fits (HTTP 416)")
    if status in _GONE:
        raise UrlGone(f"{shown}: HTTP {status}", status)
    if status == 429 or status >= 500:
        raise TransientDownloadError(f"{shown}: HTTP {status}",
                                     parse_retry_after(resp.headers.get("Retry-After")))
    raise DownloadError(f"{shown}: HTTP {status}")


def validator(resp: aiohttp.ClientResponse) -> str | None:
    """What a resume of this answer's bytes may send as ``If-Range``; None if nothing can
    guard one (the bytes are then never resumed, so never kept).

    If-Range needs a strong validator (RFC 9110 13.1.5): an ETag that is not weak; else
    Last-Modified, but only where it is strong - at least 60 seconds before the answer's
    Date (RFC 9110 8.8.2.2): a file changed twice within one second keeps its date.
    """
    etag = resp.headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return etag
    modified = resp.headers.get("Last-Modified")
    sent = _http_date(resp.headers.get("Date"))
    changed = _http_date(modified)
    if modified and sent is not None and changed is not None \
            and (sent - changed).total_seconds() >= _STRONG_DATE:
        return modified
    return None


def _http_date(value: str | None) -> datetime.datetime | None:
    """An HTTP date header as an aware datetime, or None (absent or unparseable)."""
    if not value:
        return None
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=datetime.UTC)
