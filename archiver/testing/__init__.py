"""Test helpers for the archiver: a stand-in for Akool's result API and CDN.

See :mod:`archiver.testing.standin` for the server (every Akool result family) and
:mod:`archiver.testing.media` for the synthetic content it serves (MP4, SRT, PNG, JPEG,
WebP, MP3, WAV, M4A).
``python -m archiver.testing --help`` runs a stand-in from the command line.
"""

from archiver.testing.media import (
    MP4_HEADER_SIZE,
    SyntheticMp4,
    iter_mp4_chunks,
    mp4_bytes,
    mp4_header,
    mp4_range,
    srt_text,
)
from archiver.testing.standin import (
    FILE_KINDS,
    FILE_NAMES,
    AkoolStandIn,
    ApiFault,
    FileFault,
    JobScenario,
    RecordedRequest,
    generated_job_id,
    sample_jobs,
)

__all__ = [
    "FILE_KINDS",
    "FILE_NAMES",
    "MP4_HEADER_SIZE",
    "AkoolStandIn",
    "ApiFault",
    "FileFault",
    "JobScenario",
    "RecordedRequest",
    "SyntheticMp4",
    "generated_job_id",
    "iter_mp4_chunks",
    "mp4_bytes",
    "mp4_header",
    "mp4_range",
    "sample_jobs",
    "srt_text",
]
