"""Configuration: plain data with every default in one place.

The file is YAML. ``${VAR}`` (or ``${VAR:-default}``) in any string value is replaced by
the environment variable, so secrets can stay out of the file. Every problem - unknown
key, wrong type, missing value, unset variable - becomes one :class:`ConfigError` that
names the key and, where YAML tells us, the file and line.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from .errors import ConfigError

DEFAULT_CONFIG_PATH = Path("archiver.yaml")

PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]


class _Model(BaseModel):
    # Unknown keys are errors: a typo'd key silently ignored is a setting silently lost.
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetryConfig(_Model):
    """Bounds for retrying transient failures of one request."""

    attempts: Annotated[int, Field(ge=1, le=100)] = 5
    wait_initial: NonNegativeFloat = 1.0
    wait_max: NonNegativeFloat = 60.0
    #: Give up retrying one request after this many seconds in all.
    timeout: PositiveFloat = 300.0


class ApiConfig(_Model):
    """Where Akool is and how to authenticate."""

    base_url: str = "https://openapi.akool.com"
    api_key: SecretStr | None = None
    token: SecretStr | None = None
    connect_timeout: PositiveFloat = 10.0
    read_timeout: PositiveFloat = 30.0
    retries: RetryConfig = RetryConfig()

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an http:// or https:// URL, e.g. https://openapi.akool.com")
        return value.rstrip("/")

    @field_validator("api_key", "token")
    @classmethod
    def _not_blank(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("is empty")
        return value

    @model_validator(mode="after")
    def _one_credential(self) -> ApiConfig:
        if self.api_key is None and self.token is None:
            raise ValueError("set api.api_key (sent as x-api-key) or api.token (Bearer)")
        if self.api_key is not None and self.token is not None:
            raise ValueError("set only one of api.api_key and api.token, not both")
        return self


class PollingConfig(_Model):
    """How often to ask Akool about unfinished jobs, and for how long."""

    interval: PositiveFloat = 10.0
    max_interval: PositiveFloat = 120.0
    #: Seconds one run waits for a job before leaving it pending for the next run.
    deadline: NonNegativeFloat = 1800.0

    @model_validator(mode="after")
    def _ordered(self) -> PollingConfig:
        if self.max_interval < self.interval:
            raise ValueError("polling.max_interval must be >= polling.interval")
        return self


class ConcurrencyConfig(_Model):
    """Separate bounds for API polls and file downloads."""

    polls: Annotated[int, Field(ge=1, le=1024)] = 16
    downloads: Annotated[int, Field(ge=1, le=256)] = 8


class DownloadConfig(_Model):
    """How result files are fetched."""

    #: Bytes handed to storage per write; memory per transfer is about this much.
    chunk_size: Annotated[int, Field(ge=4096, le=64 * 1024 * 1024)] = 1024 * 1024
    connect_timeout: PositiveFloat = 10.0
    #: Abort a transfer that sends nothing for this long (it is then retried).
    read_timeout: PositiveFloat = 60.0
    retries: RetryConfig = RetryConfig(attempts=4)


class LocalStorageConfig(_Model):
    root: Path = Path("./archive")


class StorageConfig(_Model):
    backend: Literal["local"] = "local"
    local: LocalStorageConfig = LocalStorageConfig()


class Config(_Model):
    """The whole configuration. ``Config(api={"api_key": "..."})`` works for libraries."""

    api: ApiConfig
    polling: PollingConfig = PollingConfig()
    concurrency: ConcurrencyConfig = ConcurrencyConfig()
    downloads: DownloadConfig = DownloadConfig()
    storage: StorageConfig = StorageConfig()


# --------------------------------------------------------------------------- loading

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read, expand and validate the configuration file at *path*."""
    path = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found (use -c PATH)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read configuration: {os_reason(exc)}") from None
    return parse_config(text, source=str(path))


def parse_config(text: str, source: str = "<config>") -> Config:
    """Validate configuration YAML *text*; *source* names it in errors."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(describe_yaml_error(source, exc)) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the configuration must be a mapping of keys, "
                          f"not a {type(data).__name__}")
    lines = _line_index(node)
    data = _expand_env(data, (), source, lines)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_first_error(exc, source, lines)) from None


def _expand_env(value: Any, loc: tuple[str | int, ...], source: str,
                lines: dict[tuple[str | int, ...], int]) -> Any:
    if isinstance(value, dict):
        return {k: _expand_env(v, (*loc, k), source, lines) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, (*loc, i), source, lines) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        found = os.environ.get(name)
        if found is None or (found == "" and default is not None):
            if default is not None:
                return default
            raise ConfigError(f"{_where(source, lines, loc)}: {_dotted(loc)}: "
                              f"environment variable {name} is not set")
        return found

    return _ENV_REF.sub(substitute, value)


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


def describe_yaml_error(source: str, exc: yaml.YAMLError) -> str:
    """One line for a YAML syntax error: ``file:line: invalid YAML: problem``."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if mark is not None:
        return f"{source}:{mark.line + 1}: invalid YAML (column {mark.column + 1}): {problem}"
    return f"{source}: invalid YAML: {problem}"


def os_reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 text"
    return type(exc).__name__
