"""Benchmark 2, lifecycle cost: one regime driven through the HTTP API for 24 virtual months under time
skipping (with two buddy partnerships: one trust-wide from day 0, one for maternity from month 4), everyone
acting on time, against raw workflows with the same timers, the same updates in the same windows and the same
fast-forwards (`bench.driver.drive_raw`).

The 24 months: plan, sign-offs, monthly returns, board-to-boards; re-inspection at month 12 finds the trust
still inadequate, so it is extended by 6 months; re-inspection at month 18 finds it improved, CQC recommends
exit and the regulator takes it out; the partnerships settle their last quarter; the post-exit board-to-board
6 months later closes the regime.

Figures: wall time, workflow tasks, activities, timers, updates and history events (over every run of every
workflow), events per regime-year. Target: wall time within 2x raw; events per regime-year far below 51,200.

    python -m bench.lifecycle_cost                 # full: 24 months, 2 buddies
    python -m bench.lifecycle_cost --quick         # CI: 3 months, 1 buddy
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import httpx

from bench.common import (
    Sampler,
    add_counts,
    dev_server,
    history_counts,
    latency_summary,
    listening_pid,
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
from bench.driver import (
    IMPROVED,
    MATERNITY_PLAN,
    STILL_INADEQUATE,
    BenchRegime,
    Buddies,
    Stackish,
    advance_all,
    announce_and_inspect,
    drive_raw,
)
from domain.dates import add_months
from domain.steps import Kind

NAME = "lifecycle_cost"
LIMIT = 51_200


async def open_step(reg: BenchRegime, kind: str) -> str:
    st = await reg.state()
    return next(s["id"] for s in st["open_steps"] if s["kind"] == kind)


async def until_month(stack: Stackish, reg: BenchRegime, buddies: Buddies | None, month: int) -> None:
    days = (add_months(reg.start, month) - reg.today).days
    if days > 0:
        await advance_all(stack, reg, buddies, days)


async def drive_project(stack: Stackish, months: int, n_buddies: int) -> tuple[BenchRegime, Buddies]:
    tag = uuid.uuid4().hex[:3].upper()
    reg = await BenchRegime.place(stack, f"L{tag}")
    buddies = Buddies(stack, reg)
    if n_buddies >= 1:
        await buddies.add(f"B{tag}1", level=30_000_000, forecast=4_000_000)
    if months <= 6:
        await advance_all(stack, reg, buddies, months * 30)
        return reg, buddies
    await until_month(stack, reg, buddies, 4)
    if n_buddies >= 2:
        await buddies.add(f"B{tag}2", scope="maternity", level=10_000_000, forecast=2_500_000,
                          plan=MATERNITY_PLAN)
    await until_month(stack, reg, buddies, 11)
    await announce_and_inspect(stack, reg, buddies, f"INS-{tag}-2", STILL_INADEQUATE)
    await reg.act(await open_step(reg, Kind.cqc_recommendation), "recommend_remain", comment="not improved enough")
    await reg.act(await open_step(reg, Kind.regulator_decision), "extend", {"months": 6}, comment="six more months")
    await until_month(stack, reg, buddies, 17)
    await announce_and_inspect(stack, reg, buddies, f"INS-{tag}-3", IMPROVED)
    await reg.act(await open_step(reg, Kind.cqc_recommendation), "recommend_exit", comment="sustained improvement")
    await reg.act(await open_step(reg, Kind.regulator_decision), "exit", comment="exit on CQC's recommendation")
    await until_month(stack, reg, buddies, months)
    st = await reg.state()
    assert st["finished"], f"the regime did not close by month {months}: {st['phase']}"
    return reg, buddies


async def run(args) -> None:
    started = time.monotonic()
    months = args.months or (3 if args.quick else 24)
    n_buddies = args.buddies if args.buddies is not None else (1 if args.quick else 2)
    with scratch("sm-bench-life-") as tmp, contextlib.ExitStack() as es:
        address = args.temporal_address or es.enter_context(dev_server(tmp)).address
        url = args.database_url or es.enter_context(postgres(tmp)).get_uri()
        async with project(address, url, tmp) as p:
            rw, raw_tq = es.enter_context(raw_worker(address, tmp))
            client = await temporal_client(address)
            skipper = skipper_for(client)
            plain = await temporal_client(address, plain=True)
            raw_skipper = skipper_for(plain)
            sampler = Sampler()
            for name, pid in (("temporal_server", listening_pid(address)), ("worker", p.worker.pid),
                              ("api", p.api.pid), ("raw_worker", rw.pid)):
                sampler.watch(name, pid)
            async with httpx.AsyncClient(base_url=p.base_url, timeout=120) as http:
                stack = Stackish(p, http, skipper)
                with sampler:
                    t0 = time.perf_counter()
                    reg, buddies = await drive_project(stack, months, n_buddies)
                    project_wall = time.perf_counter() - t0
                proj_cpu = sampler.report()
            wf_ids = [reg.id, *buddies.pids]
            per_wf = {wf: await history_counts(client, wf) for wf in wf_ids}
            total: dict[str, int] = {}
            for c in per_wf.values():
                total = add_counts(total, c)
            print(f"project: {project_wall:.1f}s wall, {total['events']} events, {total['workflow_tasks']} "
                  f"workflow tasks, {total['activities']} activities, {total['timers_fired']} timers fired, "
                  f"{total['updates']} updates")

            sampler2 = Sampler()
            for name, pid in (("temporal_server", listening_pid(address)), ("raw_worker", rw.pid)):
                sampler2.watch(name, pid)
            with sampler2:
                t0 = time.perf_counter()
                raw_ids = await drive_raw(raw_skipper, raw_tq, stack.log(reg.id),
                                          {wf: c["timers_fired"] for wf, c in per_wf.items()})
                raw_wall = time.perf_counter() - t0
            raw_per_wf = {wf: await history_counts(plain, rid) for wf, rid in raw_ids.items()}
            raw_total: dict[str, int] = {}
            for c in raw_per_wf.values():
                raw_total = add_counts(raw_total, c)
            print(f"raw:     {raw_wall:.1f}s wall, {raw_total['events']} events, {raw_total['workflow_tasks']} "
                  f"workflow tasks, {raw_total['activities']} activities, {raw_total['timers_fired']} timers fired, "
                  f"{raw_total['updates']} updates")

            lat_project = await latency_summary(client, wf_ids)
            lat_raw = await latency_summary(plain, list(raw_ids.values()))
            for k in lat_project:
                print(f"  {k:20s} project {lat_project[k]}  raw {lat_raw.get(k)}")
            years = months / 12
            per_year = round(total["events"] / years)
            regime_per_year = round(per_wf[reg.id]["events"] / years)
            figures = {
                "project": {"wall_seconds": round(project_wall, 1), "fast_forward_seconds": round(stack.ff_seconds, 1),
                            "http_and_reads_seconds": round(project_wall - stack.ff_seconds, 1),
                            "totals": total, "per_workflow": per_wf, "events_per_regime_year_all_workflows": per_year,
                            "events_per_regime_year_regime_workflow": regime_per_year,
                            "task_latencies": lat_project, "processes": proj_cpu},
                "raw": {"wall_seconds": round(raw_wall, 1), "totals": raw_total, "per_workflow": raw_per_wf,
                        "task_latencies": lat_raw, "processes": sampler2.report()},
                "http_seconds_by_kind": {k: round(v, 1) for k, v in stack.http_seconds.items()},
                "http_calls_by_kind": dict(stack.http_calls),
                "windows": len(stack.log(reg.id).windows), "updates_sent": sum(stack.log(reg.id).total().values()),
            }
            reads = sum(v for k, v in stack.http_seconds.items() if k.startswith("read_"))
            comparable = project_wall - reads
            figures["project"]["wall_seconds_without_page_reads"] = round(comparable, 1)
            ratios = {"wall_time_vs_raw": ratio(project_wall, raw_wall),
                      "wall_time_without_page_reads_vs_raw": ratio(comparable, raw_wall),
                      "target_wall_time_vs_raw": 2.0,
                      "target_met": (ratio(project_wall, raw_wall) or 99) <= 2.0,
                      "events_vs_raw": ratio(total["events"], raw_total["events"]),
                      "workflow_tasks_vs_raw": ratio(total["workflow_tasks"], raw_total["workflow_tasks"]),
                      "activities_vs_raw": ratio(total["activities"], raw_total["activities"]),
                      "events_per_regime_year_vs_limit": round(per_year / LIMIT, 3)}
            print(f"wall project/raw = {ratios['wall_time_vs_raw']} (target <= 2), without page reads "
                  f"{ratios['wall_time_without_page_reads_vs_raw']}; {dict(stack.http_seconds)}; events per regime-year "
                  f"{per_year} ({ratios['events_per_regime_year_vs_limit']:.1%} of {LIMIT})")
            write_results(NAME, args, {"months": months, "buddies": n_buddies, "window_days": 7,
                                       "temporal": "dev server, SQLite file, per-workflow time skipping"},
                          figures, ratios, started=started, notes=[
                              "The project's wall time includes the people reading the regime and partnership pages "
                              "before acting (GET, a workflow query each); the raw driver reads nothing.",
                              "Published inspections (signals) are replayed on the raw side as updates."])


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--months", type=int)
    p.add_argument("--buddies", type=int, choices=(0, 1, 2))
    asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    main()
