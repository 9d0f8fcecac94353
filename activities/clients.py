"""Connecting to Temporal with the project's data converter (pydantic models on the wire)."""

from __future__ import annotations

import asyncio

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

SEARCH_ATTRIBUTES = {
    "TrustOdsCode": "Keyword",
    "RegimePhase": "Keyword",
    "NextDeadline": "Datetime",
    "EscalationLevel": "Int",
    "RegimeId": "Keyword",
}


async def connect_temporal(address: str, namespace: str = "default", attempts: int = 1) -> Client:
    last: Exception | None = None
    for i in range(attempts):
        try:
            return await Client.connect(address, namespace=namespace, data_converter=pydantic_data_converter)
        except Exception as e:  # the server may still be starting
            last = e
            await asyncio.sleep(min(0.2 * (i + 1), 2))
    assert last is not None
    raise last
