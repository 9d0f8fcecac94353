"""The buddy trust's funding agreement, finalised in months 4-6 like the trust's (issue 16 item 1; seed 000's
timeline: "funding agreements for the trust and the buddy finalised"). In a partnership of a regime with central
funding the regulator records it once the formal agreement is signed, never above the partnership's agreed level,
and the buddy agrees it (or returns it with a reason); it is due at the later of the regime's own agreement date
(entry + 6 months) and 12 weeks after the partnership starts, and escalates on the regime's ladder. A partnership
of a regime without central funding (every one recorded before) has no such step.

Through the HTTP API on the real stack (tests/test_buddy.py's World); the regime without funding on the fast
workflow layer, since every regime the API places now has central funding.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError
from temporalio.worker import Replayer, Worker

from domain import dates
from domain.ledger import FUNDING_KINDS, BuddyKind, funding_agreement_due
from domain.models import Actor, Decision
from domain.steps import FUNDING_DECISION_DAYS, FUNDING_MONTHS
from infra.clients import connect_temporal
from tests.conftest import Effects
from tests.helpers import placement
from tests.test_buddy import PLAN, TOR, World
from tests.test_workflow_rules import start as start_regime
from tools.polling import eventually
from workflows.buddy import BuddyPartnershipWorkflow
from workflows.common import BuddyRequest, buddy_workflow_id
from workflows.regime import RegimeWorkflow

RECORD = BuddyKind.buddy_funding_agreement
AGREE = BuddyKind.buddy_funding_agreement_buddy
PROBLEM = "application/problem+json"


async def entry_date(w: World):
    return (await w.stack.handle(w.rid).query(RegimeWorkflow.get_state)).placement.entry_date


async def sign(w: World, key: str) -> None:
    await w.decide(f"{key}.aip_buddy", "accept")
    for who in ("regulator", "trust", "buddy"):
        await w.decide(f"{key}.sign_{who}", "sign")


async def audit_rows(w: World, pid: str) -> int:
    return await w.stack.pool.fetchval("SELECT count(*) FROM audit_log WHERE workflow_id = $1", pid)


async def test_recorded_within_the_agreed_level_and_agreed_by_the_buddy_once_the_formal_agreement_is_signed(stack):
    w = await World.place(stack, "RFA1")
    pid = await w.add("BFA1", level=30_000_000)
    s = await w.state(pid)
    entry = await entry_date(w)
    # The regime passed its own agreement date (entry + 6 months); nothing opens before the formal agreement.
    assert s.p.funding_agreement_due_from == dates.add_months(entry, FUNDING_MONTHS[1][1])
    assert not any(st.kind in FUNDING_KINDS for st in s.steps.values())
    await sign(w, "BFA1")
    s = await w.state(pid)
    step = s.steps["BFA1.funding_agreement"]
    assert (step.kind, step.role, step.status) == (RECORD, "regulator", "open")
    assert step.due == funding_agreement_due(s.p.funding_agreement_due_from, s.p.started_on)
    assert step.due == s.p.funding_agreement_due_from  # started at entry: the regime's months 4-6 date is the later
    view = (await stack.http.get(f"/regimes/{w.rid}/buddies/{pid}", headers=w.ops)).json()
    basis = view["steps"]["BFA1.funding_agreement"]["deadline_basis"]
    assert (basis["kind"], basis["source"]) == ("service_default", "domain.ledger.funding_agreement_due")

    # Payments do not wait for it: the support plan is agreed and quarter 1's forecast opens meanwhile.
    await w.decide("BFA1.support_plan", "submit", payload=PLAN)
    await w.decide("BFA1.plan_agree_regulator", "agree")
    await w.decide("BFA1.plan_agree_trust", "agree")
    assert {"BFA1.q1.forecast", "BFA1.funding_agreement"} <= set(await w.open_steps(pid))

    # Above the partnership's agreed level (its agreement in principle): refused, and nothing changes.
    before = await audit_rows(w, pid)
    r = await w.decide("BFA1.funding_agreement", "record", payload={"agreed_pence": 30_000_001}, expect=422)
    assert r.headers["content-type"].startswith(PROBLEM), r.headers
    assert r.json()["type"].endswith("rule-broken") and "above the partnership's agreed level" in r.json()["detail"]
    assert "£300,000.00" in r.json()["detail"]
    r = await w.decide("BFA1.funding_agreement", "record", payload={"agreed_pence": 1_000_000.5}, expect=422)
    assert "agreed_pence" in r.json()["detail"]  # integer pence, never a float
    await w.decide("BFA1.funding_agreement", "record", headers=w.trust, payload={"agreed_pence": 1}, expect=403)
    await w.settle(pid)
    s = await w.state(pid)
    assert s.funding is None and s.steps["BFA1.funding_agreement"].status == "open"
    assert not s.steps["BFA1.funding_agreement"].actions and await audit_rows(w, pid) == before

    # The regulator records it; the buddy returns it with a reason, which reopens the regulator's step.
    await w.decide("BFA1.funding_agreement", "record", payload={"agreed_pence": 25_000_000, "terms": "quarterly"})
    s = await w.state(pid)
    party = s.steps["BFA1.funding_agreement_buddy"]
    assert (party.kind, party.role, party.status) == (AGREE, "buddy", "open")
    assert party.due == s.funding.recorded_on + timedelta(days=FUNDING_DECISION_DAYS)
    assert party.subject["agreement"] == "BFA1.funding_agreement" and party.subject["buddy_ods"] == "BFA1"
    r = await w.decide("BFA1.funding_agreement_buddy", "return", expect=422)
    assert r.json()["type"].endswith("reason-required")
    await w.decide("BFA1.funding_agreement_buddy", "agree", headers=w.buddy("BZZ"), expect=404)  # not its partnership
    await w.decide("BFA1.funding_agreement_buddy", "return", comment="the sum leaves out the secondments")
    s = await w.state(pid)
    again = s.steps["BFA1.funding_agreement-2"]
    assert again.status == "open" and again.data["returned_reason"] == "the sum leaves out the secondments"
    assert again.due == max(funding_agreement_due(s.p.funding_agreement_due_from, s.p.started_on),
                            s.funding.recorded_on + timedelta(days=FUNDING_DECISION_DAYS))
    assert s.funding.finalised_on is None

    # Recorded again, agreed by the buddy: finalised.
    await w.decide("BFA1.funding_agreement-2", "record", payload={"agreed_pence": 30_000_000})
    await w.decide("BFA1.funding_agreement_buddy-2", "agree")
    s = await w.state(pid)
    assert s.funding.agreed_pence == 30_000_000 and s.funding.finalised_on is not None
    assert not any(st.kind in FUNDING_KINDS and st.status == "open" for st in s.steps.values())
    events = [r["event"] for r in await stack.pool.fetch(
        "SELECT event FROM audit_log WHERE workflow_id = $1 ORDER BY id", pid)]
    assert f"{RECORD}.finalised" in events and f"{RECORD}.record" in events and f"{AGREE}.return" in events
    view = (await stack.http.get(f"/regimes/{w.rid}/buddies/{pid}", headers=w.buddy("BFA1"))).json()
    assert view["funding"]["agreed_pence"] == 30_000_000 and view["funding"]["finalised_on"]
    # The partnership replays deterministically.
    history = await stack.handle(pid).fetch_history()
    await Replayer(workflows=[BuddyPartnershipWorkflow], data_converter=pydantic_data_converter).replay_workflow(
        history)


async def test_a_partnership_started_late_is_due_12_weeks_after_it_starts_and_escalates_when_late(stack):
    # A regime taken on five months after entry: its months 4-6 date is a month away, too soon for a partnership
    # that still has its formal agreement and support plan to do.
    placed = (await stack.http.post("/regimes", headers=stack.auth("reg-1", "regulator"), json=placement(
        "RFA2", dates.london_date(datetime.now(UTC)) - timedelta(days=150)))).json()
    w = World(stack, "RFA2", placed["regime_id"])
    pid = await w.add("BFA2", level=10_000_000)
    await sign(w, "BFA2")
    s = await w.state(pid)
    entry = await entry_date(w)
    step = s.steps["BFA2.funding_agreement"]
    assert step.due == funding_agreement_due(dates.add_months(entry, FUNDING_MONTHS[1][1]), s.p.started_on)
    assert step.due == s.p.started_on + timedelta(days=84) > s.p.funding_agreement_due_from
    assert not [e for e in s.escalations if e.step_id == step.id]  # not overdue at once

    # Nobody records it: it climbs the regime's ladder like every partnership step.
    await w.advance((step.due - s.p.started_on).days + 8)
    s = await w.state(pid)
    assert [e.rung for e in s.escalations if e.step_id == step.id] == ["reminder", "breach", "dd_escalation"]
    notes = await stack.pool.fetch("SELECT rung, recipients FROM notifications WHERE workflow_id = $1 AND "
                                   "step_id = $2 ORDER BY seq", pid, step.id)
    assert [(n["rung"], n["recipients"]) for n in notes] == [
        ("reminder", ["regulator"]), ("breach", ["regulator", "improvement_director"]),
        ("dd_escalation", ["regulator_dd"])]
    # Late, still accepted; the buddy's agreement then follows.
    r = await w.decide(step.id, "record", payload={"agreed_pence": 10_000_000})
    assert r.json()["step"]["late"] is True
    await w.decide("BFA2.funding_agreement_buddy", "agree")
    assert (await w.state(pid)).funding.finalised_on is not None


async def test_a_partnership_of_a_regime_without_central_funding_has_no_funding_agreement(temporal_address):
    """Placements before issue 16 carry no funding (Placement.funding_usual_max_pence is None): the regime passes
    no date and its partnerships open no funding agreement, as every recorded partnership."""
    client: Client = await connect_temporal(temporal_address, attempts=50)
    effects = Effects()
    queue = "buddy-funding-" + uuid.uuid4().hex[:10]
    async with Worker(client, task_queue=queue, workflows=[RegimeWorkflow, BuddyPartnershipWorkflow],
                      activities=[effects.apply, effects.archive]):
        regime, _ = await start_regime(client, queue, "RFA3", programme=True)
        reg = Actor(user_id="reg-1", role="regulator")
        await regime.execute_update(RegimeWorkflow.add_buddy, BuddyRequest(
            buddy={"ods_code": "BFA3", "name": "BFA3 Hospitals NHS FT"}, actor=reg,
            agreement_in_principle={"agreed_level_pence": 5_000_000, "terms_of_reference": TOR}))
        pid = buddy_workflow_id(regime.id, "BFA3", "trust-wide")
        child = client.get_workflow_handle(pid)
        s = await eventually(lambda: child.query(BuddyPartnershipWorkflow.get_state), what="the partnership to start",
                             timeout=15, interval=0.05, ignore=RPCError)
        assert s.p.funding_agreement_due_from is None
        for step, who in (("aip_buddy", "buddy"), ("sign_regulator", "regulator"), ("sign_trust", "trust"),
                          ("sign_buddy", "buddy")):
            action = "accept" if step == "aip_buddy" else "sign"
            await child.execute_update(BuddyPartnershipWorkflow.decide_step, Decision(
                step_id=f"BFA3.{step}", action=action, actor=Actor(user_id=f"{who}-{step}", role=who)))
        s = await child.query(BuddyPartnershipWorkflow.get_state)
        assert s.stage == "support_plan" and s.funding is None
        assert not any(st.kind in FUNDING_KINDS for st in s.steps.values())
        await child.terminate("test over")
        await regime.terminate("test over")
