"""``archiver verify``, ``status`` and ``gc``: looking at an archive (``status
--remote`` asks Akool too), and cleaning up after it."""

from __future__ import annotations

import argparse
import asyncio

from ..config import require_credentials
from ..errors import ItemError
from ..exitstatus import ExitStatus
from ..fleet.shard import Shard
from ..manifest import ManifestItem
from . import documents
from .context import Done, config_source, load_config_for, load_manifest, shard_text, target
from .logs import say
from .summary import describe_remote, human_bytes, printable


def verify(args: argparse.Namespace, shard: Shard | None) -> Done:
    from ..archive import Archive
    from ..archive.verify import VerifyResult

    spec, root = target(args)
    config = load_config_for(args, frozenset({"storage"}), root)
    ids = [i.id for i in load_manifest(spec, config, shard)] if spec else None

    async def go() -> tuple[VerifyResult, str]:
        archive = Archive.from_config(config.storage)
        await archive.open(readonly=True)
        try:
            targets = ids
            if targets is None and shard is not None:
                targets = [i for i in await archive.list_archived() if shard.owns(i)]
            return await archive.verify(targets, deep=args.deep), archive.description
        finally:
            await archive.close()

    result, where = asyncio.run(go())
    for problem in result.problems:
        say(str(problem), label="archiver: ", id=problem.id, file=problem.file,
            kind=problem.kind, detail=problem.detail)
    status = ExitStatus.OK if result.ok else ExitStatus.FAILED
    if args.json:
        return Done(status, documents.verify(result, storage=where, shard=shard_text(shard),
                                             deep=args.deep))
    if not args.quiet:
        verdict = "OK" if result.ok else f"{len(result.problems)} problem(s)"
        print(f"archiver verify: {result.items} item(s), {result.files} file(s), "
              f"{human_bytes(result.bytes)} checked: {verdict}")
    return Done(status)


def status(args: argparse.Namespace, shard: Shard | None) -> Done:
    from ..akool.client import AkoolClient
    from ..archive import Archive

    spec, root = target(args)
    uses = {"storage"} | ({"api", "concurrency", "polling"} if args.remote else set())
    config = load_config_for(args, frozenset(uses), root)
    if args.remote:
        require_credentials(config, "archiver status --remote", config_source(args))
    manifest = load_manifest(spec, config, shard) if spec else None
    remote: dict[str, documents.Remote] = {}

    async def go() -> tuple[list[ManifestItem], dict[str, str], str]:
        archive = Archive.from_config(config.storage)
        await archive.open(readonly=True)
        try:
            if manifest is not None:
                items = list(manifest)
                states: dict[str, str] = dict(await archive.item_states([i.id for i in items]))
            else:
                # Without a manifest: every id the archive holds (archive.json).
                archived = [i for i in await archive.list_archived()
                            if shard is None or shard.owns(i)]
                items = [ManifestItem(i) for i in archived]
                states = dict.fromkeys(archived, "archived")
            where = archive.description
        finally:
            await archive.close()
        if args.remote:
            # With --shard K/N, N of these may run at once: each takes its 1/N of the budget.
            async with AkoolClient.for_run(
                    config, shares=shard.count if shard is not None else 1) as client:
                slots = asyncio.Semaphore(config.concurrency.polls)

                async def ask(item: ManifestItem) -> None:
                    async with slots:
                        try:
                            info = await client.job_info(item.id, item.family)
                        except ItemError as exc:
                            remote[item.id] = str(exc)
                            return
                        remote[item.id] = (info.status, info.expires_at)

                await asyncio.gather(*(ask(i) for i in items
                                       if states.get(i.id) != "archived"))
        return items, states, where

    items, states, where = asyncio.run(go())
    if args.json:
        return Done(ExitStatus.OK, documents.status(
            items, states, remote if args.remote else None, storage=where,
            manifest=manifest.source if manifest is not None else None,
            shard=shard_text(shard)))
    width = max((len(i.id) for i in items), default=10)
    for item in items:
        line = f"{item.id:<{width}}  {states.get(item.id, 'absent'):<8}"
        if args.remote:
            answer = remote.get(item.id)
            line += "  " + ("-" if answer is None else f"error: {answer}"
                            if isinstance(answer, str) else describe_remote(*answer))
        if item.label:
            line += f"  ({item.label})"
        print(printable(line))
    counts = {s: sum(1 for i in items if states.get(i.id, "absent") == s)
              for s in ("archived", "partial", "absent")}
    if not args.quiet:
        say(f"{len(items)} id(s): {counts['archived']} archived, {counts['partial']} partial, "
            f"{counts['absent']} absent", level="info", label="archiver status: ")
    return Done(ExitStatus.OK)


# ------------------------------------------------------------------------- gc

def gc(args: argparse.Namespace, shard: Shard | None) -> Done:
    from ..archive.gc import check_min_age, default_min_age, parse_duration
    from ..archive.run import collect

    spec, root = target(args)
    config = load_config_for(args, frozenset({"storage", "run", "downloads"}), root)
    min_age = parse_duration(args.min_age) if args.min_age else default_min_age(config)
    check_min_age(min_age, config)  # before reading the manifest or touching storage
    ids = [i.id for i in load_manifest(spec, config)] if spec else None
    result = asyncio.run(collect(config, ids, min_age=min_age, dry_run=args.dry_run))
    for failure in result.failures:
        say(failure, label="archiver: ")
    status = ExitStatus.FAILED if result.failures else ExitStatus.OK
    if args.json:
        return Done(status, documents.gc(result, dry_run=args.dry_run, min_age=min_age))
    verb = "would remove" if args.dry_run else "removed"
    if (args.verbose or args.dry_run) and not args.quiet:
        for found in result.removed:
            size = f" ({human_bytes(found.size)})" if found.kind == "file" else ""
            print(f"  {verb} {found.where}{size}")
    if not args.quiet:
        line = (f"archiver gc: {len(result.files)} object(s) of {len(result.items)} "
                f"uncommitted item(s), {human_bytes(result.bytes)} "
                f"{'would be removed' if args.dry_run else 'removed'}")
        if result.uploads:
            line += f"; {len(result.uploads)} stale multipart upload(s) " + \
                ("to abort" if args.dry_run else "aborted")
        if result.kept_recent:
            line += f"; {len(result.kept_recent)} item(s) newer than --min-age kept"
        if result.failures:
            line += f"; {len(result.failures)} failure(s)"
        print(line)
    return Done(status)
