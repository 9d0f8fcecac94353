"""Benchmark 5, replay throughput: the golden histories in tests/histories (every scenario, every run of a
continue-as-new chain, each buddy partnership) replayed with the workflow code in the working tree, as the
deploy gate `regime replay` does, against raw-workflow histories of a similar size replayed the same way.

Figures: histories per second and events per second, for each side; the ratio of events per second is the one
that counts (histories differ in length).

    python -m bench.replay_throughput            # full: 5 passes over every golden history
    python -m bench.replay_throughput --quick    # CI: 1 pass
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from bench.common import (
    dev_server,
    fast_forward,
    parser,
    ratio,
    raw_worker,
    scratch,
    skipper_for,
    temporal_client,
    write_results,
)
from bench.raw import RAW_WORKFLOWS, RawAct, RawLifecycleWorkflow, RawPlan
from tools.replay import HISTORIES, history_files, load_history, replay

NAME = "replay_throughput"


async def record_raw(n: int, timers: int, updates: int) -> list[WorkflowHistory]:
    """Raw lifecycles run to completion under time skipping, their histories fetched."""
    out = []
    with scratch("sm-bench-replay-") as tmp, dev_server(tmp) as srv, raw_worker(srv.address, tmp) as (_, tq):
        client = await temporal_client(srv.address, plain=True)
        skipper = skipper_for(client)
        for _ in range(n):
            h = await skipper.client.start_workflow(RawLifecycleWorkflow.run, RawPlan(timers, timers * 86400.0),
                                                    id=f"raw-replay-{uuid.uuid4().hex[:8]}", task_queue=tq)
            per = max(1, updates // max(timers // 7, 1))
            sent = day = 0
            while day < timers + 1:
                for _ in range(min(per, updates - sent)):
                    await h.execute_update(RawLifecycleWorkflow.act, RawAct(step=f"u{sent}"))
                    sent += 1
                await fast_forward(skipper, h, 7)
                day += 7
            await h.signal(RawLifecycleWorkflow.finish)
            await h.result()
            out.append(await h.fetch_history())
    return out


async def replay_raw(histories: list[WorkflowHistory]) -> list[bool]:
    replayer = Replayer(workflows=RAW_WORKFLOWS)
    ok = []

    async def gen():
        for h in histories:
            yield h

    async with replayer.workflow_replay_iterator(gen()) as results:
        async for r in results:
            ok.append(r.replay_failure is None)
    return ok


async def run(args) -> None:
    started = time.monotonic()
    passes = 1 if args.quick else args.passes
    files = history_files([HISTORIES])
    if not files:
        raise SystemExit("no golden histories in tests/histories: run `regime record` first")
    golden = [(f.name, load_history(f)) for f in files]
    events = sum(len(h.events) for _, h in golden)
    await replay(golden[:1])  # warm the sandbox's module cache, as a gate's first workflow would
    t = time.perf_counter()
    results = []
    for _ in range(passes):
        results += await replay(golden)
    proj_s = time.perf_counter() - t
    failed = [r.label for r in results if not r.ok]
    mean_events = events // len(golden)
    raw_hist = await record_raw(2 if args.quick else 6, timers=max(10, mean_events // 12),
                                updates=max(5, mean_events // 25))
    raw_events = sum(len(h.events) for h in raw_hist)
    await replay_raw(raw_hist[:1])
    t = time.perf_counter()
    raw_ok = []
    for _ in range(passes):
        raw_ok += await replay_raw(raw_hist)
    raw_s = time.perf_counter() - t
    proj = {"histories": len(golden), "events": events, "passes": passes, "seconds": round(proj_s, 2),
            "histories_per_second": round(len(golden) * passes / proj_s, 1),
            "events_per_second": round(events * passes / proj_s), "failed": failed,
            "largest_history_events": max(len(h.events) for _, h in golden)}
    raw = {"histories": len(raw_hist), "events": raw_events, "passes": passes, "seconds": round(raw_s, 2),
           "histories_per_second": round(len(raw_hist) * passes / raw_s, 1),
           "events_per_second": round(raw_events * passes / raw_s), "failed": raw_ok.count(False)}
    ratios = {"events_per_second_vs_raw": ratio(proj["events_per_second"], raw["events_per_second"]),
              "histories_per_second_vs_raw": ratio(proj["histories_per_second"], raw["histories_per_second"])}
    print(f"golden: {proj}\nraw: {raw}\n{ratios}")
    eps = proj["events_per_second"]
    write_results(NAME, args, {"passes": passes, "golden_dir": "tests/histories", "sandbox": True},
                  {"project": proj, "raw": raw,
                   "deploy_gate_estimate": {
                       "note": "one process; a regime's current run holds ~800 events per year of its life, and at "
                               "most continue_as_new_after_events (default 8,000) before it continues as new",
                       "seconds_for_1000_regimes_one_year_into_their_run": round(1000 * 800 / eps),
                       "seconds_for_1000_regimes_at_the_8000_event_bound": round(1000 * 8000 / eps)}},
                  ratios, started=started)
    if failed:
        raise SystemExit(f"golden histories failed to replay: {failed}")


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--passes", type=int, default=5)
    asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
