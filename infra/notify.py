"""Notifications: a durable outbox in PostgreSQL that an operator or a mailer reads.

`OutboxNotifier` is the real implementation used by the worker: escalation notices are written in the
same transaction as the audit entry that records them. `SmtpRelay` drains the outbox to an SMTP server
when SMTP_HOST is set.
"""

from __future__ import annotations

import asyncio
import smtplib
from email.message import EmailMessage
from typing import Any, Protocol

import asyncpg


class Notifier(Protocol):
    async def enqueue(self, conn: asyncpg.Connection, batch: Any, eff: dict[str, Any]) -> int: ...


class OutboxNotifier:
    async def enqueue(self, conn: asyncpg.Connection, batch: Any, eff: dict[str, Any]) -> int:
        r = await conn.execute(
            """
            INSERT INTO notifications (workflow_id, seq, regime_id, step_id, rung, recipients, subject, body)
            VALUES ($1,$2,$3,$4,$5,$6,$7,$8) ON CONFLICT (workflow_id, seq) DO NOTHING
            """,
            batch.workflow_id, eff["seq"], batch.regime_id, eff.get("step_id"), eff.get("rung"),
            list(eff["recipients"]), eff["subject"], eff["body"],
        )
        return int(r.split()[-1])


class SmtpRelay:
    """Sends unsent outbox rows by SMTP and marks them sent. Recipients are role mailboxes."""

    def __init__(self, pool: asyncpg.Pool, host: str, port: int, sender: str, domain: str = "localhost") -> None:
        self.pool, self.host, self.port, self.sender, self.domain = pool, host, port, sender, domain

    async def drain_once(self) -> int:
        rows = await self.pool.fetch("SELECT * FROM notifications WHERE sent_at IS NULL ORDER BY id LIMIT 100")
        for r in rows:
            msg = EmailMessage()
            msg["From"] = self.sender
            msg["To"] = ", ".join(f"{x}@{self.domain}" for x in r["recipients"])
            msg["Subject"] = r["subject"]
            msg.set_content(r["body"])
            await asyncio.to_thread(self._send, msg)
            await self.pool.execute("UPDATE notifications SET sent_at = now() WHERE id = $1", r["id"])
        return len(rows)

    def _send(self, msg: EmailMessage) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=10) as s:
            s.send_message(msg)
