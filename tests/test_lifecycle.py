"""Whole lifecycles on the real dev server with time skipping, driven through the HTTP API."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from domain.dates import add_months, london_date
from tests.driver import Regime
from tests.helpers import IMPROVED, INADEQUATE_ENTRY
from tools.polling import eventually

LONDON = ZoneInfo("Europe/London")
STILL_INADEQUATE = dict(IMPROVED, well_led="inadequate", overall="inadequate")


async def reach_reinspection(reg: Regime, month: int = 11) -> None:
    """A diligent regime up to a re-inspection announced in `month`, with the board-to-board before it."""
    days = (add_months(reg.start, month) - reg.today).days
    await reg.advance(days)
    r = await reg.stack.http.post(f"/regimes/{reg.id}/reinspection", headers=reg.users["cqc"],
                                  json={"inspection_date": (reg.today + timedelta(days=14)).isoformat()})
    assert r.status_code == 200, r.text
    await reg.advance(14)


async def history_length(reg: Regime) -> int:
    desc = await reg.stack.handle(reg.id).describe()
    return desc.raw_description.workflow_execution_info.history_length


async def test_exit_at_first_reinspection_every_step_on_time(stack):
    reg = await Regime.place(stack, "RL1")
    await reach_reinspection(reg)
    await reg.inspect("INS-RL1-2", IMPROVED)
    st = await reg.state()
    rec = st["inspections"][-1]
    assert rec["verdict"]["met"] is True
    await reg.act(st["open_steps"][0]["id"] if st["open_steps"][0]["kind"] == "cqc_recommendation"
                  else "cqc_recommendation", "recommend_exit", comment="sustained improvement")
    await reg.act("regulator_decision", "exit", {"continued_support": ["buddy maternity programme to Q2"]},
                  comment="exit on CQC recommendation")
    st = await reg.state()
    assert st["phase"] == "exited" and st["segment"] == 3
    assert st["continued_support"] == ["buddy maternity programme to Q2"]
    # Exit cancels the regime's other steps; the Quality Summit on the re-inspection's report stays (issue 14
    # item 15: CQC's process after an inspection is the same whatever it led to).
    assert sorted(s["kind"] for s in st["open_steps"]) == ["board_to_board_post_exit", "quality_summit"]
    post = st["steps"]["board_to_board_post_exit"]
    assert post["due"] == add_months(date.fromisoformat(st["exit_date"]), 6).isoformat()
    await reg.advance(185)
    st = await reg.state()
    assert st["finished"] is True
    late = [s["id"] for s in st["steps"].values() if s["late"]]
    assert late == [], late
    assert [e for e in st["escalations"] if e["rung"] != "reminder"] == []
    row = await stack.pool.fetchrow("SELECT phase, segment, closed FROM regimes WHERE regime_id=$1", reg.id)
    assert (row["phase"], row["segment"]) == ("exited", 3)


async def test_late_plan_walks_the_whole_ladder_then_is_accepted(stack):
    reg = await Regime.place(stack, "RL2")
    await reg.advance(27, diligent=False)
    assert await reg.escalations("improvement_plan") == ["reminder"]
    await reg.advance(2, diligent=False)
    assert await reg.escalations("improvement_plan") == ["reminder", "breach"]
    await reg.advance(7, diligent=False)
    assert await reg.escalations("improvement_plan") == ["reminder", "breach", "dd_escalation"]
    await reg.advance(14, diligent=False)
    assert await reg.escalations("improvement_plan") == ["reminder", "breach", "dd_escalation",
                                                         "executive_escalation"]
    st = await reg.state()
    esc = [e for e in st["escalations"] if e["step_id"] == "improvement_plan"]
    assert esc[2]["notified"] == ["regulator_dd"] and "overdue" in esc[2]["reason"]
    await reg.act("improvement_plan", "submit", {"actions": [
        {"category": "must_do", "description": "Fix triage", "owner": "COO", "metric": "time to triage < 15 min"}]})
    st = await reg.state()
    assert st["steps"]["improvement_plan"]["late"] and st["steps"]["improvement_plan"]["status"] == "done"
    await reg.advance(30, diligent=False)
    assert len(await reg.escalations("improvement_plan")) == 4
    await stack.settle(reg.id)
    audit = await stack.pool.fetch("SELECT detail->>'rung' AS rung FROM audit_log WHERE regime_id=$1 "
                                   "AND event='escalation' AND step_id='improvement_plan' ORDER BY id", reg.id)
    assert [a["rung"] for a in audit] == ["reminder", "breach", "dd_escalation", "executive_escalation"]


async def test_plan_returned_then_resubmitted_and_signed_off(stack):
    reg = await Regime.place(stack, "RL3")
    await reg.advance(10, diligent=False)
    await reg.act("improvement_plan", "submit", {"actions": [
        {"category": "must_do", "description": "x", "owner": "CEO", "metric": "m"}]})
    await reg.act("plan_review", "return", expect=422)  # a return needs a reason
    await reg.act("plan_review", "return", comment="no should-do actions; metrics not measurable")
    st = await reg.state()
    again = [s for s in st["open_steps"] if s["kind"] == "improvement_plan"]
    assert len(again) == 1 and again[0]["data"]["returned_reason"].startswith("no should-do")
    await reg.act(again[0]["id"], "submit", {"actions": [
        {"category": "must_do", "description": "x", "owner": "CEO", "metric": "m"},
        {"category": "should_do", "description": "y", "owner": "CFO", "metric": "n"}]})
    await reg.act("plan_review-2", "agree", comment="good")
    # The improvement director cannot also sign off as the regulator (separation of duties).
    r = await stack.http.post(f"/regimes/{reg.id}/steps/plan_signoff_regulator/decisions",
                              headers=stack.auth("id-RL3", "improvement_director", "regulator", trusts=["RL3"]),
                              json={"action": "sign_off", "role": "regulator"})
    assert r.status_code == 403 and "separation" in r.json()["type"], r.text
    await reg.act("plan_signoff_regulator", "sign_off")
    await reg.act("plan_signoff_commissioner", "sign_off")
    st = await reg.state()
    assert st["steps"]["improvement_plan-2"]["data"]["signed_off_on"] == reg.today.isoformat()


async def test_extension_then_exit(stack):
    started = time.monotonic()
    reg = await Regime.place(stack, "RL4")
    await reach_reinspection(reg)
    await reg.inspect("INS-RL4-2", STILL_INADEQUATE)
    st = await reg.state()
    assert st["inspections"][-1]["verdict"]["met"] is False
    await reg.act("cqc_recommendation", "recommend_remain", comment="well-led still inadequate")
    await reg.act("regulator_decision", "exit", {"continued_support": []}, comment="x", expect=422)
    await reg.act("regulator_decision", "extend", {"months": 6}, comment="6 months to embed leadership")
    st = await reg.state()
    assert st["phase"] == "extended" and len(st["extensions"]) == 1
    kinds = {s["kind"]: s for s in st["open_steps"]}
    assert "revised_action_plan" in kinds
    ri = [s for s in st["open_steps"] if s["kind"] == "reinspection"][0]
    assert date.fromisoformat(ri["due"]) == date.fromisoformat(st["extensions"][0]["ends"])
    await reg.advance(175)
    await reg.inspect("INS-RL4-3", IMPROVED)
    # The exit lands while the recommendation's effects are still being written (the projection row
    # is held): the search attributes must still end up saying "exited", not wait for the next timer.
    async with stack.pool.acquire() as con, con.transaction():
        await con.execute("SELECT 1 FROM regimes WHERE regime_id = $1 FOR UPDATE", reg.id)
        await reg.act("cqc_recommendation-2", "recommend_exit", comment="improved")
        await reg.act("regulator_decision-2", "exit", comment="exit")
        await asyncio.sleep(0.5)
    st = await reg.state()
    assert st["phase"] == "exited" and st["segment"] == 3
    # Operations find it in the service's list, and in Temporal's visibility (and its UI) by the
    # search attributes the workflow carries.
    await stack.settle(reg.id)
    listed = (await stack.http.get("/regimes", params={"phase": "exited", "ods_code": "RL4"},
                                   headers=reg.users["operations"])).json()
    assert [r["regime_id"] for r in listed["items"]] == [reg.id]
    # The workflow upserts them in the task after its effects are written, so just after `settle` they can be a
    # moment behind; time here moves only when the test moves it, so no timer can do it for them meanwhile.

    async def recorded() -> dict[str, object]:
        return {p.key.name: p.value for p in (await stack.handle(reg.id).describe()).typed_search_attributes}

    attrs = await eventually(recorded, until=lambda a: a.get("RegimePhase") == "exited", timeout=5,
                             what="the search attributes to say exited")
    assert attrs["TrustOdsCode"] == "RL4"
    # Temporal's visibility is written asynchronously: it follows within moments.
    assert await stack.visible("TrustOdsCode='RL4' AND RegimePhase='exited'", [reg.id]) == [reg.id]
    await reg.advance(185)
    st = await reg.state()
    assert st["finished"] and st["steps"]["board_to_board_post_exit"]["status"] == "done"
    months = (reg.today - reg.start).days / 30.44
    events = len((await stack.handle(reg.id).fetch_history()).events)
    print(f"\n{months:.0f}-month regime (extension, exit, post-exit board-to-board): {events} history events, "
          f"{time.monotonic() - started:.1f}s wall")
    assert months >= 23


async def test_extension_letter_to_secretary_of_state_then_merger(stack):
    reg = await Regime.place(stack, "RL5")
    await reach_reinspection(reg)
    await reg.inspect("INS-RL5-2", STILL_INADEQUATE)
    await reg.act("cqc_recommendation", "recommend_remain", comment="not improved")
    await reg.act("regulator_decision", "refer_to_secretary_of_state", comment="x", expect=422)
    await reg.act("regulator_decision", "extend", {"months": 6}, comment="extension")
    await reg.advance(170)
    await reg.inspect("INS-RL5-3", STILL_INADEQUATE,
                      core=[{"site": "Main", "service": "urgent and emergency care", "rating": "inadequate"}])
    await reg.act("cqc_recommendation-2", "recommend_remain", comment="still not improved")
    await reg.act("regulator_decision-2", "refer_to_secretary_of_state", comment="no sufficient improvement")
    st = await reg.state()
    letter = st["sos_letter"]
    assert "well_led rated inadequate" in letter["areas_requiring_improvement"]
    assert "urgent and emergency care at Main rated inadequate" in letter["areas_requiring_improvement"]
    assert letter["months_in_special_measures"] > 15
    await reg.act("secretary_of_state_letter", "send", {"sent_on": reg.today.isoformat()})
    st = await reg.state()
    assert st["phase"] == "long_term_solution"
    r = await stack.http.post(f"/regimes/{reg.id}/enforcement", headers=reg.users["cqc"],
                              json={"action": "conditions", "detail": "conditions on maternity registration"})
    assert r.status_code == 200, r.text
    r = await stack.http.post(f"/regimes/{reg.id}/closure", headers=reg.users["regulator"],
                              json={"solution": "merger", "reason": "acquired by RYY Hospitals",
                                    "successor_ods_code": "RYY"})
    assert r.status_code == 200 and r.json()["phase"] == "closed_structural"
    st = await reg.state()
    assert st["finished"] and st["closure"]["solution"] == "merger" and st["open_steps"] == []
    assert st["enforcement"][0]["action"] == "conditions"
    # Once closed, the API reads the completed workflow's result (no replay): the same state it would answer.
    await stack.settle(reg.id)
    assert await stack.pool.fetchval("SELECT closed FROM regimes WHERE regime_id = $1", reg.id)
    got = (await stack.http.get(f"/regimes/{reg.id}", headers=reg.users["operations"])).json()
    from workflows.regime import RegimeWorkflow

    asked = (await stack.handle(reg.id).query(RegimeWorkflow.get_state)).model_dump(mode="json")
    # The API adds each step's deadline basis (computed from the catalogue, not kept in the state).
    for steps in (got["steps"].values(), got["open_steps"]):
        for st in steps:
            assert st.pop("deadline_basis")["kind"] in ("statutory", "service_default", "amended")
    assert {k: got[k] for k in asked} == asked and got["phase"] == "closed_structural"


async def test_multi_site_exceptional_exit_and_refusal_without_trajectory(stack):
    core = [{"site": "North", "service": "maternity", "rating": "inadequate"},
            {"site": "South", "service": "surgery", "rating": "good"}]
    reg = await Regime.place(stack, "RL6", multi_site=True)
    await reach_reinspection(reg)
    await reg.inspect("INS-RL6-2", IMPROVED, core=core)
    st = await reg.state()
    v = st["inspections"][-1]["verdict"]
    assert v["met"] is False and any("no evidence of a continuing trajectory" in r for r in v["reasons"])
    # CQC corrects the outcome, adding its evidence of a trajectory: a new recorded event, re-evaluated.
    await reg.inspect("INS-RL6-2", IMPROVED, core=core, kind="correction",
                      trajectory_evidence="maternity audits improving for 3 consecutive quarters")
    st = await reg.state()
    current = [i for i in st["inspections"] if i["status"] == "current"]
    assert len(current) == 1 and current[0]["verdict"]["met"] is True
    assert any(i["status"] == "superseded" for i in st["inspections"])
    assert st["steps"]["cqc_recommendation"]["data"]["verdict"]["met"] is True
    await reg.act("cqc_recommendation", "recommend_exit", comment="exceptional trajectory")
    await reg.act("regulator_decision", "exit", comment="exit")
    assert (await reg.state())["phase"] == "exited"


async def test_reentry_after_exit_links_regimes(stack):
    reg = await Regime.place(stack, "RL7")
    await reach_reinspection(reg)
    await reg.inspect("INS-RL7-2", IMPROVED)
    await reg.act("cqc_recommendation", "recommend_exit", comment="ok")
    await reg.act("regulator_decision", "exit", comment="ok")
    await stack.settle(reg.id)
    # Virtual time is a year ahead but the API dates placements by the real clock: re-enter "yesterday",
    # which gives the new regime its own id.
    r = await stack.http.post("/regimes", headers=reg.users["regulator"], json={
        "trust": {"ods_code": "RL7", "name": "Example Hospitals NHS Trust"},
        "entry_date": (reg.start - timedelta(days=1)).isoformat(), "ratings": INADEQUATE_ENTRY})
    assert r.status_code == 201, r.text
    assert r.json()["previous_regime_id"] == reg.id
    again = r.json()["regime_id"]
    st = (await stack.http.get(f"/regimes/{again}", headers=reg.users["operations"])).json()
    assert st["placement"]["previous_regime_id"] == reg.id
    old = (await stack.http.get(f"/regimes/{reg.id}", headers=reg.users["operations"])).json()
    assert old["phase"] == "exited"


async def test_regime_under_way_placed_seven_months_back(stack):
    today = london_date(datetime.now(UTC))
    entry = date(today.year, today.month, 1) - timedelta(days=213)
    r = await stack.http.post("/regimes", headers=stack.auth("reg-1", "regulator"), json={
        "trust": {"ods_code": "RL8", "name": "Backfilled NHS Trust"}, "entry_date": entry.isoformat(),
        "ratings": INADEQUATE_ENTRY,
        "completed_steps": [
            {"kind": "improvement_plan", "completed_on": (entry + timedelta(days=25)).isoformat(), "by": "trust-RL8"},
            {"kind": "board_to_board", "completed_on": (entry + timedelta(days=80)).isoformat(), "by": "reg-1"},
        ]})
    assert r.status_code == 201, r.text
    rid = r.json()["regime_id"]
    reg = Regime(stack, "RL8", rid, today)
    st = await reg.state()
    assert st["steps"]["improvement_plan"]["outcome"] == "completed_before_go_live"
    assert st["steps"]["board_to_board"]["status"] == "done"
    # The ID appointment, due at 3 months, was not reported done: it escalates at once, up the whole ladder.
    assert await reg.escalations("appoint_improvement_director") == ["breach", "dd_escalation",
                                                                     "executive_escalation"]
    assert await reg.escalations("improvement_plan") == []
    ri = st["steps"]["reinspection-1"]
    assert date.fromisoformat(ri["due"]) == add_months(entry, 12)
    assert not [s for s in st["open_steps"] if s["kind"] == "monthly_return"
                and date.fromisoformat(s["due"]) < date(today.year, today.month, 1)]


async def test_deadline_moved_while_ladder_runs(stack):
    reg = await Regime.place(stack, "RL9")
    await reg.advance(30, diligent=False)
    assert await reg.escalations("improvement_plan") == ["reminder", "breach"]
    new_due = reg.today + timedelta(days=14)
    r = await stack.http.post(f"/regimes/{reg.id}/steps/improvement_plan/deadline",
                              headers=reg.users["regulator"], json={"new_due": new_due.isoformat(), "reason": ""})
    assert r.status_code == 422
    r = await stack.http.post(f"/regimes/{reg.id}/steps/improvement_plan/deadline",
                              headers=reg.users["regulator"],
                              json={"new_due": (reg.today - timedelta(days=40)).isoformat(), "reason": "x"})
    assert r.status_code == 422 and "past" in r.json()["detail"]
    r = await stack.http.post(f"/regimes/{reg.id}/steps/improvement_plan/deadline",
                              headers=reg.users["improvement_director"],
                              json={"new_due": new_due.isoformat(), "reason": "x"})
    assert r.status_code == 403
    r = await stack.http.post(f"/regimes/{reg.id}/steps/improvement_plan/deadline",
                              headers=reg.users["regulator"],
                              json={"new_due": new_due.isoformat(), "reason": "new chief executive started"})
    assert r.status_code == 200, r.text
    step = r.json()["step"]
    assert step["due"] == new_due.isoformat() and step["late"] is False
    assert step["amendments"][0]["old"]["due"] == (reg.start + timedelta(days=28)).isoformat()
    # The old ladder would have reached dd_escalation at day 35: it does not.
    await reg.advance(10, diligent=False)
    assert await reg.escalations("improvement_plan") == ["reminder", "breach", "reminder"]
    await reg.act("improvement_plan", "submit", {"actions": [
        {"category": "must_do", "description": "x", "owner": "CEO", "metric": "m"}]})
    st = await reg.state()
    assert st["steps"]["improvement_plan"]["late"] is False
    await reg.advance(10, diligent=False)
    assert await reg.escalations("improvement_plan") == ["reminder", "breach", "reminder"]
    audit = await stack.pool.fetchrow("SELECT actor, reason, detail FROM audit_log WHERE regime_id=$1 "
                                      "AND event='deadline_amended'", reg.id)
    assert audit["actor"] == "reg-1" and audit["detail"]["new"]["due"] == new_due.isoformat()


async def test_duplicated_older_and_withdrawn_cqc_outcomes(stack):
    reg = await Regime.place(stack, "RLA")
    await reg.advance(300)
    await reg.inspect("INS-RLA-2", STILL_INADEQUATE)
    await reg.inspect("INS-RLA-2", STILL_INADEQUATE)  # delivered twice
    st = await reg.state()
    assert [i["outcome"]["reference"] for i in st["inspections"]] == ["INS-RLA-2"]
    assert len([s for s in st["steps"].values() if s["kind"] == "cqc_recommendation"]) == 1
    # An older inspection arriving late does not overwrite the newer one.
    r = await stack.http.post(f"/regimes/{reg.id}/inspections", headers=reg.users["cqc"], json={
        "reference": "INS-RLA-1", "inspection_start": (reg.today - timedelta(days=90)).isoformat(),
        "inspection_end": (reg.today - timedelta(days=89)).isoformat(),
        "published": (reg.today - timedelta(days=60)).isoformat(), "ratings": IMPROVED,
        "inspection_type": "comprehensive", "well_led_assessed": True, "special_measures_reinspection": True})
    assert r.status_code == 202
    await reg.stack.settle(reg.id)
    st = await reg.state()
    assert {i["outcome"]["reference"]: i["status"] for i in st["inspections"]} == {
        "INS-RLA-2": "current", "INS-RLA-1": "older_ignored"}
    # Withdrawn: the decision that rested on it is cancelled and a re-inspection is awaited again.
    r = await stack.http.post(f"/regimes/{reg.id}/inspections/INS-RLA-2/withdrawal", headers=reg.users["cqc"],
                              json={"reason": "published in error"})
    assert r.status_code == 202
    await reg.stack.settle(reg.id)
    st = await reg.state()
    assert st["steps"]["cqc_recommendation"]["status"] == "cancelled"
    assert [s["kind"] for s in st["open_steps"]].count("reinspection") == 1
    audit = [r["event"] for r in await stack.pool.fetch(
        "SELECT event FROM audit_log WHERE regime_id=$1 AND event LIKE 'inspection%' ORDER BY id", reg.id)]
    assert audit == ["inspection_recorded", "inspection_duplicate_ignored", "inspection_older_ignored",
                     "inspection_withdrawn"]


async def test_deadlines_cross_clock_changes(stack):
    """Monthly returns are due at the end of the 3rd Monday in London: midnight UTC in a GMT month (November
    to March), 23:00 UTC the day before in a BST month (April to October). Eight months of returns hold
    both kinds whatever the day the test runs; each breach is checked against tzdata's London."""
    reg = await Regime.place(stack, "RLB")
    offsets: set[timedelta] = set()
    while len(offsets) < 2:
        assert reg.day < 300, "eight months of returns and still not both GMT and BST"
        await reg.advance(30, diligent=False)
        st = await reg.state()
        breaches = {e["step_id"]: datetime.fromisoformat(e["at"]) for e in st["escalations"]
                    if e["rung"] == "breach" and e["step_id"].startswith("monthly_return-")}
        for sid, at in breaches.items():
            due = date.fromisoformat(st["steps"][sid]["due"])
            assert due.weekday() == 0 and 15 <= due.day <= 21, sid
            end = datetime.combine(due + timedelta(days=1), datetime.min.time(), LONDON)
            assert abs(at - end.astimezone(UTC)) < timedelta(minutes=1), (sid, at)
            offsets.add(end.utcoffset())
    assert offsets == {timedelta(0), timedelta(hours=1)}


async def test_paused_clock_does_not_escalate_until_resumed(stack):
    reg = await Regime.place(stack, "RLD")
    reg_h = reg.users["regulator"]
    url = f"/regimes/{reg.id}/steps/improvement_plan/deadline"
    r = await stack.http.post(url, headers=reg_h, json={"pause": True, "reason": "awaiting CQC's final report"})
    assert r.status_code == 200 and r.json()["step"]["paused"] is True
    await reg.advance(40, diligent=False)
    assert await reg.escalations("improvement_plan") == []
    task = await stack.pool.fetchrow("SELECT paused FROM tasks WHERE regime_id=$1 AND step_id='improvement_plan'",
                                     reg.id)
    assert task["paused"] is True
    r = await stack.http.post(url, headers=reg_h, json={"pause": False, "new_due": str(reg.today + timedelta(days=5)),
                                                        "reason": "report received"})
    assert r.status_code == 200
    await reg.advance(7, diligent=False)
    # The new date is 5 days off, inside the reminder's 7 days: no stale reminder, then the breach.
    assert await reg.escalations("improvement_plan") == ["breach"]


async def test_monthly_oversight_and_delivery_meetings(stack):
    """The Oversight and Assurance Group and the Integrated Delivery Meeting are monthly duties (domain.md):
    each month opens both, due on its last day; the regulator records them (or one merged meeting); a
    month without them escalates like any other missed deadline."""
    reg = await Regime.place(stack, "RLM1")

    def month_steps(st: dict, kind: str) -> list[dict]:
        return sorted((s for s in st["steps"].values() if s["kind"] == kind), key=lambda s: s["id"])

    for _ in range(6):  # the first month the service tracks (this month or the next)
        st = await reg.state()
        if month_steps(st, "oversight_meeting"):
            break
        await reg.advance(7, diligent=False)
    [oag] = month_steps(st, "oversight_meeting")
    [idm] = month_steps(st, "delivery_meeting")
    month = date.fromisoformat(oag["subject"]["month"] + "-01")
    assert oag["id"] == f"oversight_meeting-{month:%Y-%m}" and oag["role"] == "regulator"
    assert date.fromisoformat(oag["due"]) == add_months(month, 1) - timedelta(days=1) == date.fromisoformat(idm["due"])
    # Recorded only once held, and only for a meeting in (or after) its month.
    tomorrow = (reg.today + timedelta(days=1)).isoformat()
    r = await reg.act(oag["id"], "record", {"meeting_date": tomorrow}, expect=422)
    assert "once it has been held" in r["detail"]
    r = await reg.act(oag["id"], "record", {"meeting_date": (month - timedelta(days=1)).isoformat()}, expect=422)
    assert "not this month's" in r["detail"]
    # One merged meeting records both.
    held = max(month, reg.today).isoformat()
    if reg.today < month:
        await reg.advance((month - reg.today).days, diligent=False)
    await reg.act(oag["id"], "record", {"meeting_date": held, "deep_dive": "sepsis screening",
                                        "held_with_idm": True})
    st = await reg.state()
    assert st["steps"][oag["id"]]["status"] == "done" and st["steps"][oag["id"]]["data"]["deep_dive"] == \
        "sepsis screening"
    assert st["steps"][idm["id"]]["status"] == "done"
    assert st["steps"][idm["id"]]["data"]["held_with"] == oag["id"]
    await stack.settle(reg.id)
    audited = await stack.pool.fetch("SELECT event, step_id FROM audit_log WHERE regime_id = $1 AND step_id = ANY($2) "
                                     "AND event LIKE '%.record'",
                                     reg.id, [oag["id"], idm["id"]])
    assert sorted(a["event"] for a in audited) == ["delivery_meeting.record", "oversight_meeting.record"]
    # The next month opens the next pair; nobody holds them and they escalate after the month ends.
    nxt = add_months(month, 1)
    await reg.advance((add_months(nxt, 1) - reg.today).days + 2, diligent=False)
    st = await reg.state()
    for kind in ("oversight_meeting", "delivery_meeting"):
        sid = f"{kind}-{nxt:%Y-%m}"
        assert st["steps"][sid]["status"] == "open"
        assert await reg.escalations(sid), f"{sid} missed and not escalated"
    # Recorded late, with the meeting's real date.
    late = (add_months(nxt, 1) + timedelta(days=1)).isoformat()
    await reg.act(f"delivery_meeting-{nxt:%Y-%m}", "record", {"meeting_date": late, "on_trajectory": False,
                                                              "summary": "behind on ED staffing"})
    st = await reg.state()
    assert st["steps"][f"delivery_meeting-{nxt:%Y-%m}"]["late"] is True
