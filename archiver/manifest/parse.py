"""The manifest: which Akool jobs to archive.

Two shapes are accepted::

    videos:
      - 64dd92c1f0b6684651e90e09
      - id: 64dd92c1f0b6684651e90e0a
        label: onboarding-es
    images:                       # and audios:, faceswaps:, image2videos:
      - 662a10df4197b3af58532e89

or a bare YAML list of ids (videos). Each section names a result family
(:data:`archiver.akool.families.SECTIONS`) and takes the same entries; an id in two
sections is an error naming both. Every id is checked before any network call, because an id
becomes a folder / key name: ``/``, ``..``, spaces and control characters never get that far.
An id is the text written in the file, even where YAML would read a number
(``000000000000000000000000`` is not 0). YAML anchors and aliases are refused (nested
aliases expand exponentially). A manifest of
200,000 ids is read in a single pass over the parser's events (see ``parse_manifest``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ._os import os_reason
from ._yaml import describe_yaml_error, unsafe_yaml_problem
from .akool.families import DEFAULT_FAMILY, FAMILIES, SECTIONS
from .errors import ManifestError

# libyaml's loader when PyYAML has it: a 10,000-id manifest parses several times faster.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,128}")
_LABEL_MAX = 256


@dataclass(frozen=True, slots=True)
class ManifestItem:
    """One job to archive: its id (``video_model_id``, ``_id``...), an optional free-text
    label, and its result family (:data:`archiver.akool.families.FAMILIES`)."""

    id: str
    label: str | None = None
    family: str = DEFAULT_FAMILY


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
    def from_ids(cls, ids: Iterable[str | ManifestItem], source: str = "<manifest>",
                 family: str = DEFAULT_FAMILY) -> Manifest:
        """Build a manifest in code (pipelines); ids are validated like a file's. Bare
        ids are of *family*; a ManifestItem keeps its own."""
        if family not in FAMILIES:
            raise ManifestError(f"{source}: unknown family {family!r} (expected one of "
                                f"{', '.join(FAMILIES)})")
        sections: dict[str, list[Any]] = {}
        for i in ids:
            if isinstance(i, ManifestItem):
                if i.family not in FAMILIES:
                    raise ManifestError(f"{source}: {i.id}: unknown family {i.family!r}")
                sections.setdefault(i.family, []).append({"id": i.id, "label": i.label})
            else:
                sections.setdefault(family, []).append(i)
        return _merge([_build(entries, source, {}, "", name)
                       for name, entries in sections.items()], source)


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
    manifest = _parse_simple(text, source)
    if manifest is not None:
        return manifest
    return _parse_general(text, source)


def _parse_general(text: str, source: str) -> Manifest:
    try:
        # Before any node is built: nested aliases expand exponentially, deep nesting
        # exhausts the stack.
        problem = unsafe_yaml_problem(text, source, _LOADER)
        if problem is not None:
            raise ManifestError(problem)
        loader = _LOADER(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise ManifestError(describe_yaml_error(source, exc)) from None

    if not isinstance(data, dict):
        return _section(data, node, source, "", DEFAULT_FAMILY)
    unknown = sorted(str(k) for k in data if k not in SECTIONS)
    if unknown:
        expected = "', '".join(SECTIONS)
        raise ManifestError(f"{source}: unknown key {unknown[0]!r} (expected '{expected}')")
    if not data:
        raise ManifestError(f"{source}: missing 'videos' list (or another section: "
                            f"{', '.join(s for s in SECTIONS if s != 'videos')})")
    return _merge([_section(value, _mapping_value(node, key), source, key, SECTIONS[key])
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
                f"got {_kind(data)}")
        raise ManifestError(f"{source}: '{prefix}' must be a list of ids, got {_kind(data)}")
    if isinstance(node, yaml.SequenceNode):
        lines = {i: item.start_mark.line + 1 for i, item in enumerate(node.value)}
        data = _as_written(node, data)
    return _build(data, source, lines, prefix, family)


def _merge(parts: Sequence[Manifest], source: str) -> Manifest:
    """One manifest of the sections' items, in file order; an id in two sections is an
    error naming both (it cannot be two jobs)."""
    if len(parts) == 1:
        return parts[0]
    seen: dict[str, ManifestItem] = {}
    for part in parts:
        for item in part.items:
            other = seen.get(item.id)
            if other is not None:
                raise ManifestError(
                    f"{source}: id {item.id} is in both '{FAMILIES[other.family].section}' "
                    f"and '{FAMILIES[item.family].section}'; an id is one job of one family")
            seen[item.id] = item
    return Manifest(items=tuple(seen.values()), source=source)


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


# ------------------------------------------------------------- the one-pass path
#
# 200,000 ids through compose + construct took ~20 s and ~950 MiB: ~1.6 million nodes,
# each with two marks, and the garbage collector walking them over and over. Reading
# libyaml's events instead keeps nothing but the ids. This path only says yes to what
# it fully understands - plain or quoted scalars without tags or anchors, in the two
# documented shapes, every id valid - and hands anything else to the general path, so
# both agree on every accepted manifest and every message comes from one place.

_ID_MATCH = ID_PATTERN.fullmatch
_CONTROL = re.compile(r"[\x00-\x1f]").search


def _implicit_resolvers() -> dict[str, re.Pattern[str]]:
    """For each first character, one pattern matching the plain scalars that YAML reads
    as something other than a string (numbers, booleans, null, dates...)."""
    # PyYAML's own shape: first character (None: any) -> [(tag, pattern)].
    table: dict[str | None, list[tuple[str, re.Pattern[str]]]] = (
        _LOADER.yaml_implicit_resolvers)
    wildcard = table.get(None, [])
    combined: dict[str, re.Pattern[str]] = {}
    for first, resolvers in table.items():
        if first is not None:
            # One alternation instead of a loop over 3 patterns: the check runs per id.
            # PyYAML's patterns are all anchored with ^...$ and verbose, like this one.
            combined[first] = re.compile(
                "|".join(f"(?:{rx.pattern})" for _, rx in [*resolvers, *wildcard]), re.X)
    return combined


_RESOLVERS = _implicit_resolvers()


class _NotSimple(Exception):
    """The one-pass path cannot decide; the general path will."""


def _parse_simple(text: str, source: str) -> Manifest | None:
    loader = _LOADER(text)
    try:
        return _simple_document(loader.get_event, source)
    except (_NotSimple, yaml.YAMLError):
        return None
    finally:
        loader.dispose()


def _simple_document(next_event: Any, source: str) -> Manifest:
    next_event()  # StreamStartEvent
    event = next_event()
    if isinstance(event, yaml.StreamEndEvent):
        return Manifest(items=(), source=source)
    event = next_event()  # the document's top node
    if isinstance(event, yaml.MappingStartEvent) and _plain(event):
        parts: list[tuple[ManifestItem, ...]] = []
        while True:
            key = next_event()
            if isinstance(key, yaml.MappingEndEvent) and parts:
                break
            if not (isinstance(key, yaml.ScalarEvent) and _string(key) in SECTIONS):
                raise _NotSimple  # an unknown key: the general path names it
            event = next_event()
            parts.append(_simple_list(next_event, event, SECTIONS[key.value]))
        items = parts[0] if len(parts) == 1 else _simple_merge(parts)
    else:
        items = _simple_list(next_event, event, DEFAULT_FAMILY)
    if not isinstance(next_event(), yaml.DocumentEndEvent) \
            or not isinstance(next_event(), yaml.StreamEndEvent):
        raise _NotSimple
    return Manifest(items=items, source=source)


def _simple_merge(parts: list[tuple[ManifestItem, ...]]) -> tuple[ManifestItem, ...]:
    """Sections' items in order; an id in two of them (or a section twice) is left to the
    general path's message."""
    merged: dict[str, ManifestItem] = {}
    families: set[str] = set()
    for part in parts:
        if part and part[0].family in families:
            raise _NotSimple
        for item in part:
            if item.id in merged:
                raise _NotSimple
            merged[item.id] = item
            families.add(item.family)
    return tuple(merged.values())


def _simple_list(next_event: Any, event: Any, family: str) -> tuple[ManifestItem, ...]:
    """The ids of a sequence whose start *event* was just read."""
    if not (type(event) is _SEQUENCE_START and _plain(event)):
        raise _NotSimple  # a null (an empty list), an error...: the general path decides
    seen: dict[str, ManifestItem] = {}
    while True:
        event = next_event()
        kind = type(event)
        if kind is _SCALAR:
            item_id = _id(event)
            if item_id not in seen:
                seen[item_id] = ManifestItem(item_id, None, family)
        elif kind is _MAPPING_START and _plain(event):
            item = _simple_entry(next_event, family)
            # Duplicates are archived once; the first label given wins.
            previous = seen.get(item.id)
            if previous is None or (previous.label is None and item.label is not None):
                seen[item.id] = item
        elif kind is _SEQUENCE_END:
            return tuple(seen.values())
        else:
            raise _NotSimple


def _simple_entry(next_event: Any, family: str) -> ManifestItem:
    """One ``{id, label}`` entry, its MappingStartEvent just read."""
    item_id: str | None = None
    label: str | None = None
    while True:
        key = next_event()
        if type(key) is not _SCALAR:
            if type(key) is _MAPPING_END and item_id is not None:
                return ManifestItem(item_id, label, family)
            raise _NotSimple
        value = next_event()
        # "id" and "label" are strings however they are quoted: only a tag could change that.
        if type(value) is not _SCALAR or key.anchor is not None or key.tag is not None:
            raise _NotSimple
        name = key.value
        if name == "id" and item_id is None:
            item_id = _id(value)
        elif name == "label" and label is None:
            label = _string(value)
            if len(label) > _LABEL_MAX or _CONTROL(label):
                raise _NotSimple
        else:
            raise _NotSimple  # an unknown or repeated key


_SCALAR, _SEQUENCE_START, _SEQUENCE_END = \
    yaml.ScalarEvent, yaml.SequenceStartEvent, yaml.SequenceEndEvent
_MAPPING_START, _MAPPING_END = yaml.MappingStartEvent, yaml.MappingEndEvent


def _plain(event: Any) -> bool:
    """No anchor and no explicit tag: the node means what it looks like."""
    return event.anchor is None and event.tag is None


def _id(event: Any) -> str:
    """A scalar event's text if it is a valid id: an id is the text as written, even
    where YAML would read a number (``000000000000000000000000``) or a date."""
    value: str = event.value
    if not _ID_MATCH(value) or event.anchor is not None or event.tag is not None:
        raise _NotSimple
    return value


def _string(event: Any) -> str:
    """A scalar event's value, if YAML reads it as a string (not a number, null, ...)."""
    value: str = event.value
    if event.anchor is not None or event.tag is not None \
            or (event.implicit[0] and _resolves(value)):
        raise _NotSimple
    return value


def _resolves(value: str) -> bool:
    """Whether a plain scalar is read as something other than a string (YAML 1.1)."""
    pattern = _RESOLVERS.get(value[:1])
    return pattern is not None and pattern.match(value) is not None


def _build(entries: Sequence[Any], source: str, lines: dict[int, int], prefix: str,
           family: str = DEFAULT_FAMILY) -> Manifest:
    seen: dict[str, ManifestItem] = {}
    for index, entry in enumerate(entries):
        where = f"{source}:{lines[index]}" if index in lines else source
        position = f"{prefix}[{index}]" if prefix else f"item {index}"
        item = _item(entry, f"{where}: {position}", family)
        # Duplicates are archived once; the first label given wins.
        previous = seen.get(item.id)
        if previous is None or (previous.label is None and item.label is not None):
            seen[item.id] = item
    return Manifest(items=tuple(seen.values()), source=source)


def _item(entry: Any, position: str, family: str = DEFAULT_FAMILY) -> ManifestItem:
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
        what = "video_model_id" if family == "video" else "id"
        raise ManifestError(f"{position}: invalid {what} {_show(entry)}: "
                            "must be 1-128 characters of A-Z a-z 0-9 _ -")
    return ManifestItem(entry, label, family)


def _mapping_value(node: yaml.Node | None, key: str) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        pairs: list[tuple[yaml.Node, yaml.Node]] = node.value
        for key_node, value_node in pairs:
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
