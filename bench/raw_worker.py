"""`python -m bench.raw_worker ADDRESS TASK_QUEUE`: a worker for the raw baseline workflows, in its own process
(like the project's worker), so its CPU and memory are measured apart from the benchmark driver."""

from __future__ import annotations

import asyncio
import sys

from temporalio.client import Client
from temporalio.worker import Worker

from bench.raw import RAW_ACTIVITIES, RAW_WORKFLOWS


async def main(address: str, task_queue: str) -> None:
    client = None
    for i in range(50):
        try:
            client = await Client.connect(address)
            break
        except Exception:
            await asyncio.sleep(min(0.2 * (i + 1), 2))
    assert client is not None, f"no Temporal at {address}"
    await Worker(client, task_queue=task_queue, workflows=RAW_WORKFLOWS, activities=RAW_ACTIVITIES).run()


if __name__ == "__main__":
    try:
        asyncio.run(main(sys.argv[1], sys.argv[2]))
    except KeyboardInterrupt:
        pass
