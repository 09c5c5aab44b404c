"""Synthetic result files for the Akool stand-in: MP4-shaped bytes and SRT text.

The stand-in must be able to serve multi-gigabyte videos (benchmarks download a
2 GiB file) without ever holding one in memory, so video content is a pure
function of ``(size, seed, offset)``: a small ISO-BMFF header (``ftyp``,
``moov``/``mvhd``, ``mdat`` box header) followed by filler taken from one
precomputed 1 MiB pseudo-random block, rotated by a seed-dependent shift so
that different files have different bytes (and different hashes).

Any byte range of a file can therefore be produced cheaply, which is what
HTTP ``Range`` support and chunked streaming need.
"""

from __future__ import annotations

import functools
import hashlib
import struct
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = [
    "CHUNK_SIZE",
    "FILLER_BLOCK_SIZE",
    "MP4_HEADER_SIZE",
    "SRT_LANGUAGES",
    "SyntheticMp4",
    "iter_mp4_chunks",
    "mp4_bytes",
    "mp4_header",
    "mp4_range",
    "srt_text",
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
