"""`regime demo`: seed the running stack with a few regimes at different stages, for the operations view.

Four trusts enter special measures today and each regime's clock is moved on with the dev server's
per-workflow time skipping (`make run` starts it with the flags), while people act through the HTTP API
with minted tokens, exactly as `regime simulate` does (the demo is four built-in scenarios for it):

  RDM01  on time     every step on time, a buddy partnership paid quarterly       (about month 7)
  RDM02  escalated   the improvement plan never arrives; the ladder climbs          (day 60)
  RDM03  extended    not improved at re-inspection, extended by 6 months            (about month 14)
  RDM04  exited      improved at re-inspection, out of special measures             (about month 13)

Each regime then sits at its own virtual date, ahead of the wall clock; the web view judges its
deadlines by that date. Running the command again skips trusts already seeded.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

import typer

DEMO_SCENARIOS: dict[str, str] = {
    "RDM01": """
name: Demo - on time, with a buddy paid quarterly
trust: {ods_code: RDM01, name: Ashbourne and District NHS Trust}
entry: {ratings: entry_inadequate}
steps:
  - day: 14
    who: regulator
    do: add_buddy
    payload:
      buddy: {ods_code: RBD01, name: Riverside University Hospitals NHS Foundation Trust}
      agreement_in_principle:
        agreed_level_pence: 30000000
        terms_of_reference: Board mentoring, governance reviews and secondments by agreement
      support_plan:
        workstreams:
          - {id: governance, name: Board governance, activities: [board mentoring], projected_cost_pence: 20000000}
          - {id: safety, name: Patient safety, activities: [ward safety huddles], projected_cost_pence: 10000000}
      quarterly_pence: 4000000
until_day: 215
""",
    "RDM02": """
name: Demo - escalated, the improvement plan never arrives
trust: {ods_code: RDM02, name: Bexley Vale Hospitals NHS Trust}
entry: {ratings: entry_inadequate}
routine: {skip: [improvement_plan]}
until_day: 60
""",
    "RDM03": """
name: Demo - extended after the first re-inspection
trust: {ods_code: RDM03, name: Coldharbour University Hospitals NHS Foundation Trust, multi_site: true}
entry:
  ratings: {safe: inadequate, effective: inadequate, caring: requires_improvement,
            responsive: requires_improvement, well_led: inadequate, overall: inadequate}
steps:
  - {day: 318, who: cqc, do: announce_reinspection, payload: {inspection_date: day 332}}
  - day: 352
    who: cqc
    do: publish_inspection
    payload: {reference: INS-RDM03-2, ratings: still_inadequate, inspection_end: day 334, multi_site: true}
  - {day: 356, who: cqc, do: recommend_remain, step: cqc_recommendation,
     comment: Leadership not yet effective; well-led still inadequate}
  - {day: 360, who: regulator, do: extend, step: regulator_decision, payload: {months: 6},
     comment: Six months to embed the new executive team}
until_day: 420
""",
    "RDM04": """
name: Demo - exited at the first re-inspection
trust: {ods_code: RDM04, name: Deepdale and Riverside NHS Trust}
entry: {ratings: entry_inadequate}
steps:
  - {day: 320, who: cqc, do: announce_reinspection, payload: {inspection_date: day 334}}
  - {day: 355, who: cqc, do: publish_inspection, payload: {reference: INS-RDM04-2, ratings: improved, inspection_end: day 336}}
  - {day: 358, who: cqc, do: recommend_exit, step: cqc_recommendation, comment: Sustained improvement in safety and leadership}
  - {day: 362, who: regulator, do: exit, step: regulator_decision,
     payload: {continued_support: [improvement director to the end of the quarter]}, comment: Exit on CQC's recommendation}
until_day: 395
""",
}


async def seed(stack: Any, *, only: list[str] | None = None, parallel: int = 2,
               progress=print) -> list[dict[str, Any]]:
    """Run the demo scenarios on a stack (`tools.stack.ServiceStack` or one connected to a running service)."""
    from tools.scenario import load
    from tools.simulate import Simulation

    wanted = [o for o in DEMO_SCENARIOS if not only or o in only]
    todo = []
    for ods in wanted:
        r = await stack.http.get("/regimes", params={"ods_code": ods}, headers=stack.auth("demo-ops", "operations"))
        r.raise_for_status()
        live = [i for i in r.json()["items"] if i["phase"] in ("in_special_measures", "extended",
                                                               "long_term_solution")]
        if live:
            progress(f"{ods}: already seeded ({live[0]['regime_id']}), skipped")
        else:
            todo.append(ods)
    with tempfile.TemporaryDirectory(prefix="regime-demo-") as d:
        scenarios = []
        for ods in todo:
            path = Path(d) / f"{ods}.yaml"
            path.write_text(DEMO_SCENARIOS[ods])
            scenarios.append(load(path))
        sem = asyncio.Semaphore(max(1, parallel))

        async def one(sc: Any) -> dict[str, Any]:
            async with sem:
                return await Simulation(stack, sc, progress=progress).run()

        return list(await asyncio.gather(*(one(sc) for sc in scenarios)))


async def _connect_running(api_url: str | None):
    """A `tools.stack.ServiceStack` for the service that `make run` started (settings from the environment)."""
    import httpx
    from temporalio.testing import TimeSkipper, TimeSkippingConfig

    from infra.clients import connect_temporal
    from infra.db import create_pool, database_url
    from settings import get_settings
    from tools.stack import ServiceStack

    s = get_settings()
    base = (api_url or s.public_url or f"http://{s.api_host}:{s.api_port}").rstrip("/")
    http = httpx.AsyncClient(base_url=base, timeout=60)
    try:
        (await http.get("/health/live")).raise_for_status()
    except httpx.HTTPError as e:
        await http.aclose()
        raise SystemExit(f"the API does not answer at {base} ({e}); start the service with `make run` first") from None
    client = await connect_temporal(s.temporal_target, s.temporal_namespace, attempts=5)
    skipper = TimeSkipper(client, config=TimeSkippingConfig(enabled=False, disable_propagation=True,
                                                            max_session_skip_count=1_000_000))
    pool = await create_pool(database_url(s), s.database_schema, role=s.database_service_role)
    return ServiceStack(s, client, skipper, pool, http, base, s.database_schema, s.temporal_task_queue, None)  # type: ignore[arg-type]


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(
        api_url: str | None = typer.Option(None, help="the running API (default: PUBLIC_URL or API_HOST:API_PORT)"),
        only: list[str] = typer.Option([], "--only", help="seed only this trust (ODS code); repeatable"),
        parallel: int = typer.Option(2, help="regimes driven at once"),
    ) -> None:
        """Seed the running service with demo regimes (on time, escalated, extended, exited) using time skipping."""

        async def run() -> list[dict[str, Any]]:
            stack = await _connect_running(api_url)
            try:
                return await seed(stack, only=only or None, parallel=parallel,
                                  progress=lambda m: typer.echo(m, err=True))
            finally:
                await stack.http.aclose()
                await stack.pool.close()

        results = asyncio.run(run())
        from settings import get_settings

        s = get_settings()
        base = (api_url or s.public_url or f"http://{s.api_host}:{s.api_port}").rstrip("/")
        for res in results:
            for reg in res["regimes"]:
                f = reg["final"]
                typer.echo(f"{reg['regime_id']}: {f['phase']} on day {f['day']} ({f['date']})")
        typer.echo(f"Open {base}/web/regimes and sign in with a token from "
                   "`regime token ops-1 --role operations`.")
