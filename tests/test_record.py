"""The item's record (archiver.archive.record): the bytes a run writes read back to the same bytes,
and a malformed archive.json is one clear problem in verify, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from archiver.archive.record import ArchiveRecord, RecordError, json_bytes, sha256sums
from archiver.archive.verify import Problem, verify
from archiver.manifest import Manifest
from archiver.models import FileRecord
from archiver.run import archive
from archiver.storage.local import LocalBackend

from .conftest import CLI_ENV, ID1, run_cli, write_yaml

ALL_FILES = ("video", "original_srt", "translated_srt", "no_caption")


async def test_written_record_parses_back_to_the_same_bytes(standin, make_config, tmp_path):
    """archive.json, SHA256SUMS and info.json of a real run round-trip through record.py."""
    standin.add_job(ID1, files=ALL_FILES, extra_fields={"note": "ünïcode ✓"})
    config = make_config()
    await archive(config, Manifest.from_ids([ID1]))
    folder = tmp_path / "archive" / ID1
    raw = (folder / "archive.json").read_bytes()
    record = ArchiveRecord.parse(raw)
    assert record.to_bytes() == raw
    assert ArchiveRecord.parse(record.to_bytes()) == record
    assert list(json.loads(raw)) == ["format", "id", "family", "label", "archived_at",
                                     "archiver_version", "video_status", "create_time",
                                     "expires_at", "files"]
    assert record.family == "video"
    assert [f.name for f in record.files] == [
        "video.mp4", "original.srt", "translated.srt", "no_caption.mp4"]
    assert sha256sums(record.files) == (folder / "SHA256SUMS").read_bytes()
    info = (folder / "info.json").read_bytes()
    assert json_bytes(json.loads(info)) == info and "ünïcode ✓" in info.decode()


def test_backend_facts_and_missing_checksums_round_trip():
    """A file entry's backend facts (S3's checksum) and a null sha256 survive parse/to_bytes."""
    record = ArchiveRecord(
        id=ID1, label="intro ✓", archived_at="2026-11-26T17:50:59Z", archiver_version="0.1.0",
        video_status=3, create_time=None, expires_at=None,
        files=(FileRecord("video.mp4", 10, "ab" * 32, "https://cdn.example/v.mp4",
                          {"s3": {"key": "akool/x/video.mp4", "checksum_verified": True}}),
               FileRecord("original.srt", None, "", "https://cdn.example/o.srt")))
    raw = record.to_bytes()
    assert ArchiveRecord.parse(raw) == record
    entries = json.loads(raw)["files"]
    assert entries[0]["s3"]["checksum_verified"] is True
    assert entries[1]["sha256"] is None and entries[1]["size"] is None


_DELETE = object()


def _record(entry: dict[str, object] | None = None, **changes: object) -> bytes:
    """A valid record's bytes with *changes* (``_DELETE`` removes a key), and its one
    file entry changed by *entry*."""
    file: dict[str, object] = {"name": "video.mp4", "size": 1, "sha256": "00",
                               "source_url": "u", **(entry or {})}
    data: dict[str, object] = {
        "format": 1, "id": ID1, "label": None, "archived_at": "2026-11-26T17:50:59Z",
        "archiver_version": "0.1.0", "video_status": 3, "create_time": None,
        "expires_at": None, "files": [file], **changes}
    for values in (data, file):
        for key in [k for k, v in values.items() if v is _DELETE]:
            del values[key]
    return json.dumps(data).encode()


MALFORMED = [
    (b"{not json", "not JSON (Expecting property name enclosed in double quotes: "
                   "line 1 column 2 (char 1))"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply to be a record"),
    (b'{"a": "\xc3\x28"}', "not JSON ('utf-8' codec can't decode byte 0xc3 in position 7: "
                           "invalid continuation byte)"),
    (b'["files"]', "the record: expected an object, got list"),
    (_record(format=2), "format 2, this archiver reads format 1"),
    (_record(files=_DELETE), "files: missing"),
    (_record(files="video.mp4"), "files: expected a list, got the string 'video.mp4'"),
    (_record(files=[7]), "files[0]: expected an object, got int"),
    (_record({"name": None}), "files[0].name: expected a string, got null"),
    (_record({"size": True}), "files[0].size: expected a whole number, got bool"),
    (_record({"size": "1"}), "files[0].size: expected a whole number, got the string '1'"),
    (_record(id=_DELETE), "id: missing"),
]


@pytest.mark.parametrize(("raw", "why"), MALFORMED)
def test_malformed_record_names_what_is_wrong(raw: bytes, why: str):
    """Each way a record can be malformed gives a RecordError naming the field or the cause."""
    with pytest.raises(RecordError) as caught:
        ArchiveRecord.parse(raw)
    assert str(caught.value) == why


@pytest.mark.parametrize(("raw", "why"), [MALFORMED[1], MALFORMED[9]])
async def test_verify_reports_a_malformed_record_as_one_problem(standin, make_config,
                                                                tmp_path, raw, why):
    """verify turns a malformed archive.json into one `record` problem; other ids stay intact."""
    standin.add_job(ID1)
    standin.add_job("other-job")
    await archive(make_config(), Manifest.from_ids([ID1, "other-job"]))
    root = tmp_path / "archive"
    (root / ID1 / "archive.json").write_bytes(raw)
    result = await verify(LocalBackend(root), None)
    assert result.problems == [
        Problem(ID1, "archive.json", "record", f"unreadable archive.json: {why}")]
    assert result.items == 2 and result.files == 1


def test_cli_verify_on_a_malformed_record_prints_one_line(served, workdir: Path):
    """`archiver verify` with a record nested past the parser: exit 1, one line, no traceback."""
    standin, _ = served
    standin.add_job(ID1)
    write_yaml(workdir / "videos.yaml", [ID1])
    assert run_cli("run", "videos.yaml", cwd=workdir, env=CLI_ENV).returncode == 0
    (workdir / "archive" / ID1 / "archive.json").write_bytes(b"[" * 100_000)
    checked = run_cli("verify", cwd=workdir, env=CLI_ENV)
    assert checked.returncode == 1
    assert "Traceback" not in checked.stderr
    assert f"{ID1}/archive.json: record: unreadable archive.json: nested too deeply" \
        in checked.stderr
