"""Reading a manifest: the one-pass path for the documented shapes (:mod:`.fast`), the
general path for everything else, which builds the node tree and gives every message
its file:line and position."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from .._os import os_reason
from .._yaml import load_document
from ..akool.families import DEFAULT_FAMILY, SECTIONS
from ..errors import ManifestError
from .fast import parse_simple
from .items import LOADER, Manifest, build, kind_of, merge


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
    # A well-formed manifest takes one pass over libyaml's events; anything else (an
    # error to report, a rarely used YAML feature) takes the general path, which
    # builds the whole node tree and gives every message its file:line and position.
    manifest = parse_simple(text, source)
    if manifest is not None:
        return manifest
    return _parse_general(text, source)


def _parse_general(text: str, source: str) -> Manifest:
    # Before any node is built: nested aliases expand exponentially, deep nesting
    # exhausts the stack (load_document refuses both first).
    node, data = load_document(text, source, ManifestError, LOADER)

    if not isinstance(data, dict):
        return _section(data, node, source, "", DEFAULT_FAMILY)
    unknown = sorted(str(k) for k in data if k not in SECTIONS)
    if unknown:
        expected = "', '".join(SECTIONS)
        raise ManifestError(f"{source}: unknown key {unknown[0]!r} (expected '{expected}')")
    if not data:
        raise ManifestError(f"{source}: missing 'videos' list (or another section: "
                            f"{', '.join(s for s in SECTIONS if s != 'videos')})")
    return merge([_section(value, _mapping_value(node, key), source, key, SECTIONS[key])
                   for key, value in data.items()], source)


def _section(data: Any, node: yaml.Node | None, source: str, prefix: str,
             family: str) -> Manifest:
    """The items of one section (*prefix*: its key, ``""`` for a bare list)."""
    lines: dict[int, int] = {}
    if data is None:
        data = []
    if not isinstance(data, list):
        if prefix in ("", "videos"):
            raise ManifestError(
                f"{source}: expected a list of video_model_ids (or 'videos:' with one), "
                f"got {kind_of(data)}")
        raise ManifestError(f"{source}: '{prefix}' must be a list of ids, got {kind_of(data)}")
    if isinstance(node, yaml.SequenceNode):
        lines = {i: item.start_mark.line + 1 for i, item in enumerate(node.value)}
        data = _as_written(node, data)
    return build(data, source, lines, prefix, family)


def _as_written(node: yaml.SequenceNode, entries: list[Any]) -> list[Any]:
    """*entries* with every id (and numeric label) as the text the file holds.

    YAML 1.1 reads an unquoted ``000000000000000000000000`` as the number 0, ``1e3`` as
    1000.0 and ``2024-01-01`` as a date: an id is a name, never a number, so it is
    taken from the scalar's text, exactly as written. So is a label (``007``, ``1.50``,
    ``yes``): it is free text. An empty or null label is no label; a list or a mapping
    where text belongs stays an error.
    """
    fixed = list(entries)
    for index, item in enumerate(node.value):
        if isinstance(item, yaml.ScalarNode):
            fixed[index] = item.value
        elif isinstance(item, yaml.MappingNode) and isinstance(fixed[index], dict):
            entry = dict(fixed[index])
            for key_node, value_node in item.value:
                if not isinstance(value_node, yaml.ScalarNode):
                    continue
                if key_node.value == "id":
                    entry["id"] = value_node.value
                elif key_node.value == "label" and entry.get("label") is not None:
                    entry["label"] = value_node.value
            fixed[index] = entry
    return fixed


def _mapping_value(node: yaml.Node | None, key: str) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        pairs: list[tuple[yaml.Node, yaml.Node]] = node.value
        for key_node, value_node in pairs:
            if key_node.value == key:
                return value_node
    return None


