"""A regime's state stays within its bound however long it runs and whatever parties send (issue 12).

Before: every step kept its data for ever, a 500-action plan (about 1.4 MB) sat in the state, and a plan
returned and resubmitted once made the state too large to continue as new (TMPRL1103): the regime was
wedged. Now documents are stored in PostgreSQL and the state carries their reference, closed steps leave
the state at continue-as-new (archived, and merged back into every read), and the state is checked
against STATE_BOUND_BYTES before each continue-as-new.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

from annotated_types import MaxLen
from pydantic import StringConstraints

from api.routes.regimes.service import live_state
from domain.dates import london_date
from domain.documents import canonical
from domain.steps import ImprovementPlanPayload, PlanAction
from tests.driver import Regime
from tests.helpers import placement
from workflows.engine import STATE_BOUND_BYTES

YEARS = 10


def today():
    return london_date(datetime.now(UTC))


class Lean(Regime):
    """Finds its open steps in the workflow's own (bounded) state, not in the whole regime the API reads:
    ten years of archived steps merged into every read would make the test slow, not the regime."""

    async def state(self) -> dict:
        st = (await live_state(self.stack.client, self.id)).model_dump(mode="json")
        st["open_steps"] = [s for s in st["steps"].values() if s["status"] == "open"]
        return st


def max_len(model, field: str) -> int:
    return next(m.max_length for m in model.model_fields[field].metadata
                if isinstance(m, MaxLen | StringConstraints) and m.max_length is not None)


def largest_plan() -> dict:
    """The largest improvement plan the rules allow: the most actions, every text at its limit."""
    n = max_len(ImprovementPlanPayload, "actions")
    return {"actions": [{"category": "must_do" if i % 2 else "should_do",
                         "description": f"{i:04d} " + "d" * (max_len(PlanAction, "description") - 5),
                         "owner": "o" * max_len(PlanAction, "owner"),
                         "metric": "m" * max_len(PlanAction, "metric")} for i in range(n)]}


async def runs_and_inputs(stack, workflow_id: str) -> list[tuple[int, int]]:
    """(history events, bytes of the state it started with) for every run of the chain, oldest first."""
    out = []
    run_id: str | None = None
    while True:
        h = await stack.client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        started = h.events[0].workflow_execution_started_event_attributes
        out.append((len(h.events), sum(len(p.data) for p in started.input.payloads)))
        run_id = started.continued_execution_run_id
        if not run_id:
            return out[::-1]


async def test_ten_years_of_largest_plans_returned_monthly_stay_within_the_bound(stack):
    plan = largest_plan()
    body = json.dumps({"action": "submit", "payload": plan}).encode()
    assert len(body) > 1_000_000, len(body)  # the plan alone would have filled half of Temporal's 2 MiB
    sha = hashlib.sha256(canonical(ImprovementPlanPayload.model_validate(plan).model_dump(mode="json"))).hexdigest()

    r = await stack.http.post("/regimes", headers=stack.auth("admin-1", "admin", "regulator"),
                              json=placement("RBS1", today(), continue_as_new_after_events=600))
    assert r.status_code == 201, r.text
    reg = Lean(stack, "RBS1", r.json()["regime_id"], today())
    trust, director = reg.users["trust"], reg.users["improvement_director"]
    for month in range(12 * YEARS):
        st = await reg.state()
        [step] = [s for s in st["open_steps"] if s["kind"] == "improvement_plan"]
        r = await stack.http.post(f"/regimes/{reg.id}/steps/{step['id']}/decisions", content=body,
                                  headers={**trust, "Content-Type": "application/json"})
        assert r.status_code == 200, r.text[:500]
        assert r.json()["step"]["data"]["document"]["sha256"] == sha
        [review] = [s for s in (await reg.state())["open_steps"] if s["kind"] == "plan_review"]
        r = await stack.http.post(f"/regimes/{reg.id}/steps/{review['id']}/decisions", headers=director,
                                  json={"action": "return", "comment": f"month {month}: metrics not measurable"})
        assert r.status_code == 200, r.text[:500]
        # Everything else is done on time by its party; a month passes.
        await reg.advance(30, step=15, skip=("improvement_plan", "plan_review"))

    runs = await runs_and_inputs(stack, reg.id)
    years = reg.day / 365.25
    events = sum(e for e, _ in runs)
    largest = max(b for _, b in runs)
    print(f"\n{12 * YEARS} months ({years:.1f} years), plan of {len(body):,} bytes returned monthly: {len(runs)} runs, "
          f"{events / years:,.0f} events a year, largest state carried {largest:,} bytes")
    assert len(runs) > 10 and largest <= STATE_BOUND_BYTES
    # What still grows is the list of archived step ids (never reused): a few KB a year, so the bound is
    # decades away even for this regime (docs/limits.md).
    growth = (runs[-1][1] - runs[1][1]) / years
    print(f"state growth {growth:,.0f} bytes a year")
    assert growth < 4096
    # The regime still decides, escalates and reads whole (the API merges what was archived): every plan
    # version, each by reference.
    st = await Regime.state(reg)
    plans = [s for s in st["steps"].values() if s["kind"] == "improvement_plan" and s["status"] == "done"]
    assert len(plans) == 12 * YEARS and all(s["data"]["document"]["sha256"] == sha for s in plans)
    assert st["phase"] == "in_special_measures"
    assert [e["rung"] for e in st["escalations"] if e["step_id"] == "reinspection-1"] == [
        "reminder", "breach", "dd_escalation", "executive_escalation"]
    doc = await stack.http.get(f"/regimes/{reg.id}/documents/{sha}", headers=reg.users["operations"])
    assert doc.status_code == 200 and hashlib.sha256(doc.content).hexdigest() == sha
    assert len(doc.json()["actions"]) == len(plan["actions"])
    v = (await stack.http.get(f"/regimes/{reg.id}/audit/verify", headers=reg.users["operations"])).json()
    assert v["intact"]
    audited = await stack.pool.fetch("SELECT detail FROM audit_log WHERE regime_id = $1 AND event = "
                                     "'improvement_plan.submit'", reg.id)
    assert len(audited) == 12 * YEARS and {a["detail"]["payload"]["document"]["sha256"] for a in audited} == {sha}


def markers(h) -> set[str]:
    out = set()
    for e in h.events:
        a = e.marker_recorded_event_attributes
        if e.HasField("marker_recorded_event_attributes") and a.marker_name == "core_patch":
            out |= {json.loads(p.data)["id"] for p in a.details["patch-data"].payloads}
    return out


async def test_archiving_is_a_patch_that_regimes_recorded_before_it_replay_through():
    """Archiving adds an activity before continue-as-new: a regime that continued as new before the deploy
    must replay without it (docs/versioning.md). The pre_patch_archive_* histories were recorded on the code
    before the change (`regime record --prefix pre_patch_archive_` in a checkout of it)."""
    from tools.replay import HISTORIES, history_files, load_history, replay
    from workflows.engine import ARCHIVE_ON_CONTINUE

    old = [f for f in history_files([HISTORIES]) if f.name.startswith("pre_patch_archive_")]
    new = [f for f in history_files([HISTORIES]) if f.name.startswith("continue_as_new.regime.run")]
    assert len(old) >= 3 and len(new) >= 3
    assert not any(ARCHIVE_ON_CONTINUE in markers(load_history(f)) for f in old)
    assert any(ARCHIVE_ON_CONTINUE in markers(load_history(f)) for f in new)
    results = await replay([(f.name, load_history(f)) for f in old + new])
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]


def programme_plan_of(n: int, start) -> dict:
    """A plan tracked as a programme: `n` actions in 10 themes, a target date every few weeks over four years."""
    from datetime import timedelta

    return {"actions": [{"id": f"A{i:03d}", "theme": f"Theme {i % 10}", "category": "must_do" if i % 3 else "should_do",
                         "description": f"action {i} " + "d" * 400, "owner": "Director of Nursing",
                         "metric": "m" * 200, "measured_by": "Head of Quality", "finding": "f" * 300,
                         "target_date": str(start + timedelta(days=30 + 7 * i))} for i in range(n)]}


async def test_four_years_of_monthly_reports_on_a_200_action_plan_stay_within_the_bound(stack):
    """Issue 15: plan data is documents plus a small summary in the workflow; the bound holds with a 200-action
    plan reported on, action by action, every month for four years."""
    from datetime import date

    d = today()
    r = await stack.http.post("/regimes", headers=stack.auth("admin-1", "admin", "regulator"),
                              json=placement("RBS2", d, continue_as_new_after_events=600))
    assert r.status_code == 201, r.text
    reg = Lean(stack, "RBS2", r.json()["regime_id"], d)
    plan = programme_plan_of(200, d)
    await reg.act("improvement_plan", "submit", plan)
    await reg.act("plan_review", "agree")
    st = await reg.state()
    programme_bytes = len(json.dumps(st["programme"]))
    reports = 0
    for _ in range(48):
        st = await reg.state()
        for ret in sorted(s["id"] for s in st["open_steps"] if s["kind"] == "monthly_return"):
            done = {aid for aid, a in st["programme"]["actions"].items() if a["status"] == "done"}
            statuses = [{"action_id": a["id"], "status": "done" if a["id"] in done or date.fromisoformat(
                a["target_date"]) < reg.today else ("at_risk" if reports % 4 == 0 else "on_track"),
                "metric_value": f"{reports}%"} for a in plan["actions"]]
            await reg.act(ret, "submit", {"actions": statuses})
            reports += 1
        await reg.advance(30, step=15, skip=("monthly_return",))
    runs = await runs_and_inputs(stack, reg.id)
    largest = max(b for _, b in runs)
    st = await reg.state()
    done = sum(1 for a in st["programme"]["actions"].values() if a["status"] == "done")
    print(f"\n200-action plan, {reports} monthly reports over {reg.day / 365.25:.1f} years: summary in the state "
          f"{programme_bytes:,} bytes at agreement, {len(json.dumps(st['programme'])):,} at the end; {len(runs)} runs, "
          f"largest state carried {largest:,} bytes; {done} actions done")
    assert reports >= 46 and len(runs) > 3 and largest <= STATE_BOUND_BYTES
    assert len(json.dumps(st["programme"])) < 64 * 1024
    assert len(st["programme"]["reports"]) == 12  # the last year's summaries; the rest are documents
    assert done >= 150 and st["phase"] == "in_special_measures"
