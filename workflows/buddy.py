"""Buddy partnership child workflow (one per partnership). See issue 4; being built out."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from workflows.common import BuddyStart


@workflow.defn
class BuddyPartnershipWorkflow:
    def __init__(self) -> None:
        self._ended: str | None = None

    @workflow.run
    async def run(self, start: BuddyStart) -> str:
        await workflow.wait_condition(lambda: self._ended is not None)
        return self._ended or ""

    @workflow.signal
    def end_partnership(self, reason: str) -> None:
        self._ended = reason
