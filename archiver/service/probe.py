"""Finding the result family of a job whose callback did not name it.

Akool's callbacks name their product in ``type``, but not always: none is documented
for image-to-video, character swap or reage, and a journal written before families
holds rows without one. Such a job is accepted all the same (Akool would retry a refusal
for ever) and its family found here, by asking each family's endpoint in turn - video
first, where most jobs are - until one knows the id.

An answer is conclusive only when it is one: a family that knows the id ends the search;
one that answers a business error (1008 "does not exist", or any other code about this
id) does not know it; one that gives no answer (transient errors, the API down) leaves
the question open, so a job no family claims while one of them was silent is asked
again later rather than given up on. Credential errors are fatal, as everywhere.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..akool.client import AkoolClient
from ..akool.families import FAMILIES
from ..config import ApiConfig
from ..errors import APIError, Transient
from ..manifest import ManifestItem
from ..models import JobInfo

log = logging.getLogger(__name__)


class _Client(Protocol):
    async def job_info(self, item_id: str, family: str) -> JobInfo: ...


@dataclass(frozen=True, slots=True)
class Probe:
    """What asking the families found."""

    #: The family that knows the id, or None.
    family: str | None
    #: Why no family could be named: the last silent family's error, or None when every
    #: family asked answered that it does not know the id.
    error: str | None = None

    @property
    def unknown_everywhere(self) -> bool:
        """Every family asked answered, and none knows the id."""
        return self.family is None and self.error is None


async def find_family(client: _Client, job_id: str, skip: Iterable[str] = ()) -> Probe:
    """Ask each family in :data:`~archiver.akool.families.FAMILIES` order (video first),
    but *skip*, whether it knows *job_id*; the first that does is the answer."""
    skipped = set(skip)
    silent: str | None = None
    for family in FAMILIES:
        if family in skipped:
            continue
        try:
            await client.job_info(job_id, family)
        except Transient as exc:  # no answer: this family may still be the one
            silent = f"{family}: {exc}"
            continue
        except APIError:  # an answer about this id: not one of this family's jobs
            continue
        log.info("%s: found among the %s results", job_id, family)
        return Probe(family)
    return Probe(None, silent)


async def with_families(config: ApiConfig, pending: Sequence[tuple[str, str | None]],
                        *, limit: int = 16) -> list[ManifestItem]:
    """``run --from-journal``: the journal's pending ids as manifest items, each with
    its family - as recorded, or found by :func:`find_family` (one client, at most
    *limit* ids asked at once). An id no family claims (yet) is left out, with one
    warning line: it stays pending in the journal for ``serve``, or the next run."""
    unknown = [job_id for job_id, family in pending if family is None]
    found: dict[str, Probe] = {}
    if unknown:
        slots = asyncio.Semaphore(limit)

        async def probe(client: AkoolClient, job_id: str) -> None:
            async with slots:
                found[job_id] = await find_family(client, job_id)

        async with AkoolClient(config, limit=limit) as client:
            await asyncio.gather(*(probe(client, job_id) for job_id in unknown))
    items: list[ManifestItem] = []
    for job_id, family in pending:
        family = family or found[job_id].family
        if family is not None:
            items.append(ManifestItem(job_id, family=family))
            continue
        probe_error = found[job_id].error
        log.warning("%s: left pending: %s", job_id,
                    "no result family knows this id" if probe_error is None
                    else f"its result family is unknown and the API did not answer "
                         f"({probe_error})")
    return items
