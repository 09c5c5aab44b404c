"""The manifest read in one pass over libyaml's events, for the documented shapes only
(see the comment below); anything else is left to :mod:`.parse`'s general path."""

from __future__ import annotations

import re
from typing import Any

import yaml

from ..akool.families import DEFAULT_FAMILY, SECTIONS
from .items import ID_PATTERN, LABEL_MAX, LOADER, Manifest, ManifestItem

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
        LOADER.yaml_implicit_resolvers)
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


def parse_simple(text: str, source: str) -> Manifest | None:
    loader = LOADER(text)
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
            if len(label) > LABEL_MAX or _CONTROL(label):
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
