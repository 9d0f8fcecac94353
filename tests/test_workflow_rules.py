"""The fast workflow layer (issue 13): the regime workflow's rules on the real Temporal dev server, with its
effects activity mocked (no PostgreSQL, no HTTP). What the rules decide (which steps open, with which due
dates, which phase) is read from the workflow's state and from the effects it hands to the activity.

The end-to-end tests (test_slice, test_lifecycle, test_scenarios) drive the same rules through the API and
the real activities; these check rule-level cases in about a second each.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.client import Client, WorkflowUpdateFailedError

from domain import dates
from domain.models import Actor, Decision, DraftReport, InspectionSignal, Placement, RegimeStart, Rung, Trust
from domain.policy import BASELINE, Policy
from domain.ratings import InspectionOutcome, KeyQuestionRatings
from settings import DEFAULT_LADDER
from tests.helpers import INADEQUATE_ENTRY, PLAN, outcome
from workflows.regime import RegimeWorkflow


def actor(role: str, user: str | None = None) -> Actor:
    return Actor(user_id=user or f"{role}-1", role=role)


async def start(client: Client, queue: str, ods: str, policy: Policy = BASELINE, **fields: Any):
    today = dates.london_date(datetime.now(UTC))
    regime_id = f"regime-{ods}-{today.isoformat()}-{uuid.uuid4().hex[:6]}"
    placement = Placement(regime_id=regime_id, trust=Trust(ods_code=ods, name=f"{ods} Hospitals NHS Trust"),
                          entry_date=fields.pop("entry_date", today), basis="cqc_recommendation",
                          entry_ratings=KeyQuestionRatings.model_validate(INADEQUATE_ENTRY),
                          ladder=[Rung.model_validate(r) for r in DEFAULT_LADDER], placed_by=actor("regulator"),
                          policy=policy, **fields)
    handle = await client.start_workflow(RegimeWorkflow.run, RegimeStart(placement=placement), id=regime_id,
                                         task_queue=queue)
    return handle, today


async def decide(handle, step_id: str, action: str, role: str, payload: dict | None = None,
                 comment: str | None = None, user: str | None = None):
    return await handle.execute_update(RegimeWorkflow.decide_step, Decision(
        step_id=step_id, action=action, actor=actor(role, user), payload=payload or {}, comment=comment))


async def test_an_agreed_plan_opens_both_sign_offs_with_their_service_default_deadline(regime_env):
    client, queue, effects = regime_env
    handle, today = await start(client, queue, "WR1")
    await decide(handle, "improvement_plan", "submit", "trust", PLAN)
    view = await decide(handle, "plan_review", "agree", "improvement_director", comment="a good plan")
    assert view.step.status == "done" and view.step.outcome == "agree"
    state = await handle.query(RegimeWorkflow.get_state)
    signoffs = {s.kind: s for s in state.steps.values() if s.kind.startswith("plan_signoff")}
    assert set(signoffs) == {"plan_signoff_regulator", "plan_signoff_commissioner"}
    assert all(s.due == today + timedelta(days=14) and s.subject == {"plan_step": "improvement_plan"}
               for s in signoffs.values())
    await handle.query(RegimeWorkflow.get_state)  # the effects of the last update have been handed over
    opened = {s["kind"] for s in effects.opened()}
    assert {"plan_review", "plan_signoff_regulator", "plan_signoff_commissioner"} <= opened


async def test_a_returned_plan_is_reopened_with_the_reason_and_nobody_acts_for_two_parties(regime_env):
    client, queue, effects = regime_env
    handle, _ = await start(client, queue, "WR2")
    await decide(handle, "improvement_plan", "submit", "trust", PLAN, user="same-person")
    await decide(handle, "plan_review", "return", "improvement_director", comment="no metrics")
    state = await handle.query(RegimeWorkflow.get_state)
    again = state.steps["improvement_plan-2"]
    assert again.status == "open" and again.data["returned_reason"] == "no metrics"
    await decide(handle, "improvement_plan-2", "submit", "trust", PLAN, user="same-person")
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await decide(handle, "plan_review-2", "agree", "improvement_director", user="same-person")
    assert refused.value.cause.type == "SeparationOfDuties"


async def test_after_a_re_inspection_the_regulator_exits_only_on_cqc_recommendation_and_extends_six_months(
        regime_env):
    client, queue, _ = regime_env
    handle, today = await start(client, queue, "WR3")
    published = InspectionOutcome.model_validate(
        outcome("INS-WR3", today, INADEQUATE_ENTRY))
    await handle.signal(RegimeWorkflow.record_inspection, InspectionSignal(outcome=published, actor=actor("cqc")))
    state = await handle.query(RegimeWorkflow.get_state)
    rec = next(s for s in state.steps.values() if s.kind == "cqc_recommendation")
    assert rec.status == "open" and rec.subject == {"reference": "INS-WR3"}
    await decide(handle, rec.id, "recommend_remain", "cqc", comment="safety still inadequate")
    state = await handle.query(RegimeWorkflow.get_state)
    decision = next(s for s in state.steps.values() if s.kind == "regulator_decision")
    assert decision.due == today + timedelta(days=14)
    # The kind's own rule (domain/steps.py `check`): no exit against CQC's recommendation.
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await decide(handle, decision.id, "exit", "regulator")
    assert refused.value.cause.type == "RuleBroken"
    # Extended by the payload model's default of six months (ExtendPayload.months), read from the typed payload.
    view = await decide(handle, decision.id, "extend", "regulator", comment="progress too slow")
    assert view.phase == "extended"
    state = await handle.query(RegimeWorkflow.get_state)
    assert state.extensions[-1]["months"] == 6
    assert state.extensions[-1]["ends"] == dates.add_months(today, 6).isoformat()
    assert {"revised_action_plan", "reinspection"} <= {s.kind for s in state.steps.values() if s.status == "open"}


def test_every_action_with_a_consequence_has_exactly_one_handler():
    from domain.ledger import BUDDY_STEPS
    from domain.steps import CATALOGUE, handler_for

    for catalogue in (CATALOGUE, BUDDY_STEPS):
        for kind, spec in catalogue.items():
            assert set(spec.after) <= set(spec.actions) | {"*"}, kind
            for action in spec.actions:
                handler = handler_for(spec, action)
                assert handler is None or callable(handler), (kind, action)
    # Decisions that lead somewhere, one per family of the rules (a missing registration is a silent no-op).
    for kind, action in (("improvement_plan", "submit"), ("plan_review", "agree"), ("plan_review", "return"),
                         ("regulator_decision", "extend"), ("regulator_decision", "exit"),
                         ("monthly_return", "submit"), ("board_to_board", "record")):
        assert handler_for(CATALOGUE[kind], action) is not None, (kind, action)
    for kind, action in (("buddy_aip_buddy", "accept"), ("buddy_authorise", "authorise"),
                         ("buddy_confirm_trust", "dispute"), ("buddy_resolve", "resolve")):
        assert handler_for(BUDDY_STEPS[kind], action) is not None, (kind, action)


async def _reinspected_remain(handle, ref: str, today) -> None:
    """CQC publishes the re-inspection `ref` (not improved) and recommends remaining; the regulator's decision opens."""
    published = InspectionOutcome.model_validate(outcome(ref, today, INADEQUATE_ENTRY))
    await handle.signal(RegimeWorkflow.record_inspection, InspectionSignal(outcome=published, actor=actor("cqc")))
    state = await handle.query(RegimeWorkflow.get_state)
    rec = next(s for s in state.steps.values() if s.kind == "cqc_recommendation" and s.status == "open")
    await decide(handle, rec.id, "recommend_remain", "cqc", comment="not improved")


async def _open(handle, kind: str):
    state = await handle.query(RegimeWorkflow.get_state)
    return next((s for s in state.steps.values() if s.kind == kind and s.status == "open"), None)


async def test_the_letter_to_the_secretary_of_state_follows_each_extension_once(regime_env):
    """Issue 14 item 3 (seed 000 §1): the referral comes at the end of an extension, once for each, so a long
    regime extended again after the letter is referred again at that extension's end (before: once per regime)."""
    client, queue, _ = regime_env
    handle, today = await start(client, queue, "WR4")
    await _reinspected_remain(handle, "INS-WR4-1", today)
    with pytest.raises(WorkflowUpdateFailedError) as refused:  # no extension yet
        await decide(handle, (await _open(handle, "regulator_decision")).id, "refer_to_secretary_of_state",
                     "regulator", comment="too early")
    assert refused.value.cause.type == "RuleBroken"
    await decide(handle, (await _open(handle, "regulator_decision")).id, "extend", "regulator", comment="6 months")
    await _reinspected_remain(handle, "INS-WR4-2", today)
    await decide(handle, (await _open(handle, "regulator_decision")).id, "refer_to_secretary_of_state",
                 "regulator", comment="not improved by the end of the extension")
    view = await decide(handle, "secretary_of_state_letter", "send", "cqc", {"sent_on": today.isoformat()})
    assert view.phase == "long_term_solution"
    await _reinspected_remain(handle, "INS-WR4-3", today)
    decision = await _open(handle, "regulator_decision")
    with pytest.raises(WorkflowUpdateFailedError) as refused:  # this extension was referred already
        await decide(handle, decision.id, "refer_to_secretary_of_state", "regulator", comment="again")
    assert refused.value.cause.type == "RuleBroken" and "once for each extension" in refused.value.cause.message
    await decide(handle, decision.id, "extend", "regulator", comment="while the solution is agreed")
    await _reinspected_remain(handle, "INS-WR4-4", today)
    await decide(handle, (await _open(handle, "regulator_decision")).id, "refer_to_secretary_of_state",
                 "regulator", comment="not improved by the end of the second extension")
    letter = await _open(handle, "secretary_of_state_letter")
    assert letter is not None and letter.id == "secretary_of_state_letter-2"
    state = await handle.query(RegimeWorkflow.get_state)
    assert state.sos_letter["number"] == 2 and len(state.extensions) == 2
    assert all(e.get("referred_on") == today.isoformat() for e in state.extensions)


async def test_under_seed_002_an_extension_waits_for_the_secretary_of_state(regime_env):
    """Policy recommending_extension (seed 002): the Chief Inspector's letter recommending the extension, the
    Secretary of State's agreement and CQC's letter to the regulator come before the extension takes effect; a
    refusal sends the decision back to the regulator."""
    client, queue, _ = regime_env
    handle, today = await start(client, queue, "WR5", Policy(secretary_of_state_letter="recommending_extension"))
    await _reinspected_remain(handle, "INS-WR5-1", today)
    view = await decide(handle, (await _open(handle, "regulator_decision")).id, "extend", "regulator",
                        {"months": 6}, comment="six months")
    assert view.phase == "in_special_measures"
    state = await handle.query(RegimeWorkflow.get_state)
    assert state.extensions == [] and state.pending_extension["months"] == 6
    open_kinds = {s.kind for s in state.steps.values() if s.status == "open"}
    assert "extension_letter" in open_kinds and not {"revised_action_plan", "reinspection"} & open_kinds
    assert state.steps["extension_letter"].due == today + timedelta(days=14)
    await decide(handle, "extension_letter", "send", "cqc", {"sent_on": today.isoformat()})
    assert (await _open(handle, "secretary_of_state_agreement")).due == today + timedelta(days=28)
    with pytest.raises(WorkflowUpdateFailedError) as refused:  # a refusal says why
        await decide(handle, "secretary_of_state_agreement", "decline", "cqc", {"answered_on": today.isoformat()})
    assert refused.value.cause.type == "ReasonRequired"
    await decide(handle, "secretary_of_state_agreement", "decline", "cqc", {"answered_on": today.isoformat()},
                 comment="four months, not six")
    state = await handle.query(RegimeWorkflow.get_state)
    assert state.pending_extension is None and state.extensions == []
    again = await _open(handle, "regulator_decision")
    assert again is not None and again.id == "regulator_decision-2"

    await decide(handle, again.id, "extend", "regulator", {"months": 4}, comment="four months")
    await decide(handle, "extension_letter-2", "send", "cqc", {"sent_on": today.isoformat()})
    await decide(handle, "secretary_of_state_agreement-2", "agree", "cqc", {"answered_on": today.isoformat()})
    assert (await _open(handle, "cqc_letter_to_regulator")).due == today + timedelta(days=7)
    view = await decide(handle, "cqc_letter_to_regulator", "send", "cqc", {"sent_on": today.isoformat()})
    assert view.phase == "extended"
    state = await handle.query(RegimeWorkflow.get_state)
    ext = state.extensions[-1]
    assert (ext["months"], ext["ends"]) == (4, dates.add_months(today, 4).isoformat())
    assert ext["secretary_of_state_agreed_on"] == ext["cqc_letter_on"] == today.isoformat()
    assert state.pending_extension is None
    reinspection = await _open(handle, "reinspection")
    assert reinspection is not None and reinspection.due == dates.add_months(today, 4)
    assert (await _open(handle, "revised_action_plan")).due == today + timedelta(days=28)


async def test_a_quality_summit_follows_each_report_and_the_draft_is_checked_for_accuracy(regime_env):
    """Issue 14 item 15 (seed 000 §1, §4a; seed 001): after CQC's report at entry and after every later
    inspection, a Quality Summit (date, attendees by organisation); before publication CQC may send the trust its
    draft for factual accuracy, and the trust's step closes when the report is published."""
    client, queue, _ = regime_env
    handle, today = await start(client, queue, "WR7", quality_summits=True)
    entry_summit = await _open(handle, "quality_summit")
    assert entry_summit.due == today + timedelta(days=28) and entry_summit.subject == {"report": "entry"}
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await decide(handle, entry_summit.id, "record", "regulator", {"held_on": (today + timedelta(days=1)).isoformat(),
                     "attendees": [{"organisation": "the trust", "people": ["Chief Executive"]}]})
    assert refused.value.cause.type == "RuleBroken"
    await decide(handle, entry_summit.id, "record", "regulator", {"held_on": today.isoformat(), "attendees": [
        {"organisation": "the trust", "ods_code": "WR7", "people": ["Chief Executive", "Chair"]},
        {"organisation": "CQC", "people": ["Head of Hospital Inspection"]}]})

    draft = DraftReport(reference="INS-WR7-2", sent_on=today, actor=actor("cqc"))
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(RegimeWorkflow.record_draft_report, draft.model_copy(update={"actor": actor("trust")}))
    assert refused.value.cause.type == "WrongRole"
    view = await handle.execute_update(RegimeWorkflow.record_draft_report, draft)
    assert (view.step.kind, view.step.role, view.step.due) == ("factual_accuracy", "trust", today + timedelta(days=14))
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(RegimeWorkflow.record_draft_report, draft)
    assert refused.value.cause.type == "Conflict"

    published = InspectionOutcome.model_validate(outcome("INS-WR7-2", today, INADEQUATE_ENTRY))
    await handle.signal(RegimeWorkflow.record_inspection, InspectionSignal(outcome=published, actor=actor("cqc")))
    state = await handle.query(RegimeWorkflow.get_state)
    accuracy = state.steps[view.step.id]
    assert accuracy.status == "cancelled"  # CQC published: the window for comments closed
    summit = await _open(handle, "quality_summit")
    assert summit.subject == {"report": "INS-WR7-2"} and summit.due == today + timedelta(days=28)
    with pytest.raises(WorkflowUpdateFailedError) as refused:  # a draft of a published report
        await handle.execute_update(RegimeWorkflow.record_draft_report, draft)
    assert refused.value.cause.type == "Conflict"


async def test_a_regime_placed_before_quality_summits_has_none(regime_env):
    """Placements recorded before issue 14 item 15 (quality_summits False, as every recorded history) keep the
    steps they had: no Quality Summit at entry or after a report."""
    client, queue, _ = regime_env
    handle, today = await start(client, queue, "WR8")
    published = InspectionOutcome.model_validate(outcome("INS-WR8-2", today, INADEQUATE_ENTRY))
    await handle.signal(RegimeWorkflow.record_inspection, InspectionSignal(outcome=published, actor=actor("cqc")))
    state = await handle.query(RegimeWorkflow.get_state)
    assert not any(s.kind == "quality_summit" for s in state.steps.values())
