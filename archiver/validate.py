"""Content checks: an error page saved as ``video.mp4`` is worse than no file at all.

CDNs and proxies answer ``200 OK`` with HTML, XML or JSON error bodies; a truncated or
empty body can carry a plausible Content-Length. Each result file is checked while it
streams (its first bytes, and for MP4s the chain of top-level boxes) and at the end (its
size, the boxes adding up to it exactly, and for subtitles, its text).

A file of the other result families may be one of several content kinds
(:data:`KIND_EXTENSIONS`: an image PNG, JPEG or WebP; audio MP3 - with or without an ID3
tag -, WAV or M4A; a face swap's result an image or an MP4): its first bytes say which
(:func:`sniff`), and that gives its extension. MP4 and M4A files get the box check.
"""

from __future__ import annotations

import codecs
import re
import struct
from collections.abc import Callable

from .errors import DownloadError

#: Bytes of the start of a file kept for checks (and for resumed downloads).
HEAD_SIZE = 4096

_MARKUP_TYPES = ("text/html", "application/xhtml", "application/json", "text/json",
                 "application/xml", "text/xml", "application/problem+json")
_SRT_TIMING = re.compile(
    r"^\s*\d{1,2}:\d{2}:\d{2}[,.]\d{1,3}\s*-->\s*\d{1,2}:\d{2}:\d{2}[,.]\d{1,3}", re.M)


#: Content kind -> the extension a file of it is archived with.
KIND_EXTENSIONS: dict[str, str] = {
    "mp4": "mp4", "png": "png", "jpeg": "jpg", "webp": "webp",
    "mp3": "mp3", "wav": "wav", "m4a": "m4a",
}
#: The ``ftyp`` major brands of an audio-only MPEG-4 file.
_M4A_BRANDS = (b"M4A ", b"M4B ", b"M4P ")
_KIND_NAMES = {"mp4": "MP4", "png": "PNG", "jpeg": "JPEG", "webp": "WebP", "mp3": "MP3",
               "wav": "WAV", "m4a": "M4A"}


def named(role: str, kind: str) -> str:
    """The archived name of a file of *role* proved to be of *kind*: ``image.png``."""
    return f"{role}.{KIND_EXTENSIONS[kind]}"


def sniff(head: bytes) -> str | None:
    """The content kind the first bytes (at least 12) of a file prove, or None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head[4:8] == b"ftyp":
        return "m4a" if head[8:12] in _M4A_BRANDS else "mp4"
    if head.startswith(b"ID3") and len(head) >= 10 and head[3] in (2, 3, 4):
        return "mp3"
    # An MPEG audio frame header: 11 sync bits, a version and layer that exist
    # (layer III for MPEG-1/2/2.5), a bitrate that is not "bad".
    if len(head) >= 4 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 \
            and head[1] & 0x18 != 0x08 and head[1] & 0x06 == 0x02 and head[2] & 0xF0 != 0xF0:
        return "mp3"
    return None


class ContentRejected(DownloadError):
    """The server sent something that is not the expected kind of file."""

    kind = "content"


class ContentCheck:
    """Checks one file as it streams: ``feed()`` every chunk in order, then ``finish()``.

    A resumed transfer passes the stored *head* and *offset* (bytes already stored), and
    the :attr:`boxes` of the check that saw those bytes if it has it (same run): without
    them, the MP4 box chain can only be followed through *head* (see :class:`Mp4Boxes`).
    """

    def __init__(self, name: str, content_type: str | None, head: bytes = b"", *,
                 offset: int | None = None, boxes: Mp4Boxes | None = None,
                 kinds: tuple[str, ...] = ()) -> None:
        """*kinds*: the content kinds the file may be (its name is then a role, without
        an extension); its first bytes decide which (:attr:`kind`)."""
        self.name = name
        self._kinds = kinds
        self._kind = "srt" if name.endswith(".srt") else "mp4" if name.endswith(".mp4") else ""
        if kinds and ("mp4" in kinds or "m4a" in kinds):
            self._kind = "mp4"  # until the head says otherwise
        #: The content kind the first bytes proved (files with *kinds* only).
        self.kind: str | None = None
        #: Called with :attr:`kind` once the first bytes proved it.
        self.on_kind: Callable[[str], None] | None = None
        self._head = bytearray(head)
        self._head_checked = False
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")("strict")
        if head and self._kind == "srt":
            self._decode(bytes(head))
        #: The MP4 box walk (None for other kinds of file), to hand to a resumed check.
        self.boxes: Mp4Boxes | None = None
        if self._kind == "mp4":
            offset = len(head) if offset is None else offset
            if boxes is not None and boxes.position == offset:
                self.boxes = boxes
            else:
                self.boxes = Mp4Boxes(name)
                self.boxes.feed(bytes(head[:offset]))
                self.boxes.skip_to(offset)
        media_type = (content_type or "").split(";")[0].strip().lower()
        if media_type.startswith(_MARKUP_TYPES):
            raise ContentRejected(f"{name}: the server sent {media_type}, not a "
                                  f"{'subtitle' if self._kind == 'srt' else 'media'} file")

    def feed(self, data: bytes | memoryview) -> None:
        if self._kind == "srt" or not self._head_checked:
            if len(self._head) < HEAD_SIZE:
                self._head += data[: HEAD_SIZE - len(self._head)]
            if self._kind == "srt":
                self._decode(data)
            if not self._head_checked and len(self._head) >= 16:
                self._check_head()  # first: "an HTML page" says more than "bad boxes"
        if self.boxes is not None:
            self.boxes.feed(data)

    def finish(self, size: int) -> None:
        if size == 0:
            raise ContentRejected(f"{self.name}: the server sent an empty body")
        if not self._head_checked:
            self._check_head()
        if self.boxes is not None:
            self.boxes.finish(size)
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
        if self._kinds:
            self._check_kind(head)
            return
        if self._kind == "mp4" and head[4:8] != b"ftyp":
            raise ContentRejected(f"{self.name}: not an MP4 file (no 'ftyp' box at offset 4)")

    def _check_kind(self, head: bytes) -> None:
        kind = sniff(head)
        if kind not in self._kinds:
            wanted = ", ".join(_KIND_NAMES[k] for k in self._kinds)
            what = f"a {_KIND_NAMES[kind]} file" if kind else "no file of a known kind"
            raise ContentRejected(f"{self.name}: expected {wanted}; the server sent {what}")
        self.kind = kind
        if kind not in ("mp4", "m4a"):
            self._kind, self.boxes = "", None
        if self.on_kind is not None:
            self.on_kind(kind)

    def _decode(self, data: bytes | memoryview, final: bool = False) -> None:
        try:
            self._decoder.decode(data, final)
        except UnicodeDecodeError:
            raise ContentRejected(f"{self.name}: subtitles are not UTF-8 text") from None


class Mp4Boxes:
    """Follows the top-level ISO-BMFF boxes of a file as its bytes stream past.

    Each box starts with a 32-bit big-endian size and a 4-byte type; size 1 means a
    64-bit ``largesize`` follows the type, size 0 means "to the end of the file". The
    boxes of a complete file tile it exactly, so a box running past the end is the
    mark of a truncated file (a body cut short under a Content-Length that agreed
    with it). Only the box headers are kept, never the file: memory is constant.

    A walk that cannot see some stored bytes (a transfer resumed in a later run, with
    only the file's first bytes at hand) loses the chain if a box header lies among
    them; it then checks nothing rather than guess (:attr:`lost`).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        #: Bytes of the file seen (or skipped) so far.
        self.position = 0
        #: Set when the chain of boxes cannot be followed any more.
        self.lost = False
        self._next = 0  # offset of the next box header
        self._header = bytearray()
        self._last: tuple[bytes, int, int] | None = None  # type, start, size
        self._to_end = False  # a size-0 box reaches to the end of the file

    def feed(self, data: bytes | memoryview) -> None:
        """Walk through *data*, the file's next bytes; raise ContentRejected on nonsense."""
        i, n = 0, len(data)
        while i < n and not (self.lost or self._to_end):
            at = self.position + i
            if not self._header and at < self._next:
                i += min(n - i, self._next - at)  # inside a box body: nothing to look at
                continue
            need = 16 if self._header[:4] == b"\0\0\0\1" else 8
            take = min(need - len(self._header), n - i)
            self._header += data[i:i + take]
            i += take
            if len(self._header) == 8 and self._header[:4] == b"\0\0\0\1":
                continue  # a largesize box: 8 more header bytes to come
            if len(self._header) == need:
                self._box_header(bytes(self._header))
                self._header.clear()
        self.position += n

    def skip_to(self, offset: int) -> None:
        """Bytes up to *offset* were stored but are not at hand (a resumed transfer)."""
        if offset <= self.position:
            return
        if self._header or (not self._to_end and self._next < offset):
            self.lost = True  # a box header hides among the unseen bytes
        self.position = offset

    def finish(self, size: int) -> None:
        """The file ended at *size* bytes: its boxes must end exactly there."""
        if self.lost or self._to_end:
            return
        if self._header:
            raise ContentRejected(
                f"{self.name}: incomplete MP4: the file ends {len(self._header)} byte(s) "
                f"into a box header at offset {size - len(self._header)} (size {size})")
        if self._last is not None and self._next > size:
            kind, start, box_size = self._last
            raise ContentRejected(
                f"{self.name}: incomplete MP4: the {_box_name(kind)} box at offset {start} "
                f"declares {box_size} bytes, {self._next - size} more than the file has "
                f"(size {size})")

    def _box_header(self, header: bytes) -> None:
        start = self._next
        size, kind = struct.unpack(">I4s", header[:8])
        header_size = 8
        if size == 1:
            (size,) = struct.unpack(">Q", header[8:16])
            header_size = 16
        elif size == 0:
            self._to_end = True
            self._last = (kind, start, 0)
            return
        if size < header_size:
            raise ContentRejected(
                f"{self.name}: not a valid MP4: the {_box_name(kind)} box at offset {start} "
                f"declares {size} bytes, less than its own header")
        self._last = (kind, start, size)
        self._next = start + size


def _box_name(kind: bytes) -> str:
    text = kind.decode("latin-1")
    return repr(text) if text.isprintable() else f"0x{kind.hex()}"
