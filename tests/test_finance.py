"""Finance special measures and the combined case (issue 16 item 3; seed 002): finance is its own definition on
the same engine (the regulator's finance decision, a financial recovery plan with the same programme machinery,
its exit decided by the regulator), and a trust leaves segment 4 only when it is in neither quality nor finance
special measures."""

from __future__ import annotations

import pytest

from domain.models import InspectionSignal
from domain.ratings import InspectionOutcome
from domain.steps import Kind
from tests.driver import Regime
from tests.helpers import IMPROVED, outcome, placement
from tests.test_workflow_rules import _open, actor, decide, start
from workflows.regime import RegimeWorkflow


async def _state(handle):
    return await handle.query(RegimeWorkflow.get_state)


async def _quality_exit(handle, ref: str, today) -> None:
    improved = InspectionOutcome.model_validate(outcome(ref, today, IMPROVED))
    await handle.signal(RegimeWorkflow.record_inspection, InspectionSignal(outcome=improved, actor=actor("cqc")))
    rec = None
    for _ in range(50):
        rec = await _open(handle, Kind.cqc_recommendation)
        if rec is not None:
            break
    assert rec is not None
    await decide(handle, rec.id, "recommend_exit", "cqc", comment="improved")
    await decide(handle, (await _open(handle, Kind.regulator_decision)).id, "exit", "regulator")


async def test_a_combined_regimes_quality_exit_leaves_the_trust_in_segment_4_until_its_finance_exit(regime_env):
    client, queue, _ = regime_env
    handle, today = await start(client, queue, "WF1", programme=True, measures="combined")
    st = await _state(handle)
    assert {"reinspection-1", "finance_review"} <= set(st.steps) and st.segment == 4

    await _quality_exit(handle, "INS-WF1-2", today)
    st = await _state(handle)
    assert (st.phase, st.segment, st.exit_date) == ("in_finance_special_measures", 4, None)
    assert st.steps["finance_review"].status == "open"  # the joined-up programme goes on
    assert any(s.kind == Kind.board_to_board_post_exit and s.status == "open" for s in st.steps.values())

    with pytest.raises(Exception) as refused:  # remaining needs the regulator's reason
        await decide(handle, "finance_review", "remain", "regulator", {"reviewed_on": str(today), "summary": "s"})
    assert "needs a reason" in str(refused.value.cause)
    await decide(handle, "finance_review", "exit", "regulator",
                 {"reviewed_on": str(today), "summary": "the financial recovery plan is delivered"})
    st = await _state(handle)
    assert (st.phase, st.segment, st.exit_date, st.finance_exited_on) == ("exited", 3, today, today)
    assert [s.id for s in st.steps.values() if s.kind == Kind.board_to_board_post_exit and s.status == "open"] == [
        "board_to_board_post_exit"]  # the one after the quality exit: the regime closes when it is held


async def test_finance_exit_first_then_the_quality_exit_moves_a_combined_regime_to_segment_3(regime_env):
    client, queue, _ = regime_env
    handle, today = await start(client, queue, "WF2", programme=True, measures="combined")
    await decide(handle, "finance_review", "exit", "regulator", {"reviewed_on": str(today), "summary": "delivered"})
    st = await _state(handle)
    assert (st.phase, st.segment, st.finance_exited_on) == ("in_special_measures", 4, today)
    await _quality_exit(handle, "INS-WF2-2", today)
    st = await _state(handle)
    assert (st.phase, st.segment, st.exit_date) == ("exited", 3, today)


async def test_finance_special_measures_are_their_own_definition(regime_env):
    client, queue, _ = regime_env
    handle, today = await start(client, queue, "WF3", programme=True, measures="finance",
                                regulator_reason="deficit plan not met")
    st = await _state(handle)
    assert not any(s.kind in (Kind.reinspection, Kind.quality_summit) for s in st.steps.values())
    assert {"improvement_plan", "finance_review", "appoint_improvement_director"} <= set(st.steps)
    assert not {x.kind for x in st.scheduled} & {Kind.self_assessment, Kind.evidence_file}
    view = await decide(handle, "finance_review", "remain", "regulator", {"reviewed_on": str(today), "summary": "s"},
                        comment="the recovery plan is behind")
    st = await _state(handle)
    again = [s for s in st.steps.values() if s.kind == Kind.finance_review and s.status == "open"]
    assert view.step.outcome == "remain" and len(again) == 1 and again[0].id == "finance_review-2"
    await decide(handle, "finance_review-2", "exit", "regulator", {"reviewed_on": str(today), "summary": "done"})
    st = await _state(handle)
    assert (st.phase, st.segment) == ("exited", 3)


async def test_a_trust_in_quality_and_finance_special_measures_as_two_regimes_stays_in_segment_4(stack):
    quality = await Regime.place(stack, "RFN1")
    regulator = stack.auth("reg-1", "regulator")
    body = placement("RFN1", quality.today) | {"measures": "finance"}
    r = await stack.http.post("/regimes", json=body, headers=regulator)
    assert r.status_code == 422 and "regulator_decision" in r.json()["detail"]  # finance is the regulator's
    body |= {"basis": "regulator_decision", "regulator_reason": "the trust's deficit plan failed"}
    body.pop("ratings", None)
    r = await stack.http.post("/regimes", json=body, headers=regulator)
    assert r.status_code == 201, r.text
    finance_id = r.json()["regime_id"]
    assert finance_id == f"regime-RFN1-finance-{quality.today.isoformat()}"
    r = await stack.http.post("/regimes", json=placement("RFN1", quality.today) | {"measures": "combined"},
                              headers=regulator)
    assert r.status_code == 409  # in both already
    await stack.settle(finance_id)
    view = (await stack.http.get(f"/regimes/{quality.id}", headers=quality.users["trust"])).json()
    trust = view["trust_regimes"]
    assert trust["segment"] == 4 and trust["in"] == ["finance", "quality"]
    assert {(x["regime_id"], x["measures"]) for x in trust["regimes"]} == {(quality.id, "quality"),
                                                                          (finance_id, "finance")}
    fin = (await stack.http.get(f"/regimes/{finance_id}", headers=quality.users["trust"])).json()
    assert "reinspection-1" not in fin["steps"] and "finance_review" in fin["steps"]
    page = await stack.http.get(f"/web/regimes/{quality.id}", headers=quality.users["operations"])
    assert page.status_code == 200 and finance_id in page.text
