"""Fault 2: the Temporal dev server is SIGKILLed (by PID) with 50 regimes waiting on their timers and on people,
then started again on the same SQLite file. All 50 are still there, their timers fire, their tasks can be
decided; the worker and the API (separate processes) reconnect by themselves."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import httpx
from temporalio.client import WorkflowExecutionStatus

from bench.common import DevServer, free_port, history_length, project, skipper_for, temporal_client
from bench.driver import BenchRegime, Stackish
from tests.faults.support import RetryingTransport
from tests.helpers import PLAN
from tools.polling import eventually

REGIMES = 50


async def test_dev_server_killed_and_restarted_on_its_sqlite_file(database_url, tmp_path):
    srv = DevServer(free_port(), str(tmp_path / "temporal.db"), tmp_path / "temporal.log").start()
    try:
        async with project(srv.address, database_url, tmp_path) as p:
            client = await temporal_client(srv.address)
            transport = RetryingTransport()
            conn = await asyncpg.connect(database_url, server_settings={"search_path": p.schema})
            async with httpx.AsyncClient(base_url=p.base_url, timeout=180, transport=transport) as http:
                stack = Stackish(p, http, skipper_for(client))
                tag = uuid.uuid4().hex[:2].upper()
                sem = asyncio.Semaphore(10)

                async def place(i: int) -> BenchRegime:
                    async with sem:
                        reg = await BenchRegime.place(stack, f"T{tag}{i:02d}")
                        if i % 2:  # half wait on the improvement director, half on the trust
                            await reg.act("improvement_plan", "submit", PLAN, role="trust")
                        await stack.fast_forward(reg.id, 3)
                        reg.day += 3
                        return reg

                regs = await asyncio.gather(*(place(i) for i in range(REGIMES)))
                before = {r.id: await r.state() for r in regs}
                lengths = {r.id: await history_length(stack.handle(r.id)) for r in regs}

                old = srv.proc.pid
                srv.kill()
                await asyncio.sleep(1)
                srv.start()
                print(f"\ndev server {old} SIGKILLed with {REGIMES} regimes waiting; restarted as {srv.proc.pid} "
                      f"on {srv.db_file}")

                # All still there, each where it was.
                there = 0
                for r in regs:
                    # Exception: the server is still starting.
                    desc = await eventually(stack.handle(r.id).describe, what=f"{r.id} to be described", timeout=30,
                                            interval=0.2, ignore=Exception)
                    assert desc.status == WorkflowExecutionStatus.RUNNING, r.id
                    assert desc.raw_description.workflow_execution_info.history_length >= lengths[r.id]
                    assert (await r.state())["steps"].keys() == before[r.id]["steps"].keys()
                    there += 1

                # Their timers fire: 30 more days reach the improvement plan's reminder, breach or review.
                async def forward(r: BenchRegime) -> int:
                    async with sem:
                        await stack.fast_forward(r.id, 30)
                        r.day += 30
                        return len((await r.state())["escalations"]) - len(before[r.id]["escalations"])

                fired = await asyncio.gather(*(forward(r) for r in regs))

                # Their tasks can be decided.
                async def decide(r: BenchRegime) -> str:
                    async with sem:
                        st = await r.state()
                        if "plan_review" in {s["id"] for s in st["open_steps"]}:
                            await r.act("plan_review", "agree", comment="agreed", role="improvement_director")
                            return "plan_review"
                        await r.act("improvement_plan", "submit", PLAN, role="trust")
                        return "improvement_plan"

                decided = await asyncio.gather(*(decide(r) for r in regs))
                await asyncio.sleep(1)
                audited = doubled = 0
                for r, step in zip(regs, decided, strict=True):
                    for _ in range(100):
                        n = await conn.fetchval("SELECT count(*) FROM audit_log WHERE regime_id = $1 AND step_id = $2 "
                                                "AND event LIKE $3", r.id, step, f"{step.split('-')[0]}.%")
                        if n:
                            break
                        await asyncio.sleep(0.1)
                    audited += n == 1
                    doubled += max(0, n - 1)
                dup = await conn.fetchval("SELECT count(*) FROM (SELECT workflow_id, seq FROM audit_log "
                                          "GROUP BY 1, 2 HAVING count(*) > 1) d")
            await conn.close()
    finally:
        srv.stop()
    with_new_escalations = sum(1 for f in fired if f > 0)
    print(f"regimes still there {there}/{REGIMES}; timers fired after the restart on {with_new_escalations}/"
          f"{REGIMES} (escalations {sum(fired)}); decided after the restart {audited}/{REGIMES}; lost "
          f"{REGIMES - audited}, doubled {doubled + dup}; retried requests {dict(transport.retried)}")
    assert there == REGIMES and with_new_escalations == REGIMES and audited == REGIMES
    assert doubled == 0 and dup == 0
