"""PostgreSQL stopped mid-test: the API answers 503 with Retry-After, activities retry, and when the
database returns the inbox, audit log and projection catch up with nothing missing or doubled."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import pgserver

from tests.driver import Regime
from tests.harness import run_stack
from tests.helpers import PLAN


async def test_database_outage_then_recovery(temporal_address):
    with tempfile.TemporaryDirectory(prefix="sm-pg-outage-") as d:
        srv = pgserver.get_server(str(Path(d) / "pg"), cleanup_mode="stop")
        async with run_stack(temporal_address, srv.get_uri()) as stack:
            reg = await Regime.place(stack, "RO1")
            await reg.act("improvement_plan", "submit", PLAN)
            await stack.settle(reg.id)

            pgserver.pg_ctl(["-w", "stop", "-m", "fast"], pgdata=srv.pgdata, user=srv.system_user)
            ops = reg.users["operations"]
            r = await stack.http.get("/regimes", headers=ops)
            assert r.status_code == 503 and r.headers["retry-after"]
            assert r.headers["content-type"].startswith("application/problem+json")
            r = await stack.http.post(f"/regimes/{reg.id}/steps/plan_review/decisions",
                                      headers=reg.users["improvement_director"], json={"action": "agree"})
            assert r.status_code == 503, r.text
            ready = await stack.http.get("/health/ready")
            assert ready.status_code == 503 and ready.json()["checks"]["temporal"] == "ok"
            # Deadlines keep running while the database is down: the plan review falls overdue.
            # (Time skipping waits for pending activities, so the skip finishes once the database is back.)
            skipping = asyncio.create_task(stack.fast_forward(reg.id, 40))
            await asyncio.sleep(3)
            assert not skipping.done()
            srv.ensure_postgres_running()
            await asyncio.wait_for(skipping, 120)
            st = await stack.settle(reg.id)
            assert st["steps"]["plan_review"]["status"] == "open"  # the refused decision was not delivered
            esc = [(e["step_id"], e["rung"]) for e in st["escalations"]]
            assert ("plan_review", "breach") in esc
            audited = await stack.pool.fetch(
                "SELECT detail->>'rung' AS rung, step_id FROM audit_log WHERE regime_id=$1 AND event='escalation'",
                reg.id)
            assert sorted((a["step_id"], a["rung"]) for a in audited) == sorted(esc)
            notes = await stack.pool.fetchval("SELECT count(*) FROM notifications WHERE regime_id=$1", reg.id)
            assert notes == len(esc)
            dup = await stack.pool.fetchval(
                "SELECT count(*) FROM (SELECT seq FROM audit_log WHERE workflow_id=$1 GROUP BY seq "
                "HAVING count(*) > 1) x", reg.id)
            assert dup == 0
            r = await stack.http.get("/tasks", headers=reg.users["improvement_director"])
            assert r.status_code == 200 and any(i["step_id"] == "plan_review" for i in r.json()["items"])
            r = await stack.http.post(f"/regimes/{reg.id}/steps/plan_review/decisions",
                                      headers=reg.users["improvement_director"], json={"action": "agree"})
            assert r.status_code == 200
            v = (await stack.http.get(f"/regimes/{reg.id}/audit/verify", headers=ops)).json()
            assert v["intact"]
            print(f"\noutage: escalations during outage {len(esc)}, audited {len(audited)}, lost 0, doubled {dup}")
