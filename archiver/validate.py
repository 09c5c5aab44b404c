"""Content checks: an error page saved as ``video.mp4`` is worse than no file at all.

CDNs and proxies answer ``200 OK`` with HTML, XML or JSON error bodies; a truncated or
empty body can carry a plausible Content-Length. Each result file is checked while it
streams (its first bytes) and at the end (its size, and for subtitles, its text).
"""

from __future__ import annotations

import codecs
import re

from .errors import DownloadError

#: Bytes of the start of a file kept for checks (and for resumed downloads).
HEAD_SIZE = 4096

_MARKUP_TYPES = ("text/html", "application/xhtml", "application/json", "text/json",
                 "application/xml", "text/xml", "application/problem+json")
_SRT_TIMING = re.compile(
    r"^\s*\d{1,2}:\d{2}:\d{2}[,.]\d{1,3}\s*-->\s*\d{1,2}:\d{2}:\d{2}[,.]\d{1,3}", re.M)


class ContentRejected(DownloadError):
    """The server sent something that is not the expected kind of file."""

    kind = "content"


class ContentCheck:
    """Checks one file as it streams: ``feed()`` every chunk in order, then ``finish()``."""

    def __init__(self, name: str, content_type: str | None, head: bytes = b"") -> None:
        self.name = name
        self._kind = "srt" if name.endswith(".srt") else "mp4" if name.endswith(".mp4") else ""
        self._head = bytearray(head)
        self._head_checked = False
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")("strict")
        if head and self._kind == "srt":
            self._decode(bytes(head))
        media_type = (content_type or "").split(";")[0].strip().lower()
        if media_type.startswith(_MARKUP_TYPES):
            raise ContentRejected(f"{name}: the server sent {media_type}, not a "
                                  f"{'subtitle' if self._kind == 'srt' else 'media'} file")

    def feed(self, data: bytes) -> None:
        if self._kind != "srt" and self._head_checked:
            return
        if len(self._head) < HEAD_SIZE:
            self._head += data[: HEAD_SIZE - len(self._head)]
        if self._kind == "srt":
            self._decode(data)
        if not self._head_checked and len(self._head) >= 16:
            self._check_head()

    def finish(self, size: int) -> None:
        if size == 0:
            raise ContentRejected(f"{self.name}: the server sent an empty body")
        if not self._head_checked:
            self._check_head()
        if self._kind == "srt":
            self._decode(b"", final=True)
            text = self._head.decode("utf-8-sig", errors="replace")
            if not _SRT_TIMING.search(text):
                raise ContentRejected(f"{self.name}: not SRT subtitles (no cue timing line)")

    def _check_head(self) -> None:
        self._head_checked = True
        head = bytes(self._head)
        stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
        if stripped.startswith((b"<!doctype", b"<html", b"<?xml", b"<error", b"{", b"[")):
            raise ContentRejected(f"{self.name}: the server sent an HTML/XML/JSON page, "
                                  "not the file")
        if self._kind == "mp4" and head[4:8] != b"ftyp":
            raise ContentRejected(f"{self.name}: not an MP4 file (no 'ftyp' box at offset 4)")

    def _decode(self, data: bytes, final: bool = False) -> None:
        try:
            self._decoder.decode(data, final)
        except UnicodeDecodeError:
            raise ContentRejected(f"{self.name}: subtitles are not UTF-8 text") from None
