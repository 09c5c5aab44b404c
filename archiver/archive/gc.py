"""``archiver gc``: remove what no record references - and only what is old enough. The
rules are written once, for every backend, over the narrow storage contract.

Runs never delete an object under a final key on S3: another host may have uploaded the
same bytes under the same key and listed them in its ``archive.json`` (see
:mod:`archiver.storage.s3`). An attempt that did not commit therefore leaves objects
behind; on local disk an interrupted one leaves ``.NAME.part`` files for a later resume.
``gc`` reaps those of ids that have **no** ``archive.json``, and never touches a
committed item (files of one that its record does not list are ``verify``'s business).

What is garbage (:func:`collect_garbage`):

- in a folder named like an id, without ``archive.json``: the regular files whose names
  the archiver writes (:func:`archiver.storage.names.collectable`: result and metadata
  files, temporaries) - only if *every* entry of the folder, whatever its name or kind,
  is older than ``min_age``; otherwise the id is kept (``kept_recent``);
- unfinished uploads (S3's multipart uploads) of such names older than ``min_age``, in
  any id's folder: no attempt in progress is that old, and no committed file depends on
  an upload that never completed;
- write probes (``.archiver-probe-*``) at the top, older than ``min_age``.

Ages are the store's: entries' times against the listing's own clock
(:attr:`~archiver.storage.backend.Listing.now`), so no host's clock skew counts. Safety
rests on them: an attempt in progress wrote everything it has written within the last
``downloads.item_timeout`` seconds (the item is cancelled after that), so ``min_age``
may not be shorter (:func:`check_min_age`). Each removal is the backend's, and removes an
entry only if it is unchanged since listed, nothing from a folder committed meanwhile
(:meth:`~archiver.storage.backend.Backend.remove`); the lock's fence is asked before each.
An id whose files went while a run committed it anyway is reported (exit 1).

:func:`collect` checks the arguments and takes the run lock - the one ``run`` and
``serve`` take (:func:`archiver.archive.runlock.hold`): a flock in a local root, the lease on
S3, which keeps out runs on every host.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..config import Config
from ..errors import UsageError
from ..fleet.lock import NO_FENCE, Fence
from ..storage.backend import Backend, Entry, Kind
from ..storage.names import RECORD_NAME, collectable, is_probe
from .state import committed, is_id

#: Default ``--min-age``: a day, far longer than any attempt (and ``item_timeout``).
DEFAULT_MIN_AGE = 24 * 3600.0

_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", re.IGNORECASE)
_KINDS = {Kind.FILE: "file", Kind.UPLOAD: "upload"}


@dataclass(frozen=True, slots=True)
class Garbage:
    """One thing ``archiver gc`` removed (or, in a dry run, would remove)."""

    #: Where it is, safe to print: ``s3://bucket/key``, a path.
    where: str
    #: Its size in bytes (0 when unknown, e.g. a multipart upload).
    size: int = 0
    #: The id it belonged to; None for strays such as a leftover write probe.
    item: str | None = None
    #: ``file`` (an object or a file), ``upload`` (a multipart upload), ``folder``.
    kind: str = "file"


@dataclass(slots=True)
class GcResult:
    """What ``archiver gc`` did."""

    removed: list[Garbage] = field(default_factory=list)
    #: One line per thing that could not be removed (exit status 1).
    failures: list[str] = field(default_factory=list)
    #: Uncommitted ids left alone because something of theirs is younger than min_age.
    kept_recent: list[str] = field(default_factory=list)

    @property
    def files(self) -> list[Garbage]:
        return [g for g in self.removed if g.kind == "file"]

    @property
    def uploads(self) -> list[Garbage]:
        return [g for g in self.removed if g.kind == "upload"]

    @property
    def items(self) -> set[str]:
        return {g.item for g in self.files if g.item is not None}

    @property
    def bytes(self) -> int:
        return sum(g.size for g in self.removed)


def parse_duration(text: str) -> float:
    """Seconds in ``90``, ``90s``, ``30m``, ``24h`` or ``7d``; UsageError otherwise."""
    match = _DURATION.fullmatch(text)
    if match is None:
        raise UsageError(f"--min-age {text!r}: expected a duration like 90s, 30m, 24h or 7d")
    return float(match.group(1)) * _UNITS[match.group(2).lower()]


def default_min_age(config: Config) -> float:
    return max(DEFAULT_MIN_AGE, config.downloads.item_timeout)


def check_min_age(min_age: float, config: Config) -> None:
    """Refuse an age at which an item being archived right now could be collected."""
    limit = config.downloads.item_timeout
    if min_age < limit:
        raise UsageError(
            f"--min-age {min_age:g}s is shorter than downloads.item_timeout ({limit:g}s): "
            "files of an item a run is archiving right now could be removed")


async def collect_garbage(backend: Backend, ids: Sequence[str] | None, min_age: float,
                          dry_run: bool, fence: Fence = NO_FENCE) -> GcResult:
    """Remove (with *dry_run*, only report) the garbage of *ids*, or of the whole archive
    when None, older than *min_age* seconds (see the module docstring). *fence* is asked
    before each removal: :class:`~archiver.errors.LeaseLost` stops the collection."""
    result = GcResult()
    wanted = None if ids is None else sorted({i for i in ids if is_id(i)})
    if wanted == []:
        return result
    listing = await backend.listing(wanted, uploads=True)
    cutoff = listing.now - min_age
    for item_id in sorted({*listing.folders, *listing.uploads}):
        if not is_id(item_id):
            continue
        folder = listing.folders.get(item_id, {})
        uploads = listing.uploads.get(item_id, [])
        garbage = [u for u in uploads if collectable(u.name) and u.mtime < cutoff]
        files = [] if committed(folder) else \
            [e for e in folder.values() if e.kind is Kind.FILE and collectable(e.name)]
        if files and any(e.mtime >= cutoff for e in (*folder.values(), *uploads)):
            result.kept_recent.append(item_id)  # an attempt may be writing it now
        else:
            garbage = files + garbage
        if garbage:
            await _remove(backend, item_id, garbage, dry_run, fence, result)
    probes = [e for e in listing.strays
              if e.kind is Kind.FILE and is_probe(e.name) and e.mtime < cutoff]
    if probes:
        await _remove(backend, None, probes, dry_run, fence, result)
    return result


async def _remove(backend: Backend, item_id: str | None, garbage: list[Entry],
                  dry_run: bool, fence: Fence, result: GcResult) -> None:
    def found(entry: Entry) -> Garbage:
        return Garbage(backend.where(item_id, entry), entry.size, item_id,
                       _KINDS.get(entry.kind, "file"))

    if dry_run:
        result.removed.extend(found(e) for e in garbage)
        return
    await fence.confirm()
    removal = await backend.remove(item_id, garbage)
    result.removed.extend(found(e) for e in removal.removed)
    result.failures.extend(removal.failures)
    if item_id is None:
        return
    if removal.folder:
        result.removed.append(Garbage(backend.where(None, Entry(item_id, Kind.FOLDER)), 0,
                                      item_id, kind="folder"))
    if any(e.kind is Kind.FILE for e in removal.removed):
        again = await backend.listing([item_id], only=RECORD_NAME)
        if committed(again.folders.get(item_id)):
            # A run committed it in the instant between the removal's look and its act.
            result.failures.append(f"{item_id}: committed by a run while gc removed its "
                                   "files; check it with archiver verify")
