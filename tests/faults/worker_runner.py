"""`python -m tests.faults.worker_runner`: the project's worker (worker.build_worker, settings from the
environment, exactly as `python -m worker`) with one fault-injection hook for the worker-kill test.

With SM_FAULT_HOLD_AFTER_PAYMENT=<marker file>, the first payment activity that writes its row
(`record_payment` returned, the transaction committed) does not report back to Temporal: the worker writes the
marker and holds, so the test can SIGKILL it by PID exactly between the write and the completion. Once the
marker exists (a restarted worker) the hook does nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from domain.ledger import RECORD_PAYMENT
from infra.clients import connect_temporal
from infra.db import create_pool, database_url, migrate
from settings import get_settings
from worker import build_worker

MARKER = os.environ.get("SM_FAULT_HOLD_AFTER_PAYMENT")


class _HoldAfterPayment(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        result = await super().execute_activity(input)
        if MARKER and activity.info().activity_type == RECORD_PAYMENT and not Path(MARKER).exists():
            Path(MARKER).write_text(json.dumps({
                "pid": os.getpid(), "payment_id": result.payment_id, "partnership_id": result.partnership_id,
                "quarter": result.quarter, "created": result.created, "attempt": activity.info().attempt}))
            logging.warning("payment %s written; holding before completing the activity", result.payment_id)
            await asyncio.sleep(3600)
        return result


class HoldAfterPayment(Interceptor):
    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _HoldAfterPayment(next)


async def main() -> None:
    settings = get_settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s fault-worker %(levelname)s %(message)s")
    url = database_url(settings)
    await migrate(url, settings.database_schema)
    pool = await create_pool(url, settings.database_schema)
    client = await connect_temporal(settings.temporal_target, settings.temporal_namespace, attempts=50)
    worker = build_worker(client, pool, settings.temporal_task_queue, interceptors=[HoldAfterPayment()])
    logging.info("worker pid %s polling %s", os.getpid(), settings.temporal_task_queue)
    try:
        await worker.run()
    finally:
        await pool.close()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
