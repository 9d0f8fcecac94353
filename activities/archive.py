"""The archive activity: closed steps and old records leave a workflow's state for PostgreSQL.

Called before continue-as-new (workflows/engine.py `_archive_for_continue`). Idempotent: every row is keyed
by the workflow and the step id (or the record's kind and position), so a retry writes nothing twice.
"""

from __future__ import annotations

import asyncpg
from temporalio import activity

from workflows.common import ARCHIVE_STATE, ArchiveBatch


class ArchiveActivities:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @activity.defn(name=ARCHIVE_STATE)
    async def archive_state(self, batch: ArchiveBatch) -> int:
        written = 0
        async with self.pool.acquire() as conn, conn.transaction():
            for st in batch.steps:
                body = {k: v for k, v in st.items() if k != "escalations"}
                r = await conn.execute(
                    """
                    INSERT INTO archived_steps (workflow_id, step_id, regime_id, kind, opened_at, step, escalations)
                    VALUES ($1,$2,$3,$4,$5::text::timestamptz,$6,$7) ON CONFLICT DO NOTHING
                    """,
                    batch.workflow_id, st["id"], batch.regime_id, st["kind"], st["opened_at"],
                    body, st.get("escalations") or [])
                written += int(r.split()[-1])
            for rec in batch.records:
                r = await conn.execute(
                    """
                    INSERT INTO archived_records (workflow_id, regime_id, kind, position, record)
                    VALUES ($1,$2,$3,$4,$5) ON CONFLICT DO NOTHING
                    """,
                    batch.workflow_id, batch.regime_id, rec["kind"], rec["position"], rec["record"])
                written += int(r.split()[-1])
        return written
