"""Issue 14 item 1: not every CQC outcome is the special-measures re-inspection.

CQC monitors quality throughout and may inspect at any time (seed 002); only the inspection CQC makes the
special-measures re-inspection (it assesses well-led) leads to CQC's recommendation and the regulator's exit
decision. Other outcomes are recorded and shown, and leave the re-inspection's clock as it was.
"""

from __future__ import annotations

from datetime import timedelta

from tests.driver import Regime
from tests.helpers import IMPROVED, outcome

STILL_INADEQUATE = dict(IMPROVED, well_led="inadequate", overall="inadequate")


def kinds_open(st: dict) -> list[str]:
    return [s["kind"] for s in st["open_steps"]]


async def test_a_focused_inspection_at_month_four_is_recorded_and_forces_no_decision(stack):
    reg = await Regime.place(stack, "RIT1")
    await reg.advance(120)
    due_before = (await reg.state())["steps"]["reinspection-1"]["due"]
    await reg.inspect("INS-RIT1-F", STILL_INADEQUATE, inspection_type="focused", well_led_assessed=False,
                      special_measures_reinspection=False)
    st = await reg.state()
    rec = next(i for i in st["inspections"] if i["outcome"]["reference"] == "INS-RIT1-F")
    assert rec["outcome"]["inspection_type"] == "focused" and rec["verdict"] is None
    # The re-inspection is still awaited, on its own clock; nobody is asked to recommend or decide.
    assert st["steps"]["reinspection-1"]["status"] == "open" and st["steps"]["reinspection-1"]["due"] == due_before
    assert "cqc_recommendation" not in kinds_open(st) and "regulator_decision" not in kinds_open(st)
    audit = await stack.pool.fetchrow("SELECT detail FROM audit_log WHERE regime_id = $1 AND event = "
                                      "'inspection_recorded'", reg.id)
    assert audit["detail"]["inspection_type"] == "focused" and audit["detail"]["special_measures_reinspection"] is False

    # The re-inspection itself leads to CQC's recommendation, judged by the exit rule.
    await reg.advance(200)
    await reg.inspect("INS-RIT1-2", IMPROVED)
    st = await reg.state()
    assert st["steps"]["reinspection-1"]["status"] == "done" and "cqc_recommendation" in kinds_open(st)
    assert next(i for i in st["inspections"] if i["outcome"]["reference"] == "INS-RIT1-2")["verdict"]["met"] is True
    # The regime page's ratings table and timeline say which was which.
    html = (await stack.http.get(f"/web/regimes/{reg.id}", headers=stack.auth("ops-1", "operations"))).text
    assert "Focused inspection" in html and "Re-inspection 1" in html and "(focused inspection)" in html


async def test_an_inspection_before_entry_cannot_be_the_reinspection(stack):
    reg = await Regime.place(stack, "RIT2")
    cqc = reg.users["cqc"]
    before = reg.start - timedelta(days=30)
    r = await stack.http.post(f"/regimes/{reg.id}/inspections", headers=cqc,
                              json=outcome("INS-RIT2-0", before, IMPROVED, published=reg.today.isoformat()))
    assert r.status_code == 422 and "before the trust entered special measures" in r.json()["detail"], r.text
    # Recorded as what it is, it is accepted and changes no clock.
    r = await stack.http.post(f"/regimes/{reg.id}/inspections", headers=cqc,
                              json=outcome("INS-RIT2-0", before, IMPROVED, published=reg.today.isoformat(),
                                           special_measures_reinspection=False))
    assert r.status_code == 202, r.text
    await stack.settle(reg.id)
    st = await reg.state()
    assert [i["outcome"]["reference"] for i in st["inspections"]] == ["INS-RIT2-0"]
    assert "cqc_recommendation" not in kinds_open(st)


async def test_an_outcome_must_say_what_kind_of_inspection_it_was(stack):
    reg = await Regime.place(stack, "RIT3")
    cqc = reg.users["cqc"]
    body = outcome("INS-RIT3-1", reg.today, IMPROVED)
    for missing in ("inspection_type", "well_led_assessed", "special_measures_reinspection"):
        r = await stack.http.post(f"/regimes/{reg.id}/inspections", headers=cqc,
                                  json={k: v for k, v in body.items() if k != missing})
        assert r.status_code == 422 and missing in r.text, (missing, r.text)
    r = await stack.http.post(f"/regimes/{reg.id}/inspections", headers=cqc,
                              json={**body, "well_led_assessed": False})
    assert r.status_code == 422 and "assesses well-led" in r.text
    assert (await reg.state())["inspections"] == []
