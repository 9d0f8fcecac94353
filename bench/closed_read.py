"""Reading a closed regime: the API's GET /regimes/{id} against the two ways of getting its state.

A closed regime's workflow has completed. Asking it by query makes a worker replay its whole history on
every read; its final state is also the workflow's result, which the server returns from the last event.
The API now reads closed regimes from the result (api/routes/regimes.py, live_state). This measures,
on one completed 18-month regime (scenarios/exit_on_time.yaml: exit, then the post-exit board-to-board):

- query: `handle.query(get_state)` straight to Temporal (the baseline: what the API did before);
- result: `handle.result()` straight to Temporal;
- api: `GET /regimes/{id}` through HTTP, as a user reads it.

    python -m bench.closed_read            # 50 reads each
    python -m bench.closed_read --quick    # 5 reads each
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

from bench.common import dev_server, parser, postgres, ratio, scratch, summary_ms, write_results

ROOT = Path(__file__).resolve().parent.parent


async def run(args) -> None:
    from tools.simulate import simulate_files
    from tools.stack import run_stack
    from workflows.regime import RegimeWorkflow

    started = time.monotonic()
    reads = 5 if args.quick else 50
    with scratch("bench-closed-") as tmp, contextlib.ExitStack() as servers:
        address = args.temporal_address or servers.enter_context(dev_server(tmp)).address
        database = args.database_url or servers.enter_context(postgres(tmp)).get_uri()
        async with run_stack(address, database) as stack:
            [res] = await simulate_files([ROOT / "scenarios" / "exit_on_time.yaml"], stack=stack, ods="RBCR1")
            assert res["ok"], res
            regime_id = res["regimes"][0]["regime_id"]
            handle = stack.client.get_workflow_handle_for(RegimeWorkflow.run, regime_id)
            desc = await handle.describe()
            assert desc.status is not None and desc.status.name == "COMPLETED", desc.status
            ops = stack.auth("ops-1", "operations")

            async def api() -> None:
                r = await stack.http.get(f"/regimes/{regime_id}", headers=ops)
                assert r.status_code == 200, r.text

            paths = {"query": lambda: handle.query(RegimeWorkflow.get_state), "result": handle.result, "api": api}
            # The same state both ways: the result is what the query answers.
            q, r = await handle.query(RegimeWorkflow.get_state), await handle.result()
            assert q.model_dump(mode="json") == r.model_dump(mode="json")
            times: dict[str, list[float]] = {k: [] for k in paths}
            for _ in range(reads):  # interleaved, so load on the machine hits every path alike
                for name, fn in paths.items():
                    t = time.perf_counter()
                    await fn()
                    times[name].append(time.perf_counter() - t)
    figures = {name: summary_ms(v) for name, v in times.items()}
    figures["history_events"] = desc.history_length
    p50 = {k: figures[k]["p50_ms"] for k in paths}
    write_results("closed_read", args, {"reads_each": reads, "scenario": "scenarios/exit_on_time.yaml"}, figures,
                  {"query_over_result_p50": ratio(p50["query"], p50["result"]),
                   "query_over_api_p50": ratio(p50["query"], p50["api"])},
                  notes=["query is the baseline: the API's read of a closed regime before it used the result"],
                  started=started)
    for k in paths:
        print(f"{k:7s} p50 {figures[k]['p50_ms']:.1f} ms  p99 {figures[k]['p99_ms']:.1f} ms")


def main() -> None:
    args = parser("Reading a closed regime: query (replay) against the workflow result").parse_args()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
