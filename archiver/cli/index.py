"""``archiver index``: the archive's static pages (and ``run --index``'s refresh)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from ..archive.index import IndexResult
from ..config import Config, StorageConfig
from ..errors import ArchiverError, UsageError
from ..exitstatus import ExitStatus
from ..fleet.shard import Shard
from . import documents
from .context import Done, load_config_for
from .logs import say
from .summary import human_bytes


async def _publish_index(storage: StorageConfig, per_page: int) -> IndexResult:
    from ..archive import Archive

    archive = Archive.from_config(storage)
    await archive.open(readonly=True)  # reads, then writes its pages only: no probe
    try:
        return await archive.write_index(per_page=per_page)
    finally:
        await archive.close()


def _say_index_warnings(result: IndexResult) -> None:
    for item_id in result.unreadable:
        say(f"{item_id}/archive.json cannot be read as a record: the index shows it so "
            "(archiver verify tells more)", level="warning", label="archiver: warning: ",
            id=item_id)
    for failure in result.failures:
        say(failure, level="warning", label="archiver: warning: ")


async def refresh_index(config: Config, args: argparse.Namespace) -> None:
    """``run --index``: the run's outcome is the archive's, not the page's - a page
    that cannot be written is a warning, and the exit status stays the run's."""
    try:
        result = await _publish_index(config.storage, 1000)
    except ArchiverError as exc:
        say(f"the index was not refreshed: {exc}", level="warning",
            label="archiver: warning: ")
        return
    _say_index_warnings(result)
    if args.verbose:
        say(f"index refreshed: {result.location} ({result.items} item(s))", level="info",
            label="archiver: ")


def index(args: argparse.Namespace, shard: Shard | None) -> Done:
    root: Path | None = args.dir
    if root is not None and not root.is_dir():
        raise UsageError(f"{root}: no such folder (an archive root is the folder that "
                         "holds one folder per archived id)")
    config = load_config_for(args, frozenset({"storage"}), root)
    result = asyncio.run(_publish_index(config.storage, args.per_page))
    _say_index_warnings(result)
    if args.json:
        return Done(ExitStatus.OK, documents.index(result, per_page=args.per_page))
    if not args.quiet:
        print(f"archiver index: {result.items} item(s) on {len(result.pages)} page(s), "
              f"{human_bytes(result.bytes)}: {result.location}")
    return Done(ExitStatus.OK)
