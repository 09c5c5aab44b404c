"""YAML input safety shared by the configuration and the manifest readers.

Both files come from people (or from a bucket, a URL, a pipe): a syntax error must come
out as one line naming the file and line, and a hostile file must be refused before it
is expanded.
"""

from __future__ import annotations

from typing import Any

import yaml

#: Deeper YAML is refused: the configuration needs 3 levels, the manifest 3, and the
#: pure-Python parser recurses (about 330 levels end in a RecursionError).
YAML_MAX_DEPTH = 50


def unsafe_yaml_problem(text: str, source: str,
                        loader: type[Any] = yaml.SafeLoader) -> str | None:
    """One line naming the first YAML anchor, alias or too deep nesting in *text*, or None.

    Neither the configuration nor the manifest has any use for anchors, and aliases of
    aliases turn a 30-line file into a tree of 2**30 leaves for anything that walks it
    (the "billion laughs"; the configuration's line index and ``${VAR}`` expansion would
    run for hours). Reading events builds nothing, so this check costs one parse. A syntax error
    met on the way is raised as ``yaml.YAMLError``.
    """
    depth = 0
    for event in yaml.parse(text, Loader=loader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
        if isinstance(event, yaml.NodeEvent) and event.anchor is not None:
            name = event.anchor if len(event.anchor) <= 40 else event.anchor[:40] + "..."
            if isinstance(event, yaml.AliasEvent):
                return f"{_mark(source, event)}: YAML aliases (*{name}) are not allowed"
            return f"{_mark(source, event)}: YAML anchors (&{name}) are not allowed"
        if depth > YAML_MAX_DEPTH:
            return f"{_mark(source, event)}: YAML nested more than {YAML_MAX_DEPTH} levels deep"
    return None


def _mark(source: str, event: yaml.Event) -> str:
    mark = event.start_mark
    return f"{source}:{mark.line + 1}" if mark is not None else source


def describe_yaml_error(source: str, exc: yaml.YAMLError) -> str:
    """One line for a YAML syntax error: ``file:line: invalid YAML: problem``."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if mark is not None:
        return f"{source}:{mark.line + 1}: invalid YAML (column {mark.column + 1}): {problem}"
    return f"{source}: invalid YAML: {problem}"


def load_document(text: str, source: str, error: type[Exception],
                  loader: type[Any] = yaml.SafeLoader) -> tuple[yaml.Node | None, Any]:
    """The single document of *text*: its node tree (for line numbers) and its data.

    Refused as one *error* naming *source* - a syntax error with its line, an anchor or
    alias, nesting too deep - before any node is built from a hostile file.
    """
    try:
        problem = unsafe_yaml_problem(text, source, loader)
        if problem is not None:
            raise error(problem)
        parser = loader(text)
        try:
            node = parser.get_single_node()
            data = parser.construct_document(node) if node is not None else None
        finally:
            parser.dispose()
    except yaml.YAMLError as exc:
        raise error(describe_yaml_error(source, exc)) from None
    return node, data
