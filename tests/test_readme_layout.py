"""The "Layout of the code" table (docs/architecture.md) names every module there is, and only
those."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

REPO = Path(__file__).resolve().parent.parent
# The table lives on its own page of the documentation site.
LAYOUT = REPO / "docs" / "architecture.md"

TOKEN = re.compile(r"`(\w[\w./]*)`")


def _layout_rows() -> list[list[str]]:
    """The table's rows (cells) under the "Layout of the code" heading."""
    text = LAYOUT.read_text()
    section = text.split("# Layout of the code", 1)[1].split("\n## ", 1)[0]
    rows = [line.strip().strip("|").split("|") for line in section.splitlines()
            if line.startswith("| `")]
    assert rows, "no table under 'Layout of the code'"
    return rows


def _named_paths() -> set[str]:
    """Paths the table names: a row's first path sets the folder its bare names are in."""
    named: set[str] = set()
    for cells in _layout_rows():
        first = TOKEN.findall(cells[0])[0]
        folder = first if first.endswith("/") else str(PurePosixPath(first).parent) + "/"
        for token in TOKEN.findall("|".join(cells)):
            if token.endswith((".py", "/")):
                path = token if token.startswith("archiver/") else folder + token
                named.add(path.rstrip("/"))
    return {path for path in named if path.startswith("archiver")}


def _modules() -> set[str]:
    """Every module and package under archiver/, as repository-relative paths."""
    root = REPO / "archiver"
    found = {str(path.relative_to(REPO)) for path in root.rglob("*.py")
             if path.name != "__init__.py"
             and "__pycache__" not in path.parts}
    found |= {str(path.relative_to(REPO)) for path in root.rglob("*")
              if path.is_dir() and path.name != "__pycache__"}
    return found


def test_every_module_is_in_the_layout_table() -> None:
    """A module missing from the table is a part of the code a newcomer cannot find."""
    missing = sorted(path for path in _modules() - _named_paths() if path.endswith(".py"))
    assert missing == [], f"docs/architecture.md 'Layout of the code' does not name: {missing}"


def test_the_layout_table_names_only_modules_that_exist() -> None:
    """A row for a module that moved or went away sends a newcomer to nothing."""
    stale = sorted(_named_paths() - _modules())
    assert stale == [], f"docs/architecture.md 'Layout of the code' names what is gone: {stale}"
