"""Fault 1: the worker process is SIGKILLed (by PID) in the middle of 30 lifecycles, at the moment a buddy
payment's row has been written to PostgreSQL but the activity has not reported back; a new worker process is
started. Every regime completes, every step is in the audit log exactly once, the payment is recorded once.

The worker runs as its own process (tests/faults/worker_runner.py: the production worker plus a hook that holds
after the first payment write, so the kill lands exactly there); the API runs as its own process too.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter

import asyncpg
import httpx

from bench.common import project, skipper_for, temporal_client
from bench.driver import BenchRegime, Buddies, Stackish, window
from tests.faults.support import RetryingTransport, audit_counts, short_lifecycle
from tools.polling import eventually

LIFECYCLES = 30


async def test_worker_killed_mid_lifecycles_and_right_after_a_payment_write(temporal_address, database_url,
                                                                            tmp_path):
    marker = tmp_path / "payment-written.json"
    async with project(temporal_address, database_url, tmp_path, worker_module="tests.faults.worker_runner",
                       extra_env={"SM_FAULT_HOLD_AFTER_PAYMENT": str(marker)}) as p:
        client = await temporal_client(temporal_address)
        transport = RetryingTransport()
        conn = await asyncpg.connect(database_url, server_settings={"search_path": p.schema})
        async with httpx.AsyncClient(base_url=p.base_url, timeout=180, transport=transport) as http:
            stack = Stackish(p, http, skipper_for(client))
            decided: Counter = Counter()

            async def count(r: httpx.Response) -> None:
                if r.request.url.path.endswith("/decisions") and r.status_code == 200:
                    decided[r.request.url.path.split("/")[2]] += 1

            http.event_hooks["response"].append(count)
            tag = uuid.uuid4().hex[:2].upper()

            # A regime with a buddy partnership, everyone on time, up to its first quarter's authorisation.
            payer = await BenchRegime.place(stack, f"K{tag}P")
            buddies = Buddies(stack, payer)
            buddies.hold.add("buddy_authorise")
            pid = await buddies.add(f"K{tag}B", level=30_000_000, forecast=4_000_000)

            async def authorise_step():
                s = await buddies.state(pid)
                return s, next((st for st in s["open_steps"] if st["kind"] == "buddy_authorise"), None)

            for _ in range(30):
                await window(stack, payer, buddies, 14)
                await buddies.drive(1)
                if (await authorise_step())[1]:
                    break
            s, step = await authorise_step()
            assert step is not None, "the first quarter never reached its authorisation"

            # 30 lifecycles at once; when about a third of their decisions are in, the payment is authorised.
            sem = asyncio.Semaphore(10)

            async def lifecycle(i: int) -> BenchRegime:
                async with sem:
                    return await short_lifecycle(stack, f"K{tag}{i:02d}")

            runs = [asyncio.create_task(lifecycle(i)) for i in range(LIFECYCLES)]
            await eventually(lambda: sum(decided.values()) >= LIFECYCLES * 4, what="lifecycles under way", timeout=240)
            await buddies.act(pid, s, step)
            await eventually(marker.exists, what="the payment row to be written", timeout=60)
            killed_at = sum(decided.values())
            before_kill = {r: n for r, n in decided.items()}
            old_pid = p.worker.pid
            p.worker.kill()
            print(f"\nworker {old_pid} SIGKILLed after the payment row was written ({marker.read_text()}), "
                  f"{killed_at} decisions into {LIFECYCLES} lifecycles")
            await asyncio.sleep(1)
            p.start_worker()
            print(f"worker restarted as {p.worker.pid}")
            regs = await asyncio.gather(*runs)

            # Every regime completed; every step once in the audit log.
            totals: Counter = Counter()
            problems: list = []
            for reg in regs:
                # Completed: the run has returned, so its last effects batch is written.
                await asyncio.wait_for(stack.handle(reg.id).result(), 120)
                st = await reg.state()
                assert st["finished"], reg.id
                c = await audit_counts(conn, st)
                if c["missing"] or c["extra"]:
                    problems.append((reg.id, c["missing"], c["extra"]))
                assert c["decisions"] == decided[reg.id], (reg.id, c, decided[reg.id])
                totals.update({k: v for k, v in c.items() if isinstance(v, int)})
                v = await http.get(f"/regimes/{reg.id}/audit/verify", headers=reg.users["operations"])
                assert v.status_code == 200 and v.json()["intact"], v.text

            # The payment: its activity is retried once its 30 s timeout passes, finds the row, writes nothing.
            async def recorded():
                return await conn.fetchval("SELECT count(*) FROM audit_log WHERE workflow_id = $1 AND "
                                           "event = 'buddy_payment_recorded'", pid) > 0

            await eventually(recorded, what="the payment activity to complete after the restart", timeout=120,
                             interval=0.5)
            rows = await conn.fetch("SELECT quarter, amount_pence FROM buddy_payments WHERE partnership_id = $1", pid)
            audit = [json.loads(r["detail"]) for r in await conn.fetch(
                "SELECT detail FROM audit_log WHERE workflow_id = $1 AND event = 'buddy_payment_recorded'", pid)]
            led = (await http.get(f"/regimes/{payer.id}/buddies/{pid}/ledger", headers=buddies.ops)).json()
        await conn.close()
    payments = len(rows)
    print(f"lifecycles: {LIFECYCLES} completed of {LIFECYCLES}; decisions {sum(decided.values())} "
          f"({killed_at} before the kill, {sum(decided.values()) - killed_at} after); audit entries checked "
          f"{totals['expected']}: lost {totals['lost']}, doubled {totals['doubled']}; retried requests "
          f"{dict(transport.retried)}")
    print(f"payment: rows {payments} (expected 1), audit 'recorded' entries {len(audit)} (first_write="
          f"{audit[0].get('first_write') if audit else None}), ledger paid {led['totals']['paid_pence']} "
          f"pence = recorded {led['recorded_paid_pence']}: lost {1 - min(payments, 1)}, doubled {max(0, payments - 1)}")
    assert totals["lost"] == 0 and totals["doubled"] == 0, problems
    assert sum(before_kill.values()) < sum(decided.values()), "the kill did not land mid-way"
    assert payments == 1 and rows[0]["quarter"] == 1 and len(audit) == 1
    assert audit[0]["first_write"] is False, "the kill should have come after the row was written"
    assert led["totals"]["paid_pence"] == led["recorded_paid_pence"] == rows[0]["amount_pence"]
