"""Benchmark 3, scale.

Part 1: N regimes placed through the API and driven concurrently (at most C acting at any moment) to their
12-month re-inspection under time skipping, one worker process (`python -m worker`), everyone acting on time
in 14-day windows; then the raw baseline: N raw workflows replaying each regime's updates and fast-forwards
with the same number of timers, on a fresh dev server of its own. Regimes per minute, CPU and peak memory of
worker and dev server for each.

Part 2: M regimes placed and left idle on their timers: memory of worker, API and dev server, time to place
them, and time to list them all (the API's regimes list, paged, and Temporal visibility); the same for M raw
workflows idle on a timer.

    python -m bench.scale                                # full: --regimes 1000 --idle 10000
    python -m bench.scale --regimes 200 --idle 2000      # what fits on a busy shared machine
    python -m bench.scale --quick                        # CI
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
import uuid
from datetime import timedelta
from pathlib import Path

import asyncpg
import httpx

from bench.common import (
    Sampler,
    dev_server,
    history_counts,
    parser,
    postgres,
    project,
    ratio,
    raw_worker,
    rss_mib,
    scratch,
    skipper_for,
    temporal_client,
    wait_quiet,
    write_results,
)
from bench.driver import IMPROVED, BenchRegime, Stackish, drive_raw, window
from bench.raw import RawLifecycleWorkflow, RawPlan
from domain.dates import add_months
from tools.polling import eventually

NAME = "scale"


def ods(tag: str, i: int) -> str:
    return f"{tag}{i:04d}" if i < 10_000 else f"{tag[:1]}{i:05d}"


async def drive_regime(stack: Stackish, sem: asyncio.Semaphore, code: str, months: int, step: int,
                       done: list[float], t0: float) -> BenchRegime:
    async with sem:
        reg = await BenchRegime.place(stack, code)
    target = (add_months(reg.start, months) - reg.today).days
    while reg.day < target:
        async with sem:
            await window(stack, reg, None, min(step, target - reg.day))
    if months >= 12:
        async with sem:
            await reg.complete_open(within_days=15)
            r = await stack.http.post(f"/regimes/{reg.id}/reinspection", headers=reg.users["cqc"],
                                      json={"inspection_date": (reg.today + timedelta(days=14)).isoformat()})
            assert r.status_code == 200, r.text
            await window(stack, reg, None, 14)
        async with sem:
            await reg.complete_open(within_days=1)
            await reg.inspect(f"INS-{code}-2", IMPROVED)
    done.append(time.perf_counter() - t0)
    return reg


async def part1(args, tmp: Path, url: str, n: int, conc: int, months: int) -> tuple[dict, dict]:
    step = 14
    with dev_server(tmp) as srv:
        async with project(srv.address, url, tmp) as p:
            client = await temporal_client(srv.address)
            skipper = skipper_for(client)
            sampler = Sampler(every=0.5)
            for name, pid in (("temporal_server", srv.proc.pid), ("worker", p.worker.pid), ("api", p.api.pid)):
                sampler.watch(name, pid)
            limits = httpx.Limits(max_connections=conc * 2, max_keepalive_connections=conc * 2)
            async with httpx.AsyncClient(base_url=p.base_url, timeout=300, limits=limits) as http:
                stack = Stackish(p, http, skipper)
                sem = asyncio.Semaphore(conc)
                tag = "S" + uuid.uuid4().hex[:1].upper()
                done: list[float] = []
                with sampler:
                    t0 = time.perf_counter()
                    regs = await asyncio.gather(*(drive_regime(stack, sem, ods(tag, i), months, step, done, t0)
                                                  for i in range(n)))
                    wall = time.perf_counter() - t0
                sample = [await history_counts(client, r.id) for r in regs[: min(5, n)]]
        proj = {"regimes": n, "months": months, "wall_seconds": round(wall, 1),
                "regimes_per_minute": round(60 * n / wall, 1),
                "first_and_last_finished_seconds": [round(min(done), 1), round(max(done), 1)],
                "history_per_regime_sample": sample, "processes": sampler.report()}
        print(f"project: {n} regimes to month {months} in {wall:.1f}s = {proj['regimes_per_minute']}/min; "
              f"{sampler.report()}")
    timers = round(statistics.mean(c["timers_fired"] for c in sample))
    with dev_server(tmp) as srv2:
        plain = await temporal_client(srv2.address, plain=True)
        raw_skipper = skipper_for(plain)
        with raw_worker(srv2.address, tmp) as (rw, tq):
            sampler2 = Sampler(every=0.5)
            sampler2.watch("temporal_server", srv2.proc.pid)
            sampler2.watch("raw_worker", rw.pid)
            sem = asyncio.Semaphore(conc)
            with sampler2:
                t0 = time.perf_counter()
                raw_ids = await asyncio.gather(*(drive_raw(raw_skipper, tq, stack.log(r.id), {r.id: timers}, sem)
                                                 for r in regs))
                raw_wall = time.perf_counter() - t0
            raw_sample = [await history_counts(plain, ids[r.id]) for ids, r in zip(raw_ids[:5], regs[:5],
                                                                                   strict=False)]
    raw = {"workflows": n, "wall_seconds": round(raw_wall, 1), "workflows_per_minute": round(60 * n / raw_wall, 1),
           "timers_per_workflow": timers, "history_per_workflow_sample": raw_sample,
           "processes": sampler2.report()}
    print(f"raw: {n} workflows in {raw_wall:.1f}s = {raw['workflows_per_minute']}/min; {sampler2.report()}")
    return proj, raw


async def list_all_api(http: httpx.AsyncClient, headers: dict, page: int = 1000) -> tuple[int, float, list[float]]:
    t0 = time.perf_counter()
    pages: list[float] = []
    total, offset = 0, 0
    while True:
        t = time.perf_counter()
        r = await http.get("/regimes", params={"limit": page, "offset": offset}, headers=headers)
        pages.append(time.perf_counter() - t)
        assert r.status_code == 200, r.text
        items = r.json()["items"]
        total += len(items)
        if len(items) < page:
            break
        offset += page
    return total, time.perf_counter() - t0, pages


async def list_all_temporal(client, query: str) -> tuple[int, float, float]:
    t = time.perf_counter()
    await client.count_workflows(query)
    count_s = time.perf_counter() - t
    t = time.perf_counter()
    n = 0
    async for _ in client.list_workflows(query, page_size=1000):
        n += 1
    return n, time.perf_counter() - t, count_s


async def part2(args, tmp: Path, url: str, m: int, conc: int) -> tuple[dict, dict]:
    with dev_server(tmp) as srv:
        async with project(srv.address, url, tmp) as p:
            client = await temporal_client(srv.address)
            base = {"temporal_server": rss_mib(srv.proc.pid), "worker": rss_mib(p.worker.pid),
                    "api": rss_mib(p.api.pid)}
            sem = asyncio.Semaphore(conc)
            tag = "I" + uuid.uuid4().hex[:1].upper()
            sampler = Sampler(every=0.5)
            for name, pid in (("temporal_server", srv.proc.pid), ("worker", p.worker.pid), ("api", p.api.pid)):
                sampler.watch(name, pid)
            headers = p.auth("reg-1", "regulator")
            async with httpx.AsyncClient(base_url=p.base_url, timeout=300) as http:
                from bench.common import today
                from tests.helpers import placement

                async def place(i: int) -> None:
                    async with sem:
                        r = await http.post("/regimes", json=placement(ods(tag, i), today()), headers=headers)
                        assert r.status_code == 201, r.text

                with sampler:
                    t0 = time.perf_counter()
                    await asyncio.gather(*(place(i) for i in range(m)))
                    place_wall = time.perf_counter() - t0
                    pool = await asyncpg.connect(url, server_settings={"search_path": p.schema})
                    try:
                        await eventually(lambda: pool.fetchval("SELECT count(*) FROM regimes WHERE last_seq > 0"),
                                         until=lambda settled: settled >= m, timeout=600, interval=0.2,
                                         what="the effects of every placement to reach PostgreSQL")
                    finally:
                        await pool.close()
                    settle_wall = time.perf_counter() - t0
                quiet = await asyncio.to_thread(wait_quiet, [srv.proc.pid, p.worker.pid])
                idle = {"temporal_server": rss_mib(srv.proc.pid), "worker": rss_mib(p.worker.pid),
                        "api": rss_mib(p.api.pid)}
                ops = p.auth("ops-1", "operations")
                n_api, api_s, pages = await list_all_api(http, ops)
                n_t, t_s, count_s = await list_all_temporal(client, "WorkflowType = 'RegimeWorkflow' AND "
                                                                    "ExecutionStatus = 'Running'")
    proj = {"regimes": m, "placement_seconds": round(place_wall, 1),
            "placements_per_second": round(m / place_wall, 1),
            "all_effects_in_postgresql_seconds": round(settle_wall, 1), "seconds_until_quiet_after": quiet,
            "rss_mib_before": base, "rss_mib_idle_after": idle, "processes_during_placement": sampler.report(),
            "list_api": {"rows": n_api, "seconds": round(api_s, 2), "pages_of_1000": len(pages),
                         "page_p50_ms": round(statistics.median(pages) * 1000, 1)},
            "list_temporal_visibility": {"rows": n_t, "seconds": round(t_s, 2), "count_seconds": round(count_s, 3)},
            "worker_cache_note": "the worker caches at most 1000 workflows (SDK default max_cached_workflows); "
                                 "idle regimes beyond that cost the worker nothing until a timer or a person wakes "
                                 "them (a replay of their current run)"}
    print(f"idle project: {proj}")
    with dev_server(tmp) as srv2:
        plain = await temporal_client(srv2.address, plain=True)
        with raw_worker(srv2.address, tmp) as (rw, tq):
            await asyncio.sleep(2)
            base = {"temporal_server": rss_mib(srv2.proc.pid), "raw_worker": rss_mib(rw.pid)}
            sem = asyncio.Semaphore(conc)

            async def start(i: int) -> None:
                async with sem:
                    await plain.start_workflow(RawLifecycleWorkflow.run, RawPlan(timers=12, span_seconds=365 * 86400),
                                               id=f"raw-idle-{i}", task_queue=tq)

            t0 = time.perf_counter()
            await asyncio.gather(*(start(i) for i in range(m)))
            start_wall = time.perf_counter() - t0
            quiet = await asyncio.to_thread(wait_quiet, [srv2.proc.pid, rw.pid])
            idle = {"temporal_server": rss_mib(srv2.proc.pid), "raw_worker": rss_mib(rw.pid)}
            n_t, t_s, count_s = await list_all_temporal(plain, "WorkflowType = 'RawLifecycleWorkflow' AND "
                                                               "ExecutionStatus = 'Running'")
    raw = {"workflows": m, "start_seconds": round(start_wall, 1), "starts_per_second": round(m / start_wall, 1),
           "seconds_until_quiet_after": quiet,
           "rss_mib_before": base, "rss_mib_idle_after": idle,
           "list_temporal_visibility": {"rows": n_t, "seconds": round(t_s, 2), "count_seconds": round(count_s, 3)}}
    print(f"idle raw: {raw}")
    return proj, raw


async def run(args) -> None:
    started = time.monotonic()
    n = args.regimes or (3 if args.quick else 1000)
    m = args.idle if args.idle is not None else (20 if args.quick else 10_000)
    months = args.months or (1 if args.quick else 12)
    conc = args.concurrency
    with scratch("sm-bench-scale-") as tmp, contextlib.ExitStack() as es:
        url = args.database_url or es.enter_context(postgres(tmp)).get_uri()
        figures: dict = {}
        ratios: dict = {}
        if n:
            proj, raw = await part1(args, tmp, url, n, conc, months)
            figures["driven"] = {"project": proj, "raw": raw}
            pp, rp = proj["processes"], raw["processes"]
            ratios["regimes_per_minute_vs_raw"] = ratio(proj["regimes_per_minute"], raw["workflows_per_minute"])
            ratios["server_cpu_seconds_vs_raw"] = ratio(pp["temporal_server"]["cpu_seconds"],
                                                        rp["temporal_server"]["cpu_seconds"])
            ratios["worker_cpu_seconds_vs_raw"] = ratio(pp["worker"]["cpu_seconds"], rp["raw_worker"]["cpu_seconds"])
            ratios["worker_peak_rss_vs_raw"] = ratio(pp["worker"]["peak_rss_mib"], rp["raw_worker"]["peak_rss_mib"])
            ratios["server_peak_rss_vs_raw"] = ratio(pp["temporal_server"]["peak_rss_mib"],
                                                     rp["temporal_server"]["peak_rss_mib"])
        if m:
            proj, raw = await part2(args, tmp, url, m, conc)
            figures["idle"] = {"project": proj, "raw": raw}
            ratios["idle_server_rss_vs_raw"] = ratio(proj["rss_mib_idle_after"]["temporal_server"],
                                                     raw["rss_mib_idle_after"]["temporal_server"])
            ratios["idle_worker_rss_vs_raw"] = ratio(proj["rss_mib_idle_after"]["worker"],
                                                     raw["rss_mib_idle_after"]["raw_worker"])
            ratios["placements_per_second_vs_raw_starts"] = ratio(proj["placements_per_second"],
                                                                  raw["starts_per_second"])
            ratios["list_visibility_seconds_vs_raw"] = ratio(proj["list_temporal_visibility"]["seconds"],
                                                             raw["list_temporal_visibility"]["seconds"])
        print(ratios)
        write_results(NAME, args, {"regimes_driven": n, "months": months, "window_days": 14, "concurrency": conc,
                                   "idle_regimes": m, "worker_processes": 1,
                                   "temporal": "dev server, SQLite file, a fresh one per phase"},
                      figures, ratios, started=started)


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--regimes", type=int, help="regimes driven to the re-inspection (default 1000)")
    p.add_argument("--idle", type=int, help="idle regimes (default 10000)")
    p.add_argument("--months", type=int, help="how far to drive them (default 12: the re-inspection)")
    p.add_argument("--concurrency", type=int, default=32, help="regimes acted on at any one moment")
    asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    main()
