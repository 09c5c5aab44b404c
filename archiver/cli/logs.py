"""Where log lines go and how they look: text or JSON on stderr, secrets masked.

The library modules only log to the ``archiver`` logger; this module alone decides
levels, format and filters, once per process.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
from collections.abc import Sequence
from types import TracebackType
from typing import TypeAlias

import stamina

from ..config import Config
from ..report import json_text
from .summary import printable

_ExcInfo: TypeAlias = (
    "tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]"
)


class SecretFilter(logging.Filter):
    """Defence in depth: replace any configured secret that reaches a log line."""

    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__()
        # Shorter "secrets" would mask ordinary words and numbers all over the log.
        self._secrets = [s for s in secrets if len(s) >= 4]

    def filter(self, record: logging.LogRecord) -> bool:
        if self._secrets:
            message = record.getMessage()
            if any(s in message for s in self._secrets):
                for secret in self._secrets:
                    message = message.replace(secret, "***")
                record.msg, record.args = message, None
        return True


class TextFormatter(logging.Formatter):
    """The human log format; every control character in a message is escaped."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = printable(record.message)
        return super().formatMessage(record)

    def formatException(self, ei: _ExcInfo) -> str:
        # A traceback keeps its lines, but an exception's text may quote Akool.
        return "\n".join(printable(line) for line in super().formatException(ei).split("\n"))


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json_text(entry)


def setup_logging(*, quiet: bool = False, verbose: bool = False, debug: bool = False,
                  log_format: str = "text") -> None:
    """Send the ``archiver`` logger to stderr at the level the flags ask for."""
    # A person at a terminal sees what happens; cron (no terminal) only hears of problems.
    chatty = verbose or sys.stderr.isatty()
    level = logging.ERROR if quiet else logging.DEBUG if debug else \
        logging.INFO if chatty else logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter(
        "%(asctime)s %(levelname)-7s %(message)s", datefmt="%Y-%m-%dT%H:%M:%S"))
    # stamina would log every retry as a warning; the archiver logs its own retries at
    # INFO, so that a transient hiccup that was retried away does not wake up cron.
    stamina.instrumentation.set_on_retry_hooks([])
    root = logging.getLogger("archiver")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def route_logs(handler: logging.Handler) -> None:
    """Send log lines through *handler*, keeping the formatter and secret filter."""
    root = logging.getLogger("archiver")
    old = root.handlers[0]
    handler.setFormatter(old.formatter)
    handler.filters[:] = old.filters
    root.handlers[:] = [handler]


def install_secret_filter(config: Config) -> None:
    """Mask every credential of *config* in log lines from now on."""
    secrets = [s.get_secret_value() for s in (config.api.api_key, config.api.token) if s]
    if config.webhook is not None:
        secrets += [config.webhook.client_secret.get_secret_value(),
                    config.webhook.client_id.get_secret_value()]
    for handler in logging.getLogger("archiver").handlers:
        handler.filters[:] = [SecretFilter(secrets)]
