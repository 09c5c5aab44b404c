"""Sharding: N runs split one manifest so that each id is archived by exactly one of them.

``--shard K/N`` (0-based K) keeps the ids whose stable hash - the first 8 bytes of the
SHA-256 of the id, as a big-endian integer, modulo N - equals K. The hash depends on the
id alone (not on its position in the manifest, the manifest's length or Python's
per-process ``hash()`` seed), so every pod, host and later run agrees on who owns an id,
even when the manifests they read differ in order or grew in between.

``--shard auto/N`` takes K from the environment the batch engine sets for each task:
``JOB_COMPLETION_INDEX`` (Kubernetes Indexed Job), ``AWS_BATCH_JOB_ARRAY_INDEX`` (AWS
Batch array job) or ``CLOUD_RUN_TASK_INDEX`` (Cloud Run job; ``CLOUD_RUN_TASK_COUNT``,
when set, must equal N: a job scaled to another task count would leave ids to nobody).

N shards of one manifest poll one Akool account: ``api.requests_per_second`` is that
account's budget, and each shard takes ``1/N`` of it (:func:`api_share`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import UsageError
from ..manifest import Manifest
from .limits import share_of

log = logging.getLogger(__name__)

#: Where ``auto`` looks for the task index, in this order.
INDEX_VARIABLES = ("JOB_COMPLETION_INDEX", "AWS_BATCH_JOB_ARRAY_INDEX", "CLOUD_RUN_TASK_INDEX")
_SPEC = re.compile(r"(?P<index>auto|\d{1,6})/(?P<count>\d{1,6})")


def shard_of(video_model_id: str, count: int) -> int:
    """The shard (0 .. count-1) that owns *video_model_id* among *count* shards."""
    digest = hashlib.sha256(video_model_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard *index* of *count* (0-based)."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def name(self) -> str:
        """A file- and key-safe name: ``2-of-4``."""
        return f"{self.index}-of-{self.count}"

    def owns(self, video_model_id: str) -> bool:
        return shard_of(video_model_id, self.count) == self.index

    def select(self, manifest: Manifest) -> Manifest:
        """The ids of *manifest* this shard owns, in manifest order."""
        return Manifest(items=tuple(i for i in manifest.items if self.owns(i.id)),
                        source=manifest.source)


def api_share(rate: float | None, shard: Shard | None) -> float | None:
    """What a run of *shard* may ask of the API per second, out of the account's *rate*.

    ``api.requests_per_second`` is the budget of the whole Akool account, which all N
    shards share: each gets ``rate / N`` (:func:`~archiver.fleet.limits.api_bucket` scales the
    burst alike). An unsharded run gets all of it; None (no cap) stays None. Said once
    in the log, at info level, when a shard gets a part.
    """
    shares = shard.count if shard is not None else 1
    share = share_of(rate, shares)
    if shares > 1 and share is not None:
        log.info("shard %s: at most %g API requests/s, 1/%d of api.requests_per_second "
                 "(%g, the account's budget)", shard, share, shares, rate)
    return share


def parse_shard(spec: str, environ: Mapping[str, str] | None = None) -> Shard:
    """``K/N`` or ``auto/N`` -> :class:`Shard`; a :class:`UsageError` naming the problem."""
    environ = os.environ if environ is None else environ
    match = _SPEC.fullmatch(spec.strip())
    if match is None:
        raise UsageError(f"--shard {spec!r}: expected K/N (e.g. 0/4, 0-based) or auto/N")
    count = int(match["count"])
    if count < 1:
        raise UsageError(f"--shard {spec}: N must be at least 1")
    auto = match["index"] == "auto"
    index = _index_from(environ, spec, count) if auto else int(match["index"])
    if index >= count:
        raise UsageError(f"--shard {spec}: shard index {index} is not below N={count} "
                         "(shards are numbered 0 to N-1)")
    return Shard(index, count)


def _index_from(environ: Mapping[str, str], spec: str, count: int) -> int:
    for variable in INDEX_VARIABLES:
        value = environ.get(variable)
        if value is None or value == "":
            continue
        if not (value.isascii() and value.isdigit()):
            raise UsageError(f"--shard {spec}: {variable}={value!r} is not a task index")
        if variable == "CLOUD_RUN_TASK_INDEX":
            total = environ.get("CLOUD_RUN_TASK_COUNT")
            if total not in (None, "", str(count)):
                raise UsageError(f"--shard {spec}: CLOUD_RUN_TASK_COUNT is {total}, not "
                                 f"{count}: the job's task count and N must agree")
        return int(value)
    raise UsageError(f"--shard {spec}: none of {', '.join(INDEX_VARIABLES)} is set; "
                     "use K/N outside an Indexed Job / array job")
