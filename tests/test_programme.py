"""The improvement plan as a programme (issue 15): the rules in the fast workflow layer (mocked effects), and the
whole of it through the HTTP API on the real stack."""

from __future__ import annotations

import base64
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from temporalio.client import WorkflowUpdateFailedError

from api.documents import index_of
from domain import dates, schedule
from domain.documents import reference
from domain.models import ReinspectionAnnouncement
from domain.steps import ImprovementPlanPayload, Kind
from tests.driver import Regime
from tests.helpers import on_working_day
from tests.test_workflow_rules import actor, decide, start
from tools.polling import eventually
from workflows.regime import RegimeWorkflow


def today() -> date:
    return dates.london_date(datetime.now(UTC))


def programme_plan(d: date) -> dict[str, Any]:
    """Two themes, four actions: one due within the fortnight (its step opens at once), one with no date."""
    return {"actions": [
        {"id": "S1", "theme": "Sepsis", "category": "must_do", "description": "Screen for sepsis within the hour",
         "owner": "Medical Director", "metric": "screened within 1 hour", "measured_by": "Clinical audit lead",
         "finding": "Sepsis screening was not timely", "target_date": str(d + timedelta(days=60)), "horizon": 60},
        {"id": "S2", "theme": "Sepsis", "category": "should_do", "description": "Train ward staff on sepsis",
         "owner": "Chief Nurse", "metric": "staff trained", "target_date": str(d + timedelta(days=200))},
        {"id": "M1", "theme": "Mortality", "category": "must_do", "description": "Review every unexpected death",
         "owner": "Medical Director", "metric": "reviews within 30 days", "target_date": str(d + timedelta(days=10)),
         "horizon": 30},
        {"id": "M2", "theme": "Mortality", "category": "should_do", "description": "Publish mortality figures",
         "owner": "Chief Executive", "metric": "published monthly"},
    ]}


def as_document(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    """What the API sends the workflow for a document: its reference and the summary it keeps."""
    content = ImprovementPlanPayload.model_validate(payload).model_dump(mode="json") if kind == Kind.improvement_plan \
        else payload
    ref, _ = reference(kind, content)
    return {"document": ref.model_dump(mode="json"), **index_of(kind, content)}


def report(statuses: dict[str, str]) -> dict[str, Any]:
    return as_document(Kind.monthly_return, {"actions": [{"action_id": a, "status": s} for a, s in statuses.items()]})


# ------------------------------------------------------------------ the rules, fast
async def test_the_agreed_plan_is_the_baseline_and_its_reports_drive_steps_flags_and_the_trajectory(regime_env):
    client, queue, effects = regime_env
    handle, d = await start(client, queue, "WP1", programme=True)
    await decide(handle, "improvement_plan", "submit", "trust", as_document(Kind.improvement_plan, programme_plan(d)))
    await decide(handle, "plan_review", "agree", "improvement_director")
    state = await handle.query(RegimeWorkflow.get_state)
    prog = state.programme
    assert prog is not None and [v.n for v in prog.versions] == [1] and prog.themes == ["Sepsis", "Mortality"]
    assert {a: (x.t, x.must, x.status) for a, x in prog.actions.items()} == {
        "S1": (0, True, "not_started"), "S2": (0, False, "not_started"), "M1": (1, True, "not_started"),
        "M2": (1, False, "not_started")}

    # M1's target date is within ACTION_STEP_LEAD_DAYS: its step opens, due on the action's date, for the trust.
    state = await eventually(lambda: handle.query(RegimeWorkflow.get_state),
                             until=lambda s: "plan_action-M1" in s.steps, what="M1's step", timeout=10)
    m1 = state.steps["plan_action-M1"]
    assert (m1.role, m1.subject, m1.status) == ("trust", {"action": "M1", "theme": "Mortality"}, "open")
    assert m1.due == on_working_day(d + timedelta(days=10))
    assert "plan_action-S1" not in state.steps  # 60 days away

    # The trust marks M1 done (not in advance): its step closes and the plan's summary says so.
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await decide(handle, "plan_action-M1", "done", "trust", {"completed_on": str(d + timedelta(days=1))})
    assert refused.value.cause.type == "RuleBroken"
    await decide(handle, "plan_action-M1", "done", "trust", {"completed_on": str(d)})
    state = await handle.query(RegimeWorkflow.get_state)
    assert state.programme.actions["M1"].status == "done" and state.steps["plan_action-M1"].status == "done"


async def test_reports_count_off_track_months_and_the_meeting_takes_the_plans_answer(regime_env):
    client, queue, effects = regime_env
    entry = dates.add_months(today(), -2)
    handle, d = await start(client, queue, "WP2", programme=True, entry_date=entry)
    plan = programme_plan(d)
    plan["actions"][0]["target_date"] = str(d - timedelta(days=5))  # S1: past its target date
    await decide(handle, "improvement_plan", "submit", "trust", as_document(Kind.improvement_plan, plan))
    await decide(handle, "plan_review", "agree", "improvement_director")
    state = await handle.query(RegimeWorkflow.get_state)
    [ret] = [s.id for s in state.steps.values() if s.kind == Kind.monthly_return and s.status == "open"]
    [meeting] = [s.id for s in state.steps.values() if s.kind == Kind.delivery_meeting and s.status == "open"]

    # A report naming an action the plan does not have is refused.
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await decide(handle, ret, "submit", "trust", report({"X9": "on_track"}))
    assert refused.value.cause.type == "InvalidPayload" and "X9" in str(refused.value.cause)

    await decide(handle, ret, "submit", "trust", report({"S1": "off_track", "S2": "on_track"}))
    state = await handle.query(RegimeWorkflow.get_state)
    assert (state.programme.actions["S1"].off, state.programme.flagged) == (1, [])

    # The ID challenges one action's report with a reason, and sends the return back; submitted again in the
    # same month, S1 is still off track for one month, not two.
    cosign = ret.replace(Kind.monthly_return, Kind.monthly_return_cosign)
    with pytest.raises(WorkflowUpdateFailedError):
        await decide(handle, cosign, "cosign", "improvement_director",
                     {"challenges": [{"action_id": "Z1", "reason": "unknown"}]})
    await decide(handle, cosign, "return", "improvement_director", comment="S2 is not on track")
    state = await handle.query(RegimeWorkflow.get_state)
    [again] = [s.id for s in state.steps.values() if s.kind == Kind.monthly_return and s.status == "open"]
    await decide(handle, again, "submit", "trust", report({"S1": "off_track", "S2": "at_risk"}))
    state = await handle.query(RegimeWorkflow.get_state)
    [cosign] = [s.id for s in state.steps.values() if s.kind == Kind.monthly_return_cosign and s.status == "open"]
    await decide(handle, cosign, "cosign", "improvement_director",
                 {"challenges": [{"action_id": "S2", "reason": "at risk, not on track: the audit shows 60%"}]})
    state = await handle.query(RegimeWorkflow.get_state)
    assert state.programme.actions["S1"].off == 1 and state.programme.actions["S2"].challenged
    assert not [e for b in effects.batches for e in b.effects if e.type == "notify" and e.rung == "off_track"]

    # The Integrated Delivery Meeting: the plan says off trajectory (S1 past its date); saying otherwise needs a
    # reason.
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await decide(handle, meeting, "record", "regulator", {"meeting_date": str(d), "on_trajectory": True})
    assert refused.value.cause.type == "ReasonRequired" and "off trajectory" in str(refused.value.cause)
    view = await decide(handle, meeting, "record", "regulator", {
        "meeting_date": str(d), "on_trajectory": True, "override_reason": "S1 is done; the report lags"})
    assert view.step.data["on_trajectory"] is True and view.step.data["plan_on_trajectory"] is False
    assert "past their target date: S1" in view.step.data["plan_reason"]


def test_off_track_is_counted_in_calendar_months():
    from domain.programme import PlanIndex, ProgrammeState

    prog = ProgrammeState()
    prog.adopt(PlanIndex(themes=["T"], actions=[{"id": "A1", "t": 0}, {"id": "A2", "t": 0}]))
    assert prog.record_report("2026-01", "0" * 64, {"A1": "off_track", "A2": "off_track"}) == []
    assert prog.record_report("2026-01", "1" * 64, {"A1": "off_track", "A2": "on_track"}) == []  # sent again
    assert prog.record_report("2026-02", "2" * 64, {"A1": "off_track"}) == ["A1"]
    assert prog.record_report("2026-03", "3" * 64, {"A1": "off_track"}) == []  # flagged once
    assert prog.flagged == ["A1"] and prog.actions["A1"].off == 3
    prog.record_report("2026-04", "4" * 64, {"A1": "on_track"})
    assert prog.flagged == [] and prog.actions["A1"].off == 0
    assert [r.month for r in prog.reports] == ["2026-01", "2026-02", "2026-03", "2026-04"]


async def test_a_regime_without_a_programme_still_needs_the_meetings_answer(regime_env):
    client, queue, _ = regime_env
    handle, d = await start(client, queue, "WP3", entry_date=dates.add_months(today(), -1))
    state = await handle.query(RegimeWorkflow.get_state)
    meeting = next(s.id for s in state.steps.values() if s.kind == Kind.delivery_meeting)
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await decide(handle, meeting, "record", "regulator", {"meeting_date": str(d)})
    assert refused.value.cause.type == "InvalidPayload"
    assert state.programme is None and state.scheduled == []


async def test_plan_changes_are_versions_agreed_by_another_person(regime_env):
    client, queue, _ = regime_env
    handle, d = await start(client, queue, "WP4", programme=True)
    await decide(handle, "improvement_plan", "submit", "trust", as_document(Kind.improvement_plan, programme_plan(d)))
    await decide(handle, "plan_review", "agree", "improvement_director")
    from domain.models import PlanChange
    from domain.programme import plan_index

    changed = programme_plan(d)
    changed["actions"] = [a for a in changed["actions"] if a["id"] != "M2"] + [
        {"id": "G1", "theme": "Governance", "category": "must_do", "description": "Board assurance framework",
         "owner": "Chief Executive", "metric": "reviewed monthly", "target_date": str(d + timedelta(days=90))}]
    doc = as_document(Kind.improvement_plan, changed)
    change = PlanChange(sha256=doc["document"]["sha256"], plan=plan_index(changed), reason="governance added",
                        actor=actor("trust", "same-person"))
    view = await handle.execute_update(RegimeWorkflow.propose_plan_change, change)
    assert view.step.kind == Kind.plan_change_review and view.step.role == "improvement_director"
    with pytest.raises(WorkflowUpdateFailedError) as refused:  # one change waits at a time
        await handle.execute_update(RegimeWorkflow.propose_plan_change, change)
    assert refused.value.cause.type == "Conflict"
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await decide(handle, view.step.id, "agree", "improvement_director", user="same-person")
    assert refused.value.cause.type == "SeparationOfDuties"
    await decide(handle, view.step.id, "agree", "improvement_director")
    state = await handle.query(RegimeWorkflow.get_state)
    prog = state.programme
    assert [(v.n, v.source) for v in prog.versions] == [(1, "plan"), (2, "change")]
    assert set(prog.actions) == {"S1", "S2", "M1", "G1"} and prog.themes == ["Sepsis", "Mortality", "Governance"]
    assert prog.proposed is None


async def test_readiness_items_open_before_the_reinspection_and_are_at_risk_when_it_is_announced(regime_env):
    client, queue, effects = regime_env
    entry = dates.add_months(today(), -10)
    handle, d = await start(client, queue, "WP5", programme=True, entry_date=entry)
    state = await eventually(lambda: handle.query(RegimeWorkflow.get_state),
                             until=lambda s: any(x.kind == Kind.evidence_file for x in s.steps.values()),
                             what="the evidence files", timeout=10)
    files = {s.subject["key_question"]: s for s in state.steps.values() if s.kind == Kind.evidence_file}
    assert set(files) == {"safe", "effective", "caring", "responsive", "well_led"}
    ri_due = dates.add_months(entry, 12)
    assert all(f.due == on_working_day(max(ri_due - timedelta(days=28), d)) and f.role == "trust"
               for f in files.values())
    # What the calendar rule opens for a regime taken on 10 months after entry: the first self-assessment (6
    # months) and the review (9) were due before; the second (10 months) is open unless a month-end clamp put its
    # date before today (domain.schedule.programme_steps, the rule the workflow follows).
    due_now = {x.step_id for x in schedule.programme_steps(entry, ri_due) if x.kind == Kind.self_assessment
               and x.due >= d}
    assert due_now <= {"self_assessment-2"}
    assert {s.id for s in state.steps.values() if s.kind == Kind.self_assessment} == due_now
    assert not any(s.kind == Kind.programme_review for s in state.steps.values())

    # The trust completes one file: the improvement director checks it, not the person who completed it.
    await decide(handle, files["safe"].id, "complete", "trust", {"evidence": ["1", "2"], "summary": "safe"},
                 user="same-person")
    state = await handle.query(RegimeWorkflow.get_state)
    check = next(s for s in state.steps.values() if s.kind == Kind.evidence_file_check)
    assert check.subject["key_question"] == "safe" and check.role == "improvement_director"
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await decide(handle, check.id, "checked", "improvement_director", user="same-person")
    assert refused.value.cause.type == "SeparationOfDuties"
    await decide(handle, check.id, "return", "improvement_director", comment="no audit results in it")
    state = await handle.query(RegimeWorkflow.get_state)
    again = [s for s in state.steps.values() if s.kind == Kind.evidence_file and s.status == "open"
             and s.subject["key_question"] == "safe"]
    assert len(again) == 1 and again[0].data["returned_reason"] == "no audit results in it"

    await handle.execute_update(RegimeWorkflow.announce_reinspection, ReinspectionAnnouncement(
        inspection_date=d + timedelta(days=20), actor=actor("cqc")))
    state = await handle.query(RegimeWorkflow.get_state)
    at_risk = {s.id for s in state.steps.values() if s.data.get("at_risk")}
    assert {f.id for k, f in files.items() if k != "safe"} | {again[0].id} | due_now == at_risk
    await eventually(lambda: _audits(effects, "readiness_at_risk"), until=lambda xs: len(xs) == 1,
                     what="one audit entry for the items at risk", timeout=10)


async def test_an_early_announcement_opens_the_readiness_items_at_once_and_at_risk(regime_env):
    client, queue, _ = regime_env
    handle, d = await start(client, queue, "WP6", programme=True, entry_date=dates.add_months(today(), -5))
    state = await handle.query(RegimeWorkflow.get_state)
    assert {x.step_id for x in state.scheduled} >= {"self_assessment-2", "evidence_file-safe"}
    inspection = d + timedelta(days=30)
    await handle.execute_update(RegimeWorkflow.announce_reinspection, ReinspectionAnnouncement(
        inspection_date=inspection, actor=actor("cqc")))
    state = await handle.query(RegimeWorkflow.get_state)
    files = [s for s in state.steps.values() if s.kind == Kind.evidence_file]
    assert len(files) == 5 and all(s.data.get("at_risk") and s.due <= on_working_day(inspection - timedelta(days=1))
                                   for s in files)
    assert state.steps["self_assessment-2"].data.get("at_risk")
    assert [x.kind for x in state.scheduled] == [Kind.programme_review]  # not a readiness item


async def test_a_revised_plan_after_an_extension_starts_from_the_outstanding_actions_and_is_published(regime_env):
    from tests.test_workflow_rules import _open, _reinspected_remain

    client, queue, _ = regime_env
    handle, d = await start(client, queue, "WP7", programme=True)
    await decide(handle, "improvement_plan", "submit", "trust", as_document(Kind.improvement_plan, programme_plan(d)))
    await decide(handle, "plan_review", "agree", "improvement_director")
    await eventually(lambda: handle.query(RegimeWorkflow.get_state), until=lambda s: "plan_action-M1" in s.steps,
                     what="M1's step", timeout=10)
    await decide(handle, "plan_action-M1", "done", "trust", {"completed_on": str(d)})
    await _reinspected_remain(handle, "INS-WP7-1", d)
    await decide(handle, (await _open(handle, Kind.regulator_decision)).id, "extend", "regulator", comment="6 months")
    revised = (await _open(handle, Kind.revised_action_plan)).id

    new = {"actions": [a for a in programme_plan(d)["actions"] if a["id"] in ("S1", "M1")]}
    with pytest.raises(WorkflowUpdateFailedError) as refused:  # S2 and M2 are outstanding: neither carried nor dropped
        await decide(handle, revised, "submit", "trust", as_document(Kind.improvement_plan, new))
    assert refused.value.cause.type == "RuleBroken" and "S2, M2" in str(refused.value.cause)
    new["dropped"] = [{"action_id": "S2", "reason": "merged into S1"}, {"action_id": "M2", "reason": "now routine"}]
    with pytest.raises(WorkflowUpdateFailedError) as refused:  # not published
        await decide(handle, revised, "submit", "trust", as_document(Kind.improvement_plan, new))
    assert refused.value.cause.type == "InvalidPayload" and "published" in str(refused.value.cause)
    new |= {"published_at": "https://trust.example.nhs.uk/revised-plan", "published_on": str(d)}
    await decide(handle, revised, "submit", "trust", as_document(Kind.improvement_plan, new))
    await decide(handle, (await _open(handle, Kind.plan_review)).id, "agree", "improvement_director")
    state = await handle.query(RegimeWorkflow.get_state)
    prog = state.programme
    assert [(v.n, v.source) for v in prog.versions] == [(1, "plan"), (2, "revision")]
    assert set(prog.actions) == {"S1", "M1"} and prog.actions["M1"].status == "done"  # progress kept by id


async def _audits(effects, event: str) -> list:
    return [e for b in effects.batches for e in b.effects if e.type == "audit" and e.event == event]


# ------------------------------------------------------------------ through the API
async def test_the_plan_as_a_programme_through_the_api(stack):
    reg = await Regime.place(stack, "RPG1")
    d = reg.today
    plan = programme_plan(d)
    await reg.act("improvement_plan", "submit", plan)
    r = await stack.http.get(f"/regimes/{reg.id}/plan", headers=reg.users["trust"])
    assert r.status_code == 200 and r.json()["agreed"] is False
    await reg.act("plan_review", "agree")
    view = (await stack.http.get(f"/regimes/{reg.id}/plan", headers=reg.users["improvement_director"])).json()
    assert view["agreed"] and view["version"]["n"] == 1
    themes = {t["name"]: [a["id"] for a in t["actions"]] for t in view["themes"]}
    assert themes == {"Sepsis": ["S1", "S2"], "Mortality": ["M1", "M2"]}
    s1 = view["themes"][0]["actions"][0]
    assert (s1["finding"], s1["measured_by"], s1["horizon"], s1["status"]) == (
        "Sepsis screening was not timely", "Clinical audit lead", 60, "not_started")
    assert view["on_trajectory"] is True

    # The trust's inbox holds M1's plan task, due on the action's target date.
    async def inbox() -> list[dict]:
        return (await stack.http.get("/tasks", headers=reg.users["trust"])).json()["items"]
    items = await eventually(inbox, until=lambda xs: any(t["step_id"] == "plan_action-M1" for t in xs),
                             what="M1's task in the trust's inbox", timeout=10, interval=0.05)
    task = next(t for t in items if t["step_id"] == "plan_action-M1")
    assert task["due"] == on_working_day(d + timedelta(days=10)).isoformat()

    # A change to the plan: proposed by the trust, agreed by the improvement director; a new version.
    changed = {"actions": plan["actions"] + [
        {"id": "G1", "theme": "Governance", "category": "must_do", "description": "Board assurance framework",
         "owner": "Chief Executive", "metric": "reviewed monthly", "target_date": str(d + timedelta(days=90))}]}
    r = await stack.http.post(f"/regimes/{reg.id}/plan/changes", json={"plan": changed, "reason": "governance"},
                              headers=reg.users["improvement_director"])
    assert r.status_code == 403
    r = await stack.http.post(f"/regimes/{reg.id}/plan/changes", json={"plan": changed, "reason": "governance"},
                              headers=reg.users["trust"])
    assert r.status_code == 201, r.text
    await reg.act(r.json()["step"]["id"], "agree")
    view = (await stack.http.get(f"/regimes/{reg.id}/plan", headers=reg.users["trust"])).json()
    assert [v["source"] for v in view["versions"]] == ["plan", "change"] and len(view["themes"]) == 3

    # Evidence, stored in PostgreSQL, against an action; one naming an unknown action changes nothing.
    body = {"title": "Sepsis audit, March", "dated": str(d), "shows": "92% screened within the hour",
            "actions": ["S1"], "key_questions": ["safe"],
            "document": {"filename": "audit.csv", "media_type": "text/csv",
                         "content_base64": base64.b64encode(b"ward,screened\nA,92\n").decode()}}
    r = await stack.http.post(f"/regimes/{reg.id}/evidence", json={**body, "actions": ["NOPE"]},
                              headers=reg.users["trust"])
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json"), r.text
    r = await stack.http.post(f"/regimes/{reg.id}/evidence", json=body, headers=reg.users["trust"])
    assert r.status_code == 201, r.text
    sha = r.json()["sha256"]
    items = await eventually(lambda: _evidence(stack, reg), until=lambda xs: len(xs) == 1,
                             what="the evidence in the audit chain", timeout=10, interval=0.05)
    assert items[0]["title"] == "Sepsis audit, March" and items[0]["actions"] == ["S1"] and items[0]["number"] == 1
    doc = await stack.http.get(f"/regimes/{reg.id}/documents/{sha}", headers=reg.users["commissioner"])
    assert doc.status_code == 200 and base64.b64decode(doc.json()["content_base64"]) == b"ward,screened\nA,92\n"

    # The first month's report, per action: the return is built from it; M1 done closes its task.
    await reg.advance(60, skip=(Kind.monthly_return, Kind.plan_action, Kind.delivery_meeting))
    st = await reg.state()
    returns = sorted(s["id"] for s in st["open_steps"] if s["kind"] == Kind.monthly_return)
    assert returns, "a monthly return is open within 60 days of entry"
    progress = {"actions": [
        {"action_id": "S1", "status": "off_track", "metric_value": "71%", "evidence": ["1"]},
        {"action_id": "M1", "status": "done", "metric_value": "100%"},
        {"action_id": "S2", "status": "on_track"}]}
    await reg.act(returns[0], "submit", progress)
    st = await reg.state()
    assert st["steps"]["plan_action-M1"]["status"] == "done"
    assert st["steps"][returns[0]]["data"]["document"]["summary"]["characters"] == 0
    view = (await stack.http.get(f"/regimes/{reg.id}/plan", headers=reg.users["regulator"])).json()
    s1 = next(a for t in view["themes"] for a in t["actions"] if a["id"] == "S1")
    assert s1["status"] == "off_track" and s1["history"][0]["metric_value"] == "71%"
    sepsis = next(t for t in view["themes"] if t["name"] == "Sepsis")
    assert sepsis["by_month"][0]["counts"]["off_track"] == 1 and sepsis["by_month"][0]["counts"]["on_track"] == 1

    # S1's target date passes without it done: its task is overdue and escalates on the usual ladder.
    await reg.advance(45, skip=(Kind.monthly_return, Kind.plan_action, Kind.delivery_meeting, Kind.monthly_return_cosign))
    st = await reg.state()
    assert st["steps"]["plan_action-S1"]["status"] == "open" and st["steps"]["plan_action-S1"]["late"]
    assert "breach" in await reg.escalations("plan_action-S1")
    view = (await stack.http.get(f"/regimes/{reg.id}/plan", headers=reg.users["regulator"])).json()
    assert "S1" in view["overdue"] and view["on_trajectory"] is False

    # Readiness: the countdown to the re-inspection and what is scheduled for it.
    ready = (await stack.http.get(f"/regimes/{reg.id}/readiness", headers=reg.users["trust"])).json()
    ri_due = date.fromisoformat(ready["next_reinspection"]["due"])
    assert ready["days_to_go"] == (ri_due - today()).days  # the countdown runs on the service's clock
    assert {x["kind"] for x in ready["scheduled"]} >= {"programme_review", "evidence_file"}

    # The revision draft starts from the outstanding actions (M1 is done).
    draft = (await stack.http.get(f"/regimes/{reg.id}/plan/revision-draft", headers=reg.users["trust"])).json()
    assert "M1" not in {a["id"] for a in draft["actions"]} and {"S1", "S2", "G1"} <= {a["id"] for a in draft["actions"]}


async def _evidence(stack, reg) -> list[dict]:
    r = await stack.http.get(f"/regimes/{reg.id}/evidence", headers=reg.users["trust"])
    assert r.status_code == 200, r.text
    return r.json()["items"]
