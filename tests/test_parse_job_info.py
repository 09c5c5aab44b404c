"""parse_job_info: Akool's ``data`` object typed into a JobInfo, odd fields and all."""

from __future__ import annotations

from typing import Any

import pytest

from archiver.akool.client import parse_job_info
from archiver.errors import APIError
from archiver.models import RETENTION_SECONDS, JobStatus, RemoteFile

ID = "64dd92c1f0b6684651e90e09"
CREATED_MS = 1_700_000_000_000
VIDEO = "https://d11fbe263bhqij.cloudfront.net/agicontent/video/result.mp4?Expires=1&Sig=s"
SPLITS = {
    "original_srt_url": "https://cdn.example.com/o.srt",
    "translated_srt_url": "https://cdn.example.com/t.srt",
    "no_caption_video_url": "https://cdn.example.com/n.mp4",
}


def data(**fields: Any) -> dict[str, Any]:
    """A result-endpoint ``data`` object as documented, with *fields* replaced."""
    base: dict[str, Any] = {"_id": ID, "video_status": 1, "video": "",
                            "create_time": CREATED_MS, "uid": 101, "type": 4}
    base.update(fields)
    return base


@pytest.mark.parametrize("status", list(JobStatus))
def test_each_video_status_is_typed(status: JobStatus) -> None:
    """Statuses 1-4 come back as their number, with the id and the expiry of the job."""
    info = parse_job_info(ID, data(video_status=int(status)))
    assert info.id == ID
    assert info.status == status
    assert info.files == ()
    assert info.create_time_ms == CREATED_MS
    assert info.expires_at == CREATED_MS / 1000 + RETENTION_SECONDS


def test_success_lists_every_result_file_in_archive_order() -> None:
    """The video and the audio_splits files become RemoteFiles named as archived."""
    info = parse_job_info(ID, data(video_status=3, video=VIDEO,
                                   audio_splits=dict(reversed(SPLITS.items()))))
    assert info.files == (
        RemoteFile("video.mp4", VIDEO),
        RemoteFile("original.srt", SPLITS["original_srt_url"]),
        RemoteFile("translated.srt", SPLITS["translated_srt_url"]),
        RemoteFile("no_caption.mp4", SPLITS["no_caption_video_url"]),
    )


def test_failure_carries_akools_error_code_and_reason() -> None:
    """Status 4 keeps error_code and error_reason for the report."""
    info = parse_job_info(ID, data(video_status=4, error_code=1015,
                                   error_reason="face not detected"))
    assert info.status == JobStatus.FAILED
    assert (info.error_code, info.error_reason) == (1015, "face not detected")


def test_status_as_a_digit_string_is_accepted() -> None:
    """A status sent as "3" is read as 3."""
    assert parse_job_info(ID, data(video_status="3", video=VIDEO)).status == 3


@pytest.mark.parametrize("status", [None, "", "done", "3.0", 3.0, True, [3], {"v": 3}])
def test_status_that_is_not_a_number_is_an_api_error(status: object) -> None:
    """A missing or non-integer video_status is refused with a message naming the field."""
    with pytest.raises(APIError, match=r"data\.video_status is not a number"):
        parse_job_info(ID, data(video_status=status))


def test_missing_status_is_an_api_error() -> None:
    """A data object without video_status at all is refused."""
    fields = data()
    del fields["video_status"]
    with pytest.raises(APIError, match=r"data\.video_status is not a number: 'None'"):
        parse_job_info(ID, fields)


def test_long_odd_status_is_cut_in_the_message() -> None:
    """The message quotes at most 40 characters of a bad status."""
    with pytest.raises(APIError) as caught:
        parse_job_info(ID, data(video_status="x" * 500))
    assert "x" * 40 in str(caught.value)
    assert "x" * 41 not in str(caught.value)


@pytest.mark.parametrize("splits", [
    {}, {"original_srt_url": "", "translated_srt_url": None}, None, "not an object",
    ["https://cdn.example.com/o.srt"],
])
def test_missing_or_empty_files_are_left_out(splits: object) -> None:
    """Absent, empty or null URLs, and an audio_splits that is not an object, add no file."""
    info = parse_job_info(ID, data(video_status=3, video=VIDEO, audio_splits=splits))
    assert info.files == (RemoteFile("video.mp4", VIDEO),)


@pytest.mark.parametrize(("field", "value"), [
    ("video", "ftp://cdn.example.com/v.mp4"),
    ("video", "javascript:alert(1)"),
    ("video", "/relative/v.mp4"),
    ("video", 12345),
    ("original_srt_url", "file:///etc/passwd"),
    ("no_caption_video_url", ["https://cdn.example.com/n.mp4"]),
])
def test_url_that_is_not_http_is_an_api_error(field: str, value: object) -> None:
    """A result URL that is not an http(s) string is refused, naming its field."""
    fields = data(video_status=3, video=VIDEO, audio_splits=dict(SPLITS))
    if field == "video":
        fields["video"] = value
    else:
        fields["audio_splits"][field] = value
    with pytest.raises(APIError, match=rf"data\.{field} is not an http\(s\) URL"):
        parse_job_info(ID, fields)


def test_url_scheme_is_case_insensitive() -> None:
    """HTTPS:// and Http:// are URLs too."""
    info = parse_job_info(ID, data(video_status=3, video="HTTPS://CDN.example.com/v.mp4",
                                   audio_splits={"original_srt_url": "Http://cdn/o.srt"}))
    assert [f.url for f in info.files] == ["HTTPS://CDN.example.com/v.mp4", "Http://cdn/o.srt"]


@pytest.mark.parametrize("create_time", ["1700000000000", 1.7e12, None, -5, 1_700_000_000])
def test_odd_create_time_means_unknown_expiry(create_time: object) -> None:
    """A create_time that is not plausible ms since the epoch gives no expiry, not an error."""
    info = parse_job_info(ID, data(video_status=2, create_time=create_time))
    assert info.expires_at is None


def test_odd_error_fields_are_dropped_or_stringified() -> None:
    """A non-integer error_code is dropped; a non-text error_reason becomes text; "" is none."""
    info = parse_job_info(ID, data(video_status=4, error_code="1015", error_reason=42))
    assert (info.error_code, info.error_reason) == (None, "42")
    info = parse_job_info(ID, data(video_status=4, error_code=None, error_reason=""))
    assert (info.error_code, info.error_reason) == (None, None)


def test_unknown_fields_are_kept_in_raw() -> None:
    """Fields the archiver does not know stay in raw, as sent, for the archived metadata."""
    fields = data(video_status=3, video=VIDEO, video_duration=12.5, progress=100,
                  storage_loc={"region": "us"})
    info = parse_job_info(ID, fields)
    assert info.raw == fields
    assert info.raw["storage_loc"] == {"region": "us"}
