"""State size: how big the state a regime hands from run to run gets over years, and its history per year.

One regime driven through the HTTP API under time skipping, everything done on time by its parties, except
that each month the trust submits its improvement plan and the improvement director returns it (a plan of
`--actions` actions at every field limit). The regime continues as new every `--events` history events.
Figures: the bytes of state each run started with (the continue-as-new input; Temporal refuses one over
2 MiB), the state's size at the end, runs, and history events per regime-year. Run it from a checkout of
the code to measure (it uses only the HTTP API and the test driver), e.g. before and after a change:

    python -m bench.state_size                       # 48 months, 20-action plans
    python -m bench.state_size --months 120 --actions 500
    python -m bench.state_size --quick               # CI: 4 months
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime

from bench.common import parser, write_results
from domain.dates import london_date
from domain.steps import Kind
from tools.stack import embedded_services

NAME = "state_size"


def plan(n: int) -> dict:
    return {"actions": [{"category": "must_do" if i % 2 else "should_do", "description": f"{i:04d} " + "d" * 1995,
                         "owner": "o" * 200, "metric": "m" * 500} for i in range(n)]}


async def runs_and_inputs(client, workflow_id: str) -> list[tuple[int, int]]:
    out, run_id = [], None
    while True:
        h = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        started = h.events[0].workflow_execution_started_event_attributes
        out.append((len(h.events), sum(len(p.data) for p in started.input.payloads)))
        run_id = started.continued_execution_run_id
        if not run_id:
            return out[::-1]


async def run(args) -> None:
    from tests.driver import Regime
    from tests.harness import run_stack  # its fast_forward moves a regime by days, as the driver expects
    from tests.helpers import placement
    from workflows.regime import RegimeWorkflow

    started = time.monotonic()
    months = 4 if args.quick else args.months
    body = json.dumps({"action": "submit", "payload": plan(args.actions)}).encode()
    today = london_date(datetime.now(UTC))
    with embedded_services() as (address, url):
        address = args.temporal_address or address
        url = args.database_url or url
        async with run_stack(address, url) as stack:
            r = await stack.http.post("/regimes", headers=stack.auth("admin-1", "admin", "regulator"),
                                      json=placement("SSZ01", today, continue_as_new_after_events=args.events))
            assert r.status_code == 201, r.text
            reg = Regime(stack, "SSZ01", r.json()["regime_id"], today)
            broke = None
            for month in range(months):
                try:
                    st = await reg.state()
                    [step] = [s for s in st["open_steps"] if s["kind"] == Kind.improvement_plan]
                    r = await stack.http.post(f"/regimes/{reg.id}/steps/{step['id']}/decisions", content=body,
                                              headers={**reg.users["trust"], "Content-Type": "application/json"})
                    assert r.status_code == 200, f"{r.status_code} {r.text[:300]}"
                    [review] = [s for s in (await reg.state())["open_steps"] if s["kind"] == Kind.plan_review]
                    await reg.act(review["id"], "return", comment=f"month {month}: not measurable")
                    await reg.advance(30, step=15, skip=(Kind.improvement_plan, Kind.plan_review))
                except (AssertionError, Exception) as e:  # noqa: BLE001 - the regime broke: that is the figure
                    broke = f"month {month} (day {reg.day}): {type(e).__name__}: {str(e)[:300]}"
                    break
            runs = await runs_and_inputs(stack.client, reg.id)
            try:
                final = len((await stack.handle(reg.id).query(RegimeWorkflow.get_state)).model_dump_json())
            except Exception as e:  # noqa: BLE001
                final = f"unreadable: {e}"
            years = max(reg.day, 1) / 365.25
    carried = [b for _, b in runs]
    figures = {
        "months_driven": round(reg.day / 30.44, 1), "runs": len(runs), "plan_request_bytes": len(body),
        "state_carried_bytes": {"first_runs": carried[1:4], "largest": max(carried), "last": carried[-1]},
        "state_at_end_bytes": final,
        "history_events": sum(e for e, _ in runs), "events_per_regime_year": round(sum(e for e, _ in runs) / years),
        "broke": broke,
    }
    print(json.dumps(figures, indent=2))
    write_results(NAME, args, {"months": months, "actions": args.actions, "continue_as_new_after_events": args.events},
                  figures, {"largest_state_over_2MiB": round(max(carried) / 2**21, 3)}, started=started)


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--months", type=int, default=48)
    p.add_argument("--actions", type=int, default=20)
    p.add_argument("--events", type=int, default=600, help="continue_as_new_after_events of the regime")
    asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    main()
