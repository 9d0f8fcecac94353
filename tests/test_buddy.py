"""Buddy partnerships on the real stack: child workflows, deadlines, quarterly payments, the ledger.

Time: a running child workflow is in-flight work for its parent, and the dev server never skips a
workflow's time while it has in-flight work; nor does fast-forwarding a parent move its children. So
the regime hands each partnership off (continues as new straight after starting it) and these tests
fast-forward the regime and every running partnership together by the same amount (`World.advance`).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import asyncpg
from temporalio.client import WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Replayer

from activities.payments import PaymentActivities
from domain.dates import add_months, london_date
from domain.ledger import Line, PaymentInstruction
from domain.models import Actor, DeadlineChange, Decision, Rung, Trust
from tests.harness import TestStack
from tests.helpers import on_working_day, placement
from tools.polling import eventually
from workflows.buddy import BuddyPartnershipWorkflow
from workflows.common import BuddyRequest, BuddyStart, buddy_workflow_id
from workflows.regime import RegimeWorkflow

PLAN = {"workstreams": [
    {"id": "governance", "name": "Board governance", "activities": ["board mentoring", "committee reviews"],
     "projected_cost_pence": 12_000_000},
    {"id": "maternity", "name": "Maternity safety", "activities": ["midwife secondment"],
     "projected_cost_pence": 8_000_000},
]}
MATERNITY_PLAN = {"workstreams": [
    {"id": "maternity", "name": "Maternity safety", "activities": ["midwife secondment", "CTG training"],
     "projected_cost_pence": 9_000_000}]}
TOR = "Mentoring of the board and the maternity service; secondments by agreement."


def lines(*pairs: tuple[str, int]) -> dict[str, Any]:
    return {"lines": [{"workstream": ws, "description": f"{ws} support", "amount_pence": p} for ws, p in pairs]}


class World:
    """One regime and its partnerships, driven through HTTP as the people would, on virtual time."""

    def __init__(self, stack: TestStack, ods: str, rid: str) -> None:
        self.stack, self.ods, self.rid = stack, ods, rid
        self.day = 0
        self.pids: list[str] = []
        self.regulator = stack.auth("reg-1", "regulator")
        self.trust = stack.auth("trust-1", "trust", trusts=[ods])
        self.idir = stack.auth("id-1", "improvement_director", trusts=[ods])
        self.ops = stack.auth("ops-1", "operations")

    @classmethod
    async def place(cls, stack: TestStack, ods: str) -> World:
        today = london_date(datetime.now(UTC))
        r = await stack.http.post("/regimes", json=placement(ods, today), headers=stack.auth("reg-1", "regulator"))
        assert r.status_code == 201, r.text
        return cls(stack, ods, r.json()["regime_id"])

    def buddy(self, buddy_ods: str, sub: str = "buddy-user") -> dict[str, str]:
        return self.stack.auth(f"{sub}-{buddy_ods}", "buddy", org=buddy_ods)

    def headers_for(self, role: str, buddy_ods: str) -> dict[str, str]:
        return {"regulator": self.regulator, "trust": self.trust, "improvement_director": self.idir,
                "buddy": self.buddy(buddy_ods)}[role]

    async def add(self, buddy_ods: str, scope: str = "trust-wide", level: int | None = 30_000_000) -> str:
        body: dict[str, Any] = {"buddy": {"ods_code": buddy_ods, "name": f"{buddy_ods} Hospitals NHS FT"},
                                "scope": scope}
        if level is not None:
            body["agreement_in_principle"] = {"agreed_level_pence": level, "terms_of_reference": TOR}
        r = await self.stack.http.post(f"/regimes/{self.rid}/buddies", json=body, headers=self.regulator)
        assert r.status_code == 201, r.text
        pid = r.json()["partnership_id"]
        self.pids.append(pid)
        # The regime starts the child after the update has answered.
        await eventually(self.stack.handle(pid).describe, what=f"{pid} to start", timeout=10, interval=0.03,
                         ignore=RPCError)
        await self.settle(pid)
        return pid

    async def advance(self, days: int) -> None:
        handles = [self.stack.handle(self.rid)]
        for pid in self.pids:
            h = self.stack.handle(pid)
            if (await h.describe()).status == WorkflowExecutionStatus.RUNNING:
                handles.append(h)
        await asyncio.gather(*(self.stack.skipper.fast_forward(h, timedelta(days=days)) for h in handles))
        self.day += days
        for pid in self.pids:
            await self.settle(pid)

    async def state(self, pid: str):
        async def query():
            try:
                return await self.stack.handle(pid).query(BuddyPartnershipWorkflow.get_state)
            except RPCError as e:  # a run that has just continued as new answers after its first task
                if e.status != RPCStatusCode.FAILED_PRECONDITION:
                    raise
                return None

        return await eventually(query, what=f"{pid} to answer its query", timeout=5, interval=0.03)

    async def settle(self, pid: str) -> None:
        """Wait until the partnership's effects (tasks, audit, notices) are all in PostgreSQL."""

        async def seqs() -> tuple[int, int]:  # the partnership's seq, the highest written
            s = await self.state(pid)
            written = await self.stack.pool.fetchval(
                """SELECT greatest((SELECT max(seq) FROM audit_log WHERE workflow_id = $1),
                                   (SELECT max(seq) FROM notifications WHERE workflow_id = $1),
                                   (SELECT max(last_seq) FROM tasks WHERE workflow_id = $1))""", pid)
            return s.seq, written or 0

        try:
            await eventually(seqs, until=lambda s: s[1] >= s[0], timeout=15, interval=0.03,
                             what=f"the effects of {pid} to reach PostgreSQL (seq, written)")
        except AssertionError as e:
            desc = await self.stack.handle(pid).describe()
            raw = desc.raw_description
            raise AssertionError(f"{e}; {raw.pending_activities} {raw.pending_workflow_task} {desc.status}") from None

    async def open_steps(self, pid: str) -> dict[str, Any]:
        s = await self.state(pid)
        return {st.id: st for st in s.steps.values() if st.status == "open"}

    async def decide(self, step_id: str, action: str, headers: dict[str, str] | None = None,
                     payload: dict[str, Any] | None = None, comment: str | None = None, expect: int = 200,
                     **kw: Any):
        pid = next((p for p in self.pids if step_id.startswith(p.rsplit("-buddy-", 1)[1] + ".")), None)
        if headers is None:
            st = (await self.open_steps(pid))[step_id]
            headers = self.headers_for(st.role, st.subject["buddy_ods"])
        body = {"action": action, "payload": payload or {}, **({"comment": comment} if comment else {})}
        r = await self.stack.http.post(f"/regimes/{self.rid}/steps/{step_id}/decisions", json=body,
                                       headers=headers, **kw)
        assert r.status_code == expect, r.text
        if pid and expect == 200:
            await self.settle(pid)
        return r

    async def ledger(self, pid: str) -> dict[str, Any]:
        r = await self.stack.http.get(f"/regimes/{self.rid}/buddies/{pid}/ledger", headers=self.ops)
        assert r.status_code == 200, r.text
        return r.json()

    async def regime_buddies(self) -> dict[str, Any]:
        st = await self.stack.handle(self.rid).query(RegimeWorkflow.get_state)
        return {k: v.model_dump(mode="json") for k, v in st.buddies.items()}

    async def regime_sees(self, pid: str, **expected: Any) -> dict[str, Any]:
        """The regime's state shows the partnership as expected (the child reports by signal)."""

        async def shown() -> dict[str, Any]:
            return (await self.regime_buddies()).get(pid, {})

        return await eventually(shown, until=lambda b: all(b.get(k) == v for k, v in expected.items()),
                                what=f"the regime to show {pid} as {expected}", timeout=10, interval=0.03)

    async def agree(self, pid: str, buddy_ods: str, plan: dict[str, Any] = PLAN) -> None:
        """From the agreement in principle to an agreed support plan, everyone acting on time."""
        key = pid.rsplit("-buddy-", 1)[1]
        await self.decide(f"{key}.aip_buddy", "accept")
        for who in ("regulator", "trust", "buddy"):
            await self.decide(f"{key}.sign_{who}", "sign")
        await self.decide(f"{key}.support_plan", "submit", payload=plan)
        await self.decide(f"{key}.plan_agree_regulator", "agree")
        await self.decide(f"{key}.plan_agree_trust", "agree")

    async def confirm_all(self, pid: str, n: int) -> None:
        key = pid.rsplit("-buddy-", 1)[1]
        for who in ("id", "trust", "buddy"):
            await self.decide(f"{key}.q{n}.confirm_{who}", "confirm")


    async def drive(self, forecasts: dict[str, int]) -> None:
        """Everyone acts on every open partnership step (and on the steps that opens), on the same day.

        Forecasts are the partnership's standard amount, or what is left of its agreed level once the forecasts
        of quarters not yet settled are counted (domain/ledger.py Ledger.forecastable_pence)."""
        acted = True
        while acted:
            acted = False
            for pid in self.pids:
                for sid, st in sorted((await self.open_steps(pid)).items()):
                    led = (await self.state(pid)).ledger
                    if st.kind == "buddy_forecast":
                        amount = min(forecasts[pid], led.forecastable_pence())
                        await self.decide(sid, "sign_off", payload=lines(("maternity", amount)) if amount else {})
                    elif st.kind.startswith("buddy_confirm"):
                        await self.decide(sid, "confirm")
                    elif st.kind == "buddy_funding_agreement":  # a regime with central funding (issue 16 item 1)
                        await self.decide(sid, "record", payload={"agreed_pence": led.agreed_level_pence})
                    elif st.kind == "buddy_funding_agreement_buddy":
                        await self.decide(sid, "agree")
                    elif st.kind == "buddy_authorise":
                        q = led.quarter(st.subject["quarter"])
                        if q.forecast_pence and q.forecast_pence <= led.remaining_pence:
                            await self.decide(sid, "authorise",
                                              payload={"lines": [ln.model_dump() for ln in q.forecast_lines]})
                        else:
                            await self.decide(sid, "decline", comment="nothing left of the agreed level to pay")
                    else:
                        continue
                    acted = True


async def place_and_agree(stack, ods: str, buddy_ods: str, level: int = 30_000_000,
                          plan: dict[str, Any] = PLAN) -> tuple[World, str]:
    w = await World.place(stack, ods)
    pid = await w.add(buddy_ods, level=level)
    await w.agree(pid, buddy_ods, plan=plan)
    return w, pid


# ---------------------------------------------------------------------------- the 18-month partnership
async def test_two_buddies_over_18_months_ledgers_right_at_every_quarter(stack):
    w = await World.place(stack, "RZ1")
    a = await w.add("BZ1", level=30_000_000)
    await w.regime_sees(a, stage="agreement_in_principle", agreed_level_pence=30_000_000)
    await w.agree(a, "BZ1")
    # (The buddy's funding agreement, in months 4-6, opened when the formal agreement was signed: issue 16 item 1.)
    assert list(await w.open_steps(a)) == ["BZ1.funding_agreement", "BZ1.q1.forecast"]
    forecasts = {a: 4_000_000}
    b = None
    quarters_seen: dict[str, set[int]] = {a: set()}
    while w.day < 560:
        await w.advance(14)
        if b is None and w.day >= 120:  # month 4: a maternity-only buddy joins
            b = await w.add("BZ2", scope="maternity", level=10_000_000)
            assert b == f"{w.rid}-buddy-BZ2-maternity"
            await w.agree(b, "BZ2", plan=MATERNITY_PLAN)
            forecasts[b], quarters_seen[b] = 2_500_000, set()
        await w.drive(forecasts)
        regime = await w.regime_buddies()
        for pid in w.pids:
            led = await w.ledger(pid)
            t = led["totals"]
            paid = sum(q["paid_pence"] for q in led["quarters"])
            assert t["paid_pence"] == paid == led["recorded_paid_pence"]
            assert t["remaining_pence"] == t["agreed_level_pence"] - t["authorised_pence"] >= 0
            assert t["authorised_pence"] == t["paid_pence"]  # every authorisation is recorded straight away
            seen = await w.regime_sees(pid, paid_pence=paid, agreed_level_pence=t["agreed_level_pence"])
            assert seen["stage"] == "quarterly_cycle" and not seen["ended"]
            quarters_seen[pid].add(seen["current_quarter"])
            assert set(regime) <= set(w.pids)
    led_a, led_b = await w.ledger(a), await w.ledger(b)
    assert [q["paid_pence"] for q in led_a["quarters"][:6]] == [4_000_000] * 6
    assert led_a["totals"]["paid_pence"] == 24_000_000 and len(led_a["payments"]) == 6
    assert [q["paid_pence"] for q in led_b["quarters"][:4]] == [2_500_000] * 4
    assert led_b["totals"]["remaining_pence"] == 0 and len(led_b["payments"]) == 4
    assert quarters_seen[a] >= {1, 2, 3, 4, 5, 6} and quarters_seen[b] >= {1, 2, 3, 4}
    await w.regime_sees(a, paid_pence=24_000_000)
    await w.regime_sees(b, paid_pence=10_000_000, agreed_level_pence=10_000_000)
    st = (await w.stack.http.get(f"/regimes/{w.rid}/buddies", headers=w.ops)).json()
    shares = {i["partnership_id"]: i["paid_share"] for i in st["items"]}
    assert shares == {a: 0.8, b: 1.0}
    assert all(i["share_used"] == i["paid_share"] for i in st["items"])  # the deprecated name, same figure
    assert {i["partnership_id"]: i["authorised_share"] for i in st["items"]} == {a: 0.8, b: 1.0}
    # Nobody acted late in this scenario, so no partnership step escalated beyond a reminder.
    for pid in w.pids:
        assert {e.rung for e in (await w.state(pid)).escalations} <= {"reminder"}
    # Eighteen months of a partnership replay deterministically.
    history = await w.stack.handle(a).fetch_history()
    await Replayer(workflows=[BuddyPartnershipWorkflow], data_converter=pydantic_data_converter).replay_workflow(
        history)


# ---------------------------------------------------------------------------- deadlines
async def test_formal_agreement_signed_late_escalates_then_is_accepted(stack):
    w = await World.place(stack, "RZ2")
    pid = await w.add("BZ3", level=None)  # no agreement in principle yet: the regulator records it
    r = await w.decide("BZ3.aip_regulator", "record", payload={"agreed_level_pence": 2_500_000.5,
                                                                "terms_of_reference": TOR}, expect=422)
    assert "agreed_level_pence" in r.json()["detail"]  # money is integer pence, never a float
    await w.decide("BZ3.aip_regulator", "record", payload={"agreed_level_pence": 25_000_000,
                                                            "terms_of_reference": TOR})
    await w.decide("BZ3.aip_buddy", "accept")
    steps = await w.open_steps(pid)
    aip_day = (await w.state(pid)).agreed_in_principle_on
    assert {s.due for s in steps.values()} == {aip_day + timedelta(days=42)}  # six weeks, each signature a step
    await w.decide("BZ3.sign_regulator", "sign")
    await w.decide("BZ3.sign_buddy", "sign")
    # A member of the buddy trust cannot sign for the trust.
    await w.decide("BZ3.sign_trust", "sign", headers=w.stack.auth("infiltrator", "trust", trusts=["RZ2"], org="BZ3"),
                   expect=403)
    await w.advance(50)
    s = await w.state(pid)
    assert [(e.step_id, e.rung) for e in s.escalations] == [
        ("BZ3.sign_trust", "reminder"), ("BZ3.sign_trust", "breach"), ("BZ3.sign_trust", "dd_escalation")]
    assert s.steps["BZ3.sign_trust"].late and s.stage == "formal_agreement"
    notes = await w.stack.pool.fetch("SELECT rung, recipients FROM notifications WHERE workflow_id=$1 AND step_id=$2 "
                                     "ORDER BY seq", pid, "BZ3.sign_trust")
    assert [(n["rung"], n["recipients"]) for n in notes] == [
        ("reminder", ["trust"]), ("breach", ["trust", "improvement_director"]), ("dd_escalation", ["regulator_dd"])]
    inbox = (await w.stack.http.get("/tasks", headers=w.trust)).json()["items"]
    assert [t["step_id"] for t in inbox if t["workflow_id"] == pid] == ["BZ3.sign_trust"]  # the inbox reads real time

    r = await w.decide("BZ3.sign_trust", "sign")
    assert r.json()["step"]["late"] is True and r.json()["stage"] == "support_plan"
    s = await w.state(pid)
    assert s.formal_agreement_on == aip_day + timedelta(days=50)
    assert s.steps["BZ3.support_plan"].due == s.formal_agreement_on + timedelta(days=42)
    await w.regime_sees(pid, stage="support_plan", agreed_level_pence=25_000_000)
    events = [r["event"] for r in await w.stack.pool.fetch(
        "SELECT event FROM audit_log WHERE workflow_id=$1 ORDER BY id", pid)]
    assert events.count("escalation") == 3 and "formal_agreement.signed" in events
    # The regulator moves the plan's deadline (a message to the partnership; see the report on the API route).
    view = await w.stack.handle(pid).execute_update(BuddyPartnershipWorkflow.amend_deadline, DeadlineChange(
        step_id="BZ3.support_plan", new_due=s.formal_agreement_on + timedelta(days=60), reason="board elections",
        actor=Actor(user_id="reg-1", role="regulator")))
    assert view.step.due == s.formal_agreement_on + timedelta(days=60) and view.step.amendments


# ---------------------------------------------------------------------------- disputes and duties
async def update_error(handle, update, arg) -> ApplicationError:
    try:
        await handle.execute_update(update, arg)
    except WorkflowUpdateFailedError as e:
        assert isinstance(e.cause, ApplicationError)
        return e.cause
    raise AssertionError("the update was accepted")


async def test_disputed_quarter_pays_nothing_until_resolved(stack):
    w, pid = await place_and_agree(stack, "RZ3", "BZ4")
    await w.decide("BZ4.q1.forecast", "sign_off", payload=lines(("governance", 3_000_000), ("maternity", 1_000_000)))
    await w.advance(92)
    handle = w.stack.handle(pid)
    # One person never answers for two parties of the same quarter (the workflow's own check).
    await handle.execute_update(BuddyPartnershipWorkflow.decide_step, Decision(
        step_id="BZ4.q1.confirm_trust", action="confirm", actor=Actor(user_id="pat", role="trust")))
    err = await update_error(handle, BuddyPartnershipWorkflow.decide_step, Decision(
        step_id="BZ4.q1.confirm_buddy", action="confirm", actor=Actor(user_id="pat", role="buddy")))
    assert err.type == "SeparationOfDuties"
    await w.settle(pid)
    await w.decide("BZ4.q1.confirm_buddy", "confirm")
    r = await w.decide("BZ4.q1.confirm_id", "dispute", expect=422)  # a dispute needs a reason
    assert r.json()["type"].endswith("reason-required")
    await w.decide("BZ4.q1.confirm_id", "dispute", comment="the governance workshops did not take place")
    await w.regime_sees(pid, confirmations_outstanding=["Q1:improvement_director"], paid_pence=0)
    # Nothing to authorise while the quarter is disputed.
    assert "BZ4.q1.authorise" not in await w.open_steps(pid)
    await w.decide("BZ4.q1.authorise", "authorise", headers=w.idir, payload=lines(("governance", 1)), expect=404)
    await w.advance(10)
    led = await w.ledger(pid)
    assert led["totals"]["paid_pence"] == 0 and led["payments"] == [] and led["quarters"][0]["disputes"][0][
        "resolved"] is False
    # The regulator records the resolution: half the governance support was delivered.
    r = await w.decide("BZ4.q1.resolve", "resolve", payload={"resolution": "two of four workshops held; "
                                                                            "pay for those", "agreed_pence": 2_500_000})
    assert "BZ4.q1.confirm_id-2" in await w.open_steps(pid)
    await w.decide("BZ4.q1.confirm_id-2", "confirm")
    await w.decide("BZ4.q1.authorise", "authorise", payload=lines(("governance", 2_000_000), ("maternity", 500_001)),
                   expect=422)
    await w.decide("BZ4.q1.authorise", "authorise", payload=lines(("governance", 1_500_000), ("maternity", 1_000_000)))
    led = await w.ledger(pid)
    q1 = led["quarters"][0]
    assert q1["disputes"][0]["resolution"].startswith("two of four") and q1["disputes"][0]["resolved_by"] == "reg-1"
    assert led["totals"]["paid_pence"] == led["recorded_paid_pence"] == 2_500_000
    await w.regime_sees(pid, confirmations_outstanding=[], paid_pence=2_500_000)

    # A significant change to the support plan: proposed by the buddy, approved by the ID and the trust.
    new_plan = {"workstreams": PLAN["workstreams"] + [{"id": "estates", "name": "Estates", "activities": ["audit"],
                                                        "projected_cost_pence": 1_000_000}]}
    r = await w.stack.http.post(f"/regimes/{w.rid}/buddies/{pid}/plan-changes", headers=w.buddy("BZ4", "planner"),
                                json={"plan": new_plan, "reason": "estates review requested by the trust"})
    assert r.status_code == 201, r.text
    await w.settle(pid)
    err = await update_error(handle, BuddyPartnershipWorkflow.decide_step, Decision(
        step_id="BZ4.plan_change-1.approve_trust", action="approve",
        actor=Actor(user_id="planner-BZ4", role="trust")))
    assert err.type == "SeparationOfDuties"
    await w.decide("BZ4.plan_change-1.approve_id", "approve")
    await w.decide("BZ4.plan_change-1.approve_trust", "approve")
    s = await w.state(pid)
    assert s.plan_version == 2 and "estates" in s.plan.workstream_ids()
    # Who may read the ledger: the trust's people, national roles, and the buddy itself; no other buddy.
    url = f"/regimes/{w.rid}/buddies/{pid}/ledger"
    assert (await w.stack.http.get(url, headers=w.buddy("BZ4"))).status_code == 200
    assert (await w.stack.http.get(url, headers=w.buddy("BZX"))).status_code == 404  # not theirs: as if absent
    assert (await w.stack.http.get(url, headers=w.trust)).status_code == 200
    r = await w.stack.http.get(f"/regimes/{w.rid}/buddies/{pid}", headers=w.idir)
    assert r.status_code == 200 and r.json()["ledger_totals"]["paid_pence"] == 2_500_000


# ---------------------------------------------------------------------------- money limits
async def test_payment_above_forecast_and_above_the_agreed_level_refused(stack):
    small = {"workstreams": [dict(ws, projected_cost_pence=2_500_000) for ws in PLAN["workstreams"]]}
    w, pid = await place_and_agree(stack, "RZ4", "BZ5", level=5_000_000, plan=small)
    await w.decide("BZ5.q1.forecast", "sign_off", payload=lines(("governance", 5_000_001)), expect=422)
    await w.decide("BZ5.q1.forecast", "sign_off", payload=lines(("governance", 4_000_000)))
    await w.advance(70)  # Q2's forecast opens four weeks before Q2; nothing is authorised yet
    # Forecasts never total more than what is left (issue 14): Q1's £40,000 is signed off and not yet settled.
    r = await w.decide("BZ5.q2.forecast", "sign_off", payload=lines(("maternity", 2_500_000)), expect=422)
    assert "not yet settled" in r.json()["detail"] and "at most £10,000.00" in r.json()["detail"]
    await w.decide("BZ5.q2.forecast", "sign_off", payload=lines(("maternity", 1_000_000)))
    await w.advance(25)
    await w.confirm_all(pid, 1)
    for bad, why in ((lines(("governance", 4_000_001)), "forecast"),
                     ({"lines": [{"workstream": "governance", "description": "x", "amount_pence": 3_999_999.5}]},
                      "amount_pence"),
                     (lines(("estates", 100)), "estates")):
        r = await w.decide("BZ5.q1.authorise", "authorise", payload=bad, expect=422)
        assert why in r.json()["detail"]
    await w.decide("BZ5.q1.authorise", "authorise", payload=lines(("governance", 4_000_000)))
    assert (await w.ledger(pid))["totals"]["remaining_pence"] == 1_000_000
    await w.advance(92)  # Q3's forecast opens; Q2 has ended
    # What is left (£10,000) is Q2's, forecast and not yet settled: Q3 can plan nothing more.
    r = await w.decide("BZ5.q3.forecast", "sign_off", payload=lines(("governance", 1)), expect=422)
    assert "at most £0.00" in r.json()["detail"]
    await w.decide("BZ5.q3.forecast", "sign_off", payload={})
    await w.confirm_all(pid, 2)
    r = await w.decide("BZ5.q2.authorise", "authorise", payload=lines(("maternity", 1_000_001)), expect=422)
    assert "forecast" in r.json()["detail"]
    await w.decide("BZ5.q2.authorise", "authorise", payload=lines(("maternity", 1_000_000)))
    led = await w.ledger(pid)
    assert (led["totals"]["paid_pence"], led["totals"]["remaining_pence"]) == (5_000_000, 0)
    await w.regime_sees(pid, paid_pence=5_000_000)
    assert led["totals"]["forecast_pence"] == 5_000_000 and len(led["payments"]) == 2


# ---------------------------------------------------------------------------- exactly once
async def test_payment_recorded_once_across_retries_and_a_worker_dying_after_the_insert(stack):
    w, pid = await place_and_agree(stack, "RZ5", "BZ6")
    q1 = lines(("governance", 3_000_000), ("maternity", 750_000))
    await w.decide("BZ6.q1.forecast", "sign_off", payload=q1)
    await w.advance(92)
    await w.confirm_all(pid, 1)

    # The activity, twice with the same key, against real PostgreSQL: one row, the same payment id.
    acts = PaymentActivities(w.stack.pool)
    ins = PaymentInstruction(partnership_id=pid, quarter=1, regime_id=w.rid, buddy_ods="BZ6", amount_pence=3_750_000,
                             lines=[Line.model_validate(ln) for ln in q1["lines"]], authorised_by="id-1",
                             authorised_at=datetime.now(UTC))
    first = await acts.record_payment(ins)  # ...and then the worker died before reporting back
    again = await acts.record_payment(ins)
    assert first.created and not again.created and again.payment_id == first.payment_id
    changed = ins.model_copy(update={"amount_pence": 3_750_001, "lines": ins.lines[:1] + [
        ins.lines[1].model_copy(update={"amount_pence": 750_001})]})
    try:
        await acts.record_payment(changed)
        raise AssertionError("a different payment for a paid quarter was accepted")
    except ApplicationError as e:
        assert e.type == "PaymentConflict" and e.non_retryable
    try:
        await w.stack.pool.execute(
            "INSERT INTO buddy_payments (partnership_id, quarter, regime_id, buddy_ods, amount_pence, authorised_by, "
            "authorised_at) VALUES ($1, 1, $2, 'BZ6', 1, 'x', now())", pid, w.rid)
        raise AssertionError("the unique key let a second payment in")
    except asyncpg.UniqueViolationError:
        pass

    # The authorisation itself, sent three times at once and retried with an idempotency key.
    sends = [w.stack.http.post(f"/regimes/{w.rid}/steps/BZ6.q1.authorise/decisions", headers=w.idir,
                               json={"action": "authorise", "payload": q1}) for _ in range(3)]
    codes = sorted(r.status_code for r in await asyncio.gather(*sends))
    assert codes == [200, 409, 409], codes
    key = {"Idempotency-Key": "authorise-q1-retry"}
    r1 = await w.stack.http.post(f"/regimes/{w.rid}/steps/BZ6.q1.authorise/decisions", headers={**w.idir, **key},
                                 json={"action": "authorise", "payload": q1})
    r2 = await w.stack.http.post(f"/regimes/{w.rid}/steps/BZ6.q1.authorise/decisions", headers={**w.idir, **key},
                                 json={"action": "authorise", "payload": q1})
    assert r1.status_code == r2.status_code == 409 and r2.headers.get("idempotent-replayed") == "true"
    await w.settle(pid)
    rows = await w.stack.pool.fetch("SELECT id, amount_pence FROM buddy_payments WHERE partnership_id=$1", pid)
    assert [(r["id"], r["amount_pence"]) for r in rows] == [(first.payment_id, 3_750_000)]
    led = await w.ledger(pid)
    assert led["quarters"][0]["payment_id"] == first.payment_id and led["totals"]["paid_pence"] == 3_750_000
    recorded = await w.stack.pool.fetch("SELECT detail FROM audit_log WHERE workflow_id=$1 AND "
                                        "event='buddy_payment_recorded'", pid)
    assert len(recorded) == 1 and recorded[0]["detail"]["first_write"] is False
    try:
        await w.stack.pool.execute("UPDATE buddy_payments SET amount_pence = 1 WHERE partnership_id = $1", pid)
        raise AssertionError("a recorded payment was edited")
    except asyncpg.PostgresError as e:
        assert "final" in str(e)


# ---------------------------------------------------------------------------- ending
async def test_partnership_ended_early_settles_its_last_quarter_and_regime_end_ends_the_rest(stack):
    w, pid = await place_and_agree(stack, "RZ6", "BZ7")
    await w.decide("BZ7.q1.forecast", "sign_off", payload=lines(("governance", 3_000_000)))
    await w.advance(70)
    await w.decide("BZ7.q2.forecast", "sign_off", payload=lines(("governance", 3_000_000)))
    await w.advance(25)
    await w.confirm_all(pid, 1)
    await w.decide("BZ7.q1.authorise", "authorise", payload=lines(("governance", 3_000_000)))
    await w.advance(30)  # a month into Q2
    end = f"/regimes/{w.rid}/buddies/{pid}/end"
    r = await w.stack.http.post(end, headers=w.stack.auth("reg-9", "regulator", org="BZ7"), json={"reason": "x"})
    assert r.status_code == 403  # nobody from the buddy trust ends its own partnership
    r = await w.stack.http.post(end, headers=w.trust, json={"reason": "capacity"})
    assert r.status_code == 403
    r = await w.stack.http.post(end, headers=w.regulator, json={"reason": "the buddy's own CQC rating fell"})
    assert r.status_code == 200, r.text
    assert r.json()["stage"] == "settling"
    await w.settle(pid)
    s = await w.state(pid)
    q2 = s.ledger.quarter(2)
    assert q2.end.isoformat() == s.ending["on"] and q2.start < q2.end < q2.start + timedelta(days=60)  # cut short
    assert set(await w.open_steps(pid)) == {"BZ7.q2.confirm_id", "BZ7.q2.confirm_trust", "BZ7.q2.confirm_buddy"}
    await w.regime_sees(pid, stage="settling", ended=False)
    r = await w.stack.http.post(end, headers=w.regulator, json={"reason": "again"})
    assert r.status_code == 409
    await w.confirm_all(pid, 2)
    await w.decide("BZ7.q2.authorise", "authorise", payload=lines(("governance", 1_000_000)))
    await w.regime_sees(pid, stage="ended", ended=True, paid_pence=4_000_000)
    result = await w.stack.handle(pid).result()
    assert result["ended"] and result["paid_pence"] == 4_000_000
    assert len(s.ledger.quarters) == 2  # no quarter after the one it ended in

    # A second partnership, still agreeing its terms, ends when the regime closes.
    other = await w.add("BZ8", level=None)
    r = await w.stack.http.post(f"/regimes/{w.rid}/closure", headers=w.regulator,
                                json={"solution": "acquisition", "reason": "acquired by a neighbouring trust",
                                      "successor_ods_code": "RSU3"})
    assert r.status_code == 200, r.text
    done = await w.stack.handle(other).result()
    assert done["ended"] and done["stage"] == "ended"
    await w.settle(other)
    task = await w.stack.pool.fetchrow("SELECT state FROM tasks WHERE workflow_id=$1 AND step_id='BZ8.aip_regulator'",
                                       other)
    assert task["state"] == "cancelled"


# ---------------------------------------------------------------------------- long life
async def test_partnership_continues_as_new_carrying_its_state(stack):
    w = await World.place(stack, "RZ7")
    pid = buddy_workflow_id(w.rid, "BZ9", "trust-wide")
    start = BuddyStart(
        regime_id=w.rid, parent_workflow_id=w.rid, trust=Trust(ods_code="RZ7", name="Example Hospitals NHS Trust"),
        request=BuddyRequest(buddy=Trust(ods_code="BZ9", name="BZ9 Hospitals NHS FT"),
                             actor=Actor(user_id="reg-1", role="regulator"),
                             agreement_in_principle={"agreed_level_pence": 30_000_000, "terms_of_reference": TOR}),
        ladder=[Rung.model_validate(r) for r in w.stack.settings.ladder],
        continue_as_new_after_events=60,  # a run this short shows the state surviving several hand-overs
    )
    first = await w.stack.skipper.client.start_workflow(BuddyPartnershipWorkflow.run, start, id=pid,
                                                        task_queue=w.stack.task_queue)
    w.pids.append(pid)
    await w.settle(pid)
    await w.agree(pid, "BZ9")
    await w.decide("BZ9.q1.forecast", "sign_off", payload=lines(("governance", 2_000_000)))
    await w.advance(92)
    await w.confirm_all(pid, 1)
    await w.decide("BZ9.q1.authorise", "authorise", payload=lines(("governance", 2_000_000)))
    s = await w.state(pid)
    desc = await w.stack.handle(pid).describe()
    assert s.runs >= 3 and desc.run_id != first.result_run_id
    assert s.stage == "quarterly_cycle" and s.plan_version == 1 and s.ledger.paid_pence == 2_000_000
    assert s.steps["BZ9.sign_trust"].status == "done" and "BZ9.q2.forecast" in s.steps
    tasks = await w.stack.pool.fetch("SELECT step_id FROM tasks WHERE workflow_id=$1", pid)
    assert sorted(t["step_id"] for t in tasks) == sorted(sid for sid in s.steps if sid != "BZ9.aip_regulator")
    seqs = [r["seq"] for r in await w.stack.pool.fetch("SELECT seq FROM audit_log WHERE workflow_id=$1 ORDER BY id",
                                                         pid)]
    assert seqs == sorted(set(seqs))  # one counter across runs: nothing written twice, nothing reused
    await w.regime_sees(pid, paid_pence=2_000_000)
    # Search attributes of a partnership hold codes only, never a person.
    sa = {k.name: v for k, v in desc.typed_search_attributes if k.name != "BuildIds"}  # BuildIds: the server's
    assert sa == {"TrustOdsCode": "RZ7", "RegimeId": w.rid}
    # The regime handed its own partnerships off too (see the module docstring).
    other = await w.add("BZ8", level=None)
    # The hand-off follows the update's answer (the regime starts the child, then continues as new).
    async def runs() -> int:
        return (await w.stack.handle(w.rid).query(RegimeWorkflow.get_state)).runs

    # RPCError: the new run has not had its first workflow task yet.
    await eventually(runs, until=lambda n: n >= 2, what="the regime to continue as new", timeout=15, interval=0.05,
                     ignore=RPCError)
    assert (await w.stack.handle(w.rid).query(RegimeWorkflow.get_state)).runs >= 2
    await w.advance(3)
    assert (await w.state(other)).steps["BZ8.aip_regulator"].status == "open"


# ---------------------------------------------------------------------------- after exit
async def test_at_exit_one_partnership_runs_on_to_its_date_and_continued_support_is_tracked(stack):
    """Issue 14 item 2 (seed 000 §1: a trust can exit with continued support, e.g. a partner trust's programme of
    work scheduled to finish a few months after special measures ends; §4d: the board-to-board within 6 months of
    exit). The regulator decides per partnership: the one it names runs on to its date, quarters and payments
    continuing; the other ends at exit. Other support is tracked as items until the post-exit board-to-board."""
    from tests.helpers import IMPROVED, outcome

    w, pid = await place_and_agree(stack, "RZ9", "BZ9")
    other = await w.add("BZ10", level=None)
    await w.decide("BZ9.q1.forecast", "sign_off", payload=lines(("governance", 3_000_000)))
    cqc = stack.auth("cqc-1", "cqc")
    today = london_date(datetime.now(UTC)) + timedelta(days=w.day)
    r = await stack.http.post(f"/regimes/{w.rid}/inspections", headers=cqc,
                              json=outcome(f"INS-{w.ods}-2", today, IMPROVED))
    assert r.status_code == 202, r.text
    rec = await eventually(lambda: w.stack.handle(w.rid).query(RegimeWorkflow.get_state),
                           until=lambda s: any(x.kind == "cqc_recommendation" and x.status == "open"
                                               for x in s.steps.values()), what="CQC's recommendation step",
                           timeout=10, interval=0.05)
    rec_id = next(x.id for x in rec.steps.values() if x.kind == "cqc_recommendation" and x.status == "open")
    await w.decide(rec_id, "recommend_exit", headers=cqc, comment="sustained improvement")
    run_to = today + timedelta(days=100)
    decide = partial(w.decide, "regulator_decision", "exit", w.regulator, comment="exit on CQC's recommendation")
    r = await decide(payload={"partnerships": {"BZ77": {"continue_until": run_to.isoformat(), "reason": "x"}}},
                     expect=422)
    assert "BZ77 is not a running partnership" in r.json()["detail"]
    r = await decide(payload={"support_items": [{"description": "ID visits monthly", "owner": "NHS TDA",
                                                 "due": (today + timedelta(days=200)).isoformat()}]}, expect=422)
    assert "on or before the post-exit board-to-board" in r.json()["detail"]
    await decide(payload={
        "partnerships": {"BZ9": {"continue_until": run_to.isoformat(),
                                 "reason": "the governance programme finishes in the spring"}},
        "support_items": [{"description": "Improvement director visits monthly to the summer",
                           "owner": "NHS TDA improvement director", "due": (today + timedelta(days=120)).isoformat()}]})

    st = await w.stack.handle(w.rid).query(RegimeWorkflow.get_state)
    assert st.phase == "exited"
    item = next(x for x in st.steps.values() if x.kind == "continued_support_item")
    assert item.status == "open" and item.subject["owner"] == "NHS TDA improvement director"
    assert item.due == on_working_day(today + timedelta(days=120))
    await w.regime_sees(pid, stage="quarterly_cycle", ended=False, continue_until=run_to.isoformat())
    done = await w.stack.handle(other).result()  # the partnership not named ends at exit
    assert done["ended"]
    page = await stack.http.get(f"/web/regimes/{w.rid}", headers=w.ops)
    assert f'data-continue-until="{run_to.isoformat()}"' in page.text

    # Its quarters go on after exit: quarter 1 is confirmed, authorised and paid.
    await w.advance(95)
    await w.confirm_all(pid, 1)
    await w.decide("BZ9.q1.authorise", "authorise", payload=lines(("governance", 3_000_000)))
    await w.regime_sees(pid, paid_pence=3_000_000)
    # On its date it ends as if the regulator had ended it then: the quarter under way is cut short and settled.
    await w.advance(10)
    s = await w.state(pid)
    assert s.ending is not None and s.ending["on"] == run_to.isoformat()
    assert s.stage in ("settling", "ended")


# ---------------------------------------------------------------------------- appointing the buddy (issue 14 item 14)
async def test_the_regulator_agrees_a_buddy_in_months_1_to_3_and_the_policy_says_who_agrees_the_package(stack):
    """Seed 000 §4c: the buddy trust is appointed in months 1-3: a regulator step due 3 months after entry, which
    escalates like any other and is done when the regulator adds a partnership. Who agrees the support package
    is the regime's policy: the regulator and the trust (§4a(ii), default), or both trusts and the improvement
    director (§3), chosen here for one regime at placement."""
    today = london_date(datetime.now(UTC))
    body = placement("RZA", today) | {"policy": {"buddy_package_agreed_by": "trusts_and_id"}}
    r = await stack.http.post("/regimes", json=body, headers=stack.auth("reg-1", "regulator"))
    assert r.status_code == 201, r.text
    w = World(stack, "RZA", r.json()["regime_id"])
    st = await w.stack.handle(w.rid).query(RegimeWorkflow.get_state)
    step = st.steps["appoint_buddy"]
    assert step.status == "open" and step.role == "regulator"
    assert step.due == on_working_day(add_months(st.placement.entry_date, 3))
    # "No buddy" needs the regulator's reason (refused without it; nothing changes).
    r = await stack.http.post(f"/regimes/{w.rid}/steps/appoint_buddy/decisions", headers=w.regulator,
                              json={"action": "no_buddy", "payload": {}})
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json"), r.text
    assert "reason" in r.json()["detail"]

    pid = await w.add("BZA")
    # (Starting a partnership hands the regime on to a new run, which archives closed steps: read the API's view.)
    view = (await stack.http.get(f"/regimes/{w.rid}", headers=w.ops)).json()
    assert (view["steps"]["appoint_buddy"]["status"], view["steps"]["appoint_buddy"]["outcome"]) == (
        "done", "buddy_agreed")

    key = pid.rsplit("-buddy-", 1)[1]
    await w.decide(f"{key}.aip_buddy", "accept")
    for who in ("regulator", "trust", "buddy"):
        await w.decide(f"{key}.sign_{who}", "sign")
    await w.decide(f"{key}.support_plan", "submit", payload=PLAN)
    open_now = await w.open_steps(pid)
    assert {s.kind for s in open_now.values()} == {"buddy_plan_agree_trust", "buddy_plan_agree_id",
                                                   "buddy_funding_agreement"}  # (months 4-6: issue 16 item 1)
    assert open_now[f"{key}.plan_agree_id"].role == "improvement_director"
    await w.decide(f"{key}.plan_agree_id", "agree")
    await w.decide(f"{key}.plan_agree_trust", "agree")
    s = await w.state(pid)
    assert s.stage == "quarterly_cycle" and s.p.package_agreed_by == "trusts_and_id"
