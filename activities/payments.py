"""Buddy payment ledger activities (issue 4)."""

from __future__ import annotations

import asyncpg


class PaymentActivities:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    def all(self) -> list:
        return []
