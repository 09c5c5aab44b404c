"""A bare aiohttp polling loop: the reference the archiver's polling is compared with.

    python bench/_bare_poll.py BASE_URL API_KEY MANIFEST [--concurrency 64] [--interval 0.001]

CONCURRENCY tasks take ids from one queue and ask the result endpoint about each; a job
still at status 1 or 2 goes back in the queue after INTERVAL seconds (a timer, not a
task), a job at any other status is done. Prints the number of requests made.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

import aiohttp
import yaml

INFO_PATH = "/api/open/v3/content/video/infobymodelid"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base_url")
    parser.add_argument("api_key")
    parser.add_argument("manifest", type=Path)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--interval", type=float, default=0.001)
    args = parser.parse_args()
    ids = [str(i) for i in yaml.safe_load(args.manifest.read_text())["videos"]]

    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str] = asyncio.Queue()
    for job_id in ids:
        queue.put_nowait(job_id)
    remaining = len(ids)
    requests = 0
    done = asyncio.Event()
    url = args.base_url + INFO_PATH
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector,
                                     headers={"x-api-key": args.api_key}) as session:
        async def worker() -> None:
            nonlocal remaining, requests
            while True:
                job_id = await queue.get()
                async with session.get(url, params={"video_model_id": job_id}) as resp:
                    body = await resp.read()
                requests += 1
                status = json.loads(body)["data"]["video_status"]
                if status in (1, 2):
                    loop.call_later(args.interval, queue.put_nowait, job_id)
                else:
                    remaining -= 1
                    if remaining == 0:
                        done.set()

        workers = [asyncio.create_task(worker()) for _ in range(args.concurrency)]
        await done.wait()
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    print(f"requests {requests}")


if __name__ == "__main__":
    asyncio.run(main())
