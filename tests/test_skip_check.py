"""The skip check (``S3Reader.scan``) on two real listing orders, moto's and SeaweedFS's.

S3 lists keys in byte order: ``abc-1/x``, ``abc.bak``, ``abc/y``. SeaweedFS keeps keys in
a directory tree and lists a folder's contents right after its name: ``abc/y``,
``abc-1/x``, ``abc.bak`` - and ``StartAfter=abc`` skips the whole folder ``abc/``. The
seek-listing must report exactly what is archived on both (an archived id reported
absent is polled and uploaded again; an absent one reported archived is never archived),
and cost at most a LIST per 1,000 keys, or per id, whichever is fewer. Requests are
counted at the client, through botocore's events, so the same count holds on any server.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from archiver.archive import Archive
from archiver.storage.s3 import S3Backend, requests
from archiver.storage.s3.requests import LIST_PAGE

from .s3server import (  # noqa: F401 - fixtures: moto_endpoint, seaweedfs_endpoint, s3
    ON_BOTH_SERVERS,
    S3Fixture,
    moto_endpoint_fixture,
    s3_fixture,
    seaweedfs_endpoint_fixture,
)

pytestmark = ON_BOTH_SERVERS

PREFIX = "akool/"


def fill(s3: S3Fixture, keys: list[str]) -> None:
    with ThreadPoolExecutor(8) as pool:  # no more than the client's connections
        list(pool.map(lambda k: s3.client.put_object(Bucket=s3.bucket, Key=k, Body=b"x"),
                      keys))


def expected_states(keys: list[str], ids: list[str]) -> dict[str, str]:
    """What status should say of each id, from the keys alone."""
    def state(item: str) -> str:
        folder = f"{PREFIX}{item}/"
        if folder + "archive.json" in keys:
            return "archived"
        return "partial" if any(k.startswith(folder) for k in keys) else "absent"

    return {item: state(item) for item in ids}


@contextlib.asynccontextmanager
async def opened(s3: S3Fixture) -> Any:
    storage = S3Backend(s3.bucket, PREFIX, endpoint_url=s3.endpoint, region="us-east-1",
                        addressing_style="path")
    await storage.open(readonly=True)
    try:
        yield storage
    finally:
        await storage.close()


@contextlib.contextmanager
def list_requests(storage: S3Backend) -> Iterator[list[dict[str, Any]]]:
    """The parameters of every ListObjectsV2 the storage sends inside the block."""
    sent: list[dict[str, Any]] = []

    def count(params: dict[str, Any], **_: Any) -> None:
        sent.append(dict(params))

    events = storage.bucket.client.meta.events
    events.register("before-parameter-build.s3.ListObjectsV2", count)
    try:
        yield sent
    finally:
        events.unregister("before-parameter-build.s3.ListObjectsV2", count)


# Ids whose folders sort differently in the two orders ("-" sorts before "/", "_" after),
# ids that are prefixes of others, and keys that are no item beside them.
ARCHIVED = ["abc", "abc-1", "abc_x", "abcd", "ABC", "a-b-c", "zz", "x-", "-", "big"]
PARTIAL = ["abc-1-2", "ab", "abc-1_"]
ABSENT = ["a", "abc-", "abc-0", "abcc", "zzz", "b", "abc-1-", "Z", "abc-10", "_"]
STRAY = [f"{PREFIX}abc.bak", f"{PREFIX}abc-old.txt", f"{PREFIX}abc", f"{PREFIX}zz",
         f"{PREFIX}abc-.txt", f"{PREFIX}.archiver-lease/all", f"{PREFIX}notes/readme.txt",
         "other/abc/archive.json", "akool-abc/archive.json"]


def tricky_layout() -> list[str]:
    keys = [f"{PREFIX}{i}/{name}" for i in ARCHIVED
            for name in ("video.mp4", "SHA256SUMS", "archive.json")]
    keys += [f"{PREFIX}{i}/video.mp4" for i in PARTIAL]
    # More keys in one folder than a small list page holds: a listing stops inside it.
    keys += [f"{PREFIX}big/extra/{n:02d}" for n in range(12)]
    keys += [f"{PREFIX}abc-1/sub/{n}" for n in range(3)]
    return keys + STRAY


async def test_scan_is_exact_in_either_order(s3, caplog, monkeypatch):
    """Every subset of tricky ids is reported exactly: archived, partial or absent - with
    S3's page of 1,000 keys and with pages of 4 (listings stop in and between folders
    everywhere) - also by a store that ignores StartAfter, whose listings contradict
    every known order (the check then lists each folder it has not found committed)."""
    keys = tricky_layout()
    fill(s3, keys)
    everything = ARCHIVED + PARTIAL + ABSENT
    rng = random.Random(17)
    subsets = [everything, *([i] for i in everything), ARCHIVED, PARTIAL + ABSENT]
    subsets += [rng.sample(everything, rng.randint(2, 8)) for _ in range(30)]
    for page in (LIST_PAGE, 4):
        monkeypatch.setattr(requests, "LIST_PAGE", page)
        async with opened(s3) as storage:
            for subset in subsets:
                found = await Archive(storage).item_states(subset)
                assert found == expected_states(keys, subset), (page, subset)
                assert await Archive(storage).archived(subset) == set(subset) & set(ARCHIVED)
                check = await Archive(storage).skip_check(subset)
                assert check.archived == set(subset) & set(ARCHIVED), (page, subset)
                assert check.partial == set(subset) & set(PARTIAL), (page, subset)
    monkeypatch.setattr(requests, "LIST_PAGE", LIST_PAGE)

    async with opened(s3) as storage:
        def ignore_start_after(params: dict[str, Any], **_: Any) -> None:
            params.pop("StartAfter", None)

        storage.bucket.client.meta.events.register(
            "provide-client-params.s3.ListObjectsV2", ignore_start_after)
        # The first folder sought, "Z/", comes after "-/", ".archiver-lease/" and "ABC/".
        subset = [*PARTIAL, *ABSENT, "abc", "zz"]
        with caplog.at_level(logging.WARNING), list_requests(storage) as sent:
            found = await Archive(storage).item_states(subset)
        assert found == expected_states(keys, subset)
        assert "lists keys in an order the skip check does not know" in caplog.text
        # A seek, then one listing of each folder not found committed by the seek.
        assert [r.get("StartAfter") for r in sent[:1]] == [None]
        folders = [r["Prefix"] for r in sent[1:]]
        assert len(folders) == len(set(folders))
        assert {f"{PREFIX}{i}/" for i in PARTIAL + ABSENT} <= set(folders) \
            <= {f"{PREFIX}{i}/" for i in subset}
        assert await Archive(storage).archived(["zz"]) == {"zz"}  # the store's order stays unknown


async def test_scan_costs_a_list_per_1000_keys_or_per_id(s3):
    """Dense manifest: about a LIST per 1,000 keys; sparse: about one per id; no HEAD."""
    archived = [f"64dd92c1f0b6684651e9{n:04x}" for n in range(300)]
    pending = [f"64dd92c1f0b6684651ea{n:04x}" for n in range(150)]
    keys = [f"{PREFIX}{i}/{name}" for i in archived
            for name in ("video.mp4", "SHA256SUMS", "archive.json")]
    keys += [f"{PREFIX}{i}/video.mp4" for i in pending]  # no archive.json
    fill(s3, keys)  # 1,050 keys: two list pages
    absent = ["64dd92c1f0b6684651e8ffff", "64dd92c1f0b6684651ebffff"]
    async with opened(s3) as storage:
        heads: list[str] = []
        storage.bucket.client.meta.events.register(
            "before-call.s3.HeadObject", lambda **_: heads.append("HEAD"))
        with list_requests(storage) as dense:
            found = await Archive(storage).archived([*archived, *pending, *absent])
        assert found == set(archived)
        assert len(dense) <= 3  # 2 pages, and a seek past the last folder

        sparse_ids = [archived[3], archived[299], pending[123], absent[1]]
        with list_requests(storage) as sparse:
            found = await Archive(storage).archived(sparse_ids)
        assert found == {archived[3], archived[299]}
        assert len(sparse) <= len(sparse_ids)
        assert all(r.get("MaxKeys") == 1000 for r in dense + sparse)
        assert heads == []
