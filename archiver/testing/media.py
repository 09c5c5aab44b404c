"""Synthetic result files for the Akool stand-in: MP4-shaped bytes, SRT text, and small
valid images (PNG, JPEG, WebP) and audio files (MP3, WAV, M4A).

The stand-in must be able to serve multi-gigabyte videos (benchmarks download a
2 GiB file) without ever holding one in memory, so video content is a pure
function of ``(size, seed, offset)``: a small ISO-BMFF header (``ftyp``,
``moov``/``mvhd``, ``mdat`` box header) followed by filler taken from one
precomputed 1 MiB pseudo-random block, rotated by a seed-dependent shift so
that different files have different bytes (and different hashes).

Any byte range of a file can therefore be produced cheaply, which is what
HTTP ``Range`` support and chunked streaming need.

Images and audio are small and built whole in memory (:data:`MEDIA_FORMATS`): each is a
real, minimal file of its kind, padded to exactly the size asked for inside a part of the
format made to be skipped (a private PNG chunk, JPEG comments, an unknown WebP chunk, an
ID3v2 ``PRIV`` frame, the PCM samples of a WAV, the ``mdat`` of an M4A), so that any
parser walking the structure accepts it and different seeds give different bytes.
"""

from __future__ import annotations

import functools
import hashlib
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

__all__ = [
    "AUDIO_FORMATS",
    "CHUNK_SIZE",
    "FILLER_BLOCK_SIZE",
    "IMAGE_FORMATS",
    "JPEG_MIN_SIZE",
    "M4A_MIN_SIZE",
    "MEDIA_FORMATS",
    "MP3_FRAME_SIZE",
    "MP3_MIN_SIZE",
    "MP4_HEADER_SIZE",
    "PNG_MIN_SIZE",
    "SRT_LANGUAGES",
    "WAV_MIN_SIZE",
    "WEBP_MIN_SIZE",
    "MediaFormat",
    "SyntheticMp4",
    "iter_mp4_chunks",
    "jpeg_bytes",
    "m4a_bytes",
    "mp3_bytes",
    "mp4_bytes",
    "mp4_header",
    "mp4_range",
    "png_bytes",
    "srt_text",
    "wav_bytes",
    "webp_bytes",
]

#: Default size of the chunks handed to the network when streaming.
CHUNK_SIZE = 256 * 1024

#: Size of the repeating pseudo-random filler block.
FILLER_BLOCK_SIZE = 1024 * 1024

_FTYP_SIZE = 32
_MVHD_SIZE = 108
_MOOV_SIZE = 8 + _MVHD_SIZE
_MDAT_HEADER_SIZE = 8
_MDAT_LARGE_HEADER_SIZE = 16

#: Header size (ftyp + moov + 32-bit mdat header) of every file up to 4 GiB.
MP4_HEADER_SIZE = _FTYP_SIZE + _MOOV_SIZE + _MDAT_HEADER_SIZE

# 1.0 as 16.16 fixed point, and the identity transform matrix of ``mvhd``.
_FIXED_ONE = 0x00010000
_IDENTITY_MATRIX = (0x00010000, 0, 0, 0, 0x00010000, 0, 0, 0, 0x40000000)

# Seconds between the MP4 epoch (1904-01-01) and the Unix epoch.
_MP4_EPOCH_OFFSET = 2_082_844_800


@functools.cache
def _filler_block() -> bytes:
    # SHAKE-256 gives the same bytes on every platform and Python version
    # (unlike ``random``), and is incompressible like real encoded video, so
    # transfer benchmarks are not flattered by transparent compression.
    return hashlib.shake_256(b"archiver.testing.media filler v1").digest(FILLER_BLOCK_SIZE)


def _shift_for(seed: bytes) -> int:
    """Rotation of the filler block for a seed, so each file differs."""
    if not seed:
        return 0
    return int.from_bytes(hashlib.sha256(seed).digest()[:8], "big") % FILLER_BLOCK_SIZE


def _ftyp() -> bytes:
    return struct.pack(">I4s4sI", _FTYP_SIZE, b"ftyp", b"isom", 0x200) + b"isomiso2avc1mp41"


def _mvhd(duration_ms: int, created_unix: int) -> bytes:
    # Version 0 mvhd keeps times in 32 bits; clamp rather than overflow.
    mp4_time = min(max(created_unix + _MP4_EPOCH_OFFSET, 0), 0xFFFFFFFF)
    body = struct.pack(
        ">IIIII",
        0,  # version 0, flags 0
        mp4_time,  # creation_time
        mp4_time,  # modification_time
        1000,  # timescale: milliseconds
        min(duration_ms, 0xFFFFFFFF),
    )
    body += struct.pack(">IH", _FIXED_ONE, 0x0100)  # rate 1.0, volume 1.0
    body += b"\x00" * 10  # reserved (2 + 8 bytes)
    body += struct.pack(">9I", *_IDENTITY_MATRIX)
    body += b"\x00" * 24  # pre_defined
    body += struct.pack(">I", 2)  # next_track_ID
    box = struct.pack(">I4s", _MVHD_SIZE, b"mvhd") + body
    assert len(box) == _MVHD_SIZE
    return box


def mp4_header(size: int, created_unix: int = 0) -> bytes:
    """Return the ISO-BMFF header of a synthetic MP4 of ``size`` total bytes.

    The header is ``ftyp`` + ``moov``(``mvhd``) + the ``mdat`` box header,
    whose size field covers the rest of the file. Files whose ``mdat`` does not
    fit a 32-bit size use the 64-bit ``largesize`` form (16-byte header).
    When ``size`` is smaller than the header, the header is simply truncated.
    """
    if size < 0:
        raise ValueError("size must be >= 0")
    # Pretend a ~1 Mbit/s stream so the duration is plausible for the size.
    duration_ms = size * 8 // 1000
    head = _ftyp() + struct.pack(">I4s", _MOOV_SIZE, b"moov") + _mvhd(duration_ms, created_unix)
    mdat_size = size - len(head)
    if mdat_size <= 0xFFFFFFFF:
        head += struct.pack(">I4s", max(mdat_size, _MDAT_HEADER_SIZE), b"mdat")
    else:
        head += struct.pack(">I4sQ", 1, b"mdat", mdat_size)
    return head[:size]


@dataclass(frozen=True)
class SyntheticMp4:
    """A deterministic MP4-shaped file that can be read at any offset.

    ``seed`` makes the filler differ between files (the stand-in uses
    ``b"<job id>/<file name>"``); ``created_unix`` goes into ``mvhd``.
    """

    size: int
    seed: bytes = b""
    created_unix: int = 0

    def __post_init__(self) -> None:
        if self.size < 0:
            raise ValueError("size must be >= 0")

    @functools.cached_property
    def header(self) -> bytes:
        """The box header bytes (possibly truncated for tiny files)."""
        return mp4_header(self.size, self.created_unix)

    @functools.cached_property
    def _shift(self) -> int:
        return _shift_for(self.seed)

    def read(self, start: int, end: int) -> bytes:
        """Return bytes ``[start, end)``, clamped to the file size."""
        start = max(start, 0)
        end = min(end, self.size)
        if start >= end:
            return b""
        header = self.header
        parts: list[bytes] = []
        if start < len(header):
            parts.append(header[start : min(end, len(header))])
            start = len(header)
        if start < end:
            block = _filler_block()
            # Position inside the (rotated, endlessly repeated) filler stream.
            pos = (start - len(header) + self._shift) % FILLER_BLOCK_SIZE
            remaining = end - start
            while remaining:
                piece = block[pos : pos + remaining]
                parts.append(piece)
                remaining -= len(piece)
                pos = 0
        return b"".join(parts)

    def iter_chunks(
        self, start: int = 0, end: int | None = None, chunk_size: int = CHUNK_SIZE
    ) -> Iterator[bytes]:
        """Yield bytes ``[start, end)`` in chunks of at most ``chunk_size``."""
        if chunk_size <= 0:
            raise ValueError("chunk_size must be > 0")
        stop = self.size if end is None else min(end, self.size)
        pos = max(start, 0)
        while pos < stop:
            nxt = min(pos + chunk_size, stop)
            yield self.read(pos, nxt)
            pos = nxt

    def sha256(self) -> str:
        """Hex SHA-256 of the whole file, computed by streaming."""
        digest = hashlib.sha256()
        for chunk in self.iter_chunks(chunk_size=FILLER_BLOCK_SIZE):
            digest.update(chunk)
        return digest.hexdigest()


def mp4_bytes(size: int, seed: bytes = b"", created_unix: int = 0) -> bytes:
    """Return a whole synthetic MP4 of exactly ``size`` bytes (small files only)."""
    return SyntheticMp4(size, seed, created_unix).read(0, size)


def mp4_range(size: int, start: int, end: int, seed: bytes = b"", created_unix: int = 0) -> bytes:
    """Return bytes ``[start, end)`` of the synthetic MP4 described by the arguments."""
    return SyntheticMp4(size, seed, created_unix).read(start, end)


def iter_mp4_chunks(
    size: int,
    seed: bytes = b"",
    start: int = 0,
    end: int | None = None,
    chunk_size: int = CHUNK_SIZE,
    created_unix: int = 0,
) -> Iterator[bytes]:
    """Yield a byte range of a synthetic MP4 in chunks, without materialising it."""
    return SyntheticMp4(size, seed, created_unix).iter_chunks(start, end, chunk_size)


# A few cue texts per language; non-English ones deliberately contain
# non-ASCII characters so that encoding bugs show up in tests.
_CUES: dict[str, tuple[str, ...]] = {
    "en": (
        "Hello, and welcome to our channel.",
        "Today we will show you something new.",
        "Thanks for watching!",
        "See you next time.",
    ),
    "es": (
        "¡Hola y bienvenidos a nuestro canal!",
        "Hoy os mostraremos algo nuevo.",
        "¡Gracias por vernos!",
        "Hasta la próxima.",
    ),
    "fr": (
        "Bonjour et bienvenue sur notre chaîne.",
        "Aujourd'hui, nous allons vous montrer quelque chose de nouveau.",
        "Merci d'avoir regardé !",
        "À bientôt.",
    ),
    "de": (
        "Hallo und willkommen auf unserem Kanal.",
        "Heute zeigen wir euch etwas Neues.",
        "Danke fürs Zuschauen!",
        "Bis zum nächsten Mal.",
    ),
    "ja": (
        "こんにちは、チャンネルへようこそ。",
        "今日は新しいものをお見せします。",
        "ご視聴ありがとうございました。",
        "また次回お会いしましょう。",
    ),
    "zh": (
        "大家好。欢迎来到我们的频道。",
        "今天我们将向您展示一些新东西。",
        "感谢观看。",
        "下次见。",
    ),
}

#: Languages for which :func:`srt_text` has real translations.
SRT_LANGUAGES = tuple(_CUES)


def _srt_time(ms: int) -> str:
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d},{millis:03d}"


def srt_text(lang: str = "en") -> str:
    """Return a small, valid SRT subtitle document in ``lang``.

    Cues are numbered from 1 and timed ``00:00:01,000 --> 00:00:02,500``,
    ``00:00:03,000 --> 00:00:04,500`` and so on. Unknown languages fall back to
    the English text prefixed with ``[lang]`` so the output still differs.
    """
    texts = _CUES.get(lang)
    if texts is None:
        texts = tuple(f"[{lang}] {t}" for t in _CUES["en"])
    blocks = []
    for i, text in enumerate(texts):
        start = 1000 + i * 2000
        blocks.append(f"{i + 1}\n{_srt_time(start)} --> {_srt_time(start + 1500)}\n{text}\n")
    return "\n".join(blocks)


# ------------------------------------------------------------ images and audio
#
# Each maker returns a whole file of exactly ``size`` bytes. The parts a reader needs
# (headers, a tiny picture, silent audio frames) come first; the rest of the size is
# filler in a part of the format readers skip, at least _MIN_FILLER bytes of it so
# that different seeds always give different files.

_MIN_FILLER = 16


def _filler(seed: bytes, length: int) -> bytes:
    """*length* bytes of the seed's rotation of the filler block (repeated as needed)."""
    block, pos, parts = _filler_block(), _shift_for(seed), []
    while length > 0:
        piece = block[pos : pos + length]
        parts.append(piece)
        length -= len(piece)
        pos = 0
    return b"".join(parts)


def _colour(seed: bytes) -> tuple[int, int, int]:
    """An RGB colour of the seed (the pictures' only content besides the filler)."""
    digest = hashlib.sha256(b"colour:" + seed).digest()
    return digest[0], digest[1], digest[2]


def _too_small(kind: str, size: int, minimum: int, *, even: bool = False) -> ValueError:
    rule = f"at least {minimum} bytes" + (" and an even size (RIFF)" if even else "")
    return ValueError(f"a synthetic {kind} needs {rule}, not {size}")


# PNG: signature, IHDR, IDAT (stored deflate: the same bytes with every zlib), a private
# ancillary chunk "fiLl" holding the filler (lower-case first letter: readers skip it),
# IEND. Every chunk carries its CRC.
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_SIDE = 8


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _stored_zlib(raw: bytes) -> bytes:
    """A zlib stream of *raw* in one stored (uncompressed) deflate block (< 64 KiB)."""
    return (b"\x78\x01" + b"\x01" + struct.pack("<HH", len(raw), len(raw) ^ 0xFFFF) + raw
            + struct.pack(">I", zlib.adler32(raw)))


def _png_head(seed: bytes) -> bytes:
    red, green, blue = _colour(seed)
    # A gradient of the seed's colour: filter byte 0, then RGB pixels, row by row.
    rows = b"".join(
        b"\x00" + b"".join(bytes(((red + 16 * x) % 256, (green + 16 * y) % 256, blue))
                           for x in range(_PNG_SIDE))
        for y in range(_PNG_SIDE))
    ihdr = struct.pack(">IIBBBBB", _PNG_SIDE, _PNG_SIDE, 8, 2, 0, 0, 0)  # 8-bit RGB
    return PNG_SIGNATURE + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", _stored_zlib(rows))


_PNG_IEND = _png_chunk(b"IEND", b"")
PNG_MIN_SIZE = len(_png_head(b"")) + 12 + _MIN_FILLER + len(_PNG_IEND)


def png_bytes(size: int, seed: bytes = b"") -> bytes:
    """A valid 8x8 RGB PNG of exactly *size* bytes (at least :data:`PNG_MIN_SIZE`)."""
    if size < PNG_MIN_SIZE:
        raise _too_small("PNG", size, PNG_MIN_SIZE)
    head = _png_head(seed)
    fill = _png_chunk(b"fiLl", _filler(seed, size - len(head) - 12 - len(_PNG_IEND)))
    return head + fill + _PNG_IEND


# JPEG: SOI, APP0 "JFIF", COM segments holding the filler, then a baseline 8x8 grey
# picture - one quantisation table, one-code Huffman tables (DC difference 0, then
# end of block), a scan of one byte - and EOI. Decoders show it as mid-grey.
_JPEG_HEAD = (
    b"\xff\xd8"
    + b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00" + struct.pack(">HH", 1, 1)
    + b"\x00\x00"
)
_JPEG_PICTURE = (
    b"\xff\xdb" + struct.pack(">H", 67) + b"\x00" + b"\x01" * 64       # DQT, table 0
    + b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, 8, 8, 1) + b"\x01\x11\x00"  # SOF0 8x8 grey
    + b"\xff\xc4" + struct.pack(">H", 20) + b"\x00" + b"\x01" + b"\x00" * 15 + b"\x00"  # DC
    + b"\xff\xc4" + struct.pack(">H", 20) + b"\x10" + b"\x01" + b"\x00" * 15 + b"\x00"  # AC
    + b"\xff\xda" + struct.pack(">HB", 8, 1) + b"\x01\x00" + b"\x00\x3f\x00"  # SOS
    + b"\x3f"  # bits 0 (DC diff 0) and 0 (EOB), padded with ones
    + b"\xff\xd9"
)
_JPEG_SEGMENT_MAX = 0xFFFF - 2  # data bytes in one COM segment
JPEG_MIN_SIZE = len(_JPEG_HEAD) + 4 + _MIN_FILLER + len(_JPEG_PICTURE)


def _jpeg_comments(seed: bytes, total: int) -> bytes:
    """COM segments of exactly *total* bytes, markers and lengths included."""
    count = -(-total // (_JPEG_SEGMENT_MAX + 4))
    data = _filler(seed, total - 4 * count)
    parts, pos = [], 0
    for i in range(count):
        length = len(data) // count + (1 if i < len(data) % count else 0)
        parts.append(b"\xff\xfe" + struct.pack(">H", length + 2) + data[pos : pos + length])
        pos += length
    return b"".join(parts)


def jpeg_bytes(size: int, seed: bytes = b"") -> bytes:
    """A valid baseline JFIF JPEG of exactly *size* bytes (at least :data:`JPEG_MIN_SIZE`)."""
    if size < JPEG_MIN_SIZE:
        raise _too_small("JPEG", size, JPEG_MIN_SIZE)
    comments = _jpeg_comments(seed, size - len(_JPEG_HEAD) - len(_JPEG_PICTURE))
    return _JPEG_HEAD + comments + _JPEG_PICTURE


# WebP (extended format): RIFF "WEBP", VP8X (canvas size), VP8L - a lossless picture of
# one colour, whose five prefix codes each have a single symbol, so that its pixels take
# no bits at all - and an unknown chunk "fiLl" holding the filler (readers skip unknown
# chunks). RIFF chunks are padded to an even size, so the file's size is even.
_WEBP_SIDE = 8


class _BitWriter:
    """Bits packed least significant first, as VP8L reads them."""

    def __init__(self) -> None:
        self.value = 0
        self.length = 0

    def put(self, value: int, bits: int) -> None:
        self.value |= (value & ((1 << bits) - 1)) << self.length
        self.length += bits

    def bytes(self) -> bytes:
        return self.value.to_bytes((self.length + 7) // 8, "little")


def _vp8l(seed: bytes) -> bytes:
    red, green, blue = _colour(seed)
    bits = _BitWriter()
    bits.put(_WEBP_SIDE - 1, 14)
    bits.put(_WEBP_SIDE - 1, 14)
    bits.put(0, 1)  # alpha_is_used
    bits.put(0, 3)  # version
    bits.put(0, 1)  # no transform
    bits.put(0, 1)  # no colour cache
    bits.put(0, 1)  # no meta prefix codes
    for symbol in (green, red, blue, 255, 0):  # green, red, blue, alpha, distance
        bits.put(1, 1)  # simple code
        bits.put(0, 1)  # one symbol
        bits.put(1, 1)  # of 8 bits
        bits.put(symbol, 8)
    return b"\x2f" + bits.bytes()


def _riff_chunk(kind: bytes, data: bytes) -> bytes:
    return kind + struct.pack("<I", len(data)) + data + (b"\x00" if len(data) % 2 else b"")


def _webp_chunks(seed: bytes) -> bytes:
    side = (_WEBP_SIDE - 1).to_bytes(3, "little")
    vp8x = _riff_chunk(b"VP8X", b"\x00\x00\x00\x00" + side + side)
    return vp8x + _riff_chunk(b"VP8L", _vp8l(seed))


WEBP_MIN_SIZE = 12 + len(_webp_chunks(b"")) + 8 + _MIN_FILLER


def webp_bytes(size: int, seed: bytes = b"") -> bytes:
    """A valid 8x8 lossless WebP of exactly *size* bytes (even, at least
    :data:`WEBP_MIN_SIZE`)."""
    if size < WEBP_MIN_SIZE or size % 2:
        raise _too_small("WebP", size, WEBP_MIN_SIZE, even=True)
    chunks = _webp_chunks(seed)
    chunks += _riff_chunk(b"fiLl", _filler(seed, size - 12 - len(chunks) - 8))
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WEBP" + chunks


# MP3: an ID3v2.4 tag whose PRIV frame holds the filler, then MPEG-1 Layer III frames,
# 128 kbit/s, 48 kHz, mono: 384 bytes each, no padding, all side information zero (so
# each decodes as 24 ms of silence). At least four frames: readers that look for a run
# of frame headers before trusting the first (mutagen) want as many.
_MP3_FRAME_HEADER = b"\xff\xfb\x94\xc0"
MP3_FRAME_SIZE = 144 * 128_000 // 48_000
_MP3_FRAME = _MP3_FRAME_HEADER + b"\x00" * (MP3_FRAME_SIZE - 4)
_ID3_OWNER = b"archiver.testing\x00"
_MP3_MIN_FRAMES = 4
MP3_MIN_SIZE = 10 + 10 + len(_ID3_OWNER) + _MIN_FILLER + _MP3_MIN_FRAMES * MP3_FRAME_SIZE


def _syncsafe(value: int) -> bytes:
    """ID3v2's 28-bit size, seven bits a byte."""
    if value >= 1 << 28:
        raise ValueError("an ID3v2 tag holds less than 256 MiB")
    return bytes((value >> shift) & 0x7F for shift in (21, 14, 7, 0))


def mp3_bytes(size: int, seed: bytes = b"") -> bytes:
    """A valid MP3 (ID3v2.4 tag, then silent frames) of exactly *size* bytes (at least
    :data:`MP3_MIN_SIZE`)."""
    if size < MP3_MIN_SIZE:
        raise _too_small("MP3", size, MP3_MIN_SIZE)
    fixed = 10 + 10 + len(_ID3_OWNER)
    frames = (size - fixed - _MIN_FILLER) // MP3_FRAME_SIZE
    priv = _ID3_OWNER + _filler(seed, size - fixed - frames * MP3_FRAME_SIZE)
    frame = b"PRIV" + _syncsafe(len(priv)) + b"\x00\x00" + priv
    tag = b"ID3\x04\x00\x00" + _syncsafe(len(frame)) + frame
    return tag + _MP3_FRAME * frames


# WAV: RIFF "WAVE", fmt (PCM, 16 kHz, 16-bit, mono), data (the filler as samples).
WAV_SAMPLE_RATE = 16_000
WAV_MIN_SIZE = 44 + _MIN_FILLER


def wav_bytes(size: int, seed: bytes = b"") -> bytes:
    """A valid PCM WAV of exactly *size* bytes (even, at least :data:`WAV_MIN_SIZE`)."""
    if size < WAV_MIN_SIZE or size % 2:
        raise _too_small("WAV", size, WAV_MIN_SIZE, even=True)
    fmt = struct.pack("<HHIIHH", 1, 1, WAV_SAMPLE_RATE, 2 * WAV_SAMPLE_RATE, 2, 16)
    chunks = _riff_chunk(b"fmt ", fmt) + _riff_chunk(b"data", _filler(seed, size - 44))
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


# M4A: ftyp "M4A ", moov with one AAC audio track (mvhd, trak: tkhd, mdia: mdhd, hdlr
# "soun", minf: smhd, dinf, stbl with an mp4a sample entry and its esds), and mdat
# holding the filler as that track's one sample (stsz and stco point at it exactly).
_M4A_RATE = 44_100


def _box(kind: bytes, *parts: bytes) -> bytes:
    body = b"".join(parts)
    return struct.pack(">I", 8 + len(body)) + kind + body


def _full_box(kind: bytes, version_flags: int, *parts: bytes) -> bytes:
    return _box(kind, struct.pack(">I", version_flags), *parts)


def _descriptor(tag: int, body: bytes) -> bytes:
    return bytes((tag, len(body))) + body  # every body here is < 128 bytes


def _m4a_moov(payload: int, offset: int, created_unix: int) -> bytes:
    mp4_time = min(max(created_unix + _MP4_EPOCH_OFFSET, 0), 0xFFFFFFFF)
    samples = max(1, payload * 8 * _M4A_RATE // 128_000)  # as if 128 kbit/s
    duration = samples * 1000 // _M4A_RATE
    matrix = struct.pack(">9I", *_IDENTITY_MATRIX)
    mvhd = _full_box(b"mvhd", 0, struct.pack(">IIII", mp4_time, mp4_time, 1000, duration),
                     struct.pack(">IH", _FIXED_ONE, 0x0100), b"\x00" * 10, matrix,
                     b"\x00" * 24, struct.pack(">I", 2))
    tkhd = _full_box(b"tkhd", 7, struct.pack(">IIIII", mp4_time, mp4_time, 1, 0, duration),
                     b"\x00" * 8, struct.pack(">HHHH", 0, 0, 0x0100, 0), matrix,
                     struct.pack(">II", 0, 0))
    mdhd = _full_box(b"mdhd", 0, struct.pack(">IIIIHH", mp4_time, mp4_time, _M4A_RATE,
                                             samples, 0x55C4, 0))  # language "und"
    hdlr = _full_box(b"hdlr", 0, b"\x00" * 4, b"soun", b"\x00" * 12, b"SoundHandler\x00")
    # AAC LC, 44.1 kHz, mono; in an MPEG-4 audio (0x40) stream (5) decoder config.
    decoder = _descriptor(4, b"\x40\x15" + b"\x00" * 3 + struct.pack(">II", 128_000, 128_000)
                          + _descriptor(5, b"\x12\x08"))
    esds = _full_box(b"esds", 0, _descriptor(3, b"\x00\x01\x00" + decoder
                                             + _descriptor(6, b"\x02")))
    mp4a = _box(b"mp4a", b"\x00" * 6, struct.pack(">H", 1), b"\x00" * 8,
                struct.pack(">HHHHI", 1, 16, 0, 0, _M4A_RATE << 16), esds)
    stbl = _box(b"stbl",
                _full_box(b"stsd", 0, struct.pack(">I", 1), mp4a),
                _full_box(b"stts", 0, struct.pack(">III", 1, 1, samples)),
                _full_box(b"stsc", 0, struct.pack(">IIII", 1, 1, 1, 1)),
                _full_box(b"stsz", 0, struct.pack(">II", payload, 1)),
                _full_box(b"stco", 0, struct.pack(">II", 1, offset)))
    dinf = _box(b"dinf", _full_box(b"dref", 0, struct.pack(">I", 1), _full_box(b"url ", 1)))
    minf = _box(b"minf", _full_box(b"smhd", 0, b"\x00" * 4), dinf, stbl)
    return _box(b"moov", mvhd, _box(b"trak", tkhd, _box(b"mdia", mdhd, hdlr, minf)))


_M4A_FTYP = _box(b"ftyp", b"M4A ", struct.pack(">I", 0), b"M4A mp42isom")
M4A_MIN_SIZE = len(_M4A_FTYP) + len(_m4a_moov(0, 0, 0)) + 8 + _MIN_FILLER


def m4a_bytes(size: int, seed: bytes = b"", created_unix: int = 0) -> bytes:
    """A valid M4A (an MP4 with one AAC audio track) of exactly *size* bytes (at least
    :data:`M4A_MIN_SIZE`, under 4 GiB)."""
    if size < M4A_MIN_SIZE:
        raise _too_small("M4A", size, M4A_MIN_SIZE)
    if size > 0xFFFFFFFF:
        raise ValueError("a synthetic M4A is under 4 GiB")
    moov_size = len(_m4a_moov(0, 0, created_unix))  # its size does not depend on the values
    offset = len(_M4A_FTYP) + moov_size + 8
    payload = size - offset
    mdat = struct.pack(">I", 8 + payload) + b"mdat" + _filler(seed, payload)
    return _M4A_FTYP + _m4a_moov(payload, offset, created_unix) + mdat


@dataclass(frozen=True)
class MediaFormat:
    """One kind of small result file: how to make it and how the CDN labels it."""

    #: ``"png"``, ``"mp3"``...
    name: str
    #: The usual file name extension, without the dot.
    extension: str
    content_type: str
    #: The smallest size :attr:`make` accepts.
    min_size: int
    #: Whether the size must be even (RIFF formats).
    even: bool
    #: ``(size, seed, created_unix) -> bytes``.
    make: Callable[[int, bytes, int], bytes]

    def check_size(self, size: int) -> str | None:
        """Why *size* cannot be made, or ``None``."""
        if size < self.min_size or (self.even and size % 2):
            return str(_too_small(self.name.upper(), size, self.min_size, even=self.even))
        return None


#: The image and audio formats, by name.
MEDIA_FORMATS: dict[str, MediaFormat] = {
    "png": MediaFormat("png", "png", "image/png", PNG_MIN_SIZE, False,
                       lambda size, seed, _: png_bytes(size, seed)),
    "jpeg": MediaFormat("jpeg", "jpg", "image/jpeg", JPEG_MIN_SIZE, False,
                        lambda size, seed, _: jpeg_bytes(size, seed)),
    "webp": MediaFormat("webp", "webp", "image/webp", WEBP_MIN_SIZE, True,
                        lambda size, seed, _: webp_bytes(size, seed)),
    "mp3": MediaFormat("mp3", "mp3", "audio/mpeg", MP3_MIN_SIZE, False,
                       lambda size, seed, _: mp3_bytes(size, seed)),
    "wav": MediaFormat("wav", "wav", "audio/wav", WAV_MIN_SIZE, True,
                       lambda size, seed, _: wav_bytes(size, seed)),
    "m4a": MediaFormat("m4a", "m4a", "audio/mp4", M4A_MIN_SIZE, False, m4a_bytes),
}
#: The formats an image result may have; the first is the default.
IMAGE_FORMATS = ("png", "jpeg", "webp")
#: The formats an audio result may have; the first is the default.
AUDIO_FORMATS = ("mp3", "wav", "m4a")
