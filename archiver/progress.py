"""Live progress on a terminal: items done, bytes and rate, a bar per active download.

Only used when stderr is a terminal; under cron the run prints log lines and nothing else.
Sizes are in binary units (KiB, MiB, GiB), as in the summary, the configuration's
defaults and the README: one unit system everywhere.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.progress_bar import ProgressBar
from rich.text import Text

from .events import Observer
from .models import ItemResult, Outcome, RunResult

if TYPE_CHECKING:
    from rich.live import Live

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")

#: Shows the cursor again (DECTCEM), which the live display hides while it draws.
SHOW_CURSOR = b"\x1b[?25h"


def _unit(count: float) -> tuple[int, str]:
    """The binary unit *count* bytes are best shown in: (its size, its name)."""
    size = 1
    for name in _UNITS:
        if count < size * 1024 or name == _UNITS[-1]:
            return size, name
        size *= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def _expected(task: Task) -> float | None:
    """The bytes a bar expects: the overall bar keeps its total in a field (see
    :meth:`ProgressDisplay._retotal`), a file's bar in ``total``."""
    if "expected" in task.fields:
        expected: float | None = task.fields["expected"]
        return expected
    return task.total


class _BytesColumn(ProgressColumn):
    """``12.3/45.6 MiB``; ``12.3/? MiB`` only while a size is truly unknown."""

    def render(self, task: Task) -> Text:
        total = _expected(task)
        size, name = _unit(total if total is not None else task.completed)
        digits = 0 if size == 1 else 1
        done = f"{task.completed / size:,.{digits}f}"
        whole = "?" if total is None else f"{total / size:,.{digits}f}"
        return Text(f"{done}/{whole} {name}", style="progress.download")


class _RateColumn(ProgressColumn):
    """``3.2 MiB/s``, in the same units as the sizes."""

    def render(self, task: Task) -> Text:
        speed = task.speed
        if speed is None:
            return Text("?", style="progress.data.speed")
        size, name = _unit(speed)
        digits = 0 if size == 1 else 1
        return Text(f"{speed / size:,.{digits}f} {name}/s", style="progress.data.speed")


class _Bar(BarColumn):
    """A bar that reads the overall total from the task's field, as _BytesColumn does."""

    def render(self, task: Task) -> ProgressBar:
        total = _expected(task)
        return ProgressBar(
            total=max(0.0, total) if total is not None else None,
            completed=max(0.0, task.completed),
            width=None if self.bar_width is None else max(1, self.bar_width),
            pulse=total is None,
            animation_time=task.get_time(),
            style=self.style, complete_style=self.complete_style,
            finished_style=self.finished_style, pulse_style=self.pulse_style,
        )


class ProgressDisplay(Observer):
    """An :class:`Observer` drawing rich progress bars on stderr.

    The overall "received" bar counts the bytes this run receives against the bytes it
    expects: for each file that started, what it received in earlier attempts plus
    what its current transfer announces (Content-Length). Sizes become known as each
    download starts (the API gives URLs, not sizes), so the total grows as files start;
    it is ``?`` only while a started file has no announced size.
    """

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._progress = Progress(
            TextColumn("{task.description}", justify="left"),
            BarColumn(bar_width=None),
            MofNCompleteColumn(),
            TextColumn("{task.fields[extra]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self._bytes = Progress(
            TextColumn("  {task.description}"),
            _Bar(bar_width=None),
            _BytesColumn(),
            _RateColumn(),
            console=self.console,
            transient=True,
        )
        self._items: TaskID | None = None
        self._total_bytes: TaskID | None = None
        self._files: dict[tuple[str, str], TaskID] = {}
        #: Per file of this run: bytes received (all attempts), bytes expected (None:
        #: its current transfer announced no size).
        self._received: dict[tuple[str, str], int] = {}
        self._expect: dict[tuple[str, str], int | None] = {}
        self._failed = 0
        self._live: Live | None = None

    def __enter__(self) -> ProgressDisplay:
        from rich.console import Group
        from rich.live import Live

        self._live = Live(Group(self._progress, self._bytes), console=self.console,
                          refresh_per_second=8, transient=True)
        self._live.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None

    def abandon(self) -> None:
        """The process is about to end at once (``os._exit``, a second Ctrl-C): show the
        cursor again and leave the bars on their own lines, without waiting for the
        display's lock (its refresh thread may hold it)."""
        if self._live is None:
            return
        try:
            fd = self.console.file.fileno()
        except (AttributeError, OSError, ValueError):
            return
        with contextlib.suppress(OSError):
            os.write(fd, b"\r\n" + SHOW_CURSOR)

    def run_started(self, total: int, already_archived: int) -> None:
        self._items = self._progress.add_task("items", total=total, completed=already_archived,
                                              extra="")
        # total stays None for rich (it would reset the rate each time a file adds to
        # it); the bar's columns read "expected".
        self._total_bytes = self._bytes.add_task("received", total=None, expected=0)

    def run_finished(self, result: RunResult) -> None:
        # Take the bars down before the summary is printed below them.
        self.__exit__(None, None, None)

    def item_finished(self, result: ItemResult) -> None:
        if result.outcome in (Outcome.FAILED, Outcome.EXPIRED):
            self._failed += 1
        if self._items is not None:
            extra = f"[red]{self._failed} failed[/]" if self._failed else ""
            self._progress.update(self._items, advance=1, extra=extra)

    def file_started(self, item_id: str, name: str, total: int | None, offset: int) -> None:
        key = (item_id, name)
        label = f"{item_id[:10]}… {name}" if len(item_id) > 10 else f"{item_id} {name}"
        self._files[key] = self._bytes.add_task(label, total=total, completed=offset)
        before = self._received.setdefault(key, 0)
        self._expect[key] = None if total is None else before + max(0, total - offset)
        self._retotal()

    def file_progress(self, item_id: str, name: str, count: int) -> None:
        key = (item_id, name)
        task = self._files.get(key)
        if task is not None:
            self._bytes.update(task, advance=count)
        self._received[key] = self._received.get(key, 0) + count
        if self._total_bytes is not None:
            self._bytes.update(self._total_bytes, advance=count)

    def file_ended(self, item_id: str, name: str) -> None:
        key = (item_id, name)
        task = self._files.pop(key, None)
        if task is not None:
            self._bytes.remove_task(task)
        # Received in full or given up: what it received is what it took. A retry
        # announces its rest when it starts.
        self._expect[key] = self._received.get(key, 0)
        self._retotal()

    def _retotal(self) -> None:
        if self._total_bytes is None:
            return
        sizes = list(self._expect.values())
        expected = None if None in sizes else sum(s for s in sizes if s is not None)
        self._bytes.update(self._total_bytes, expected=expected)


class ConsoleHandler(logging.Handler):
    """Prints log lines above the live display instead of through it."""

    def __init__(self, console: Console) -> None:
        super().__init__()
        self._console = console

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._console.print(self.format(record), markup=False, highlight=False,
                                soft_wrap=True)
        except Exception:  # pragma: no cover - logging must never crash the run
            self.handleError(record)
