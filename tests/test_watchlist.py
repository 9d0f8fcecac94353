"""The challenged-providers watch list through the HTTP API (issue 16 item 4; seed 004: "not in the public
domain"): the regulator adds a trust with its reasons, an improvement director is appointed with the regime's own
step and deadline, the entry is reviewed and ends when the trust is placed in special measures (the regime linked);
only the regulator, operations and the trust's own users see it, it appears in no regimes list, inbox, export or
search attribute, and every read is recorded."""

from __future__ import annotations

from datetime import UTC, date, datetime

from domain.dates import add_months, london_date
from domain.steps import Kind
from domain.watchlist import WATCH_STEPS, WatchKind
from tests.helpers import placement
from tools.polling import eventually


async def test_a_watch_list_entry_is_confidential_gets_a_director_and_links_to_its_regime(stack):
    today = london_date(datetime.now(UTC))
    regulator = stack.auth("reg-1", "regulator")
    own_trust = stack.auth("trust-W1", "trust", trusts=["RWL1"])
    own_director = stack.auth("id-W1", "improvement_director", trusts=["RWL1"])
    other_trust = stack.auth("trust-W9", "trust", trusts=["RWL9"])
    cqc = stack.auth("cqc-1", "cqc")
    commissioner = stack.auth("ccg-W1", "commissioner", trusts=["RWL1"])
    ops = stack.auth("ops-1", "operations")

    body = {"trust": {"ods_code": "RWL1", "name": "Watchful Hospitals NHS Trust"},
            "reasons": ["A&E four-hour performance and a rising mortality index", "board instability"]}
    r = await stack.http.post("/watch-list", json=body, headers=cqc)
    assert r.status_code == 403
    r = await stack.http.post("/watch-list", json=body, headers=regulator)
    assert r.status_code == 201, r.text
    entry = r.json()
    eid = entry["entry_id"]
    added = date.fromisoformat(entry["added_on"])  # (the service's day, whatever the test's clock says)
    assert eid == f"watch-RWL1-{added.isoformat()}" and entry["reasons"] == body["reasons"]
    steps = {s["kind"]: s for s in entry["steps"]}
    # The same step and deadline as a regime's: an improvement director within 3 months.
    assert steps["appoint_improvement_director"]["due"] == add_months(added, 3).isoformat()
    assert steps["watch_review"]["role"] == "regulator"
    r = await stack.http.post("/watch-list", json=body, headers=regulator)
    assert r.status_code == 409

    # Who sees it: the regulator, operations, the trust's own users; anyone else is told it does not exist.
    for h in (regulator, ops, own_trust, own_director):
        assert (await stack.http.get(f"/watch-list/{eid}", headers=h)).status_code == 200
    for h in (other_trust, cqc, commissioner):
        r = await stack.http.get(f"/watch-list/{eid}", headers=h)
        assert r.status_code == 404 and r.json()["type"].endswith("unknown-watch-list-entry")
    assert (await stack.http.get("/watch-list", headers=cqc)).status_code == 403
    assert [e["entry_id"] for e in (await stack.http.get("/watch-list", headers=other_trust)).json()["items"]] == []
    assert eid in [e["entry_id"] for e in (await stack.http.get("/watch-list", headers=own_trust)).json()["items"]]

    # The improvement director, recorded with the regime's own step.
    r = await stack.http.post(f"/watch-list/{eid}/steps/appoint_improvement_director/decisions", headers=regulator,
                              json={"action": "record", "payload": {"appointed_on": str(added),
                                                                    "improvement_director_user_id": "id-W1"}})
    assert r.status_code == 200, r.text
    r = await stack.http.post(f"/watch-list/{eid}/steps/watch_review/decisions", headers=own_trust,
                              json={"action": "keep", "comment": "x"})
    assert r.status_code == 403

    # Central funding with a regime's steps and payments: the agreement, its parties, a drawdown paid once.
    decide = f"/watch-list/{eid}/steps/{{}}/decisions"
    r = await stack.http.post(decide.format("funding_agreement"), headers=regulator, json={
        "action": "record", "payload": {"ceiling_pence": 30_000_000, "areas": ["urgent care flow"]}})
    assert r.status_code == 200, r.text
    for step, who in (("funding_agreement_trust", own_trust), ("funding_agreement_director", own_director)):
        r = await stack.http.post(decide.format(step), headers=who, json={"action": "agree"})
        assert r.status_code == 200, r.text
    url = f"/watch-list/{eid}/funding/drawdowns"
    r = await stack.http.post(url, headers=cqc, json={"amount_pence": 1, "against": ["urgent care flow"],
                                                      "purpose": "p"})
    assert r.status_code == 404
    r = await stack.http.post(url, headers=own_trust, json={"amount_pence": 1, "against": ["maternity"],
                                                            "purpose": "not an agreed area"})
    assert r.status_code == 422, r.text
    r = await stack.http.post(url, headers=own_trust, json={"amount_pence": 30_000_001,
                                                            "against": ["urgent care flow"], "purpose": "too much"})
    assert r.status_code == 422 and "ceiling" in r.json()["detail"]
    r = await stack.http.post(url, headers=own_trust, json={"amount_pence": 10_000_000,
                                                            "against": ["urgent care flow"], "purpose": "flow team"})
    assert r.status_code == 201, r.text
    r = await stack.http.post(decide.format("drawdown_approval-1"), headers=own_director, json={"action": "approve"})
    assert r.status_code == 200, r.text
    r = await stack.http.post(decide.format("drawdown_authorisation-1"), headers=regulator,
                              json={"action": "authorise"})
    assert r.status_code == 200, r.text

    async def funding() -> dict:
        return (await stack.http.get(f"/watch-list/{eid}", headers=regulator)).json()["funding"]
    f = await eventually(funding, until=lambda f: f["paid_pence"] == 10_000_000, what="the drawdown paid",
                         timeout=15, interval=0.05)
    assert f["remaining_pence"] == 20_000_000
    assert await stack.pool.fetchval("SELECT count(*) FROM funding_payments WHERE regime_id = $1", eid) == 1
    ev = (await stack.http.get("/evaluation", headers=ops)).json()
    assert eid not in str(ev) and "RWL1" not in str(ev)  # confidential: in no national figure

    # In no regimes list, inbox, export or search attribute.
    listed = (await stack.http.get("/regimes?limit=1000", headers=ops)).json()
    assert not any("RWL1" == i.get("ods_code") for i in listed["items"])
    tasks = (await stack.http.get("/tasks", headers=own_trust)).json()["items"]
    assert not any(t.get("regime_id") == eid or t.get("workflow_id") == eid for t in tasks)
    export = await stack.http.get("/trusts/RWL1/audit?format=csv", headers=regulator)
    assert eid not in export.text
    desc = await stack.client.get_workflow_handle(eid).describe()
    names = {p.key.name for p in desc.typed_search_attributes}
    assert not names & {"TrustOdsCode", "RegimePhase", "NextDeadline", "EscalationLevel", "RegimeId"}, names
    assert (await stack.http.get(f"/regimes/{eid}", headers=regulator)).status_code == 404

    # Placed in special measures: the entry ends, linked to the regime; only those who may see the list see it.
    r = await stack.http.post("/regimes", json=placement("RWL1", today), headers=regulator)
    assert r.status_code == 201, r.text
    rid = r.json()["regime_id"]
    entry = (await stack.http.get(f"/watch-list/{eid}", headers=regulator)).json()
    assert (entry["status"], entry["regime_id"]) == ("placed", rid)
    view = (await stack.http.get(f"/regimes/{rid}", headers=own_trust)).json()
    assert view["watch_list"]["entry_id"] == eid
    assert "watch_list" not in (await stack.http.get(f"/regimes/{rid}", headers=cqc)).json()
    assert eid not in (await stack.http.get(f"/regimes/{rid}", headers=cqc)).text

    # Who looked: every read above, by whom.
    r = await stack.http.get(f"/watch-list/{eid}/access", headers=own_trust)
    assert r.status_code == 403
    looks = (await stack.http.get(f"/watch-list/{eid}/access", headers=ops)).json()["items"]
    who = {(x["user_id"], x["what"]) for x in looks}
    assert {("reg-1", "entry"), ("ops-1", "entry"), ("trust-W1", "entry"), ("id-W1", "entry"),
            ("trust-W1", "list"), ("trust-W1", f"regime {rid}")} <= who
    assert not any(x["user_id"] in ("cqc-1", "trust-W9", "ccg-W1") for x in looks)

    async def audit_events() -> list[str]:
        return [r["event"] for r in await stack.pool.fetch(
            "SELECT event FROM audit_log WHERE regime_id = $1 ORDER BY seq", eid)]
    events = await eventually(audit_events, until=lambda e: "watch_list_ended" in e, what="the entry's audit",
                              timeout=10, interval=0.05)
    assert events[0] == "watch_listed" and "appoint_improvement_director.record" in events


async def test_the_regulator_takes_a_trust_off_the_list_with_a_reason(stack):
    regulator = stack.auth("reg-1", "regulator")
    r = await stack.http.post("/watch-list", headers=regulator, json={
        "trust": {"ods_code": "RWL2", "name": "Recovering NHS Trust"}, "reasons": ["finances"]})
    eid = r.json()["entry_id"]
    r = await stack.http.post(f"/watch-list/{eid}/steps/watch_review/decisions", headers=regulator,
                              json={"action": "remove"})
    assert r.status_code == 422  # a reason
    r = await stack.http.post(f"/watch-list/{eid}/removal", headers=regulator,
                              json={"reason": "performance recovered for two quarters"})
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["end_reason"]) == ("removed", "performance recovered for two quarters")
    r = await stack.http.post(f"/watch-list/{eid}/removal", headers=regulator, json={"reason": "again"})
    assert r.status_code == 409


# ---------------------------------------------------------------- the director carried into the regime
REASONS = ["a confidential reason: whistleblowing on the maternity unit"]


async def _listed(stack, ods: str, regulator: dict, director: str | None) -> str:
    """Put a trust on the list; appoint its improvement director when `director` is given. Returns the entry id."""
    r = await stack.http.post("/watch-list", headers=regulator, json={
        "trust": {"ods_code": ods, "name": f"{ods} Hospitals NHS Trust"}, "reasons": REASONS})
    assert r.status_code == 201, r.text
    entry = r.json()
    if director is not None:
        r = await stack.http.post(
            f"/watch-list/{entry['entry_id']}/steps/{Kind.appoint_improvement_director}/decisions", headers=regulator,
            json={"action": "record", "payload": {"appointed_on": entry["added_on"],
                                                  "improvement_director_user_id": director}})
        assert r.status_code == 200, r.text
    return entry["entry_id"]


def _appointment_step(view: dict) -> dict:
    [st] = [s for s in view["steps"].values() if s["kind"] == Kind.appoint_improvement_director]
    return st


async def test_a_director_appointed_on_the_list_is_the_regimes_from_placement(stack):
    """The placement carries the appointment: the regime's own step is done at entry (not opened for a second
    appointment), the director is the regime's assignee as the regime's own appointment makes them, and the audit
    records it as appointed before placement; the list and its reasons stay with those who may see the list."""
    today = london_date(datetime.now(UTC))
    regulator = stack.auth("reg-carry", "regulator")
    director = stack.auth("id-WC1", "improvement_director", trusts=["RWC1"])
    cqc = stack.auth("cqc-carry", "cqc")
    eid = await _listed(stack, "RWC1", regulator, "id-WC1")
    added = (await stack.http.get(f"/watch-list/{eid}", headers=regulator)).json()["added_on"]

    r = await stack.http.post("/regimes", json=placement("RWC1", today), headers=regulator)
    assert r.status_code == 201, r.text
    rid = r.json()["regime_id"]
    view = (await stack.http.get(f"/regimes/{rid}", headers=regulator)).json()
    st = _appointment_step(view)
    assert (st["status"], st["outcome"], st["completed_by"]) == ("done", "record", "reg-carry")
    assert st["data"] == {"appointed_on": added, "improvement_director_user_id": "id-WC1"}
    assert "appointed before placement" in st["actions"][0]["comment"] and "reg-carry" in st["actions"][0]["comment"]
    assert view["assignees"]["improvement_director"] == "id-WC1"
    assert not any(s["kind"] == Kind.appoint_improvement_director for s in view["open_steps"])
    # Those who may see the list see where it came from; the appointed director acts on the regime's steps.
    assert view["watch_list"]["improvement_director"] == {"user_id": "id-WC1", "appointed_on": added,
                                                          "appointed_on_watch_list": True}
    assert (await stack.http.get(f"/regimes/{rid}", headers=director)).status_code == 200

    async def audit() -> list[dict]:
        r = await stack.http.get(f"/regimes/{rid}/audit", headers=cqc)
        assert r.status_code == 200, r.text
        return r.json()["items"]
    items = await eventually(audit, until=lambda items: any(
        i["event"] == f"{Kind.appoint_improvement_director}.record" for i in items), what="the appointment's audit",
        timeout=10, interval=0.05)
    [rec] = [i for i in items if i["event"] == f"{Kind.appoint_improvement_director}.record"]
    assert (rec["actor"], rec["role"]) == ("reg-carry", "regulator")
    assert "appointed before placement" in rec["reason"]
    assert rec["detail"]["payload"]["improvement_director_user_id"] == "id-WC1"
    # Confidential: nothing of the list in what every reader of the regime sees (CQC here), nor in the export.
    seen = (await stack.http.get(f"/regimes/{rid}", headers=cqc)).text + str(items) + (
        await stack.http.get("/trusts/RWC1/audit?format=csv", headers=regulator)).text
    assert "watch" not in seen.lower() and REASONS[0] not in seen and eid not in seen


async def test_a_trust_listed_without_a_director_or_not_listed_gets_the_regimes_own_appointment_step(stack):
    today = london_date(datetime.now(UTC))
    regulator = stack.auth("reg-open", "regulator")
    await _listed(stack, "RWC2", regulator, None)
    for ods in ("RWC2", "RWC3"):  # on the list without a director; not on the list
        r = await stack.http.post("/regimes", json=placement(ods, today), headers=regulator)
        assert r.status_code == 201, r.text
        view = (await stack.http.get(f"/regimes/{r.json()['regime_id']}", headers=regulator)).json()
        st = _appointment_step(view)
        assert (st["status"], st["actions"]) == ("open", []), ods
        assert view["placement"]["appointment_before_placement"] is None
        assert "improvement_director" not in view["assignees"]
        assert "improvement_director" not in (view.get("watch_list") or {})


async def test_the_regime_takes_an_appointment_before_placement_as_its_own_decision(regime_env):
    """The fast layer: the workflow takes `Placement.appointment_before_placement` through the regime's own
    decision path at entry; without it (every placement recorded before) the step opens as it always did."""
    from domain.models import Actor, Decision
    from tests.test_workflow_rules import start
    from workflows.regime import RegimeWorkflow

    client, queue, effects = regime_env
    carried = Decision(step_id=Kind.appoint_improvement_director, action="record",
                       actor=Actor(user_id="reg-9", role="regulator"), comment="appointed before placement",
                       payload={"appointed_on": "2020-01-06", "improvement_director_user_id": "id-9"})
    handle, _ = await start(client, queue, "WLC1", appointment_before_placement=carried)
    state = await handle.query(RegimeWorkflow.get_state)
    st = state.steps[Kind.appoint_improvement_director]
    assert (st.status, st.outcome, st.completed_by) == ("done", "record", "reg-9")
    assert state.assignees["improvement_director"] == "id-9"

    async def audited() -> list[str]:
        return [e.event for b in effects.batches for e in b.effects if e.type == "audit"]
    events = await eventually(audited, until=lambda e: "regime_entered" in e, what="the entry's effects",
                              timeout=10, interval=0.05)
    assert f"{Kind.appoint_improvement_director}.record" in events

    before, _ = await start(client, queue, "WLC2")
    state = await before.query(RegimeWorkflow.get_state)
    assert state.steps[Kind.appoint_improvement_director].status == "open" and not state.assignees


async def test_step_kinds_lists_the_watch_lists_own_kind(stack):
    r = await stack.http.get("/step-kinds", headers=stack.auth("sk-reader", "cqc"))
    assert r.status_code == 200, r.text
    body = r.json()
    served = {k["kind"]: k for k in body["items"]}
    assert WatchKind.watch_review not in served  # the regime's and the partnership's kinds, as before
    [review] = body["watch_list"]
    assert (review["kind"], review["workflow"], review["role"]) == (WatchKind.watch_review, "watch_list", "regulator")
    assert review["actions"]["remove"] == {"payload_schema": "EmptyPayload", "reason_required": True}
    assert review["deadline"] == {"rule": WATCH_STEPS[WatchKind.watch_review].deadline.rule,
                                  "basis": "service_default", "source": "domain.watchlist.WATCH_REVIEW_MONTHS"}
