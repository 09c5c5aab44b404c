"""The CLI package's seams: entry points, the exit-status contract, the import graph,
and the summary text built from a run's result."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import sysconfig
from importlib.metadata import entry_points
from pathlib import Path

from archiver import __version__
from archiver.cli import main
from archiver.cli.summary import format_summary, human_bytes, printable
from archiver.exitstatus import ExitStatus
from archiver.models import ItemResult, Outcome, RunResult

from .conftest import run_cli

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "archiver"


def _readme_exit_statuses() -> set[int]:
    """Every status named in the first column of the "Exit statuses" table (docs/commands.md)."""
    text = (ROOT / "docs" / "commands.md").read_text(encoding="utf-8")
    section = text.split("## Exit statuses", 1)[1].split("\n\n", 2)[1]
    rows = [line for line in section.splitlines() if line.startswith("| ")][1:]  # no header
    return {int(n) for row in rows for n in re.findall(r"\d+", row.split("|")[1])}


def test_readme_exit_status_table_lists_exactly_the_enum():
    """The documented table and ExitStatus name the same statuses: neither drifts alone."""
    assert _readme_exit_statuses() == {int(status) for status in ExitStatus}


def test_signal_statuses_are_128_plus_the_signal():
    """A run stopped by SIGINT / SIGTERM exits 130 / 143, as a shell reports it."""
    assert ExitStatus.for_signal(2) is ExitStatus.INTERRUPTED == 130
    assert ExitStatus.for_signal(15) is ExitStatus.TERMINATED == 143


def _imported_modules(path: Path) -> set[str]:
    """Absolute names of the archiver modules *path* imports (at any depth in the file)."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    package = parts[:-1]  # a module and a package's __init__ alike
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = list(package[:len(package) - node.level + 1]) if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def test_only_the_entry_points_import_the_cli():
    """No library module (demo included) imports archiver.cli: no cycle through the CLI."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        inside_cli = (PACKAGE / "cli") in path.parents
        if inside_cli or path == PACKAGE / "__main__.py":
            continue
        if any(m == "archiver.cli" or m.startswith("archiver.cli.")
               for m in _imported_modules(path)):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_import_scan_sees_a_relative_import_of_the_cli():
    """The scan above resolves relative imports, so it would catch `from .cli import x`."""
    assert "archiver.cli.main" in _imported_modules(PACKAGE / "__main__.py")


def test_console_script_is_archiver_cli_main():
    """The installed `archiver` script is archiver.cli:main and runs as a program."""
    (script,) = entry_points(group="console_scripts", name="archiver")
    assert script.value == "archiver.cli:main"
    assert script.load() is main
    # pip puts the script next to the interpreter (a virtualenv) or in a scripts folder.
    folders = [Path(sys.executable).parent, Path(sysconfig.get_path("scripts")),
               Path(sysconfig.get_path("scripts", f"{os.name}_user"))]
    launcher = next((f / "archiver" for f in folders if (f / "archiver").is_file()), None)
    assert launcher is not None, f"no `archiver` script in {folders}"
    proc = subprocess.run([str(launcher), "--version"], capture_output=True, text=True,
                          timeout=60, check=False)
    assert (proc.returncode, proc.stdout.strip()) == (0, f"archiver {__version__}")


def test_python_m_archiver_reports_usage_errors_with_status_2(tmp_path):
    """`python -m archiver` runs the same main: a usage error is exit 2, not a traceback."""
    proc = run_cli("run", cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr


def test_demo_quiet_prints_nothing_and_still_archives(tmp_path):
    """`demo -q`: the CLI prints no summary, the demo still archives and exits 0."""
    proc = run_cli("demo", "-q", "out", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert len(list((tmp_path / "out").glob("*/archive.json"))) == 5


def _result(*outcomes: Outcome, lease_lost: bool = False) -> RunResult:
    items = [ItemResult(f"id{n}", None, outcome, error=f"reason {n}")
             for n, outcome in enumerate(outcomes)]
    return RunResult(items, duration=1.0, lease_lost=lease_lost)


def test_run_exit_status_precedence():
    """A failure beats a lost lease, which beats pending, which beats all archived."""
    assert _result(Outcome.ARCHIVED, Outcome.ALREADY_ARCHIVED).exit_status is ExitStatus.OK
    assert _result(Outcome.ARCHIVED, Outcome.PENDING).exit_status is ExitStatus.PENDING
    assert _result(Outcome.PENDING, lease_lost=True).exit_status is ExitStatus.TEMPFAIL
    assert _result(Outcome.EXPIRED, lease_lost=True).exit_status is ExitStatus.FAILED
    assert _result(Outcome.PENDING, Outcome.FAILED).exit_status is ExitStatus.FAILED


def test_summary_lists_twenty_failures_then_counts_the_rest():
    """25 failed ids: 20 are named, one line says 5 more are in the report."""
    text = format_summary(_result(*[Outcome.FAILED] * 25))
    named = [line for line in text.splitlines() if line.startswith("  failed: ")]
    assert len(named) == 20 and named[0] == "  failed: id0: reason 0"
    assert text.splitlines()[-1] == "  ... and 5 more (see --report)"


def test_summary_escapes_control_characters_in_errors():
    """An ESC or newline in Akool's reason is shown escaped, never sent to the terminal."""
    result = RunResult([ItemResult("x", None, Outcome.FAILED, error="bad\x1b[2J\nforged")],
                       duration=0.0)
    assert "  failed: x: bad\\x1b[2J\\nforged" in format_summary(result).splitlines()
    assert printable("tab\tdel\x7fc1\x9b") == "tab\\tdel\\x7fc1\\x9b"


def test_human_bytes_units():
    """Bytes are whole; KiB and up have one decimal; TiB is the largest unit."""
    assert [human_bytes(n) for n in (0, 1023, 1024, 1536 * 1024, 3 * 1024**5)] == \
        ["0B", "1023B", "1.0KiB", "1.5MiB", "3072.0TiB"]
