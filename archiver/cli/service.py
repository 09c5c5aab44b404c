"""``archiver serve`` and ``archiver demo``: the long-running commands."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from typing import TYPE_CHECKING

from ..config import require_credentials
from ..errors import UsageError
from ..exitstatus import ExitStatus
from ..fleet.shard import Shard
from ..report import build_report
from . import documents
from .context import Done, config_source, load_config_for
from .logs import install_secret_filter, say
from .summary import format_summary, printable
from .terminal import progress_display, stop_on_signals

if TYPE_CHECKING:
    from ..service.serve import Server

log = logging.getLogger("archiver")


def serve(args: argparse.Namespace, shard: Shard | None) -> Done:
    from ..service.serve import Server

    config = load_config_for(args)
    require_credentials(config, "archiver serve", config_source(args))
    if config.webhook is None:
        raise UsageError(f"{config_source(args)}: archiver serve needs a webhook: section "
                         "(client_id, client_secret)")
    return Done(asyncio.run(_serve_async(Server(config, args.listen))))


async def _serve_async(server: Server) -> ExitStatus:
    def on_first_signal(signum: signal.Signals) -> None:
        log.warning("received %s: no new callbacks; finishing work in flight (send it "
                    "again to exit at once)", signum.name)
        server.stop.set()

    remove_handlers = stop_on_signals(asyncio.get_running_loop(), on_first_signal)
    try:
        await server.serve_until_stopped()
    finally:
        remove_handlers()
    if server.lease_lost is not None:
        # Another run took the archive over: what was not finished is pending in the
        # journal; a supervisor restarting the server gets 75 until the other one ends.
        say(f"serve stopped: it lost its lease ({server.lease_lost}); unfinished jobs stay "
            "pending in the journal", label="archiver: ", exit_status=ExitStatus.TEMPFAIL)
        return ExitStatus.TEMPFAIL
    # A stop on request is the normal end of a server: whatever was not finished is
    # pending in the journal, and the next start resumes it.
    return ExitStatus.OK


def demo(args: argparse.Namespace, shard: Shard | None) -> Done:
    from ..demo import run_demo, run_demo_serve

    def progress_line(text: str) -> None:
        say(text, level="info", label="archiver demo: ")

    tell = None if args.quiet else progress_line
    if args.serve:
        served = run_demo_serve(args.dir, say=tell, on_config=install_secret_filter)
        if not args.quiet and not args.json:
            for row in served.rows:
                detail = f": {printable(row.error)}" if row.error else ""
                print(f"  {row.id}  {row.family or 'unknown':<11}  {row.outcome}{detail}")
            print(f"Journal: {served.journal}. Archive: {args.dir}/. One job fails on "
                  "Akool's side on purpose.")
        return Done(served.status, documents.demo_serve(served) if args.json else None)
    with progress_display(args) as display:
        demo = run_demo(args.dir, say=tell, observer=display, on_config=install_secret_filter)
    if not args.quiet and not args.json:
        print(format_summary(demo.result))
        print(demo.notes)
    document = documents.demo(demo, build_report(demo.result, demo.status)) \
        if args.json else None
    return Done(demo.status, document)
