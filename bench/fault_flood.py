"""Fault 4 (as a benchmark script, since 10,000 requests take over a minute here): a flood of refused
decisions against one regime (the wrong role for an open step, an unknown step, a step already done, a reason
missing, an action the step does not have, another trust's improvement director, operations) adds nothing to
its history, audit log or state; then 50 concurrent identical decisions with one Idempotency-Key are one update
in the history and one effect. (tests/test_api.py checks the 50 repeats' responses and audit rows; this adds
the history.) The raw baseline: the same number of updates rejected by a validator on a raw workflow, at the
same concurrency. Exits non-zero if anything was changed or doubled.

    python -m bench.fault_flood            # 10,000 refusals
    python -m bench.fault_flood --quick    # CI: 1,000
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections import Counter

import asyncpg
import httpx
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowUpdateFailedError

from bench.common import (
    dev_server,
    history_length,
    parser,
    postgres,
    project,
    ratio,
    raw_worker,
    scratch,
    skipper_for,
    temporal_client,
    write_results,
)
from bench.driver import BenchRegime, Stackish
from bench.raw import RawAct, RawUpdateWorkflow
from domain.steps import Kind
from tests.helpers import PLAN
from tools.polling import eventually

NAME = "fault_flood"
CONCURRENCY = 8  # below the server's 10 updates in flight per workflow


async def flood_project(temporal_address: str, database_url: str, tmp_path, flood: int) -> dict:
    async with project(temporal_address, database_url, tmp_path) as p:
        client = await temporal_client(temporal_address)
        conn = await asyncpg.connect(database_url, server_settings={"search_path": p.schema})
        limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
        async with httpx.AsyncClient(base_url=p.base_url, timeout=60, limits=limits) as http:
            stack = Stackish(p, http, skipper_for(client))
            ods = "F" + uuid.uuid4().hex[:3].upper()
            reg = await BenchRegime.place(stack, ods)
            await reg.act(Kind.improvement_plan, "submit", PLAN, role="trust")
            handle = stack.handle(reg.id)

            async def written() -> bool:
                st = await reg.state()
                return await conn.fetchval("SELECT last_seq FROM regimes WHERE regime_id = $1", reg.id) >= st["seq"]

            # The submission's effects are written and the workflow is quiet.
            await eventually(written, what="the effects to reach PostgreSQL", timeout=10, interval=0.05)
            await asyncio.sleep(0.5)
            events_before = await history_length(handle)
            audit_before = await conn.fetchval("SELECT count(*) FROM audit_log WHERE regime_id = $1", reg.id)
            seq_before = (await reg.state())["seq"]

            other_id = p.auth("id-other", "improvement_director", trusts=["ZZZ9"])
            url = f"/regimes/{reg.id}/steps"
            kinds = [  # (what, path, headers, body)
                ("wrong role", f"{url}/{Kind.plan_review}/decisions", reg.users["trust"], {"action": "agree"}),
                ("wrong role", f"{url}/{Kind.plan_review}/decisions", reg.users["commissioner"], {"action": "agree"}),
                ("unknown step", f"{url}/no_such_step/decisions", reg.users["improvement_director"],
                 {"action": "agree"}),
                ("step already done", f"{url}/{Kind.improvement_plan}/decisions", reg.users["trust"],
                 {"action": "submit", "payload": PLAN}),
                ("another trust's director", f"{url}/{Kind.plan_review}/decisions", other_id, {"action": "agree"}),
                ("operations", f"{url}/{Kind.plan_review}/decisions", reg.users["operations"], {"action": "agree"}),
                ("wrong action", f"{url}/{Kind.plan_review}/decisions", reg.users["improvement_director"],
                 {"action": "sign_off"}),
                ("reason missing", f"{url}/{Kind.plan_review}/decisions", reg.users["improvement_director"],
                 {"action": "return"}),
            ]
            statuses: Counter = Counter()
            by_kind: Counter = Counter()
            queue: asyncio.Queue = asyncio.Queue()
            for i in range(flood):
                queue.put_nowait(kinds[i % len(kinds)])

            async def sender() -> None:
                while not queue.empty():
                    what, path, headers, body = queue.get_nowait()
                    r = await http.post(path, json=body, headers=headers)
                    statuses[r.status_code] += 1
                    by_kind[(what, r.status_code)] += 1

            t = time.perf_counter()
            await asyncio.gather(*(sender() for _ in range(CONCURRENCY)))
            flood_s = time.perf_counter() - t
            await asyncio.sleep(0.5)
            events_after = await history_length(handle)
            audit_after = await conn.fetchval("SELECT count(*) FROM audit_log WHERE regime_id = $1", reg.id)
            st = await reg.state()

            # 50 identical decisions at once with one key: one update, one effect.
            headers = {**reg.users["improvement_director"], "Idempotency-Key": "agree-" + uuid.uuid4().hex}
            rs = await asyncio.gather(*[http.post(f"{url}/{Kind.plan_review}/decisions", headers=headers,
                                                  json={"action": "agree", "comment": "fine"}) for _ in range(50)])
            bodies = {json.dumps(r.json(), sort_keys=True) for r in rs}
            replayed = sum(1 for r in rs if r.headers.get("idempotent-replayed") == "true")
            await eventually(written, what="the effects to reach PostgreSQL", timeout=10, interval=0.05)
            hist = await handle.fetch_history()
            accepted = [e for e in hist.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED]
            agreed = await conn.fetchval("SELECT count(*) FROM audit_log WHERE regime_id = $1 AND event = $2",
                                         reg.id, f"{Kind.plan_review}.agree")
            signoffs = await conn.fetchval("SELECT count(*) FROM tasks WHERE regime_id = $1 AND kind = ANY($2)",
                                           reg.id, [Kind.plan_signoff_regulator, Kind.plan_signoff_commissioner])
        await conn.close()
    refused = sum(n for s, n in statuses.items() if s >= 400)
    print(f"\nflood: {flood} refused decisions in {flood_s:.1f}s ({flood / flood_s:.0f}/s, {CONCURRENCY} at a time): "
          f"{dict(sorted(statuses.items()))}; by kind {dict(sorted(by_kind.items()))}")
    print(f"history events before {events_before}, after {events_after} (added {events_after - events_before}); "
          f"audit entries before {audit_before}, after {audit_after}; state seq {seq_before} -> {st['seq']}")
    print(f"50 concurrent decisions with one Idempotency-Key: statuses {Counter(r.status_code for r in rs)}, "
          f"{len(bodies)} distinct body, {replayed} replayed; updates accepted in history {len(accepted)} "
          f"(the plan submission and this one), audit 'plan_review.agree' {agreed}, sign-off tasks opened {signoffs}: "
          f"lost {1 - min(agreed, 1)}, doubled {max(0, agreed - 1)}")
    checks = {
        "every request refused, none 5xx": refused == flood and not any(s >= 500 for s in statuses),
        "no history event, audit entry or state change": events_after == events_before
        and audit_after == audit_before and st["seq"] == seq_before,
        "50 identical responses": {r.status_code for r in rs} == {200} and len(bodies) == 1,
        "one update, one audit entry, sign-offs opened once": len(accepted) == 2 and agreed == 1 and signoffs == 2,
    }
    return {"refused": refused, "seconds": round(flood_s, 1), "per_second": round(flood / flood_s),
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "by_kind": {f"{k[0]} -> {k[1]}": v for k, v in sorted(by_kind.items())},
            "history_events": [events_before, events_after], "audit_entries": [audit_before, audit_after],
            "state_seq": [seq_before, st["seq"]],
            "idempotency_50": {"statuses": dict(Counter(r.status_code for r in rs)), "distinct_bodies": len(bodies),
                               "replayed": replayed, "updates_accepted_in_history": len(accepted),
                               "audit_entries": agreed, "signoff_tasks_opened": signoffs,
                               "lost": 1 - min(agreed, 1), "doubled": max(0, agreed - 1)},
            "checks": checks}


async def flood_raw(address: str, tmp, flood: int) -> dict:
    plain = await temporal_client(address, plain=True)
    with raw_worker(address, tmp) as (_, tq):
        h = await plain.start_workflow(RawUpdateWorkflow.run, id=f"raw-flood-{uuid.uuid4().hex[:8]}", task_queue=tq)
        await h.execute_update(RawUpdateWorkflow.act, RawAct(step="first"))
        before = await history_length(h)
        queue: asyncio.Queue = asyncio.Queue()
        for i in range(flood):
            queue.put_nowait(i)
        refused = Counter()

        async def sender() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                try:
                    await h.execute_update(RawUpdateWorkflow.act, RawAct(step=f"s{i}", reject=True))
                    refused["accepted"] += 1
                except WorkflowUpdateFailedError:
                    refused["rejected"] += 1

        t = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(CONCURRENCY)))
        dt = time.perf_counter() - t
        after = await history_length(h)
        await h.signal(RawUpdateWorkflow.finish)
    print(f"raw: {flood} rejected updates in {dt:.1f}s ({flood / dt:.0f}/s); history {before} -> {after}")
    return {"rejected": refused["rejected"], "accepted": refused["accepted"], "seconds": round(dt, 1),
            "per_second": round(flood / dt), "history_events": [before, after]}


async def run(args) -> None:
    started = time.monotonic()
    n = 1000 if args.quick else args.flood
    with scratch("sm-bench-flood-") as tmp, contextlib.ExitStack() as es:
        address = args.temporal_address or es.enter_context(dev_server(tmp)).address
        url = args.database_url or es.enter_context(postgres(tmp)).get_uri()
        proj = await flood_project(address, url, tmp, n)
        raw = await flood_raw(address, tmp, n)
    ok = all(proj["checks"].values()) and raw["history_events"][0] == raw["history_events"][1]
    write_results(NAME, args, {"refused_decisions": n, "concurrency": CONCURRENCY},
                  {"project": proj, "raw": raw},
                  {"refusals_per_second_vs_raw_rejections": ratio(proj["per_second"], raw["per_second"]),
                   "all_checks_passed": ok}, started=started)
    if not ok:
        raise SystemExit(f"flood checks failed: {proj['checks']}")


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--flood", type=int, default=10_000)
    asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    main()
