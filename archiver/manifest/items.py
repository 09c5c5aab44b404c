"""What a manifest is once read: its items (id, label, result family), in order."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from ..akool.families import DEFAULT_FAMILY, FAMILIES
from ..errors import ManifestError

# libyaml's loader when PyYAML has it: a 10,000-id manifest parses several times faster.
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,128}")
LABEL_MAX = 256


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
        return merge([build(entries, source, {}, "", name)
                       for name, entries in sections.items()], source)


def merge(parts: Sequence[Manifest], source: str) -> Manifest:
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


def build(entries: Sequence[Any], source: str, lines: dict[int, int], prefix: str,
           family: str = DEFAULT_FAMILY) -> Manifest:
    seen: dict[str, ManifestItem] = {}
    for index, entry in enumerate(entries):
        where = f"{source}:{lines[index]}" if index in lines else source
        position = f"{prefix}[{index}]" if prefix else f"item {index}"
        item = item_of(entry, f"{where}: {position}", family)
        # Duplicates are archived once; the first label given wins.
        previous = seen.get(item.id)
        if previous is None or (previous.label is None and item.label is not None):
            seen[item.id] = item
    return Manifest(items=tuple(seen.values()), source=source)


def item_of(entry: Any, position: str, family: str = DEFAULT_FAMILY) -> ManifestItem:
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
                raise ManifestError(f"{position}: label must be text, got {kind_of(label)}")
            label = str(label)
            if len(label) > LABEL_MAX or any(ord(c) < 32 for c in label):
                raise ManifestError(f"{position}: label must be one line of at most "
                                    f"{LABEL_MAX} characters")
        entry = entry["id"]
    if not isinstance(entry, str):
        raise ManifestError(f"{position}: id must be a string, got {kind_of(entry)}")
    if not ID_PATTERN.fullmatch(entry):
        what = "video_model_id" if family == "video" else "id"
        raise ManifestError(f"{position}: invalid {what} {show(entry)}: "
                            "must be 1-128 characters of A-Z a-z 0-9 _ -")
    return ManifestItem(entry, label, family)


def show(value: str) -> str:
    """Quote a rejected id for an error message: escaped, and cut if huge."""
    shown = value if len(value) <= 40 else value[:40] + "..."
    return repr(shown) + (f" ({len(value)} characters)" if len(value) > 40 else "")


def kind_of(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)
