"""The stand-in's synthetic images and audio: every size gives a file of exactly that
size that an independent parser (tests/media_checks.py) walks end to end."""

from __future__ import annotations

import pytest

from archiver.testing.media import (
    AUDIO_FORMATS,
    IMAGE_FORMATS,
    MEDIA_FORMATS,
    MP3_FRAME_SIZE,
    jpeg_bytes,
    m4a_bytes,
    mp3_bytes,
    png_bytes,
    wav_bytes,
    webp_bytes,
)
from tests.media_checks import PARSERS, parse_jpeg, parse_m4a, parse_mp3, parse_png, parse_webp


def _sizes(name: str) -> list[int]:
    """The smallest size, a few above it, and files large enough to need several JPEG
    comment segments (64 KiB each) or many MP3 frames."""
    fmt = MEDIA_FORMATS[name]
    step = 2 if fmt.even else 1
    return [fmt.min_size, fmt.min_size + step, fmt.min_size + 3 * step, 4096,
            65_536 + 70, 200_002]


@pytest.mark.parametrize("name", sorted(MEDIA_FORMATS))
def test_every_size_is_exact_and_parses(name: str) -> None:
    """Exactly the size asked for, and a valid file of the format at every size."""
    fmt = MEDIA_FORMATS[name]
    for size in _sizes(name):
        data = fmt.make(size, b"job/file", 1_700_000_000)
        assert len(data) == size, (name, size)
        PARSERS[name](data)


@pytest.mark.parametrize("name", sorted(MEDIA_FORMATS))
def test_the_seed_decides_the_bytes(name: str) -> None:
    """The same seed gives the same bytes; another seed other bytes, even at the
    smallest size."""
    fmt = MEDIA_FORMATS[name]
    for size in (fmt.min_size, 10_000):
        first = fmt.make(size, b"a", 0)
        assert first == fmt.make(size, b"a", 0)
        assert first != fmt.make(size, b"b", 0)


@pytest.mark.parametrize("name", sorted(MEDIA_FORMATS))
def test_sizes_a_format_cannot_take_are_refused(name: str) -> None:
    """Below the smallest valid file (or odd, for RIFF formats): a ValueError that says
    what the format needs."""
    fmt = MEDIA_FORMATS[name]
    with pytest.raises(ValueError, match=f"at least {fmt.min_size} bytes"):
        fmt.make(fmt.min_size - 1, b"", 0)
    assert fmt.check_size(fmt.min_size - 1) is not None
    assert fmt.check_size(fmt.min_size) is None
    if fmt.even:
        with pytest.raises(ValueError, match="even"):
            fmt.make(fmt.min_size + 1, b"", 0)


def test_pictures_and_audio_are_what_they_say() -> None:
    """8x8 pictures; MP3 frames of 384 bytes (128 kbit/s at 48 kHz); an M4A's track is
    sound; the formats and their labels."""
    assert parse_png(png_bytes(5000, b"x")) == (8, 8)
    assert parse_jpeg(jpeg_bytes(5000, b"x")) == (8, 8)
    assert parse_webp(webp_bytes(5000, b"x")) == (8, 8)
    frames = parse_mp3(mp3_bytes(100_000, b"x"))
    assert frames == (100_000 - 10 - 10 - 17 - 16) // MP3_FRAME_SIZE
    assert parse_m4a(m4a_bytes(5000, b"x")) == "soun"
    assert wav_bytes(5000, b"x")[20:22] == b"\x01\x00"  # PCM
    assert IMAGE_FORMATS[0] == "png" and AUDIO_FORMATS[0] == "mp3"
    assert {MEDIA_FORMATS[n].content_type for n in IMAGE_FORMATS} == {
        "image/png", "image/jpeg", "image/webp"}
    assert {MEDIA_FORMATS[n].content_type for n in AUDIO_FORMATS} == {
        "audio/mpeg", "audio/wav", "audio/mp4"}


def test_the_parsers_catch_broken_files() -> None:
    """The checks above can fail: a flipped byte in a PNG chunk, a JPEG without EOI, a
    wrong RIFF size, a lost MP3 frame byte, an M4A whose mdat is short are all refused."""
    png = bytearray(png_bytes(1000, b"x"))
    png[40] ^= 1
    jpeg = jpeg_bytes(1000, b"x")[:-2]
    webp = bytearray(webp_bytes(1000, b"x"))
    webp[4] ^= 2
    mp3 = mp3_bytes(5000, b"x")
    m4a = m4a_bytes(5000, b"x")[:-1]
    for parser, data in ((parse_png, bytes(png)), (parse_jpeg, jpeg),
                         (parse_webp, bytes(webp)), (parse_mp3, mp3[:-1]),
                         (parse_m4a, m4a)):
        with pytest.raises((AssertionError, IndexError)):
            parser(data)
