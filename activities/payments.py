"""Buddy payments: the one activity that records money as paid, and the reads the API uses.

A payment is keyed by (partnership_id, quarter) under a UNIQUE constraint, so however often the
activity runs for a quarter (retries, a replayed workflow, a worker that died after the insert but
before reporting back) there is one row. A second attempt gets the existing row back; an attempt whose
amount or lines differ from the row is refused as `PaymentConflict`, never retried and never written.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from domain.ledger import RECORD_PAYMENT, PaymentInstruction, PaymentRecord


class PaymentActivities:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    def all(self) -> list:
        return [self.record_payment]

    @activity.defn(name=RECORD_PAYMENT)
    async def record_payment(self, ins: PaymentInstruction) -> PaymentRecord:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                """
                INSERT INTO buddy_payments (partnership_id, quarter, regime_id, buddy_ods, amount_pence,
                                            authorised_by, authorised_at)
                VALUES ($1,$2,$3,$4,$5,$6,$7)
                ON CONFLICT (partnership_id, quarter) DO NOTHING
                RETURNING id, recorded_at
                """,
                ins.partnership_id, ins.quarter, ins.regime_id, ins.buddy_ods, ins.amount_pence,
                ins.authorised_by, ins.authorised_at,
            )
            if row is not None:
                await conn.executemany(
                    "INSERT INTO buddy_payment_lines (payment_id, line_no, workstream, description, amount_pence) "
                    "VALUES ($1,$2,$3,$4,$5)",
                    [(row["id"], i, ln.workstream, ln.description, ln.amount_pence)
                     for i, ln in enumerate(ins.lines, start=1)],
                )
                return PaymentRecord(payment_id=row["id"], partnership_id=ins.partnership_id, quarter=ins.quarter,
                                     amount_pence=ins.amount_pence, recorded_at=row["recorded_at"], created=True)
            existing = await conn.fetchrow(
                "SELECT * FROM buddy_payments WHERE partnership_id = $1 AND quarter = $2",
                ins.partnership_id, ins.quarter)
            lines = await conn.fetch(
                "SELECT workstream, description, amount_pence FROM buddy_payment_lines WHERE payment_id = $1 "
                "ORDER BY line_no", existing["id"])
        same_lines = [(r["workstream"], r["description"], r["amount_pence"]) for r in lines] == \
            [(ln.workstream, ln.description, ln.amount_pence) for ln in ins.lines]
        if existing["amount_pence"] != ins.amount_pence or not same_lines:
            raise ApplicationError(
                f"quarter {ins.quarter} of {ins.partnership_id} is already recorded as payment {existing['id']} "
                f"of {existing['amount_pence']} pence; refusing a different payment of {ins.amount_pence} pence",
                type="PaymentConflict", non_retryable=True)
        activity.logger.info("payment for %s quarter %s already recorded (id %s): nothing written",
                             ins.partnership_id, ins.quarter, existing["id"])
        return PaymentRecord(payment_id=existing["id"], partnership_id=ins.partnership_id, quarter=ins.quarter,
                             amount_pence=existing["amount_pence"], recorded_at=existing["recorded_at"],
                             created=False)


async def payments_for(conn: asyncpg.Pool | asyncpg.Connection, partnership_id: str) -> list[dict[str, Any]]:
    """Recorded payments of one partnership with their invoice lines, by quarter."""
    rows = await conn.fetch(
        """
        SELECT p.id, p.quarter, p.amount_pence, p.authorised_by, p.authorised_at, p.recorded_at,
               coalesce(jsonb_agg(jsonb_build_object('workstream', l.workstream, 'description', l.description,
                                                   'amount_pence', l.amount_pence) ORDER BY l.line_no)
                        FILTER (WHERE l.payment_id IS NOT NULL), '[]'::jsonb) AS lines
        FROM buddy_payments p LEFT JOIN buddy_payment_lines l ON l.payment_id = p.id
        WHERE p.partnership_id = $1 GROUP BY p.id ORDER BY p.quarter
        """, partnership_id)
    out = []
    for r in rows:
        d = dict(r)
        for k in ("authorised_at", "recorded_at"):
            d[k] = d[k].isoformat()
        out.append(d)
    return out
