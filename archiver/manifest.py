"""The manifest: which Akool jobs to archive.

Two shapes are accepted::

    videos:
      - 64dd92c1f0b6684651e90e09
      - id: 64dd92c1f0b6684651e90e0a
        label: onboarding-es

or a bare YAML list of ids. Every id is checked before any network call, because an id
becomes a folder / key name: ``/``, ``..``, spaces and control characters never get that far.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .config import describe_yaml_error, os_reason
from .errors import ManifestError

# libyaml's loader when PyYAML has it: a 10,000-id manifest parses several times faster.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,128}")
_LABEL_MAX = 256


@dataclass(frozen=True, slots=True)
class ManifestItem:
    """One job to archive: its ``video_model_id`` and an optional free-text label."""

    id: str
    label: str | None = None


@dataclass(frozen=True, slots=True)
class Manifest:
    """An ordered, de-duplicated list of jobs."""

    items: tuple[ManifestItem, ...]
    source: str = "<manifest>"

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[ManifestItem]:
        return iter(self.items)

    @classmethod
    def from_ids(cls, ids: Iterable[str | ManifestItem], source: str = "<manifest>") -> Manifest:
        """Build a manifest in code (pipelines); ids are validated like a file's."""
        entries: list[Any] = [
            {"id": i.id, "label": i.label} if isinstance(i, ManifestItem) else i for i in ids
        ]
        return _build(entries, source, {}, "")


def load_manifest(path: str | os.PathLike[str]) -> Manifest:
    """Read and validate the manifest file at *path*."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(f"{path}: manifest not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: cannot read manifest: {os_reason(exc)}") from None
    return parse_manifest(text, source=str(path))


def parse_manifest(text: str, source: str = "<manifest>") -> Manifest:
    """Validate manifest YAML *text*; *source* names it in errors."""
    try:
        node = yaml.compose(text, Loader=_LOADER)
        data = yaml.load(text, Loader=_LOADER)  # a safe loader, C or Python
    except yaml.YAMLError as exc:
        raise ManifestError(describe_yaml_error(source, exc)) from None

    lines: dict[int, int] = {}
    prefix = ""
    if isinstance(data, dict):
        unknown = sorted(str(k) for k in data if k != "videos")
        if unknown:
            raise ManifestError(f"{source}: unknown key {unknown[0]!r} (expected 'videos')")
        if "videos" not in data:
            raise ManifestError(f"{source}: missing 'videos' list")
        data = data["videos"]
        prefix = "videos"
        node = _mapping_value(node, "videos")
    if data is None:
        data = []
    if not isinstance(data, list):
        raise ManifestError(
            f"{source}: expected a list of video_model_ids (or 'videos:' with one), "
            f"got {_kind(data)}"
        )
    if isinstance(node, yaml.SequenceNode):
        lines = {i: item.start_mark.line + 1 for i, item in enumerate(node.value)}
    return _build(data, source, lines, prefix)


def _build(entries: Sequence[Any], source: str, lines: dict[int, int], prefix: str) -> Manifest:
    seen: dict[str, ManifestItem] = {}
    for index, entry in enumerate(entries):
        where = f"{source}:{lines[index]}" if index in lines else source
        position = f"{prefix}[{index}]" if prefix else f"item {index}"
        item = _item(entry, f"{where}: {position}")
        # Duplicates are archived once; the first label given wins.
        previous = seen.get(item.id)
        if previous is None or (previous.label is None and item.label is not None):
            seen[item.id] = item
    return Manifest(items=tuple(seen.values()), source=source)


def _item(entry: Any, position: str) -> ManifestItem:
    label = None
    if isinstance(entry, dict):
        unknown = sorted(str(k) for k in entry if k not in ("id", "label"))
        if unknown:
            raise ManifestError(f"{position}: unknown key {unknown[0]!r} (expected id, label)")
        if "id" not in entry:
            raise ManifestError(f"{position}: missing 'id'")
        label = entry.get("label")
        if label is not None:
            if not isinstance(label, str | int | float):
                raise ManifestError(f"{position}: label must be text, got {_kind(label)}")
            label = str(label)
            if len(label) > _LABEL_MAX or any(ord(c) < 32 for c in label):
                raise ManifestError(f"{position}: label must be one line of at most "
                                    f"{_LABEL_MAX} characters")
        entry = entry["id"]
    if not isinstance(entry, str):
        raise ManifestError(f"{position}: id must be a string, got {_kind(entry)}")
    if not ID_PATTERN.fullmatch(entry):
        raise ManifestError(f"{position}: invalid video_model_id {_show(entry)}: "
                            "must be 1-128 characters of A-Z a-z 0-9 _ -")
    return ManifestItem(entry, label)


def _mapping_value(node: yaml.Node | None, key: str) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if key_node.value == key:
                return value_node
    return None


def _show(value: str) -> str:
    """Quote a rejected id for an error message: escaped, and cut if huge."""
    shown = value if len(value) <= 40 else value[:40] + "..."
    return repr(shown) + (f" ({len(value)} characters)" if len(value) > 40 else "")


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)
