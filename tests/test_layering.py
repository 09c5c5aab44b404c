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


def _absolute(node: ast.ImportFrom, package: str) -> str:
    """The module a ``from ... import`` in *package* names, relative imports resolved."""
    if not node.level:
        return node.module or ""
    base = package.split(".")[:len(package.split(".")) - node.level + 1]
    return ".".join([*base, node.module] if node.module else base)


def _archiver_imports(path: Path) -> set[str]:
    """The archiver modules *path* imports, as dotted names (relative imports resolved)."""
    package = ".".join(path.relative_to(ARCHIVER.parent).with_suffix("").parts[:-1])
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            module = _absolute(node, package)
            names = [f"{module}.{alias.name}" for alias in node.names]
            found |= {module, *names} if module.startswith("archiver") else set()
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("archiver")}
    return found


def test_the_archive_layer_sees_storage_only_through_the_contract() -> None:
    """archiver/archive/ (the scheduler, the transaction, verify, gc, the run lock) uses
    storage through its narrow contract alone: no backend's package, so nothing there can
    branch on which backend it is. The one exception is the ``flock`` that
    ``run.lock_file`` names, a lock on this host whatever the backend."""
    allowed = ("archiver.storage.backend", "archiver.storage.names",
               "archiver.storage.make_backend", "archiver.storage.local.flock")
    offenders = sorted(
        f"{path.relative_to(ARCHIVER.parent)}: {module}"
        for path in (ARCHIVER / "archive").rglob("*.py")
        for module in _archiver_imports(path)
        if module.startswith("archiver.storage.") and not module.startswith(allowed))
    assert offenders == []


def _module_name(path: Path) -> str:
    parts = path.relative_to(ARCHIVER.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(path: Path, modules: set[str]) -> set[str]:
    """The archiver modules *path* imports when it runs (lazy imports inside functions
    included; ``if TYPE_CHECKING:`` blocks left out: they never run). ``from . import x``
    depends on the module ``x``, not on the package's ``__init__``."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
               and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
               for n in ast.walk(node)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom):
            module = _absolute(node, package)
            subs = {f"{module}.{a.name}" for a in node.names} & modules
            found |= subs | ({module} if len(subs) < len(node.names) else set())
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return (found & modules) - {name}


def test_no_import_cycles() -> None:
    """The modules import each other as a tree of layers (docs/architecture.md): no
    cycle, not even through an import hidden inside a function - a cycle is two
    modules that cannot be understood, tested or moved one without the other."""
    paths = {_module_name(p): p for p in ARCHIVER.rglob("*.py")}
    graph = {name: _runtime_imports(path, set(paths)) for name, path in paths.items()}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, trail: list[str]) -> None:
        state[name] = 1
        for other in sorted(graph[name]):
            if state.get(other) == 1:
                cycles.append([*trail[trail.index(other):], other])
            elif other not in state:
                visit(other, [*trail, other])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


#: Lines a module of the archiver may have (the stand-in and the media it makes, under
#: testing/, excepted): past this a module holds more than one idea (issue 19's bar).
MAX_LINES = 400


def test_no_module_is_over_the_size_bar() -> None:
    """A module that grows past MAX_LINES is split by what it does, not trimmed."""
    over = sorted(f"{path.relative_to(ARCHIVER.parent)}: {lines} lines"
                  for path in ARCHIVER.rglob("*.py")
                  if "testing" not in path.relative_to(ARCHIVER).parts
                  and (lines := len(path.read_text().splitlines())) > MAX_LINES)
    assert over == []
