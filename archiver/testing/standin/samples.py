"""Sample jobs of every family, for ``archiver demo`` and ``python -m archiver.testing``."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from archiver.testing.standin import audio, faceswap, image, image2video, video
from archiver.testing.standin.jobs import JobScenario

_SAMPLES: dict[str, Callable[[], dict[str, JobScenario]]] = {
    "video": video.sample_jobs,
    "image": image.sample_jobs,
    "audio": audio.sample_jobs,
    "faceswap": faceswap.sample_jobs,
    "image2video": image2video.sample_jobs,
}


def sample_jobs(families: Iterable[str] = ("video",)) -> dict[str, JobScenario]:
    """A small demo set of jobs of *families* (default: the six video jobs
    ``archiver demo`` archives), each finishing after 2-3 polls.

    Each family has a few successes and one job failing on purpose (video: three
    translations, two talking photos; image: upscales, a JPEG behind ``.png``; audio: MP3,
    WAV, an M4A without extension; face swap: a WebP image, a video behind ``result``
    whose URL comes early; image-to-video: with sound and cover, silent). Ids are
    24-hex, distinct across families.
    """
    jobs: dict[str, JobScenario] = {}
    for name in families:
        try:
            make = _SAMPLES[name]
        except KeyError:
            raise ValueError(f"unknown family {name!r}; expected one of "
                             f"{sorted(_SAMPLES)}") from None
        jobs.update(make())
    return jobs
