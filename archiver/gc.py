"""``archiver gc``: remove what no record references - and only what is old enough.

Runs never delete an object under a final key on S3: another host may have uploaded the
same bytes under the same key and listed them in its ``archive.json`` (see
:mod:`archiver.storage.s3`). An attempt that did not commit therefore leaves objects
behind; on local disk an interrupted one leaves ``.NAME.part`` files for a later resume.
``gc`` reaps those of ids that have **no** ``archive.json``, and never touches a
committed item (files of one that its record does not list are ``verify``'s business).

Safety rests on age: an attempt in progress wrote everything it has written within the
last ``downloads.item_timeout`` seconds (the item is cancelled after that), so an id is
only collected when *every* file it has is older than ``min_age >= item_timeout``. Each
backend implements :meth:`~archiver.storage.base.Storage.collect_garbage`; this module only checks
the arguments, takes the run lock - the one ``run`` and ``serve`` take
(:func:`archiver.runlock.hold`): a flock in a local root, the lease on S3, which keeps out
runs on every host - and calls it, asking the lock's fence before each removal.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .config import Config
from .errors import UsageError
from .runlock import hold
from .storage import make_storage
from .storage.base import GcResult

#: Default ``--min-age``: a day, far longer than any attempt (and ``item_timeout``).
DEFAULT_MIN_AGE = 24 * 3600.0

_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", re.IGNORECASE)


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


async def collect(config: Config, ids: Sequence[str] | None, *, min_age: float,
                  dry_run: bool = False) -> GcResult:
    """Collect the garbage of the configured storage (see the module docstring).

    Raises :class:`~archiver.lock.LockHeld` if a run (or ``serve``) holds the lock,
    :class:`~archiver.errors.LeaseLost` if gc loses its S3 lease midway, and
    :class:`~archiver.errors.StorageUnavailable` if the storage cannot be listed.
    """
    check_min_age(min_age, config)
    storage = make_storage(config.storage)
    # A dry run only lists; a real one writes its lease (S3) before removing anything.
    await storage.open(readonly=dry_run)
    try:
        if dry_run:  # removes nothing: no need to keep runs out (as run --dry-run)
            return await storage.collect_garbage(ids, min_age, dry_run)
        async with hold(config, storage, command="gc") as fence:
            return await storage.collect_garbage(ids, min_age, dry_run, fence)
    finally:
        await storage.close()
