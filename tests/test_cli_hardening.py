"""The real `archiver` process against hostile or broken surroundings (issue 9).

Absurd timestamps from Akool, report and metrics paths that cannot be written, terminal
escapes in Akool's text, a config file that shows its key to everyone, unknown statuses.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from .conftest import CLI_ENV, ID1, run_cli, write_yaml

ENV = CLI_ENV


def _edit_config(cwd: Path, **sections: dict) -> None:
    data = yaml.safe_load((cwd / "archiver.yaml").read_text())
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    write_yaml(cwd / "archiver.yaml", data)


def _when(condition: Callable[[], bool], then: Callable[[], None]) -> threading.Thread:
    """Run *then* in a thread as soon as *condition* holds (checked every few ms)."""

    def watch() -> None:
        limit = time.monotonic() + 30  # a hang guard, not a timing assertion
        while not condition() and time.monotonic() < limit:
            time.sleep(0.002)
        then()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


# ------------------------------------------------- point 8: absurd create_time

#: create_time values no clock can mean: far future, past float range, negative, not numbers.
GARBAGE = [10**17, 10**400, -5, True, 1.5e300, "tomorrow"]


def test_absurd_create_time_is_unknown_expiry_everywhere(served, workdir):
    """A nonsense create_time degrades to an unknown expiry; the run, report, metrics go on."""
    standin, cwd = served[0], workdir
    bad = [f"bad{n}" for n in range(len(GARBAGE))]
    standin.add_job(ID1)
    for job_id, garbage in zip(bad, GARBAGE, strict=True):
        standin.add_job(job_id, extra_fields={"create_time": garbage})
    write_yaml(cwd / "videos.yaml", [ID1, *bad])

    remote = run_cli("status", "--remote", "videos.yaml", cwd=cwd, env=ENV)
    assert remote.returncode == 0, remote.stderr
    lines = {line.split()[0]: line for line in remote.stdout.splitlines()}
    assert "expires" in lines[ID1]
    for job_id in bad:
        assert "done" in lines[job_id] and "expire" not in lines[job_id]

    result = run_cli("run", "videos.yaml", "--report", "out/report.json",
                     "--metrics-file", "out/archiver.prom", cwd=cwd, env=ENV)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no warning about an expiry nobody knows
    items = {i["id"]: i for i in json.loads((cwd / "out/report.json").read_text())["items"]}
    assert items[ID1]["expires_at"] is not None
    for job_id in bad:
        assert items[job_id]["outcome"] == "archived"
        assert items[job_id]["expires_at"] is None and items[job_id]["past_expiry"] is False
        record = json.loads((cwd / "archive" / job_id / "archive.json").read_text())
        assert record["expires_at"] is None
    assert "archiver_exit_status 0" in (cwd / "out/archiver.prom").read_text()
