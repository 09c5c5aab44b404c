"""Live progress on a terminal: items done, bytes and rate, a bar per active download.

Only used when stderr is a terminal; under cron the run prints log lines and nothing else.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

from .events import Observer
from .models import ItemResult, Outcome, RunResult

if TYPE_CHECKING:
    from rich.live import Live


class ProgressDisplay(Observer):
    """An :class:`Observer` drawing rich progress bars on stderr."""

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
            BarColumn(bar_width=None),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=self.console,
            transient=True,
        )
        self._items: TaskID | None = None
        self._total_bytes: TaskID | None = None
        self._files: dict[tuple[str, str], TaskID] = {}
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

    def run_started(self, total: int, already_archived: int) -> None:
        self._items = self._progress.add_task("items", total=total, completed=already_archived,
                                              extra="")
        self._total_bytes = self._bytes.add_task("received", total=None)

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

    def file_progress(self, item_id: str, name: str, count: int) -> None:
        task = self._files.get((item_id, name))
        if task is not None:
            self._bytes.update(task, advance=count)
        if self._total_bytes is not None:
            self._bytes.update(self._total_bytes, advance=count)

    def file_ended(self, item_id: str, name: str) -> None:
        task = self._files.pop((item_id, name), None)
        if task is not None:
            self._bytes.remove_task(task)


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
