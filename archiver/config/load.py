"""Reading the configuration file: YAML, ``${VAR}`` expanded, validated into
:class:`~.model.Config`, every problem one :class:`ConfigError` naming the key and, where
YAML tells, the file and line (the rules: the package's docstring, :mod:`archiver.config`).
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import stat
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    ValidationError,
)

from .._os import os_reason
from .._yaml import load_document
from ..errors import ConfigError
from .model import DEFAULT_CONFIG_PATH, Config

log = logging.getLogger(__name__)

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
#: What is left of a ``${`` that _ENV_REF did not take: a reference never closed.
_OPEN_REF = re.compile(r"\$\{[^}\s]{0,40}")
#: A shell-style ``$NAME`` (or ``$NAME/...``) at the start of a value: YAML keeps it as is.
_SHELL_REF = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)(/.*)?", re.DOTALL)

#: ``-c -``: the configuration comes from standard input.
STDIN = "-"

#: The top-level sections of the configuration.
SECTIONS = frozenset(Config.model_fields)


def load_config(path: str | os.PathLike[str] | None = None, *,
                unused: Iterable[str] = (), needed_by: str | None = None) -> Config:
    """Read, expand and validate the configuration file at *path* (``-``: stdin).

    *unused* names top-level sections the caller does not use: an unset environment
    variable there drops that section (its defaults apply) instead of stopping
    everything - ``archiver verify`` needs no API key, ``run`` no webhook secret.
    Every other problem is an error wherever it is. *needed_by* (``archiver run``)
    is named in the message of an unset variable the caller does need.
    """
    path = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    if str(path) == STDIN:
        try:
            text = sys.stdin.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"<stdin>: cannot read configuration: {os_reason(exc)}") from None
        return parse_config(text, source="<stdin>", unused=unused, needed_by=needed_by)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found (use -c PATH)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read configuration: {os_reason(exc)}") from None
    config = parse_config(text, source=str(path), unused=unused, needed_by=needed_by)
    _warn_if_key_exposed(path, text)
    return config


def require_credentials(config: Config, needed_by: str, source: str) -> None:
    """Raise :class:`ConfigError` unless *config* has an Akool credential.

    *needed_by* names the command that calls Akool (``archiver run``), *source* the
    configuration file, so the message says who needs what and where to put it.
    """
    if not config.api.has_credentials:
        raise ConfigError(
            f"{source}: {needed_by} calls Akool's API and needs its key: set api.api_key "
            "(e.g. api_key: ${AKOOL_API_KEY}, with the key in the environment) or api.token")


def _warn_if_key_exposed(path: Path, text: str) -> None:
    """Warn (as ssh does for keys, but never refuse) when others may read a key in *path*."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        api = (yaml.safe_load(text) or {}).get("api") or {}
    except (OSError, yaml.YAMLError, AttributeError):
        return
    if not mode & 0o044 or not isinstance(api, dict):
        return
    for key, variable in (("api_key", "AKOOL_API_KEY"), ("token", "AKOOL_TOKEN"),
                          ("client_secret", "AKOOL_CLIENT_SECRET")):
        value = api.get(key)
        # What is left once ${VAR} references are replaced by their defaults is written
        # in the file itself: a literal key, or one hidden in ${VAR:-default}.
        literal = value is not None and (not isinstance(value, str) or _ENV_REF.sub(
            lambda m: m.group(2) or "", value).strip() != "")
        if literal:
            log.warning("%s holds api.%s in plain text and others can read it (mode %04o): "
                        "run chmod 600 %s, or write api.%s: ${%s} and keep the key in the "
                        "environment", path, key, mode, shlex.quote(str(path)), key, variable)
            return


def parse_config(text: str, source: str = "<config>", *, unused: Iterable[str] = (),
                 needed_by: str | None = None) -> Config:
    """Validate configuration YAML *text*; *source* names it in errors.

    *unused* and *needed_by*: as for :func:`load_config`.
    """
    node, data = load_document(text, source, ConfigError)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the configuration must be a mapping of keys, "
                          f"not a {type(data).__name__}")
    lines = _line_index(node)
    skip = frozenset(unused)
    expanded: dict[Any, Any] = {}
    for section, value in data.items():
        try:
            expanded[section] = _expand_env(value, (section,), source, lines)
        except _UnsetVariable as exc:
            if section in skip:
                # Not this command's business (e.g. the webhook secret for `run`): its
                # defaults will do, and nobody reads them.
                log.debug("%s; %s is not used here: ignored", exc, section)
                continue
            if needed_by is not None:
                raise ConfigError(f"{exc} ({needed_by} needs it)") from None
            raise
    try:
        return Config.model_validate(expanded)
    except ValidationError as exc:
        raise ConfigError(_first_error(exc, source, lines)) from None


class _UnsetVariable(ConfigError):
    """A ``${VAR}`` whose variable is not set (and that has no default)."""


def _expand_env(value: Any, loc: tuple[str | int, ...], source: str,
                lines: dict[tuple[str | int, ...], int]) -> Any:
    if isinstance(value, dict):
        return {k: _expand_env(v, (*loc, k), source, lines) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, (*loc, i), source, lines) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value
    _check_references(value, loc, source, lines)

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        found = os.environ.get(name)
        if found is None or (found == "" and default is not None):
            if default is not None:
                return default
            raise _UnsetVariable(f"{_where(source, lines, loc)}: {_dotted(loc)}: "
                                 f"environment variable {name} is not set")
        return found

    return _ENV_REF.sub(substitute, value)


def _check_references(value: str, loc: tuple[str | int, ...], source: str,
                      lines: dict[tuple[str | int, ...], int]) -> None:
    """Refuse what looks like an environment reference but would be taken literally.

    ``${AKOOL_API_KEY`` (never closed) and ``$AKOOL_API_KEY`` (a shell's syntax) would
    otherwise be sent to Akool as the key itself, and come back as "Akool rejected the
    credentials" with nothing to say why. Only the text written in the file is looked
    at, never a variable's value.
    """
    where = f"{_where(source, lines, loc)}: {_dotted(loc)}"
    unclosed = _OPEN_REF.search(_ENV_REF.sub("", value))
    if unclosed is not None:
        name = unclosed.group(0)[2:]
        fix = f"write ${{{name}}}" if re.fullmatch(r"[A-Za-z_]\w*", name) else \
            "write ${NAME} or ${NAME:-default}"
        raise ConfigError(f"{where}: {unclosed.group(0)} has no closing '}}' and would be "
                          f"taken literally: {fix}")
    shell = _SHELL_REF.fullmatch(value)
    if shell is not None:
        name, rest = shell.group(1), shell.group(2) or ""
        raise ConfigError(f"{where}: ${name} would be taken literally (only ${{{name}}}, "
                          f"with braces, is replaced): write ${{{name}}}{rest}")


def _line_index(node: yaml.Node | None) -> dict[tuple[str | int, ...], int]:
    """Map each key path in the YAML document to its 1-based line."""
    index: dict[tuple[str | int, ...], int] = {}

    def walk(n: yaml.Node, loc: tuple[str | int, ...]) -> None:
        if isinstance(n, yaml.MappingNode):
            for key_node, value_node in n.value:
                key = (*loc, key_node.value)
                index[key] = key_node.start_mark.line + 1
                walk(value_node, key)
        elif isinstance(n, yaml.SequenceNode):
            for i, item in enumerate(n.value):
                index[(*loc, i)] = item.start_mark.line + 1
                walk(item, (*loc, i))

    if node is not None:
        walk(node, ())
    return index


def _where(source: str, lines: dict[tuple[str | int, ...], int],
           loc: tuple[str | int, ...]) -> str:
    # The closest enclosing key that has a line (a missing key has none of its own).
    for cut in range(len(loc), 0, -1):
        if loc[:cut] in lines:
            return f"{source}:{lines[loc[:cut]]}"
    return source


def _dotted(loc: tuple[str | int, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def _first_error(exc: ValidationError, source: str,
                 lines: dict[tuple[str | int, ...], int]) -> str:
    err = exc.errors()[0]
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    # pydantic adds the union member name for `SecretStr | None`; drop it.
    loc = tuple(p for p in loc if p not in ("SecretStr", "constrained-str"))
    kind = err["type"]
    if kind == "extra_forbidden":
        msg = "unknown key"
    elif kind == "missing":
        msg = "missing value"
    else:
        # pydantic's message names the expected type/bound, never echoes a secret value.
        msg = err["msg"].removeprefix("Value error, ")
    extra = len(exc.errors()) - 1
    more = f" (and {extra} more problem{'s' if extra > 1 else ''})" if extra else ""
    return f"{_where(source, lines, loc)}: {_dotted(loc)}: {msg}{more}"
