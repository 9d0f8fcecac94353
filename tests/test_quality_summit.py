"""Issue 14 item 15 through the HTTP API: the Quality Summit after CQC's report at entry and after every later
inspection (seed 000 §1, §4a; seed 001), and the trust's factual accuracy check of CQC's draft report."""

from __future__ import annotations

from datetime import timedelta

from tests.driver import Regime
from tests.helpers import IMPROVED, on_working_day
from tools.polling import eventually


async def test_quality_summits_and_the_draft_report_through_the_api(stack):
    reg = await Regime.place(stack, "RQS1")
    st = await reg.state()
    summit = next(s for s in st["open_steps"] if s["kind"] == "quality_summit")
    assert summit["due"] == on_working_day(reg.today + timedelta(days=28)).isoformat() and summit["role"] == "regulator"
    assert st["steps"][summit["id"]]["subject"] == {"report": "entry"}

    # Attendees by organisation are required; the summit is recorded once it has been held.
    r = await reg.act(summit["id"], "record", {"held_on": reg.today.isoformat(), "attendees": []}, expect=422)
    r = await reg.act(summit["id"], "record", {"held_on": reg.today.isoformat(), "attendees": [
        {"organisation": "Rosedale Hospitals NHS Trust", "ods_code": "RQS1", "people": ["Chief Executive", "Chair"]},
        {"organisation": "CQC", "people": ["Head of Hospital Inspection"]},
        {"organisation": "NHS Rosedale CCG", "people": ["Chief Nurse"]}]})
    assert r["step"]["status"] == "done"

    # CQC sends the trust its draft report for factual accuracy: only CQC may say so.
    draft = f"/regimes/{reg.id}/inspections/INS-RQS1-2/draft"
    r = await stack.http.post(draft, json={"sent_on": reg.today.isoformat()}, headers=reg.users["trust"])
    assert r.status_code == 403 and r.headers["content-type"].startswith("application/problem+json")
    r = await stack.http.post(draft, json={"sent_on": (reg.today + timedelta(days=1)).isoformat()},
                              headers=reg.users["cqc"])
    assert r.status_code == 422 and "not in advance" in r.json()["detail"]
    r = await stack.http.post(draft, json={"sent_on": reg.today.isoformat()}, headers=reg.users["cqc"])
    assert r.status_code == 200, r.text
    step = r.json()["step"]
    assert (step["kind"], step["role"], step["due"]) == (
        "factual_accuracy", "trust", on_working_day(reg.today + timedelta(days=14)).isoformat())

    async def inbox() -> list[dict]:
        return (await stack.http.get("/tasks", headers=reg.users["trust"])).json()["items"]

    await eventually(inbox, until=lambda items: any(t["step_id"] == step["id"] for t in items),
                     what="the trust's task in its inbox", timeout=10, interval=0.05)
    r = await stack.http.post(draft, json={"sent_on": reg.today.isoformat()}, headers=reg.users["cqc"])
    assert r.status_code == 409

    # The report is published: the window for comments closes, and a Quality Summit on it falls due.
    await reg.inspect("INS-RQS1-2", IMPROVED, inspection_type="focused", well_led_assessed=False,
                      special_measures_reinspection=False)
    st = await eventually(reg.state, until=lambda s: s["steps"][step["id"]]["status"] == "cancelled",
                          what="the factual accuracy step to close", timeout=10, interval=0.05)
    after = [s for s in st["open_steps"] if s["kind"] == "quality_summit"]
    assert len(after) == 1 and st["steps"][after[0]["id"]]["subject"] == {"report": "INS-RQS1-2"}
    page = await stack.http.get(f"/web/regimes/{reg.id}", headers=reg.users["operations"])
    assert page.status_code == 200 and "Quality Summit" in page.text
