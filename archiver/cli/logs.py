"""Where log lines go and how they look: text or JSON on stderr, secrets masked.

The library modules only log to the ``archiver`` logger; this module alone decides
levels, format and filters, once per process. The lines the command line writes itself
on stderr - fatal errors, ``verify``'s problems, ``-q``'s one line per failed id -
go through :func:`say`, in the same format: under ``--log-format json`` every line on
stderr is one JSON object.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any, TypeAlias

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

    def mask(self, message: str) -> str:
        for secret in self._secrets:
            if secret in message:
                message = message.replace(secret, "***")
        return message

    def filter(self, record: logging.LogRecord) -> bool:
        if self._secrets:
            message = record.getMessage()
            masked = self.mask(message)
            if masked != message:
                record.msg, record.args = masked, None
        return True


class _Format:
    """How this process writes to stderr, as setup_logging() was told."""

    json = False
    secrets = SecretFilter(())


def say(message: str, *, level: str = "error", label: str = "archiver: error: ",
        **fields: Any) -> None:
    """Write one line on stderr that is not a library log record (see the module doc).

    Text: *label* then *message*, control characters escaped (``archiver: error: ...``).
    JSON: ``{"time", "level", "logger", "message", **fields}``, as a JSON log line.
    Secrets are masked either way.
    """
    sys.stderr.write(say_line(message, level=level, label=label, **fields))
    sys.stderr.flush()


def say_lines(lines: Iterable[str], batch: int = 1000) -> None:
    """Write lines made by :func:`say_line`, *batch* lines per write (``-q`` after
    100,000 failed ids: 100 system calls, not one per line; and never all the lines
    at once in memory, which at 100,000 was ~50 MiB on top of the run)."""
    pending: list[str] = []
    for line in lines:
        pending.append(line)
        if len(pending) >= batch:
            sys.stderr.write("".join(pending))
            pending.clear()
    if pending:
        sys.stderr.write("".join(pending))
    sys.stderr.flush()


def say_line(message: str, *, level: str = "error", label: str = "archiver: error: ",
             **fields: Any) -> str:
    """The line :func:`say` writes, newline included."""
    message = _Format.secrets.mask(message)
    if not _Format.json:
        return f"{label}{printable(message)}\n"
    entry = {"time": _now(), "level": level, "logger": "archiver", "message": message,
             **fields}
    return json_text(entry) + "\n"


def json_logs() -> bool:
    """Whether stderr speaks JSON (``--log-format json``)."""
    return _Format.json


def _now(created: float | None = None) -> str:
    when = dt.datetime.fromtimestamp(created, dt.UTC) if created is not None else \
        dt.datetime.now(dt.UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


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
            "time": _now(record.created),
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
    _Format.json = log_format == "json"
    archiver = logging.getLogger("archiver")
    archiver.handlers[:] = [handler]
    archiver.setLevel(level)
    archiver.propagate = False
    # Warnings of the libraries (asyncio, aiohttp, botocore) in the same format, not as
    # logging's bare last-resort text: under --log-format json, stderr is JSON only.
    other = logging.getLogger()
    other.handlers[:] = [handler]
    other.setLevel(max(level, logging.WARNING))
    logging.captureWarnings(True)


def route_logs(handler: logging.Handler) -> None:
    """Send log lines through *handler*, keeping the formatter and secret filter."""
    archiver = logging.getLogger("archiver")
    old = archiver.handlers[0]
    handler.setFormatter(old.formatter)
    handler.filters[:] = old.filters
    archiver.handlers[:] = [handler]
    logging.getLogger().handlers[:] = [handler]


def install_secret_filter(config: Config) -> None:
    """Mask every credential of *config* in log lines from now on."""
    api = config.api
    secrets = [s.get_secret_value()
               for s in (api.api_key, api.token, api.client_id, api.client_secret) if s]
    if config.webhook is not None:
        secrets += [config.webhook.client_secret.get_secret_value(),
                    config.webhook.client_id.get_secret_value()]
        if config.webhook.status_password is not None:
            secrets.append(config.webhook.status_password.get_secret_value())
    _Format.secrets = SecretFilter(secrets)
    for handler in logging.getLogger("archiver").handlers:
        handler.filters[:] = [_Format.secrets]
