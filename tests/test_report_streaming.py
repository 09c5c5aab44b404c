"""The run report is written item by item (issue 21): with ``lazy_items`` the items of a
100,000-id report are never all in memory as dicts, nor the document as one string -
and the file is byte for byte what :func:`document_text` gives for the whole report.
"""

from __future__ import annotations

import os
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from archiver.cli.logs import say_lines
from archiver.models import FileRecord, ItemResult, Outcome, RunResult
from archiver.report import OutputFile, build_report, document_text, write_report


def _result(n: int) -> RunResult:
    items = [ItemResult(id=f"{i:024x}", label=f"label \x9b{i}" if i % 2 else None,
                        outcome=Outcome.FAILED, status=4, error=f"job {i} failed",
                        error_kind="job_failed", polls=3, duration=0.5)
             for i in range(n)]
    items.append(ItemResult(id="f" * 24, label="done", outcome=Outcome.ARCHIVED, status=2,
                            files=[FileRecord("video.mp4", 3, "ab" * 32, "https://h/v")]))
    return RunResult(items=items, duration=1.0, storage="local:/a", manifest="m.yaml")


@pytest.mark.parametrize("n", [0, 1, 500])
def test_lazy_report_file_is_the_whole_documents_text(tmp_path: Path, n: int) -> None:
    result = _result(n) if n else RunResult(items=[], duration=1.0)
    whole = build_report(result, 1)
    # The same report, its items as a one-pass iterator as `archiver run --report` has it.
    lazy = {**whole, "items": iter(whole["items"])}
    path = tmp_path / "report.json"
    write_report(path, lazy)
    assert path.read_text(encoding="utf-8") == document_text(whole)
    assert "\\u009b" in path.read_text() or n < 2  # C1 characters still escaped
    assert not [p for p in os.listdir(tmp_path) if p != "report.json"]  # no temporary


def test_build_report_lazy_items_are_the_same_dicts() -> None:
    result = _result(3)
    whole, lazy = build_report(result, 0), build_report(result, 0, lazy_items=True)
    assert not isinstance(lazy["items"], list)
    assert {k: v for k, v in lazy.items() if k not in ("items", "finished_at")} == \
        {k: v for k, v in whole.items() if k not in ("items", "finished_at")}
    items = list(lazy["items"])
    for item in (*items, *whole["items"]):
        item.pop("past_expiry")
    assert items == whole["items"]


def test_chunks_into_a_stream_are_written_whole(tmp_path: Path) -> None:
    """A FIFO gets the same bytes, in batched writes."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        whole = build_report(_result(50), 1)
        OutputFile(fifo).write_chunks(iter([document_text(whole)[:10],
                                            document_text(whole)[10:]]))
        os.set_blocking(reader, True)
        data = b""
        while chunk := os.read(reader, 1 << 20):
            data += chunk
    finally:
        os.close(reader)
    assert data.decode() == document_text(whole)


def _peak_mib(run: Callable[[], object]) -> float:
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def test_a_big_lazy_report_is_never_held_whole(tmp_path: Path) -> None:
    """20,000 items (~5 MB of report): what writing allocates stays small."""
    result = _result(20_000)
    path = tmp_path / "report.json"
    peak = _peak_mib(lambda: write_report(path, build_report(result, 1, lazy_items=True)))
    assert path.stat().st_size > 4 * 2**20
    assert peak < 1.5, f"{peak:.1f} MiB allocated while writing"


def test_quiet_lines_are_written_in_batches(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """``-q``'s 100,000 lines are not joined into one string (~10 MB) first."""
    lines = (f"archiver: {i:024x}: failed: {'x' * 60}\n" for i in range(100_000))
    with open(tmp_path / "stderr", "w", encoding="utf-8") as stderr:
        monkeypatch.setattr(sys, "stderr", stderr)
        peak = _peak_mib(lambda: say_lines(lines))
    text = (tmp_path / "stderr").read_text()
    assert text.count("\n") == 100_000 and text.endswith(f"{99_999:024x}: failed: {'x' * 60}\n")
    assert peak < 1.5, f"{peak:.1f} MiB allocated while writing"
