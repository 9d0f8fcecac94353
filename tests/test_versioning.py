"""The worked versioning example of docs/versioning.md, made through `workflow.patched`.

The change: a board-to-board's follow-ups (the letter to the chair, a commissioned capability
review) count from the day the boards met, no longer from the day someone recorded the meeting.

Proved here, on the real stack:
- histories recorded before the change (tests/histories/pre_patch_*) replay on the patched code;
- a regime started before the change, on the old code, takes the new behaviour at its next
  board-to-board once the new worker runs it, and its history then carries the patch marker;
- a run that already took the old path before the deploy keeps it (patched() is decided once per run);
- a regime started on the new code takes the new behaviour from its first board-to-board.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.client import WorkflowHistory

from domain import dates
from domain.models import RegimeStart, RegimeState
from tools.replay import HISTORIES, history_files, load_history, replay
from tools.stack import ServiceStack, make_worker, run_stack
from workflows import WORKFLOWS
from workflows.buddy import BuddyPartnershipWorkflow
from workflows.regime import FOLLOWUPS_FROM_MEETING_DATE, RegimeWorkflow

# Recorded before this patch (pre_patch_monthly_* predate later patches, and already carry this one).
PRE_PATCH = [f for f in history_files([HISTORIES]) if f.name.startswith("pre_patch_meeting_recorded_late")]


# Unsandboxed: the sandbox would re-import this test module; determinism is checked the same way.
@workflow.defn(name="RegimeWorkflow", sandboxed=False)
class RegimeWorkflowBeforePatch(RegimeWorkflow):
    """The regime workflow as deployed before the change: exactly its commands, no patch call."""

    @workflow.run
    async def run(self, start: RegimeStart) -> RegimeState:
        return await super().run(start)

    def followups_from(self, held: date) -> date:
        return self.today()


@workflow.defn(name="RegimeWorkflow", sandboxed=False)
class RegimeWorkflowChangedWithoutPatch(RegimeWorkflow):
    """The same change made carelessly: the new rule for every run, replaying ones included."""

    @workflow.run
    async def run(self, start: RegimeStart) -> RegimeState:
        return await super().run(start)

    def followups_from(self, held: date) -> date:
        return min(held, self.today())


OLD = [RegimeWorkflowBeforePatch, BuddyPartnershipWorkflow]


def patch_markers(h: WorkflowHistory, patch_id: str = FOLLOWUPS_FROM_MEETING_DATE) -> list[str]:
    """Every marker of one patch in a history (other patches, such as search-attributes-after-flush,
    which the subclassed old version inherits, are not this test's subject)."""
    out = []
    for e in h.events:
        if e.HasField("marker_recorded_event_attributes") and e.marker_recorded_event_attributes.marker_name == \
                "core_patch":
            for p in e.marker_recorded_event_attributes.details["patch-data"].payloads:
                out.append(json.loads(p.data)["id"])
    return [m for m in out if m == patch_id]


def decisions(h: WorkflowHistory) -> list[tuple[date, dict[str, Any]]]:
    """(London date it was made, decision) for every step decision in a history."""
    out = []
    for e in h.events:
        if e.HasField("workflow_execution_update_accepted_event_attributes"):
            req = e.workflow_execution_update_accepted_event_attributes.accepted_request
            if req.input.name == "decide_step":
                when = dates.london_date(e.event_time.ToDatetime(tzinfo=UTC))
                out += [(when, json.loads(p.data)) for p in req.input.args.payloads]
    return out


# ---------------------------------------------------------------------------- recorded before the change
def test_pre_patch_histories_exercise_the_changed_code():
    assert PRE_PATCH, "tests/histories/pre_patch_* are missing: they were recorded before the patch"
    h = load_history(next(f for f in PRE_PATCH if ".regime." in f.name))
    meetings = [(when, d["payload"]["meeting_date"]) for when, d in decisions(h) if d["step_id"] == "board_to_board"]
    assert meetings and meetings[0][1] < meetings[0][0].isoformat(), "the meeting should be recorded late"
    assert FOLLOWUPS_FROM_MEETING_DATE not in patch_markers(h)


async def test_pre_patch_histories_replay_on_the_patched_code():
    results = await replay([(f.name, load_history(f)) for f in PRE_PATCH])
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    # ... and on the code as it was, which the test's copy reproduces command for command.
    results = await replay([(f.name, load_history(f)) for f in PRE_PATCH], workflows=OLD)
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]


async def test_the_same_change_without_the_patch_breaks_regimes_already_running():
    """Why the patch: the earlier letter deadline moves the regime's NextDeadline search attribute, a
    command the recorded history does not have."""
    results = await replay([(f.name, load_history(f)) for f in PRE_PATCH],
                           workflows=[RegimeWorkflowChangedWithoutPatch, BuddyPartnershipWorkflow])
    assert results and not any(r.ok for r in results)
    assert "Nondeterminism" in results[0].error


# ---------------------------------------------------------------------------- on the real stack
class Regime:
    """One regime driven through the HTTP API on virtual time; day 0 is its entry date (today)."""

    def __init__(self, stack: ServiceStack, ods: str) -> None:
        self.stack, self.ods, self.id = stack, ods, ""
        self.entry = dates.london_date(datetime.now(UTC))

    async def place(self) -> None:
        r = await self.stack.http.post("/regimes", headers=self.stack.auth("reg-1", "regulator"), json={
            "trust": {"ods_code": self.ods, "name": "Versioned NHS Trust"}, "entry_date": self.entry.isoformat(),
            "ratings": {"safe": "inadequate", "effective": "good", "caring": "good", "responsive": "good",
                        "well_led": "inadequate", "overall": "inadequate"}})
        assert r.status_code == 201, r.text
        self.id = r.json()["regime_id"]

    async def to_day(self, day: int) -> None:
        target = dates.london_midnight(self.entry + timedelta(days=day)) + timedelta(hours=12)
        now = await self.stack.virtual_now(self.id)
        if target > now:
            await self.stack.fast_forward(self.id, target - now)

    def day(self, n: int) -> str:
        return (self.entry + timedelta(days=n)).isoformat()

    async def record_meeting(self, step: str, held_on_day: int, review: bool = False) -> None:
        r = await self.stack.http.post(
            f"/regimes/{self.id}/steps/{step}/decisions", headers=self.stack.auth("reg-1", "regulator"),
            json={"action": "record", "payload": {"meeting_date": self.day(held_on_day),
                                                  "commission_capability_review": review}})
        assert r.status_code == 200, r.text

    async def state(self) -> dict[str, Any]:
        r = await self.stack.http.get(f"/regimes/{self.id}", headers=self.stack.auth("ops", "operations"))
        assert r.status_code == 200, r.text
        return r.json()

    async def history(self) -> WorkflowHistory:
        return await self.stack.client.get_workflow_handle(self.id).fetch_history()


async def test_regime_started_before_the_change_takes_it_at_its_next_board_to_board(temporal_address,
                                                                                     database_url):
    async with run_stack(temporal_address, database_url, start_worker=False) as stack:
        reg = Regime(stack, "RVP1")
        # The old worker runs the regime for its first two months (no cache: nothing survives the deploy).
        async with make_worker(stack.client, stack.pool, stack.task_queue, OLD, max_cached_workflows=0):
            await reg.place()
            await reg.to_day(60)
        assert patch_markers(await reg.history()) == []
        # Deploy: the new worker replays the history so far, then meets the next decision.
        async with make_worker(stack.client, stack.pool, stack.task_queue):
            await reg.to_day(80)
            await reg.record_meeting("board_to_board", held_on_day=70, review=True)
            st = await reg.state()
        assert st["steps"]["letter_to_chair"]["due"] == reg.day(84)  # 14 days after the meeting, not day 94
        assert st["steps"]["capability_review"]["due"] == dates.add_months(reg.entry + timedelta(days=70),
                                                                           3).isoformat()
        h = await reg.history()
        assert patch_markers(h) == [FOLLOWUPS_FROM_MEETING_DATE]
        results = await replay([("after the deploy", h)])
        assert results[0].ok, results[0].error


async def test_a_run_that_took_the_old_path_keeps_it_until_it_continues_as_new(temporal_address, database_url):
    async with run_stack(temporal_address, database_url, start_worker=False) as stack:
        reg = Regime(stack, "RVP2")
        async with make_worker(stack.client, stack.pool, stack.task_queue, OLD, max_cached_workflows=0):
            await reg.place()
            await reg.to_day(80)
            await reg.record_meeting("board_to_board", held_on_day=70)
            assert (await reg.state())["steps"]["letter_to_chair"]["due"] == reg.day(94)  # the old rule
        async with make_worker(stack.client, stack.pool, stack.task_queue):
            await reg.to_day(100)
            r = await stack.http.post(f"/regimes/{reg.id}/reinspection", headers=stack.auth("cqc-1", "cqc"),
                                      json={"inspection_date": reg.day(130)})
            assert r.status_code == 200, r.text
            await reg.to_day(110)
            await reg.record_meeting("board_to_board_pre_inspection", held_on_day=104)
            st = await reg.state()
        # patched() is decided once per run: this run replayed the old path, so it stays on it.
        assert st["steps"]["letter_to_chair-2"]["due"] == reg.day(124)
        assert st["runs"] == 1
        assert patch_markers(await reg.history()) == []


async def test_new_regime_takes_the_change_from_the_start(temporal_address, database_url):
    async with run_stack(temporal_address, database_url) as stack:
        reg = Regime(stack, "RVP3")
        await reg.place()
        await reg.to_day(80)
        await reg.record_meeting("board_to_board", held_on_day=70)
        st = await reg.state()
        assert st["steps"]["letter_to_chair"]["due"] == reg.day(84)
        # A meeting recorded more than 14 days late: the letter is already overdue and escalates at once.
        await reg.to_day(120)
        r = await stack.http.post(f"/regimes/{reg.id}/reinspection", headers=stack.auth("cqc-1", "cqc"),
                                  json={"inspection_date": reg.day(150)})
        assert r.status_code == 200, r.text
        await reg.to_day(150)
        await reg.record_meeting("board_to_board_pre_inspection", held_on_day=125)
        st = await reg.state()
        assert st["steps"]["letter_to_chair-2"]["due"] == reg.day(139)
        assert [e["rung"] for e in st["escalations"] if e["step_id"] == "letter_to_chair-2"] == \
            ["breach", "dd_escalation"]
        h = await reg.history()
        assert patch_markers(h) == [FOLLOWUPS_FROM_MEETING_DATE]
        results = await replay([("new regime", h)], workflows=WORKFLOWS)
        assert results[0].ok, results[0].error
