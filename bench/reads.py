"""Benchmark 4, reads: p50/p99 of the task inbox, the regimes list and one regime page (API and web view) with
1,000 and 10,000 regimes in PostgreSQL, and the plans PostgreSQL chooses for their queries (EXPLAIN ANALYZE).

One regime is placed through the API (so its page has a live workflow to query); the others are bulk-inserted
with COPY: each with 5 open and 30 closed tasks and 60 audit entries, about a regime-year of rows.
Baselines in the same run: the same SQL sent straight through asyncpg (what HTTP, authentication and JSON add),
and a query on a raw workflow (what the regime page's workflow query costs over the engine's floor).

The API runs with ENVIRONMENT=production: in local mode the web list also describes every listed workflow to
show its virtual clock (see docs/performance.md).

    python -m bench.reads                 # full: 1,000 then 10,000 regimes, 200 requests per endpoint
    python -m bench.reads --quick         # CI: 100 regimes, 10 requests per endpoint
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import secrets
import time
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx

from bench.common import (
    dev_server,
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
from bench.raw import RawUpdateWorkflow
from domain.steps import CATALOGUE, Kind
from tests.helpers import PLAN, placement

NAME = "reads"
INDEX_RE = re.compile(r"(?:Index(?: Only)? Scan(?: Backward)? using|Bitmap Index Scan on) (\S+)")
PHASES = ["in_special_measures"] * 14 + ["extended"] * 3 + ["long_term_solution"] + ["exited"] * 2
OPEN_KINDS = [(k, CATALOGUE[k].role) for k in (Kind.monthly_return, Kind.monthly_return_cosign,
                                               Kind.plan_signoff_regulator, Kind.plan_signoff_commissioner,
                                               Kind.reinspection)]
DONE_KINDS = [Kind.monthly_return, Kind.monthly_return_cosign, Kind.improvement_plan, Kind.plan_review,
              Kind.board_to_board, Kind.letter_to_chair]

# The SQL the routes send (api/routes/tasks.py, api/routes/regimes.py, api/web/data.py, api/web/routes.py),
# with the parameters each user's request produces.
INBOX = ("SELECT t.*, r.trust_name FROM tasks t JOIN regimes r USING (regime_id) WHERE t.state = 'open' AND "
         "({mine}) ORDER BY t.due, t.workflow_id, t.step_id LIMIT {limit}")
QUERIES = {
    "inbox_improvement_director": (INBOX.format(mine="t.assignee = $1 OR (t.role = $2 AND t.ods_code = ANY($3))",
                                                limit="$4"), lambda ctx: ["id-1", "improvement_director",
                                                                          ctx["id_trusts"], 51]),
    "inbox_regulator": (INBOX.format(mine="t.assignee = $1 OR t.role = $2", limit="$3"),
                        lambda ctx: ["reg-1", "regulator", 51]),
    "inbox_operations": (INBOX.format(mine="t.assignee = $1 OR TRUE", limit="$2"), lambda ctx: ["ops-1", 51]),
    "regimes_list_api": ("SELECT * FROM regimes WHERE TRUE ORDER BY next_due NULLS LAST, regime_id "
                         "LIMIT $1 OFFSET $2", lambda ctx: [100, 0]),
    "regimes_list_api_trust_scoped": ("SELECT * FROM regimes WHERE ods_code = ANY($1) ORDER BY next_due NULLS LAST, "
                                      "regime_id LIMIT $2 OFFSET $3", lambda ctx: [ctx["id_trusts"], 100, 0]),
    # The web list (api/web/data.py): the count, then one page of 50 in the default order (next deadline).
    "regimes_list_web_count": ("SELECT count(*) FROM regimes WHERE TRUE", lambda ctx: []),
    "regimes_list_web": ('SELECT * FROM regimes WHERE TRUE ORDER BY next_due ASC NULLS LAST, lower(trust_name) '
                         'COLLATE "C" ASC NULLS LAST, regime_id ASC NULLS LAST LIMIT $1 OFFSET $2',
                         lambda ctx: [50, 0]),
    "regime_row": ("SELECT * FROM regimes WHERE regime_id = $1", lambda ctx: [ctx["real_id"]]),
    "decision_task_lookup": ("SELECT role, subject, workflow_id FROM tasks WHERE regime_id=$1 AND step_id=$2",
                             lambda ctx: [ctx["real_id"], Kind.plan_review]),
    "regime_page_audit": ("SELECT * FROM audit_log WHERE regime_id = $1 ORDER BY id", lambda ctx: [ctx["real_id"]]),
}


async def bulk_insert(conn: asyncpg.Connection, start: int, stop: int) -> None:
    rnd = random.Random(start)
    now = datetime.now(UTC)
    day0 = today()
    regimes, tasks, audit = [], [], []
    for i in range(start, stop):
        ods = f"Q{i:05d}"
        entry = day0 - timedelta(days=rnd.randint(30, 1100))
        rid = f"regime-{ods}-{entry.isoformat()}"
        phase = rnd.choice(PHASES)
        due = day0 + timedelta(days=rnd.randint(-40, 60))
        overdue = rnd.randint(1, 3) if due < day0 else 0
        regimes.append((rid, rid, ods, f"{ods} Hospitals NHS Trust", rnd.random() < 0.3, entry, phase, 4, due,
                        overdue, rnd.randint(0, 4) if overdue else 0, 0, int(phase == "extended"), None, False,
                        phase == "exited", None, 200, now, now))
        for k, (kind, role) in enumerate(OPEN_KINDS):
            d = due + timedelta(days=7 * k)
            tasks.append((rid, f"{kind}-{k}", rid, ods, kind, kind.replace("_", " "), role, None, "{}", d, False,
                          "open", None, None, now, None, 100 + k))
        for k in range(30):
            kind = DONE_KINDS[k % len(DONE_KINDS)]
            d = entry + timedelta(days=12 * k)
            tasks.append((rid, f"{kind}-done-{k}", rid, ods, kind, kind.replace("_", " "), "trust", None, "{}", d,
                          False, "done", "submit", "trust-1", now, now, k + 1))
        for k in range(60):
            audit.append((rid, rid, k + 1, "step_opened", "system", "system", None, None, "due", "{}", None, now,
                          "0" * 64, uuid.uuid4().hex * 2, "hmac-sha256"))
    await conn.copy_records_to_table("regimes", records=regimes, columns=[
        "regime_id", "workflow_id", "ods_code", "trust_name", "multi_site", "entry_date", "phase", "segment",
        "next_due", "overdue", "escalation_level", "buddy_count", "extensions", "exit_date", "sos_letter", "closed",
        "previous_regime_id", "last_seq", "created_at", "updated_at"])
    await conn.copy_records_to_table("tasks", records=tasks, columns=[
        "workflow_id", "step_id", "regime_id", "ods_code", "kind", "title", "role", "assignee", "subject", "due",
        "paused", "state", "outcome", "closed_by", "opened_at", "closed_at", "last_seq"])
    await conn.copy_records_to_table("audit_log", records=audit, columns=[
        "regime_id", "workflow_id", "seq", "event", "actor", "role", "step_id", "step_kind", "reason", "detail",
        "request_id", "at", "prev_hash", "hash", "hash_alg"])
    await conn.execute("ANALYZE regimes; ANALYZE tasks; ANALYZE audit_log")


async def explain(conn: asyncpg.Connection, ctx: dict) -> dict[str, dict]:
    out = {}
    for name, (sql, params) in QUERIES.items():
        rows = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql, *params(ctx))
        plan = [r[0] for r in rows]
        indexes = sorted({m.group(1) for ln in plan for m in [INDEX_RE.search(ln)] if m})
        scans = [ln.strip() for ln in plan if "Scan" in ln]
        out[name] = {"sql": sql, "indexes_used": indexes, "seq_scans": [s for s in scans if "Seq Scan" in s],
                     "plan": plan}
    return out


async def measure(http: httpx.AsyncClient, conn: asyncpg.Connection, raw_handle, ctx: dict, n: int) -> dict:
    h = ctx["headers"]
    endpoints = {
        "inbox_improvement_director": ("/tasks", h["id"]),
        "inbox_regulator": ("/tasks", h["regulator"]),
        "inbox_operations": ("/tasks", h["operations"]),
        "regimes_list_api": ("/regimes", h["operations"]),
        "regimes_list_api_trust_scoped": ("/regimes", h["id"]),
        "regime_page_api": (f"/regimes/{ctx['real_id']}", h["operations"]),
        "regimes_list_web": ("/web/regimes", h["operations"]),
        "regime_page_web": (f"/web/regimes/{ctx['real_id']}", h["operations"]),
    }
    times: dict[str, list[float]] = {k: [] for k in endpoints}
    sql_times: dict[str, list[float]] = {k: [] for k in QUERIES}
    raw_query: list[float] = []
    for i in range(n + 2):
        for name, (path, headers) in endpoints.items():
            t = time.perf_counter()
            r = await http.get(path, headers=headers)
            dt = time.perf_counter() - t
            assert r.status_code == 200, (name, r.status_code, r.text[:300])
            if i >= 2:
                times[name].append(dt)
        for name, (sql, params) in QUERIES.items():
            t = time.perf_counter()
            await conn.fetch(sql, *params(ctx))
            if i >= 2:
                sql_times[name].append(time.perf_counter() - t)
        t = time.perf_counter()
        await raw_handle.query(RawUpdateWorkflow.get)
        if i >= 2:
            raw_query.append(time.perf_counter() - t)
    api = {k: summary_ms(v) for k, v in times.items()}
    sql = {k: summary_ms(v) for k, v in sql_times.items()}
    raw = summary_ms(raw_query)
    ratios = {}
    for k in endpoints:
        if k in sql:
            ratios[f"{k}_vs_sql"] = {"p50": ratio(api[k]["p50_ms"], sql[k]["p50_ms"]),
                                     "p99": ratio(api[k]["p99_ms"], sql[k]["p99_ms"])}
    for k in ("regime_page_api", "regime_page_web"):
        ratios[f"{k}_vs_raw_workflow_query"] = {"p50": ratio(api[k]["p50_ms"], raw["p50_ms"]),
                                                "p99": ratio(api[k]["p99_ms"], raw["p99_ms"])}
    return {"http": api, "sql_direct": sql, "raw_workflow_query": raw, "ratios": ratios}


async def run(args) -> None:
    started = time.monotonic()
    sizes = [100] if args.quick else [1000, 10_000]
    n = 10 if args.quick else args.requests
    secret = "bench-" + uuid.uuid4().hex
    with scratch("sm-bench-reads-") as tmp, contextlib.ExitStack() as es:
        address = args.temporal_address or es.enter_context(dev_server(tmp)).address
        url = args.database_url or es.enter_context(postgres(tmp)).get_uri()
        async with project(address, url, tmp, extra_env={"ENVIRONMENT": "production", "AUTH_JWT_SECRET": secret,
                                                          "AUDIT_HMAC_KEY": secrets.token_hex(32)}) as p:
            rw, raw_tq = es.enter_context(raw_worker(address, tmp))
            plain = await temporal_client(address, plain=True)
            raw_handle = await plain.start_workflow(RawUpdateWorkflow.run, id=f"raw-read-{uuid.uuid4().hex[:8]}",
                                                    task_queue=raw_tq)
            real_ods = "RREAL"
            id_trusts = [real_ods, "Q00001", "Q00002"]
            headers = {"id": p.auth("id-1", "improvement_director", trusts=id_trusts),
                       "regulator": p.auth("reg-1", "regulator"), "operations": p.auth("ops-1", "operations"),
                       "trust": p.auth("trust-1", "trust", trusts=[real_ods])}
            async with httpx.AsyncClient(base_url=p.base_url, timeout=120) as http:
                r = await http.post("/regimes", json=placement(real_ods, today()), headers=headers["regulator"])
                assert r.status_code == 201, r.text
                real_id = r.json()["regime_id"]
                r = await http.post(f"/regimes/{real_id}/steps/{Kind.improvement_plan}/decisions",
                                    json={"action": "submit", "payload": PLAN}, headers=headers["trust"])
                assert r.status_code == 200, r.text
                ctx = {"real_id": real_id, "id_trusts": id_trusts, "headers": headers}
                # One connection loads (COPY, jsonb as text); the other reads as the API's pool does.
                loader = await asyncpg.connect(url, server_settings={"search_path": p.schema})
                conn = await asyncpg.connect(url, server_settings={"search_path": p.schema})
                from infra.db import _json_dumps, _json_loads

                await conn.set_type_codec("jsonb", encoder=_json_dumps, decoder=_json_loads, schema="pg_catalog")
                figures: dict = {}
                ratios: dict = {}
                have = 1
                try:
                    for size in sizes:
                        t = time.perf_counter()
                        await bulk_insert(loader, have, size)
                        insert_s = time.perf_counter() - t
                        have = size
                        counts = {tbl: await conn.fetchval(f"SELECT count(*) FROM {tbl}")
                                  for tbl in ("regimes", "tasks", "audit_log")}
                        m = await measure(http, conn, raw_handle, ctx, n)
                        plans = await explain(conn, ctx)
                        figures[str(size)] = {"rows": counts, "bulk_insert_seconds": round(insert_s, 1), **m,
                                              "explain": plans}
                        ratios[str(size)] = m["ratios"]
                        print(f"--- {size} regimes ({counts})")
                        for k, v in m["http"].items():
                            print(f"  {k:32s} p50 {v['p50_ms']:7.1f}  p99 {v['p99_ms']:7.1f} ms")
                        for k, v in plans.items():
                            print(f"  plan {k:30s} indexes {v['indexes_used']} seq scans {v['seq_scans']}")
                finally:
                    await conn.close()
                    await loader.close()
            await raw_handle.signal(RawUpdateWorkflow.finish)
        write_results(NAME, args, {"sizes": sizes, "requests_per_endpoint": n,
                                   "rows_per_bulk_regime": {"open_tasks": 5, "closed_tasks": 30, "audit": 60},
                                   "api_environment": "production (no per-row describe in the web list)"},
                      figures, ratios, started=started)


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=200)
    asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    main()

