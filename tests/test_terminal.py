"""The terminal (issue 20, point 5): ``archiver`` under a real pseudo-terminal, as a
person at a shell sees it - the cursor after a double Ctrl-C, the overall bar's total,
one unit system in bars and summary - and what a second demo run asks of Akool."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from .conftest import CLI_ENV, ID1, ID2, run_cli, write_yaml

MiB = 1024 * 1024
HIDE, SHOW = b"\x1b[?25l", b"\x1b[?25h"
_ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")


class Terminal:
    """``python -m archiver ARGS`` on a pseudo-terminal (its controlling terminal, so a
    Ctrl-C typed on it is a real SIGINT to its process group), its output collected."""

    def __init__(self, *args: str, cwd: Path, env: dict[str, str] | None = None) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 140, 0, 0))
        full_env = {k: v for k, v in os.environ.items()
                    if k not in ("COLUMNS", "LINES", "NO_COLOR", "TERM")}
        full_env |= {"TERM": "xterm-256color", **(env or {})}

        def make_controlling_terminal() -> None:
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "archiver", *args], cwd=cwd, env=full_env,
            stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
            preexec_fn=make_controlling_terminal)
        os.close(slave)
        self._master = master
        self._output = bytearray()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self._master, 65536)
            except OSError:  # EIO: the other side is closed
                return
            if not data:
                return
            with self._lock:
                self._output.extend(data)

    @property
    def output(self) -> bytes:
        with self._lock:
            return bytes(self._output)

    def wait_for(self, condition: Callable[[bytes], bool]) -> None:
        limit = time.monotonic() + 60  # a hang guard, not a timing assertion
        while not condition(self.output):
            assert self.proc.poll() is None, self.output.decode(errors="replace")[-2000:]
            assert time.monotonic() < limit, self.output.decode(errors="replace")[-2000:]
            time.sleep(0.02)

    def type(self, keys: bytes) -> None:
        os.write(self._master, keys)

    def finish(self) -> int:
        status = self.proc.wait(timeout=60)
        self._reader.join(timeout=10)
        os.close(self._master)
        return status


def _text(output: bytes) -> str:
    return _ANSI.sub(b"", output).decode(errors="replace")


def _slow_files(served, workdir) -> int:
    """Two jobs whose files come at a few MB/s (so the bars are drawn many times);
    returns their total size."""
    standin, _ = served
    standin.file_rate = 3_000_000
    standin.add_job(ID1, files=("video", "original_srt", "translated_srt", "no_caption"),
                    video_size=3 * MiB, no_caption_size=2 * MiB)
    standin.add_job(ID2, video_size=4 * MiB)
    write_yaml(workdir / "videos.yaml", [ID1, ID2])
    return 9 * MiB + sum(len(standin.file_bytes(ID1, n))
                         for n in ("original.srt", "translated.srt"))


def test_double_ctrl_c_shows_the_cursor_again(served, workdir):
    """Two Ctrl-C on the terminal: exit 130 at once, and the cursor the bars hid is
    shown again (after the last ESC[?25l comes an ESC[?25h)."""
    standin = served[0]
    data = yaml.safe_load((workdir / "archiver.yaml").read_text())
    data["run"]["shutdown_grace"] = 60  # the first Ctrl-C alone would wait for this
    write_yaml(workdir / "archiver.yaml", data)
    standin.add_job(ID1, video_size=8 * MiB, file_faults={"video": ["stall"]})
    write_yaml(workdir / "videos.yaml", [ID1])

    term = Terminal("run", "videos.yaml", cwd=workdir, env=CLI_ENV)
    term.wait_for(lambda out: HIDE in out and b"received" in out)
    term.type(b"\x03")
    term.wait_for(lambda out: b"received SIGINT" in out)
    term.type(b"\x03")
    assert term.finish() == 130
    output = term.output
    assert b"second signal, exiting at once" in output
    assert output.rfind(SHOW) > output.rfind(HIDE) >= 0


def test_bars_show_known_totals_in_the_units_of_the_summary(served, workdir):
    """The overall bar's total is known once the sizes are (never `x/?`), ends at the
    bytes archived, and bars, rates and summary all speak binary units (KiB, MiB)."""
    total = _slow_files(served, workdir)
    term = Terminal("run", "videos.yaml", cwd=workdir, env=CLI_ENV)
    assert term.finish() == 0, _text(term.output)
    text = _text(term.output)

    # "received ━━━━━━━━━━ 3.4/9.0 MiB 2.9 MiB/s" (the rate is "?" until it is known)
    overall = re.findall(r"received .*? (\S+)/(\S+) (\S+) +(\S+) (\S+)/s", text)
    assert len(overall) > 3, text  # drawn while it ran
    assert all(whole != "?" for _, whole, _, _, _ in overall)
    _, whole, unit, _, _ = overall[-1]
    assert (whole, unit) == (f"{total / MiB:.1f}", "MiB")
    units = {u for _, _, u, _, _ in overall} | {r for _, _, _, _, r in overall}
    assert units <= {"B", "KiB", "MiB"}, units
    # No decimal unit anywhere: bars of single files, rates and the summary included.
    assert not re.search(r"\d (kB|MB|GB)\b", text), text
    summary = re.search(r"bytes archived +(\S+)", text)
    assert summary is not None and summary.group(1) == f"{total / MiB:.1f}MiB"
    assert not re.search(r"received [^\n]*/\?", text), text


def test_second_demo_run_downloads_nothing_and_asks_only_about_the_failed_job(tmp_path):
    """On a terminal, the second demo run says what it asked of Akool; its report shows
    that only the job it could not archive (failed on purpose) was asked about again,
    and nothing was downloaded, as the README says."""
    first = Terminal("demo", cwd=tmp_path)
    assert first.finish() == 0, _text(first.output)
    second = Terminal("demo", cwd=tmp_path)
    assert second.finish() == 0, _text(second.output)
    text = _text(second.output)
    assert re.search(r"already archived +5", text), text
    assert "skipped without an API call; the failed job was asked about again" in text

    again = run_cli("demo", "--json", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    [failing] = report["demo"]["failing_on_purpose"]
    polled = {i["id"]: i["polls"] for i in report["items"]}
    assert report["totals"]["already_archived"] == 5
    assert report["totals"]["file_requests"] == 0
    assert {i for i, polls in polled.items() if polls} == {failing}
    assert report["totals"]["api_requests"] == polled[failing]


async def test_overall_total_counts_retries_and_resumes_once(standin, make_config):
    """A transfer cut short and fetched again: the overall bar expects what the first
    attempt received plus what the next one announces - never less than it has
    received - and ends with received == expected == the bytes the server sent."""
    from rich.console import Console

    from archiver.manifest import Manifest
    from archiver.progress import ProgressDisplay
    from archiver.run import archive

    class Recording(ProgressDisplay):
        """Notes the overall bar after every chunk."""

        seen: list[tuple[float, float | None]] = []

        def file_progress(self, item_id: str, name: str, count: int) -> None:
            super().file_progress(item_id, name, count)
            overall = self._bytes.tasks[0]
            self.seen.append((overall.completed, overall.fields["expected"]))

    standin.add_job(ID1, video_size=600_000, file_faults={"video": ["truncate"]})
    standin.add_job(ID2, files=("video", "original_srt"), video_size=200_000)
    with open(os.devnull, "w") as null:
        display = Recording(Console(file=null, force_terminal=True))
        with display:
            result = await archive(make_config(), Manifest.from_ids([ID1, ID2]),
                                   observer=display)
    assert result.exit_status == 0
    assert standin.file_requests[(ID1, "video.mp4")] == 2  # cut, then fetched again
    assert display.seen
    assert all(expected is not None and done <= expected for done, expected in display.seen)
    overall = display._bytes.tasks[0]
    sent = sum(standin.file_bytes_sent.values())
    stored = sum(standin.file_size(i, n) for i, n in
                 ((ID1, "video.mp4"), (ID2, "video.mp4"), (ID2, "original.srt")))
    assert overall.completed == overall.fields["expected"]
    # Received: every stored byte, plus what the cut attempt got before the cut - which
    # is at most what the server wrote (bytes in flight at the reset never arrive).
    assert stored <= overall.completed <= sent
