"""Issue 14 ("faithful to the sources"), items 6 and 10, on the real Temporal dev server with the effects
activity mocked (as tests/test_workflow_rules.py), plus the pure parts (the regime page's extension rows, the
deprecated inspection field). Item 9 (buddy forecasts) is tested in tests/test_ledger.py and
scenarios/forecasts_within_the_level.yaml.

Item 6: an extension is "up to a further 6 months" (seed 000 §1) or "usually 6 months" (seed 002, "Removing
trusts"). Longer needs `beyond_guidance_reason`; the rule is checked where a decision arrives (the update's
validator), never in the replayed handler, so a regime whose history holds a longer extension taken before the
rule still replays (shown here by recording one with the rule switched off, as the code before it was).
"""

from __future__ import annotations

import uuid
from datetime import date

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner, Worker

import domain.steps
from api.web.routes import extension_rows
from domain import dates
from domain.models import InspectionSignal
from domain.ratings import InspectionOutcome
from infra.clients import connect_temporal
from tests.conftest import Effects
from tests.helpers import INADEQUATE_ENTRY, outcome
from tests.test_workflow_rules import actor, decide, start
from tools.replay import first_line_of
from workflows.regime import RegimeWorkflow


@pytest.fixture
async def unsandboxed_env(temporal_address):
    """A worker without the sandbox, so that a test can switch a rule off as the code before it had it."""
    client = await connect_temporal(temporal_address, attempts=50)
    effects = Effects()
    queue = "sources-" + uuid.uuid4().hex[:10]
    async with Worker(client, task_queue=queue, workflows=[RegimeWorkflow], activities=[effects.apply, effects.archive],
                      workflow_runner=UnsandboxedWorkflowRunner()):
        yield client, queue


async def awaiting_decision(client, queue, ods: str):
    handle, today = await start(client, queue, ods)
    published = InspectionOutcome.model_validate(outcome(f"INS-{ods}", today, INADEQUATE_ENTRY))
    await handle.signal(RegimeWorkflow.record_inspection, InspectionSignal(outcome=published, actor=actor("cqc")))
    state = await handle.query(RegimeWorkflow.get_state)
    rec = next(s for s in state.steps.values() if s.kind == "cqc_recommendation")
    await decide(handle, rec.id, "recommend_remain", "cqc", comment="well-led still inadequate")
    state = await handle.query(RegimeWorkflow.get_state)
    return handle, today, next(s.id for s in state.steps.values() if s.kind == "regulator_decision")


async def test_an_extension_beyond_six_months_needs_the_regulators_reason(unsandboxed_env):
    client, queue = unsandboxed_env
    handle, today, decision = await awaiting_decision(client, queue, "SRC1")
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await decide(handle, decision, "extend", "regulator", {"months": 9}, comment="slow progress")
    assert refused.value.cause.type == "ReasonRequired"
    assert "longer than the 6" in str(refused.value.cause)
    with pytest.raises(WorkflowUpdateFailedError) as refused:  # whitespace is no reason
        await decide(handle, decision, "extend", "regulator", {"months": 9, "beyond_guidance_reason": "  "},
                     comment="slow progress")
    assert refused.value.cause.type == "ReasonRequired"
    with pytest.raises(WorkflowUpdateFailedError) as refused:  # a reason only where one is needed
        await decide(handle, decision, "extend", "regulator", {"months": 6, "beyond_guidance_reason": "why"},
                     comment="slow progress")
    assert refused.value.cause.type == "InvalidPayload"
    reason = "The merger with the neighbouring trust completes in month 9; re-inspecting before then tests nothing"
    view = await decide(handle, decision, "extend", "regulator", {"months": 9, "beyond_guidance_reason": reason},
                        comment="slow progress")
    assert view.phase == "extended"
    ext = (await handle.query(RegimeWorkflow.get_state)).extensions[-1]
    assert ext == {"number": 1, "decided_on": today.isoformat(), "months": 9,
                   "ends": dates.add_months(today, 9).isoformat(), "reason": "slow progress",
                   "beyond_guidance": True, "beyond_guidance_reason": reason}


async def test_a_six_month_extension_is_recorded_as_before(unsandboxed_env):
    client, queue = unsandboxed_env
    handle, today, decision = await awaiting_decision(client, queue, "SRC2")
    await decide(handle, decision, "extend", "regulator", {"months": 6}, comment="slow progress")
    ext = (await handle.query(RegimeWorkflow.get_state)).extensions[-1]
    assert ext == {"number": 1, "decided_on": today.isoformat(), "months": 6,
                   "ends": dates.add_months(today, 6).isoformat(), "reason": "slow progress"}


async def test_a_history_with_a_longer_extension_taken_before_the_rule_still_replays(unsandboxed_env, monkeypatch):
    client, queue = unsandboxed_env
    handle, today, decision = await awaiting_decision(client, queue, "SRC3")
    # The code before issue 14: no rule on the length, so 12 months without a reason were accepted.
    with monkeypatch.context() as m:
        m.setattr(domain.steps, "where_a_decision_arrives", lambda: False)
        await decide(handle, decision, "extend", "regulator", {"months": 12}, comment="twelve months")
    state = await handle.query(RegimeWorkflow.get_state)
    assert state.extensions[-1]["months"] == 12 and "beyond_guidance" not in state.extensions[-1]
    history = await handle.fetch_history()

    # The code now: the rule is the validator's, so the handler, replayed, accepts what the history holds.
    result = await Replayer(workflows=[RegimeWorkflow], data_converter=client.data_converter).replay_workflow(
        history, raise_on_replay_failure=False)
    assert result.replay_failure is None, first_line_of(result.replay_failure)

    # The same rule applied in the handler too would break this regime: the handler refuses on replay.
    with monkeypatch.context() as m:
        m.setattr(domain.steps, "where_a_decision_arrives", lambda: True)
        result = await Replayer(workflows=[RegimeWorkflow], data_converter=client.data_converter,
                                workflow_runner=UnsandboxedWorkflowRunner()).replay_workflow(
            history, raise_on_replay_failure=False)
    assert "Nondeterminism" in first_line_of(result.replay_failure)


def test_the_regime_page_marks_extensions_beyond_the_guidance():
    rows = extension_rows([
        {"number": 1, "months": 6, "ends": "2027-06-01", "reason": "r"},
        {"number": 2, "months": 9, "ends": "2028-03-01", "reason": "r", "beyond_guidance": True,
         "beyond_guidance_reason": "merger"},
        {"number": 3, "months": 12, "ends": "2029-03-01", "reason": "r"},  # decided before the rule
    ])
    assert [(r["beyond_guidance"], r["beyond_guidance_reason"]) for r in rows] == [
        (False, None), (True, "merger"), (True, None)]
    assert {r["guidance_months"] for r in rows} == {6}


def test_the_inspection_outcomes_recommendation_is_deprecated_and_dropped():
    """Item 10: never read (CQC recommends through the cqc_recommendation step). Histories and states hold
    "recommendation": "none" and the model forbids unknown fields, so it still decodes, and is dropped."""
    base = outcome("INS-X", date(2026, 1, 5), INADEQUATE_ENTRY)
    for old in ("none", "exit", "remain", "enter"):
        o = InspectionOutcome.model_validate({**base, "recommendation": old})
        assert o.model_dump()["recommendation"] is None
    schema = InspectionOutcome.model_json_schema()["properties"]["recommendation"]
    assert schema["deprecated"] is True and "ignored" in schema["description"]
    with pytest.raises(ValueError):
        InspectionOutcome.model_validate({**base, "recommendation": "maybe"})
