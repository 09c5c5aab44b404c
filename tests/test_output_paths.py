"""``--report`` / ``--metrics-file`` onto things that are not regular files (issue 17,
point 6): stdout, FIFOs, character devices, symbolic links - written into, never
replaced by a regular file.

Every test works on files of its own under tmp_path: a null device made with mknod, a
link to /proc/self/fd/1 standing in for /dev/stdout. The machine's own /dev/null and
/dev/stdout are never the target, so code that replaces its target (the bug fixed
here) cannot damage this machine when these tests run against it.
"""

from __future__ import annotations

import json
import os
import select
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from archiver.exitstatus import ExitStatus
from archiver.metrics import write_metrics
from archiver.models import RunResult

from .conftest import ID1, ID2, run_cli, write_yaml
from .test_cli_hardening import ENV, _when


def _two_jobs(served, cwd: Path) -> None:
    standin = served[0]
    standin.add_job(ID1, video_size=2048)
    standin.add_job(ID2, video_size=2048)
    write_yaml(cwd / "videos.yaml", [ID1, ID2])


def _report_ok(text: str) -> dict:
    report = json.loads(text)
    assert report["exit_status"] == 0 and report["totals"]["archived"] == 2
    return report


def _leftovers(folder: Path) -> list[str]:
    """Temporary files an interrupted atomic write would leave."""
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


class FifoReader:
    """Reads a FIFO from a thread until its writer closes it.

    The read end is opened in the constructor (non-blocking: no writer needed), so the
    FIFO has a reader before the run starts - no race with the run's check."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        self.data = b""
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        limit = time.monotonic() + 60  # a hang guard, not a timing assertion
        while time.monotonic() < limit:
            # Linux reports a FIFO readable once data came, or once a writer that came
            # has gone (EOF); not merely because no writer came yet.
            ready, _, _ = select.select([self.fd], [], [], 0.5)
            if not ready:
                continue
            try:
                chunk = os.read(self.fd, 65536)
            except BlockingIOError:
                continue
            except OSError:
                return  # closed under us
            if not chunk:
                return
            self.data += chunk

    def join(self) -> bytes:
        self._thread.join(timeout=60)
        os.close(self.fd)
        return self.data


# ------------------------------------------------------------------------ FIFOs

def test_report_into_a_fifo_with_a_reader(served, workdir):
    """The report goes through the FIFO to its reader; the FIFO stays a FIFO."""
    cwd = workdir
    _two_jobs(served, cwd)
    fifo = cwd / "report.fifo"
    os.mkfifo(fifo)
    reader = FifoReader(fifo)
    result = run_cli("run", "videos.yaml", "--report", str(fifo), cwd=cwd, env=ENV)
    data = reader.join()
    assert result.returncode == 0, result.stderr
    _report_ok(data.decode())
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert _leftovers(cwd) == []


def test_fifo_nobody_reads_fails_at_once(served, workdir):
    """A FIFO without a reader: exit 2 naming it, before any API call; no hang."""
    standin, cwd = served[0], workdir
    _two_jobs(served, cwd)
    fifo = cwd / "metrics.fifo"
    os.mkfifo(fifo)
    result = run_cli("run", "videos.yaml", "--metrics-file", str(fifo), cwd=cwd, env=ENV,
                     timeout=60)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and str(fifo) in lines[0] and "No such device" in lines[0]
    assert standin.api_calls == 0
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_fifo_reader_gone_before_the_end_exits_74(served, workdir):
    """The reader leaves mid-run: one line naming the FIFO, exit 74, archive intact."""
    standin, cwd = served[0], workdir
    standin.add_job(ID1, outcome="never")  # held at "processing" until the reader left
    write_yaml(cwd / "videos.yaml", [ID1])
    fifo = cwd / "report.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)

    def leave() -> None:
        os.close(reader)
        standin.add_job(ID1, video_size=2048)  # the next poll says done

    watcher = _when(lambda: standin.polls[ID1] >= 1, leave)
    result = run_cli("run", "videos.yaml", "--report", str(fifo), cwd=cwd, env=ENV)
    watcher.join()
    assert result.returncode == ExitStatus.IOERR, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and str(fifo) in lines[0] and "archive is not affected" in lines[0]
    assert (cwd / "archive" / ID1 / "archive.json").is_file()
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


# ------------------------------------------------------------ character devices

@pytest.fixture
def null_device(tmp_path: Path) -> Path:
    """A null device of the test's own (major 1, minor 3, as /dev/null)."""
    node = tmp_path / "devnull"
    try:
        os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("mknod needs root (CAP_MKNOD)")
    return node


def test_report_and_metrics_into_a_null_device(served, workdir, null_device):
    """Written into the device, which stays a character device (before, as root, it was
    replaced by a regular file)."""
    cwd = workdir
    _two_jobs(served, cwd)
    result = run_cli("run", "videos.yaml", "--report", str(null_device),
                     "--metrics-file", str(null_device), cwd=cwd, env=ENV)
    assert result.returncode == 0, result.stderr
    assert stat.S_ISCHR(os.lstat(null_device).st_mode)
    assert os.lstat(null_device).st_rdev == os.makedev(1, 3)
    assert "archived" in result.stdout  # the summary stays on stdout
    assert _leftovers(null_device.parent) == []


def test_block_device_is_refused(served, workdir, tmp_path):
    """A block device is no place for a report: exit 2 naming it, nothing written."""
    node = tmp_path / "blockdev"
    try:
        os.mknod(node, 0o600 | stat.S_IFBLK, os.makedev(7, 250))
    except PermissionError:
        pytest.skip("mknod needs root (CAP_MKNOD)")
    _two_jobs(served, workdir)
    result = run_cli("run", "videos.yaml", "--report", str(node), cwd=workdir, env=ENV)
    assert result.returncode == 2, result.stderr
    assert str(node) in result.stderr and len(result.stderr.splitlines()) == 1
    assert stat.S_ISBLK(os.lstat(node).st_mode)


# ------------------------------------------------------------------------ stdout

def test_report_dash_goes_to_stdout_and_the_summary_to_stderr(served, workdir):
    """--report -: stdout is the JSON report and nothing else."""
    cwd = workdir
    _two_jobs(served, cwd)
    result = run_cli("run", "videos.yaml", "--report", "-", cwd=cwd, env=ENV)
    assert result.returncode == 0, result.stderr
    _report_ok(result.stdout)
    assert "archiver: 2 id(s)" in result.stderr
    assert not (cwd / "-").exists()


def test_metrics_dash_goes_to_stdout(served, workdir):
    cwd = workdir
    _two_jobs(served, cwd)
    result = run_cli("run", "videos.yaml", "--metrics-file", "-", "--report", "r.json",
                     cwd=cwd, env=ENV)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("# HELP archiver_items")
    assert "archiver_exit_status 0" in result.stdout and "archiver: 2" not in result.stdout
    _report_ok((cwd / "r.json").read_text())


def test_both_on_stdout_is_a_usage_error(served, workdir):
    standin, cwd = served[0], workdir
    _two_jobs(served, cwd)
    result = run_cli("run", "videos.yaml", "--report", "-", "--metrics-file", "-",
                     cwd=cwd, env=ENV)
    assert result.returncode == 2 and "both be -" in result.stderr
    assert standin.api_calls == 0


def test_a_link_to_stdout_when_stdout_is_a_pipe(served, workdir, tmp_path):
    """/dev/stdout -> /proc/self/fd/1 -> a pipe: the report goes down the pipe, alone,
    and the link stays a link (a link of the test's own, not the system's)."""
    cwd = workdir
    _two_jobs(served, cwd)
    stdout_link = tmp_path / "stdout"
    stdout_link.symlink_to("/proc/self/fd/1")
    result = run_cli("run", "videos.yaml", "--report", str(stdout_link), cwd=cwd, env=ENV)
    assert result.returncode == 0, result.stderr
    _report_ok(result.stdout)
    assert "archiver: 2 id(s)" in result.stderr
    assert stdout_link.is_symlink() and os.readlink(stdout_link) == "/proc/self/fd/1"


def test_report_onto_the_file_stdout_already_is(served, workdir, tmp_path):
    """Stdout redirected to a file and --report naming that file (through a link to
    /proc/self/fd/1): the report is what the file holds, the summary is on stderr."""
    cwd = workdir
    _two_jobs(served, cwd)
    stdout_link = tmp_path / "stdout"
    stdout_link.symlink_to("/proc/self/fd/1")
    out = tmp_path / "out.json"
    with out.open("w") as sink:
        proc = subprocess.run(
            [sys.executable, "-m", "archiver", "run", "videos.yaml", "--report",
             str(stdout_link)], cwd=cwd, env={**os.environ, **ENV}, stdout=sink,
            stderr=subprocess.PIPE, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    _report_ok(out.read_text())
    assert "archiver: 2 id(s)" in proc.stderr
    assert stdout_link.is_symlink()


# ------------------------------------------------------------------------ links

def test_symlink_to_a_regular_file_keeps_the_link(served, workdir, tmp_path):
    """The target is replaced atomically; the link stays the same link."""
    cwd = workdir
    _two_jobs(served, cwd)
    logs = tmp_path / "logs"
    logs.mkdir()
    target = logs / "last-run.json"
    target.write_text("old\n")
    link = cwd / "report.json"
    link.symlink_to(target)
    result = run_cli("run", "videos.yaml", "--report", "report.json", cwd=cwd, env=ENV)
    assert result.returncode == 0, result.stderr
    assert link.is_symlink() and Path(os.readlink(link)) == target
    _report_ok(target.read_text())
    assert _leftovers(logs) == [] and _leftovers(cwd) == []


def test_dangling_symlink_gets_its_target_created(served, workdir, tmp_path):
    cwd = workdir
    _two_jobs(served, cwd)
    target = tmp_path / "elsewhere" / "archiver.prom"
    link = cwd / "archiver.prom"
    link.symlink_to(target)
    result = run_cli("run", "videos.yaml", "--metrics-file", "archiver.prom", cwd=cwd,
                     env=ENV)
    assert result.returncode == 0, result.stderr
    assert link.is_symlink() and "archiver_exit_status 0" in target.read_text()


def test_metrics_through_a_link_keep_the_last_success(tmp_path):
    """The last-success time carries over from the link's target."""
    target = tmp_path / "real.prom"
    link = tmp_path / "link.prom"
    link.symlink_to(target)
    write_metrics(link, RunResult([], 1.0), 0, now=1000.0)
    write_metrics(link, RunResult([], 1.0), 1, now=2000.0)
    assert link.is_symlink()
    text = target.read_text()
    assert "archiver_last_success_timestamp_seconds 1000" in text
    assert "archiver_exit_status 1" in text
