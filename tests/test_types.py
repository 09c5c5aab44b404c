"""Types are a gate: mypy --strict, configured in pyproject.toml, passes over archiver/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _mypy(cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # From the repo root so mypy reads [tool.mypy] in pyproject.toml, as CI and a
    # developer typing `python -m mypy` do.
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(cache), "--no-color-output", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)


@pytest.fixture
def mypy_cache(pytestconfig: pytest.Config, tmp_path: Path) -> Path:
    """mypy's incremental cache, kept between runs in pytest's cache when it is enabled
    (a cold run checks the whole tree; a warm one only what changed)."""
    cache = getattr(pytestconfig, "cache", None)
    return Path(cache.mkdir("mypy")) if cache is not None else tmp_path / "mypy"


def test_archiver_passes_mypy_strict(mypy_cache: Path) -> None:
    """mypy with the project's configuration (strict) reports no error in archiver/."""
    result = _mypy(mypy_cache, "archiver")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout


def test_mypy_configuration_is_strict(tmp_path: Path) -> None:
    """The configuration the gate uses rejects untyped defs, implicit Any and unused ignores."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import json\n"
        "def untyped(x):\n"
        "    return x\n"
        "def leaks_any(text: str) -> int:\n"
        "    return json.loads(text)\n"
        "value: int = 1  # type: ignore[assignment]\n")
    result = _mypy(tmp_path / "cache", "--config-file", str(ROOT / "pyproject.toml"),
                   str(sample))
    assert result.returncode == 1, result.stdout + result.stderr
    for code in ("[no-untyped-def]", "[no-any-return]", "[unused-ignore]"):
        assert code in result.stdout, result.stdout
