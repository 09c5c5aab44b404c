"""Batched polling: API requests per id for 10,000 face-swap ids, batched vs one per id.

Both sides run in the same invocation against the in-process stand-in (every job done
after 2 polls), as dry runs (polling only: downloads are another workload's concern),
with ``polling.batch_size`` 50 (the default) and 1. The figure is the number of API
requests the stand-in received per id, and their ratio; issue 18 asks for >= 10x fewer.

    python bench/bench_batching.py [--ids 10000] [--batch-size 50]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from archiver.config import Config
from archiver.manifest import Manifest
from archiver.models import Outcome
from archiver.run import archive
from archiver.testing.standin import AkoolStandIn, JobScenario

KEY = "bench-key"


async def one_side(ids: list[str], batch_size: int, root: Path) -> tuple[int, float, int]:
    """(API requests seen by the stand-in, seconds, ids done) for one run."""
    standin = AkoolStandIn(api_key=KEY)
    scenario = JobScenario(family="faceswap", polls_until_done=2, files=("image",))
    for item_id in ids:
        standin.add_job(item_id, scenario)
    async with standin.serve() as url:
        config = Config.model_validate({
            "api": {"base_url": url, "api_key": KEY},
            "polling": {"interval": 0.05, "max_interval": 0.1, "deadline": 600,
                        "batch_size": batch_size},
            "concurrency": {"polls": 16},
            "downloads": {"allow_private": True},
            "storage": {"backend": "local", "local": {"root": str(root)}},
        })
        started = time.monotonic()
        result = await archive(config, Manifest.from_ids(ids, family="faceswap"),
                               dry_run=True)
        elapsed = time.monotonic() - started
    done = sum(1 for i in result.items if i.outcome is Outcome.READY)
    return standin.api_calls, elapsed, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=50)
    args = parser.parse_args()
    ids = [f"{n:024x}" for n in range(1, args.ids + 1)]
    with tempfile.TemporaryDirectory() as tmp:
        batched = asyncio.run(one_side(ids, args.batch_size, Path(tmp) / "a"))
        single = asyncio.run(one_side(ids, 1, Path(tmp) / "b"))
    print(f"{'':<22}{'requests':>10}{'per id':>9}{'seconds':>9}{'done':>8}")
    for name, (requests, seconds, done) in ((f"batch_size {args.batch_size}", batched),
                                            ("batch_size 1", single)):
        print(f"{name:<22}{requests:>10}{requests / len(ids):>9.3f}{seconds:>9.1f}{done:>8}")
    print(f"requests per id: {single[0] / batched[0]:.1f}x fewer batched")


if __name__ == "__main__":
    main()
