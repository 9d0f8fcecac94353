"""What the fault tests share: a client that retries 503/429 as a well-behaved caller does, a short but
complete regime lifecycle driven through the API, and the audit count (lost, doubled)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import asyncpg
import httpx

from bench.driver import IMPROVED, BenchRegime, Stackish


class RetryingTransport(httpx.AsyncBaseTransport):
    """Retries what the API says is safe to retry (503 and 429 with Retry-After: nothing was changed)."""

    def __init__(self, attempts: int = 120) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.attempts = attempts
        self.retried: Counter = Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        for attempt in range(self.attempts):
            try:
                resp = await self.inner.handle_async_request(request)
            except httpx.TransportError:
                if attempt == self.attempts - 1:
                    raise
                self.retried["connection"] += 1
                await asyncio.sleep(0.5)
                continue
            if resp.status_code not in (429, 503) or attempt == self.attempts - 1:
                return resp
            await resp.aread()
            await resp.aclose()
            self.retried[resp.status_code] += 1
            await asyncio.sleep(min(float(resp.headers.get("retry-after", "1")), 2.0))
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        await self.inner.aclose()


async def open_step(reg: BenchRegime, kind: str) -> str:
    st = await reg.state()
    return next(s["id"] for s in st["open_steps"] if s["kind"] == kind)


async def short_lifecycle(stack: Stackish, code: str, ff_days: int = 10) -> BenchRegime:
    """Entry to closure in a few weeks of virtual time: plan, review and sign-offs, appointments, the
    board-to-board and its letter, monthly returns, deadlines running for `ff_days`, an improved re-inspection,
    CQC's recommendation, the regulator's exit decision, and the post-exit board-to-board that closes it."""
    reg = await BenchRegime.place(stack, code)
    await reg.complete_open(within_days=120)
    await stack.fast_forward(reg.id, ff_days)
    reg.day += ff_days
    await reg.complete_open(within_days=120)
    await reg.inspect(f"INS-{code}", IMPROVED)
    await reg.act(await open_step(reg, "cqc_recommendation"), "recommend_exit", comment="sustained improvement")
    await reg.act(await open_step(reg, "regulator_decision"), "exit", comment="exit on CQC's recommendation")
    await reg.complete_open(within_days=400)
    st = await reg.state()
    assert st["finished"], (reg.id, st["phase"], [s["id"] for s in st["open_steps"]])
    return reg


async def audit_counts(conn: asyncpg.Connection, state: dict[str, Any]) -> dict[str, int]:
    """Every decision in the workflow's state and every step it opened, against the audit log: how many are
    missing (lost) and how many are there more than once (doubled)."""
    rid = state["regime_id"]
    decided = Counter((s["id"], f"{s['kind']}.{a['action']}") for s in state["steps"].values() for a in s["actions"])
    opened = Counter((s["id"], "step_opened") for s in state["steps"].values()
                     if s.get("outcome") != "completed_before_go_live")
    rows = await conn.fetch("SELECT step_id, event FROM audit_log WHERE regime_id = $1", rid)
    got = Counter((r["step_id"], r["event"]) for r in rows)
    expected = decided + opened + Counter({(None, "regime_closed"): 1})
    missing = {f"{k[0]} {k[1]}": n - got[k] for k, n in expected.items() if got[k] < n}
    extra = {f"{k[0]} {k[1]}": got[k] - n for k, n in expected.items() if got[k] > n}
    seqs = await conn.fetchval("SELECT count(*) - count(DISTINCT seq) FROM audit_log WHERE workflow_id = $1", rid)
    return {"expected": sum(expected.values()), "decisions": sum(decided.values()), "lost": sum(missing.values()),
            "doubled": sum(extra.values()) + seqs, "missing": missing, "extra": extra}
