"""Configuration: plain data with every default in one place.

The file is YAML. ``${VAR}`` (or ``${VAR:-default}``) in any string value is replaced by
the environment variable, so secrets can stay out of the file. Every problem - unknown
key, wrong type, missing value, unset variable, a ``${VAR`` never closed, a shell-style
``$VAR`` that YAML keeps as it is - becomes one :class:`ConfigError` that names the key
and, where YAML tells us, the file and line.

A command reads only the sections it uses: an unset variable in a section it does not
use (``webhook:`` for ``run``, ``api:`` for ``verify``) does not stop it (see
:func:`load_config`'s *unused*). Credentials are optional in the file;
:func:`require_credentials` is the check of the commands that call Akool.

:mod:`.model` is the schema (a pydantic model per section), :mod:`.load` reads a file
into it; the names below are the package's public ones.
"""

from .load import SECTIONS, STDIN, load_config, parse_config, require_credentials
from .model import (
    DEFAULT_CONFIG_PATH,
    ApiConfig,
    ConcurrencyConfig,
    Config,
    DownloadConfig,
    LimitsConfig,
    LocalStorageConfig,
    PollingConfig,
    RunConfig,
    S3StorageConfig,
    StorageConfig,
    WebhookConfig,
    parse_listen,
)

__all__ = [
    "DEFAULT_CONFIG_PATH", "SECTIONS", "STDIN", "ApiConfig", "ConcurrencyConfig", "Config",
    "DownloadConfig", "LimitsConfig", "LocalStorageConfig", "PollingConfig", "RunConfig",
    "S3StorageConfig", "StorageConfig", "WebhookConfig", "load_config", "parse_config",
    "parse_listen", "require_credentials",
]
