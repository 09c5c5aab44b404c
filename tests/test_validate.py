"""Content checks of validate.py: error pages, MP4 box chains and SRT text, in any chunking."""

from __future__ import annotations

import random
import re
import struct
from collections.abc import Iterator

import pytest

from archiver.validate import HEAD_SIZE, ContentCheck, ContentRejected, Mp4Boxes


def box(kind: bytes, body: bytes) -> bytes:
    """An ISO-BMFF box with a 32-bit size."""
    return struct.pack(">I4s", 8 + len(body), kind) + body


def box64(kind: bytes, body: bytes, declared: int | None = None) -> bytes:
    """A box with size 1 and a 64-bit largesize (optionally declaring *declared* bytes)."""
    size = 16 + len(body) if declared is None else declared
    return struct.pack(">I4sQ", 1, kind, size) + body


def box_to_end(kind: bytes, body: bytes) -> bytes:
    """A box with size 0: it runs to the end of the file."""
    return struct.pack(">I4s", 0, kind) + body


FTYP = box(b"ftyp", b"isom\0\0\2\0isomiso2mp41")
#: A complete file: 32-bit and 64-bit boxes that tile it exactly (~5 KiB, past HEAD_SIZE).
MP4 = FTYP + box(b"free", b"") + box64(b"mdat", bytes(range(256)) * 20) + box(b"moov", b"m" * 50)

SRT = ("\ufeff1\r\n00:00:01,000 --> 00:00:02,500\r\nHallo Welt \u2014 \u00fcber "
       "\U0001f600\r\n\r\n2\r\n00:00:03.000 --> 00:00:04.000\r\n\u65e5\u672c\u8a9e\r\n"
       ).encode("utf-8")


def chunkings(data: bytes) -> Iterator[list[bytes]]:
    """The same bytes cut many ways: whole, 1/3/7/4096-byte pieces, random cuts."""
    yield [data]
    for step in (1, 3, 7, HEAD_SIZE):
        yield [data[i:i + step] for i in range(0, len(data), step)]
    rng = random.Random(len(data))  # seeded: the same cuts on every run
    for _ in range(5):
        cuts = sorted(rng.sample(range(1, len(data)), min(12, len(data) - 1)))
        yield [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


def check(name: str, chunks: list[bytes], content_type: str | None = None) -> None:
    """Stream *chunks* through one ContentCheck and finish it."""
    checker = ContentCheck(name, content_type)
    for chunk in chunks:
        checker.feed(chunk)
    checker.finish(sum(map(len, chunks)))


def walk(chunks: list[bytes]) -> Mp4Boxes:
    """Walk *chunks* with Mp4Boxes alone and finish at their total size."""
    boxes = Mp4Boxes("video.mp4")
    for chunk in chunks:
        boxes.feed(chunk)
    boxes.finish(sum(map(len, chunks)))
    return boxes


# ------------------------------------------------------------------------ MP4 boxes

def test_complete_mp4_passes_in_every_chunking() -> None:
    """32- and 64-bit boxes that tile the file pass however the bytes are cut."""
    for chunks in chunkings(MP4):
        check("video.mp4", chunks, "video/mp4")
        assert walk(chunks).position == len(MP4)


def test_mp4_cut_short_inside_a_box_body_is_rejected() -> None:
    """A body cut short (a 32-bit box running past the end) names the box and the gap."""
    cut = MP4[:-10]
    for chunks in chunkings(cut):
        with pytest.raises(ContentRejected, match=r"incomplete MP4: the 'moov' box at offset "
                           rf"{len(MP4) - 58} declares 58 bytes, 10 more than the file has"):
            check("video.mp4", chunks)


def test_mp4_cut_short_inside_a_64_bit_box_is_rejected() -> None:
    """A largesize box declaring more bytes than arrived is caught like a 32-bit one."""
    data = FTYP + box64(b"mdat", b"x" * 100, declared=16 + 5000)
    for chunks in chunkings(data):
        with pytest.raises(ContentRejected, match=rf"the 'mdat' box at offset {len(FTYP)} "
                                                  r"declares 5016 bytes, 4900 more"):
            check("video.mp4", chunks)


@pytest.mark.parametrize("extra", [1, 7, 8 + 3, 15])
def test_mp4_ending_inside_a_box_header_is_rejected(extra: int) -> None:
    """Bytes after the last box too few for a header (32- or 64-bit) mean a truncated file."""
    tail = struct.pack(">I4sQ", 1, b"mdat", 1 << 40)[:extra]
    data = MP4 + tail
    for chunks in chunkings(data):
        with pytest.raises(ContentRejected, match=rf"ends {extra} byte\(s\) into a box header "
                                                  rf"at offset {len(MP4)}"):
            check("video.mp4", chunks)


def test_size_zero_box_runs_to_the_end_of_the_file() -> None:
    """After a size-0 box nothing is parsed: any tail, any length, passes."""
    data = FTYP + box_to_end(b"mdat", b"\0\0\0\3junk" * 50)
    for length in (len(data), len(FTYP) + 8, len(FTYP) + 13):  # the box may end anywhere
        for chunks in chunkings(data[:length]):
            check("video.mp4", chunks)


@pytest.mark.parametrize(("header", "declared"), [
    (struct.pack(">I4s", 7, b"free"), 7),
    (struct.pack(">I4sQ", 1, b"mdat", 15), 15),
])
def test_box_smaller_than_its_own_header_is_rejected(header: bytes, declared: int) -> None:
    """A box declaring fewer bytes than its header (8, or 16 for largesize) is not MP4."""
    for chunks in chunkings(FTYP + header + b"z" * 64):
        with pytest.raises(ContentRejected, match=rf"not a valid MP4: the '\w+' box at "
                                                  rf"offset {len(FTYP)} declares {declared} "
                                                  "bytes, less than"):
            check("video.mp4", chunks)


def test_unprintable_box_type_is_shown_in_hex() -> None:
    """A box type that is not text appears as hex in the message, not as raw bytes."""
    with pytest.raises(ContentRejected, match=rf"the 0x00ff1b07 box at offset {len(FTYP)}"):
        check("video.mp4", [FTYP + struct.pack(">I4s", 3, b"\0\xff\x1b\x07")])


def test_mp4_without_ftyp_is_rejected() -> None:
    """Bytes that do not start with an 'ftyp' box are not an MP4 file."""
    data = box(b"moov", b"m" * 40)
    for chunks in chunkings(data):
        with pytest.raises(ContentRejected, match="no 'ftyp' box at offset 4"):
            check("video.mp4", chunks)


def test_resumed_walk_continues_with_the_boxes_of_the_first_attempt() -> None:
    """A check resumed with the previous walk keeps following the chain past the head."""
    first = ContentCheck("video.mp4", "video/mp4")
    split = len(MP4) - 20  # inside the moov box
    first.feed(MP4[:split])
    resumed = ContentCheck("video.mp4", "video/mp4", MP4[:HEAD_SIZE], offset=split,
                           boxes=first.boxes)
    resumed.feed(MP4[split:-1])
    with pytest.raises(ContentRejected, match="'moov' box"):
        resumed.finish(len(MP4) - 1)


def test_resumed_walk_without_the_chain_checks_nothing_rather_than_guess() -> None:
    """Only the head at hand and a box header among unseen bytes: the walk gives up."""
    split = len(MP4) - 20
    resumed = ContentCheck("video.mp4", "video/mp4", MP4[:HEAD_SIZE], offset=split)
    assert resumed.boxes is not None and resumed.boxes.lost
    resumed.feed(MP4[split:-1])
    resumed.finish(len(MP4) - 1)


# ------------------------------------------------------------------ error pages

@pytest.mark.parametrize("body", [
    b"<!DOCTYPE html><html><body>502 Bad Gateway</body></html>" * 3,
    b"\xef\xbb\xbf \r\n<html><head><title>Access denied</title></head></html>",
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code></Error>',
    b"<Error><Code>NoSuchKey</Code><Message>gone</Message></Error>",
    b'{"code": 403, "message": "Request has expired"}',
    b'[{"error": "rate limited"}]',
    b"<html></html>",  # shorter than the 16 bytes the streaming check waits for
])
@pytest.mark.parametrize("name", ["video.mp4", "original.srt", "no_caption.mp4"])
def test_error_page_served_as_the_file_is_rejected(body: bytes, name: str) -> None:
    """HTML, XML or JSON error bodies under a media content type are refused as pages."""
    for chunks in chunkings(body):
        with pytest.raises(ContentRejected, match="the server sent an HTML/XML/JSON page"):
            check(name, chunks, "application/octet-stream")


@pytest.mark.parametrize("content_type", [
    "text/html", "text/html; charset=utf-8", "Application/JSON", "application/xml",
    "text/xml;charset=UTF-8", "application/problem+json", "application/xhtml+xml",
])
def test_markup_content_type_is_rejected_before_any_byte(content_type: str) -> None:
    """A markup Content-Type is refused when the check starts, naming the media type."""
    media_type = re.escape(content_type.split(";")[0].lower())
    with pytest.raises(ContentRejected, match=rf"video\.mp4: the server sent {media_type}, "
                                              "not a media file"):
        ContentCheck("video.mp4", content_type)
    with pytest.raises(ContentRejected, match="not a subtitle file"):
        ContentCheck("original.srt", content_type)


@pytest.mark.parametrize("name", ["video.mp4", "translated.srt"])
def test_empty_body_is_rejected(name: str) -> None:
    """A 200 with no bytes is not a file, whatever its type."""
    with pytest.raises(ContentRejected, match="the server sent an empty body"):
        check(name, [])


# ------------------------------------------------------------------------- SRT

def test_srt_passes_in_every_chunking() -> None:
    """UTF-8 subtitles (BOM, both decimal marks, characters cut across chunks) pass."""
    for chunks in chunkings(SRT):
        check("original.srt", chunks, "application/x-subrip")


def test_srt_that_is_not_utf8_is_rejected() -> None:
    """Latin-1 bytes in subtitles are refused, whichever chunk they arrive in."""
    data = SRT.replace(b"Welt", "W\xe9lt".encode("latin-1"))
    for chunks in chunkings(data):
        with pytest.raises(ContentRejected, match="subtitles are not UTF-8 text"):
            check("translated.srt", chunks)


def test_srt_cut_inside_a_character_is_rejected() -> None:
    """A body ending halfway through a multi-byte character is not whole UTF-8 text."""
    data = SRT[:-2] + "\U0001f600".encode()[:2]
    with pytest.raises(ContentRejected, match="not UTF-8"):
        check("original.srt", [data])


def test_text_without_cue_timing_is_not_srt() -> None:
    """Plain text with no 'HH:MM:SS,mmm --> HH:MM:SS,mmm' line is refused."""
    data = b"1\nthis is a transcript, not subtitles\n" * 5
    for chunks in chunkings(data):
        with pytest.raises(ContentRejected, match=r"not SRT subtitles \(no cue timing line\)"):
            check("original.srt", chunks)


def test_srt_timing_found_only_past_the_head_is_not_enough() -> None:
    """The cue timing must appear in the first HEAD_SIZE bytes the check keeps."""
    data = b"x" * HEAD_SIZE + b"\n1\n00:00:01,000 --> 00:00:02,000\nhi\n"
    with pytest.raises(ContentRejected, match="no cue timing line"):
        check("original.srt", [data])
