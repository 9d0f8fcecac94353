"""The one test harness: a real Temporal dev server (per-workflow time skipping) and real PostgreSQL.

A session starts one dev server (tools/devserver.py, in memory) and one embedded PostgreSQL; each test
gets its own schema, task queue, worker and API server on a real port. The pieces live in tools/stack.py,
shared with `regime simulate` and `regime record`; this module adds what tests
want on top: time moved in days for a regime and its partnerships together, and a settle that rides
over a fresh run after continue-as-new.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from datetime import timedelta
from typing import Any

from temporalio.service import RPCError

from tools import stack as _stack
from tools.devserver import dev_server, free_port
from tools.polling import eventually

__all__ = ["TestStack", "dev_server", "free_port", "run_stack"]


@dataclasses.dataclass
class TestStack(_stack.ServiceStack):
    """The service stack with what tests want on top (see the module docstring)."""

    __test__ = False  # not a test class, though test modules import it

    async def fast_forward(self, regime_id: str, days: float) -> bool:  # type: ignore[override]
        """Advance the regime's virtual clock, and its running buddy partnerships' with it (a child's
        clock does not follow its parent's); False once the regime has completed."""
        from workflows.regime import RegimeWorkflow

        # The regime's own state names its partnerships; visibility is eventually consistent and can
        # miss a partnership started a moment ago, so it only adds what the state might not show.
        children: set[str] = set()
        try:
            st = await self.handle(regime_id).query(RegimeWorkflow.get_state)
            children |= {pid for pid, b in st.buddies.items() if not b.ended}
        except RPCError:
            pass  # a fresh run after continue-as-new, or a completed regime: visibility still has it
        children |= {w.id async for w in self.client.list_workflows(
            f"RegimeId = '{regime_id}' AND ExecutionStatus = 'Running' AND WorkflowId != '{regime_id}'")}
        by = timedelta(days=days)

        async def child(wid: str) -> bool:
            try:
                return await super(TestStack, self).fast_forward(wid, by)
            except RPCError as e:
                if "not found" in e.message:  # summarised as starting, child not started yet
                    return False
                raise

        results = await asyncio.gather(super().fast_forward(regime_id, by), *(child(w) for w in sorted(children)))
        return results[0]

    async def visible(self, query: str, expected: list[str], timeout: float = 15.0) -> list[str]:
        """Workflow ids Temporal's visibility returns for `query`, polled until they equal `expected`
        (visibility is updated asynchronously after the workflow task that upserts the attributes); an
        AssertionError with the last answer if they do not within `timeout` s."""

        async def found() -> list[str]:
            return sorted([w.id async for w in self.client.list_workflows(query)])

        return await eventually(found, until=lambda ids: ids == sorted(expected), timeout=timeout,
                                what=f"visibility to list {sorted(expected)} for {query}")

    async def settle(self, regime_id: str, timeout: float = 10.0) -> dict[str, Any]:  # type: ignore[override]
        """Wait until the regime's effects have reached PostgreSQL, then return its state."""
        # RPCError: a new run after continue-as-new has not had its first task yet.
        st = await eventually(lambda: self.settled(regime_id), what=f"the effects of {regime_id} to reach PostgreSQL",
                              timeout=timeout, interval=0.05, ignore=RPCError)
        return st.model_dump(mode="json")


@contextlib.asynccontextmanager
async def run_stack(temporal_address: str, database_url: str, **overrides: Any):
    async with _stack.run_stack(temporal_address, database_url, **overrides) as s:
        yield TestStack(**{f.name: getattr(s, f.name) for f in dataclasses.fields(s)})
