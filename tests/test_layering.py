"""Each backend's dialect stays in its package (STYLE.md point 12), read from the code."""

from __future__ import annotations

import ast
from pathlib import Path

ARCHIVER = Path(__file__).resolve().parent.parent / "archiver"
S3_PACKAGE = ARCHIVER / "storage" / "s3"


def _imported(path: Path) -> set[str]:
    """Top-level names of every module *path* imports, at any depth of its code."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_only_the_s3_package_imports_boto() -> None:
    """boto3 and botocore are imported by archiver/storage/s3/ alone: every other module
    reaches S3 through it, and sees its errors mapped to the archiver's own."""
    offenders = sorted(str(path.relative_to(ARCHIVER.parent)) for path in ARCHIVER.rglob("*.py")
                       if S3_PACKAGE not in path.parents
                       and _imported(path) & {"boto3", "botocore"})
    assert offenders == []
