"""Benchmark 1, approval latency: a decision through the HTTP API (token check, validation, PostgreSQL reads,
the workflow update with its validator, the audit write that follows) against a bare `execute_update` with a
validator on a minimal raw workflow, on the same dev server, requests interleaved so both see the same noise.

Series (each a round robin over its own workflows, one request at a time):
- `api`: POST /regimes/{id}/steps/{step}/decisions, no Idempotency-Key;
- `api_idempotency_key`: the same with an Idempotency-Key (two more PostgreSQL writes);
- `direct_update`: `execute_update(RegimeWorkflow.decide_step)` from a client, no HTTP (the workflow's share);
- `raw_update`: `execute_update` on `bench.raw.RawUpdateWorkflow` (the engine's floor).
The decisions alternate 'submit the improvement plan' (trust) and 'return it with a reason' (improvement
director), real decisions that each write audit entries and tasks. Target: api p99 <= 1.5 x raw p99.

    python -m bench.approval_latency            # full: 10 workflows per series x 60 rounds
    python -m bench.approval_latency --quick    # CI
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import httpx

from bench.common import (
    Sampler,
    dev_server,
    listening_pid,
    parser,
    postgres,
    project,
    ratio,
    raw_worker,
    scratch,
    summary_ms,
    temporal_client,
    today,
    write_results,
)
from bench.raw import RawAct, RawUpdateWorkflow
from domain.models import Actor, Decision
from domain.steps import Kind
from tests.helpers import PLAN, placement
from tools.polling import eventually
from workflows.regime import RegimeWorkflow

NAME = "approval_latency"


def step_pair(k: int) -> tuple[str, str]:
    """Step ids of the k-th plan submission and its review (the workflow numbers repeats -2, -3, ...)."""
    plan, review = Kind.improvement_plan, Kind.plan_review
    return (plan, review) if k == 1 else (f"{plan}-{k}", f"{review}-{k}")


class Sequence:
    """Where one regime is in its submit / return cycle."""

    def __init__(self, regime_id: str, ods: str) -> None:
        self.regime_id, self.ods = regime_id, ods
        self.k, self.submitted = 1, False

    def next(self) -> tuple[str, str, dict]:
        plan, review = step_pair(self.k)
        if not self.submitted:
            self.submitted = True
            return plan, "trust", {"action": "submit", "payload": PLAN}
        self.submitted = False
        self.k += 1
        return review, "improvement_director", {"action": "return", "comment": "metrics are not measurable"}


async def place(http: httpx.AsyncClient, p, ods: str) -> str:
    r = await http.post("/regimes", json=placement(ods, today(), name=f"{ods} Hospitals NHS Trust"),
                        headers=p.auth("reg-1", "regulator"))
    assert r.status_code == 201, r.text
    return r.json()["regime_id"]


async def wait_tasks(pool_http: httpx.AsyncClient, p, regime_ids: list[str]) -> None:
    ops = p.auth("ops-1", "operations")

    async def listed() -> set[str]:
        r = await pool_http.get("/tasks", params={"kind": Kind.improvement_plan, "limit": 500}, headers=ops)
        return {i["regime_id"] for i in r.json()["items"]}

    await eventually(listed, until=lambda have: set(regime_ids) <= have, what="the placements to reach the inbox",
                     timeout=90)


async def run(args) -> None:
    started = time.monotonic()
    n_wf, rounds, warm = (2, 6, 1) if args.quick else (10, 60, 2)
    with scratch("sm-bench-lat-") as tmp, contextlib.ExitStack() as es:
        address = args.temporal_address or es.enter_context(dev_server(tmp)).address
        url = args.database_url or es.enter_context(postgres(tmp)).get_uri()
        async with project(address, url, tmp) as p:
            rw, raw_tq = es.enter_context(raw_worker(address, tmp))
            client = await temporal_client(address)
            plain = await temporal_client(address, plain=True)
            async with httpx.AsyncClient(base_url=p.base_url, timeout=60) as http:
                tag = uuid.uuid4().hex[:3].upper()
                api_seq = [Sequence(await place(http, p, f"A{tag}{i:02d}"), f"A{tag}{i:02d}") for i in range(n_wf)]
                dir_seq = [Sequence(await place(http, p, f"D{tag}{i:02d}"), f"D{tag}{i:02d}") for i in range(n_wf)]
                await wait_tasks(http, p, [s.regime_id for s in api_seq + dir_seq])
                raws = [await plain.start_workflow(RawUpdateWorkflow.run, id=f"raw-lat-{uuid.uuid4().hex[:8]}",
                                                   task_queue=raw_tq) for _ in range(n_wf)]
                tokens = {}
                for s in api_seq:
                    tokens[(s.ods, "trust")] = p.auth(f"trust-{s.ods}", "trust", trusts=[s.ods])
                    tokens[(s.ods, "improvement_director")] = p.auth(f"id-{s.ods}", "improvement_director",
                                                                    trusts=[s.ods])
                series: dict[str, list[float]] = {"api": [], "api_idempotency_key": [], "direct_update": [],
                                                  "raw_update": []}

                async def api_call(s: Sequence, key: bool) -> float:
                    step, role, body = s.next()
                    h = dict(tokens[(s.ods, role)])
                    if key:
                        h["Idempotency-Key"] = uuid.uuid4().hex
                    t = time.perf_counter()
                    r = await http.post(f"/regimes/{s.regime_id}/steps/{step}/decisions", json=body, headers=h)
                    dt = time.perf_counter() - t
                    assert r.status_code == 200, (step, r.status_code, r.text)
                    return dt

                async def direct_call(s: Sequence) -> float:
                    step, role, body = s.next()
                    d = Decision(step_id=step, action=body["action"], payload=body.get("payload", {}),
                                 comment=body.get("comment"),
                                 actor=Actor(user_id=f"{role}-{s.ods}", role=role, request_id=uuid.uuid4().hex))
                    t = time.perf_counter()
                    await client.get_workflow_handle(s.regime_id).execute_update(RegimeWorkflow.decide_step, d)
                    return time.perf_counter() - t

                async def raw_call(h, i: int) -> float:
                    t = time.perf_counter()
                    await h.execute_update(RawUpdateWorkflow.act, RawAct(step=f"s{i}"))
                    return time.perf_counter() - t

                sampler = Sampler()
                sampler.watch("temporal_server", listening_pid(address))
                sampler.watch("worker", p.worker.pid)
                sampler.watch("api", p.api.pid)
                sampler.watch("raw_worker", rw.pid)
                with sampler:
                    for rnd in range(warm + rounds):
                        for i in range(n_wf):
                            # The order rotates so no series always follows the same one.
                            calls = [("api", lambda i=i, rnd=rnd: api_call(api_seq[i], key=bool(rnd % 2))),
                                     ("direct_update", lambda i=i: direct_call(dir_seq[i])),
                                     ("raw_update", lambda i=i, rnd=rnd: raw_call(raws[i], rnd))]
                            k = (rnd + i) % len(calls)
                            for name, call in calls[k:] + calls[:k]:
                                dt = await call()
                                if rnd >= warm:
                                    if name == "api" and rnd % 2:
                                        series["api_idempotency_key"].append(dt)
                                    else:
                                        series[name].append(dt)
                for h in raws:
                    await h.signal(RawUpdateWorkflow.finish)
                stats = {k: summary_ms(v) for k, v in series.items()}
                raw = stats["raw_update"]
                ratios = {
                    f"{k}_vs_raw": {q: ratio(stats[k][q], raw[q]) for q in ("p50_ms", "p95_ms", "p99_ms")}
                    for k in ("api", "api_idempotency_key", "direct_update")}
                ratios["api_p99_vs_raw_p99"] = ratios["api_vs_raw"]["p99_ms"]
                ratios["target_api_p99_vs_raw_p99"] = 1.5
                ratios["target_met"] = (ratios["api_p99_vs_raw_p99"] or 99) <= 1.5
                for k, v in stats.items():
                    print(f"{k:22s} p50 {v['p50_ms']:7.1f}  p95 {v['p95_ms']:7.1f}  p99 {v['p99_ms']:7.1f} ms"
                          f"  (n={v['n']})")
                print(f"api p99 / raw p99 = {ratios['api_p99_vs_raw_p99']} (target <= 1.5)")
                write_results(NAME, args, {"workflows_per_series": n_wf, "rounds": rounds, "warmup_rounds": warm,
                                           "concurrency": 1, "temporal": "dev server, SQLite file",
                                           "processes": "API (uvicorn), worker (python -m worker), raw worker and "
                                                        "driver each in their own process"},
                              {"latency": stats, "processes": sampler.report()}, ratios, started=started,
                              notes=["api_idempotency_key: alternate rounds of the api series carry a fresh key"])


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
