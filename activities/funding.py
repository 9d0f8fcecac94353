"""Central funding drawdowns: the one activity that records a drawdown as paid (issue 16 item 1).

Keyed by (regime_id, drawdown) under a UNIQUE constraint, like the buddy payments (activities/payments.py):
however often it runs for a drawdown (retries, a replayed workflow, a worker that died after the insert but
before reporting back) there is one row. A second attempt gets the existing row back; one whose amount differs is
refused as `PaymentConflict`, never retried and never written.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from domain.funding import RECORD_DRAWDOWN, DrawdownInstruction, DrawdownRecord
from domain.vocab import RejectionKind


class FundingActivities:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @activity.defn(name=RECORD_DRAWDOWN)
    async def record_drawdown(self, ins: DrawdownInstruction) -> DrawdownRecord:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                """
                INSERT INTO funding_payments (regime_id, drawdown, amount_pence, against, authorised_by, authorised_at)
                VALUES ($1,$2,$3,$4,$5,$6)
                ON CONFLICT (regime_id, drawdown) DO NOTHING
                RETURNING id, recorded_at
                """,
                ins.regime_id, ins.drawdown, ins.amount_pence, ins.against, ins.authorised_by, ins.authorised_at)
            if row is not None:
                return DrawdownRecord(payment_id=row["id"], amount_pence=ins.amount_pence,
                                      recorded_at=row["recorded_at"], created=True)
            existing = await conn.fetchrow("SELECT * FROM funding_payments WHERE regime_id = $1 AND drawdown = $2",
                                           ins.regime_id, ins.drawdown)
        if existing["amount_pence"] != ins.amount_pence:
            raise ApplicationError(
                f"drawdown {ins.drawdown} of {ins.regime_id} is already recorded as payment {existing['id']} of "
                f"{existing['amount_pence']} pence; refusing a different payment of {ins.amount_pence} pence",
                type=RejectionKind.payment_conflict, non_retryable=True)
        activity.logger.info("drawdown %s of %s already recorded (id %s): nothing written", ins.drawdown,
                             ins.regime_id, existing["id"])
        return DrawdownRecord(payment_id=existing["id"], amount_pence=existing["amount_pence"],
                              recorded_at=existing["recorded_at"], created=False)


async def funding_payments(conn: asyncpg.Pool | asyncpg.Connection, regime_id: str) -> list[dict[str, Any]]:
    rows = await conn.fetch("SELECT id, drawdown, amount_pence, against, authorised_by, authorised_at, recorded_at "
                            "FROM funding_payments WHERE regime_id = $1 ORDER BY drawdown", regime_id)
    return [{**dict(r), "against": list(r["against"]), "authorised_at": r["authorised_at"].isoformat(),
             "recorded_at": r["recorded_at"].isoformat()} for r in rows]
