"""The terminal: live progress for a person at one, and what SIGINT / SIGTERM do."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable

from ..events import Observer
from ..exitstatus import ExitStatus
from .logs import route_logs, say_line


def progress_display(args: argparse.Namespace
                      ) -> contextlib.AbstractContextManager[Observer | None]:
    """Live progress for a person at a terminal; None under cron and in pipelines."""
    if not sys.stderr.isatty() or args.quiet or args.json or args.log_format != "text":
        return contextlib.nullcontext()
    from ..progress import ConsoleHandler, ProgressDisplay

    display = ProgressDisplay()
    route_logs(ConsoleHandler(display.console))
    return display


def stop_on_signals(loop: asyncio.AbstractEventLoop,
                     first: Callable[[signal.Signals], None],
                     display: Observer | None = None) -> Callable[[], None]:
    """Call *first* on the first SIGINT / SIGTERM; exit at once on the second.

    Returns the function that removes the handlers again.
    """
    received: list[signal.Signals] = []

    def on_signal(signum: signal.Signals) -> None:
        if received:
            # The user insists: go now. Partial files keep their temporary names.
            abandon = getattr(display, "abandon", None)
            if abandon is not None:
                abandon()  # the cursor the live display hid, shown again
            os.write(2, say_line("second signal, exiting at once", level="error",
                                 label="archiver: ").encode())
            os._exit(ExitStatus.for_signal(signum))
        received.append(signum)
        first(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)

    def remove() -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)

    return remove
