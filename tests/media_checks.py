"""Parsers of the media formats the stand-in serves, written from the formats' specs and
independently of ``archiver.testing.media``: each walks the whole file and raises
``AssertionError`` at the first thing a reader would refuse."""

from __future__ import annotations

import io
import struct
import wave
import zlib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def parse_png(data: bytes) -> tuple[int, int]:
    """Width and height of a PNG whose every chunk CRC, order and pixel count is right."""
    assert data[:8] == PNG_SIGNATURE, "PNG signature"
    pos, kinds, idat = 8, [], b""
    width = height = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert len(body) == length, f"chunk {kind!r} cut short"
        assert crc == zlib.crc32(kind + body), f"bad CRC in chunk {kind!r}"
        kinds.append(kind)
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert (depth, colour) == (8, 2), "8-bit RGB expected"
        elif kind == b"IDAT":
            idat += body
        else:
            # Unknown chunks must be ancillary (lower-case first letter) for a reader to
            # skip them.
            assert kind in (b"IEND",) or kind[0:1].islower(), f"critical chunk {kind!r}"
        pos += 12 + length
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and b"IDAT" in kinds, kinds
    assert pos == len(data), "bytes after IEND"
    raw = zlib.decompress(idat)
    assert len(raw) == height * (1 + 3 * width), "pixel data size"
    return width, height


_JPEG_STANDALONE = {0x01, *range(0xD0, 0xD8)}


def parse_jpeg(data: bytes) -> tuple[int, int]:
    """Width and height of a JFIF JPEG walked marker by marker from SOI to EOI."""
    assert data[:2] == b"\xff\xd8", "SOI"
    pos, markers = 2, []
    width = height = 0
    while True:
        assert data[pos] == 0xFF, f"marker expected at {pos}"
        marker = data[pos + 1]
        markers.append(marker)
        if marker == 0xD9:
            assert pos + 2 == len(data), "bytes after EOI"
            break
        if marker in _JPEG_STANDALONE:
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        segment = data[pos + 4 : pos + 2 + length]
        assert len(segment) == length - 2, f"segment {marker:#x} cut short"
        if marker == 0xE0:
            assert segment[:5] == b"JFIF\x00", "APP0 is JFIF"
        if marker == 0xC0:
            height, width = struct.unpack(">HH", segment[1:5])
        pos += 2 + length
        if marker == 0xDA:
            # Entropy-coded data: runs until a marker other than a stuffed 0xFF00 or RSTn.
            while not (data[pos] == 0xFF and data[pos + 1] not in (0x00, *range(0xD0, 0xD8))):
                pos += 1
    assert markers[0] == 0xE0, "APP0 first"
    assert 0xC0 in markers and 0xDA in markers and 0xC4 in markers and 0xDB in markers
    return width, height


def parse_webp(data: bytes) -> tuple[int, int]:
    """Canvas width and height of a WebP whose RIFF sizes add up."""
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP", "RIFF WEBP"
    (riff_size,) = struct.unpack("<I", data[4:8])
    assert riff_size == len(data) - 8, "RIFF size"
    pos, chunks, size = 12, {}, (0, 0)
    while pos < len(data):
        kind = data[pos : pos + 4]
        (length,) = struct.unpack("<I", data[pos + 4 : pos + 8])
        chunks[kind] = data[pos + 8 : pos + 8 + length]
        assert len(chunks[kind]) == length, f"chunk {kind!r} cut short"
        pos += 8 + length + length % 2
    assert pos == len(data), "chunks do not fill the RIFF"
    if b"VP8X" in chunks:
        vp8x = chunks[b"VP8X"]
        size = (int.from_bytes(vp8x[4:7], "little") + 1, int.from_bytes(vp8x[7:10], "little") + 1)
    vp8l = chunks[b"VP8L"]
    assert vp8l[0] == 0x2F, "VP8L signature"
    bits = int.from_bytes(vp8l[1:5], "little")
    picture = ((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    assert bits >> 29 == 0, "VP8L version 0"
    assert size in ((0, 0), picture), "canvas and picture sizes differ"
    return picture


_MP3_BITRATES = [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320]  # kbit/s
_MP3_RATES = [44_100, 48_000, 32_000]


def parse_mp3(data: bytes) -> int:
    """Number of MPEG-1 Layer III frames after an optional ID3v2 tag, which must fill the
    file exactly, each frame's header valid."""
    pos = 0
    if data[:3] == b"ID3":
        sizes = data[6:10]
        assert all(b < 0x80 for b in sizes), "ID3 size is syncsafe"
        pos = 10 + ((sizes[0] << 21) | (sizes[1] << 14) | (sizes[2] << 7) | sizes[3])
    frames = 0
    while pos < len(data):
        header = int.from_bytes(data[pos : pos + 4], "big")
        assert header >> 21 == 0x7FF, f"frame sync at {pos}"
        assert (header >> 19) & 3 == 3 and (header >> 17) & 3 == 1, "MPEG-1 Layer III"
        bitrate = _MP3_BITRATES[(header >> 12) & 0xF] * 1000
        rate = _MP3_RATES[(header >> 10) & 3]
        padding = (header >> 9) & 1
        assert bitrate, "free or bad bitrate"
        pos += 144 * bitrate // rate + padding
        frames += 1
    assert pos == len(data), "last frame cut short"
    assert frames, "no frame"
    return frames


def parse_wav(data: bytes) -> int:
    """Number of PCM frames of a WAV (read by the standard library's ``wave``)."""
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    assert struct.unpack("<I", data[4:8])[0] == len(data) - 8, "RIFF size"
    with wave.open(io.BytesIO(data)) as reader:
        frames = reader.getnframes()
        assert frames * reader.getsampwidth() * reader.getnchannels() == len(data) - 44
        return frames


def _boxes(data: bytes, start: int, end: int) -> list[tuple[bytes, int, int]]:
    """ISO-BMFF boxes in ``data[start:end]`` as (type, body start, box end), which must
    fill the range exactly."""
    found, pos = [], start
    while pos < end:
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        header = 8
        if size == 1:
            (size,) = struct.unpack(">Q", data[pos + 8 : pos + 16])
            header = 16
        assert size >= header and pos + size <= end, f"box {kind!r} overruns"
        found.append((kind, pos + header, pos + size))
        pos += size
    assert pos == end, "boxes do not fill their parent"
    return found


def _child(data: bytes, parent: tuple[bytes, int, int],
           path: list[bytes]) -> tuple[bytes, int, int]:
    """The box at *path* under *parent* (a container whose body is boxes)."""
    box = parent
    for kind in path:
        box = next(b for b in _boxes(data, box[1], box[2]) if b[0] == kind)
    return box


def parse_m4a(data: bytes) -> str:
    """The handler of an M4A's one track ("soun"): ftyp "M4A ", moov, mdat filling the
    file; the sample table pointing exactly at mdat's payload."""
    top = _boxes(data, 0, len(data))
    assert [b[0] for b in top] == [b"ftyp", b"moov", b"mdat"], top
    ftyp, moov, mdat = top
    assert data[ftyp[1] : ftyp[1] + 4] == b"M4A ", "major brand"
    trak = _child(data, moov, [b"trak"])
    mdia = _child(data, trak, [b"mdia"])
    hdlr = _child(data, mdia, [b"hdlr"])
    handler = data[hdlr[1] + 8 : hdlr[1] + 12].decode()
    stbl = _child(data, mdia, [b"minf", b"stbl"])
    stsd = _child(data, stbl, [b"stsd"])
    assert data[stsd[1] + 12 : stsd[1] + 16] == b"mp4a", "AAC sample entry"
    stsz = _child(data, stbl, [b"stsz"])
    stco = _child(data, stbl, [b"stco"])
    sample_size, count = struct.unpack(">II", data[stsz[1] + 4 : stsz[1] + 12])
    (offset,) = struct.unpack(">I", data[stco[1] + 8 : stco[1] + 12])
    assert (offset, sample_size * count) == (mdat[1], mdat[2] - mdat[1]), "sample table"
    return handler


def parse_mp4(data: bytes) -> list[bytes]:
    """The top-level boxes of an MP4, which must fill the file."""
    boxes = [b[0] for b in _boxes(data, 0, len(data))]
    assert boxes[0] == b"ftyp" and b"mdat" in boxes, boxes
    return boxes


#: Format -> parser, for files whose format a test knows.
PARSERS = {"png": parse_png, "jpeg": parse_jpeg, "webp": parse_webp, "mp3": parse_mp3,
           "wav": parse_wav, "m4a": parse_m4a, "mp4": parse_mp4}
