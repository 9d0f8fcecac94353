"""Years-long regimes: continue-as-new keeps the whole state and history stays bounded."""

from __future__ import annotations

import time

from tests.driver import Regime
from tests.helpers import IMPROVED
from tools.polling import eventually

STILL_INADEQUATE = dict(IMPROVED, well_led="inadequate", overall="inadequate")


async def all_runs_events(stack, workflow_id: str) -> tuple[int, int]:
    """(runs, total events) over the whole continue-as-new chain."""
    # Walked back from the latest run through each run's predecessor, as recorded in its history
    # (visibility lists runs too, but is updated asynchronously and can lag a fresh run).
    runs = events = 0
    run_id: str | None = None
    while True:
        h = await stack.client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        runs += 1
        events += len(h.events)
        run_id = h.events[0].workflow_execution_started_event_attributes.continued_execution_run_id
        if not run_id:
            break
    return runs, events


async def test_four_year_regime_continues_as_new_and_keeps_state(stack):
    started = time.monotonic()
    r = await stack.http.post("/regimes", headers=stack.auth("admin-1", "admin", "regulator"), json={
        "trust": {"ods_code": "RLC", "name": "Long Stay NHS Trust"}, "entry_date": Regime_today().isoformat(),
        "ratings": {"safe": "inadequate", "effective": "inadequate", "caring": "good",
                    "responsive": "requires_improvement", "well_led": "inadequate", "overall": "inadequate"},
        "continue_as_new_after_events": 600})
    assert r.status_code == 201, r.text
    reg = Regime(stack, "RLC", r.json()["regime_id"], Regime_today())
    await reg.advance(340)
    await reg.inspect("INS-RLC-2", STILL_INADEQUATE)
    await reg.act("cqc_recommendation", "recommend_remain", comment="not improved")
    await reg.act("regulator_decision", "extend", {"months": 6}, comment="extension")
    await reg.advance(175)
    await reg.inspect("INS-RLC-3", STILL_INADEQUATE)
    await reg.act("cqc_recommendation-2", "recommend_remain", comment="not improved")
    await reg.act("regulator_decision-2", "refer_to_secretary_of_state", comment="no sufficient improvement")
    await reg.act("secretary_of_state_letter", "send", {"sent_on": reg.today.isoformat()})
    for n in (4, 5, 6, 7, 8):  # long-term solution: re-inspected and extended again and again
        await reg.advance(170)
        await reg.inspect(f"INS-RLC-{n}", STILL_INADEQUATE)
        await reg.act(f"cqc_recommendation-{n - 1}", "recommend_remain", comment="still not")
        await reg.act(f"regulator_decision-{n - 1}", "extend", {"months": 6}, comment="further extension")
    await reg.advance(170)
    await reg.inspect("INS-RLC-9", IMPROVED)
    await reg.act("cqc_recommendation-8", "recommend_exit", comment="improved at last")
    await reg.act("regulator_decision-8", "exit", comment="exit")

    async def state_and_chain() -> tuple[dict, int, int]:
        # Read together until they agree: the exit's events can take the history over its length limit, and the
        # regime then continues as new just after the decision returns (CI8 read the state of run 9, then
        # counted run 10).
        st = await reg.state()
        return (st, *await all_runs_events(stack, reg.id))

    st, runs, events = await eventually(state_and_chain, until=lambda x: x[1] == x[0]["runs"],
                                        what="the state and the run chain to agree", timeout=20, interval=0.2)
    months = (reg.today - reg.start).days / 30.44
    assert months > 48
    assert st["runs"] > 1, "the regime never continued as new"
    assert st["phase"] == "exited" and len(st["extensions"]) == 6 and st["sos_letter"]["sent_on"]
    assert len(st["inspections"]) == 8
    monthly = [s for s in st["steps"].values() if s["kind"] == "monthly_return"]
    assert len(monthly) >= 45 and all(s["status"] != "open" for s in monthly)
    per_year = events / (months / 12)
    print(f"\n4-year regime: {months:.1f} months, {runs} runs, {events} events, {per_year:.0f} events/year, "
          f"{time.monotonic() - started:.1f}s wall")
    assert per_year < 5000
    # Nothing was written twice across runs, and the audit chain is intact.
    await stack.settle(reg.id)
    dup = await stack.pool.fetchval("SELECT count(*) FROM (SELECT event, step_id, at FROM audit_log "
                                    "WHERE regime_id=$1 GROUP BY 1,2,3 HAVING count(*) > 1) d", reg.id)
    assert dup == 0
    v = (await stack.http.get(f"/regimes/{reg.id}/audit/verify", headers=reg.users["operations"])).json()
    assert v["intact"] and v["entries"] > 300
    desc = await stack.handle(reg.id).describe()
    assert desc.raw_description.workflow_execution_info.history_length < 2000


def Regime_today():
    from datetime import UTC, datetime

    from domain.dates import london_date

    return london_date(datetime.now(UTC))
