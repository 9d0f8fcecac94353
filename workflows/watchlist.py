"""A challenged-providers watch-list entry (issue 16 item 4): its own definition on the step engine.

Message API
- update `decide_step(Decision) -> Step`: the regulator records the improvement director's appointment or
  reviews the entry (keep, or remove: each with its reason).
- update `end_entry(WatchEnd) -> WatchState`: the regulator takes the trust off the list, or the API records that
  the trust was placed in special measures (the regime it is linked to).
- update `add_buddy(BuddyRequest) -> BuddySummary`: the regulator starts a buddy partnership (the regime's child
  workflow, confidential: no search attribute, no inbox task); signal `buddy_changed(BuddySummary)` its reports.
- query `get_state() -> WatchState`.

Confidential (domain/watchlist.py): the entry sets no search attribute and writes no inbox task (its effects are
its audit entries and notifications to the regulator); its projection is the `watch_list` table the API keeps.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from domain import dates
    from domain.models import SYSTEM, BuddySummary, Decision, DrawdownMessage, Rung, Step
    from domain.steps import FUNDING_MONTHS, Kind
    from domain.vocab import AuditEvent, RejectionKind, Role
    from domain.watchlist import WATCH_REVIEW_MONTHS, WATCH_STEPS, WatchEnd, WatchInput, WatchKind, WatchState
    from workflows.common import BuddyRequest, BuddyStart, EffectBatch, TaskClose, TaskOpen
    from workflows.engine import StepEngine, reject
    from workflows.funding import FundingRuntime
from workflows.buddyhost import BuddyHost
from workflows.funding import FundingRuntime


@workflow.defn
class WatchListWorkflow(StepEngine, FundingRuntime, BuddyHost):
    CATALOGUE = WATCH_STEPS

    @workflow.init
    def __init__(self, inp: WatchInput) -> None:
        self._effects: list[Any] = []
        self._wake = False
        self._updates_this_run = 0
        self._hand_off = False  # a partnership was started: continue as new to cut the parent link (regime.py)
        if inp.state is not None:
            self.s = inp.state
            self.s.runs += 1
            return
        start = inp.start
        assert start is not None
        self.s = WatchState(start=start)
        self.audit(AuditEvent.watch_listed, start.actor, reason="; ".join(start.reasons),
                   detail={"trust": start.trust.model_dump(), "added_on": start.added_on.isoformat()})
        self.open_step(Kind.appoint_improvement_director, dates.add_months(start.added_on, 3))
        self.open_step(WatchKind.watch_review, dates.add_months(start.added_on, WATCH_REVIEW_MONTHS))
        if start.funding_usual_max_pence is not None:  # the regime's funding step and deadline (months 4-6)
            self.open_step(Kind.funding_agreement, dates.add_months(start.added_on, FUNDING_MONTHS[1][1]))

    @workflow.run
    async def run(self, inp: WatchInput) -> WatchState:
        await self._run_loop()
        return self.s

    # ---------------------------------------------------------------- engine hooks
    def _ladder(self) -> list[Rung]:
        return self.s.start.ladder

    def _notice_subject(self, st: Step, rung: str) -> str:
        return f"[{rung}] watch list {self.s.start.trust.ods_code}: {st.title}"

    def _where(self) -> str:
        return "this watch-list entry"

    def _regime_id(self) -> str:
        return self.s.start.entry_id

    def _host_id(self) -> str:
        return self.s.start.entry_id

    def _buddy_start(self, req: BuddyRequest) -> BuddyStart:
        start = self.s.start
        return BuddyStart(regime_id=start.entry_id, parent_workflow_id=workflow.info().workflow_id,
                          trust=start.trust, request=req, ladder=start.ladder,
                          continue_as_new_after_events=start.continue_as_new_after_events, confidential=True,
                          # The buddy's funding agreement in months 4-6 of its time on the list, as the regime's
                          # entry + 6 months, when the entry has central funding (as the trust's own agreement).
                          funding_agreement_due_from=(dates.add_months(start.added_on, FUNDING_MONTHS[1][1])
                                                      if start.funding_usual_max_pence is not None else None))

    def _continue_as_new_requested(self) -> bool:
        return self._hand_off

    def funding_usual_max(self) -> int | None:
        return self.s.start.funding_usual_max_pence

    def _continue_as_new_after_events(self) -> int:
        return self.s.start.continue_as_new_after_events

    def _continue_input(self) -> WatchInput:
        return WatchInput(state=self.s)

    def _process_time(self) -> None:
        self._fire_due_rungs()

    def _next_wake(self) -> datetime | None:
        candidates = self._ladder_wakes() + self._effects_wake()
        if self._drawdowns_retry_at is not None and self._drawdowns_due():
            candidates.append(self._drawdowns_retry_at)
        return min(candidates) if candidates else None

    def emit(self, effect: Any) -> None:
        # Confidential: no inbox task (the tasks are listed to every reader of a trust's regimes and to CQC).
        if isinstance(effect, TaskOpen | TaskClose):
            return
        super().emit(effect)

    async def _flush(self) -> None:
        await self._record_drawdowns()
        while self._effects or self._drawdowns_due():
            if not self._effects:
                if not await self._record_drawdowns():
                    return
                continue
            batch, self._effects = self._effects, []
            for eff in batch:
                # A running child holds its parent's timers (time skipping) for as long as it lives: continue
                # as new at the next safe point, which cuts the link (ABANDON), as the regime does.
                self._hand_off = await self._signal_partnerships(eff) or self._hand_off
            written = await self._write_effects(EffectBatch(
                workflow_id=workflow.info().workflow_id, regime_id=self.s.start.entry_id,
                ods_code=self.s.start.trust.ods_code, effects=batch))
            if not written:
                return

    # ---------------------------------------------------------------- steps
    def open_step(self, kind: str, due: Any, *, step_id: str | None = None,
                  subject: dict[str, Any] | None = None) -> Step:
        spec = WATCH_STEPS[kind]
        sid = self.free_step_id(step_id or kind)
        st = Step(id=sid, kind=kind, title=spec.title, role=spec.role, group=spec.group, due=due,
                  opened_at=workflow.now(), subject=subject or {})
        self.s.steps[sid] = st
        self.announce_opened(st)
        return st

    def followups_from(self, held: Any) -> Any:  # (the regime's handlers call it; none of the entry's steps do)
        return self.today()

    # ---------------------------------------------------------------- messages
    @workflow.update
    def decide_step(self, d: Decision) -> Step:
        self._check_open()
        st = self.take_decision(d)
        if st.kind == WatchKind.watch_review:
            if d.action == "keep":
                self.open_step(WatchKind.watch_review, dates.add_months(self.today(), WATCH_REVIEW_MONTHS))
            else:
                self._end(WatchEnd(how="removed", reason=d.comment or "", actor=d.actor))
        return st

    @decide_step.validator
    def _validate_decision(self, d: Decision) -> None:
        self._check_open()
        self.validate_decision(d)
        st = self.s.steps[d.step_id]
        if st.kind == WatchKind.watch_review and d.action == "remove":
            self._check_no_payment_pending()

    def _check_no_payment_pending(self) -> None:
        if self._drawdowns_due():
            raise reject(RejectionKind.conflict, "a drawdown is authorised and its payment not yet recorded: the "
                                                 "entry ends once it is")

    @workflow.update
    def request_drawdown(self, m: DrawdownMessage) -> Step:
        """The trust asks for central funding under the agreed ceiling (the regime's rules)."""
        self._validate_drawdown(m)
        st = self.add_drawdown(m)
        self._wake = True
        return st

    @request_drawdown.validator
    def _validate_drawdown(self, m: DrawdownMessage) -> None:
        self._check_open()
        self.check_drawdown(m)

    @workflow.update
    def add_buddy(self, req: BuddyRequest) -> BuddySummary:
        self._updates_this_run += 1
        self._validate_add_buddy(req)
        summary = self.begin_partnership(req)
        self._wake = True
        return summary

    @add_buddy.validator
    def _validate_add_buddy(self, req: BuddyRequest) -> None:
        self._check_open()
        self.check_new_buddy(req, self.s.start.trust.ods_code)

    @workflow.signal
    def buddy_changed(self, summary: BuddySummary) -> None:
        self.take_buddy_report(summary)
        self._wake = True

    @workflow.update
    def end_entry(self, e: WatchEnd) -> WatchState:
        self._validate_end(e)
        self._end(e)
        return self.s

    @end_entry.validator
    def _validate_end(self, e: WatchEnd) -> None:
        if e.actor.role != Role.regulator:
            raise reject(RejectionKind.wrong_role, "the regulator takes a trust off the watch list or places it")
        self._check_open()
        self._check_no_payment_pending()
        if e.how == "placed" and not e.regime_id:
            raise reject(RejectionKind.invalid_payload, "regime_id: the regime the trust was placed in")

    def _check_open(self) -> None:
        if self.s.finished:
            raise reject(RejectionKind.step_not_open, f"the entry has ended ({self.s.status})")

    def _end(self, e: WatchEnd) -> None:
        self.s.status = e.how
        self.s.ended = {"how": e.how, "reason": e.reason, "regime_id": e.regime_id, "by": e.actor.user_id,
                        "on": self.today().isoformat()}
        for st in self.s.steps.values():
            if st.status == "open":
                self.close_step(st, "cancelled", SYSTEM, f"entry {e.how}")
        self.end_live_partnerships(f"watch-list entry {e.how}")
        self.audit(AuditEvent.watch_list_ended, e.actor, reason=e.reason,
                   detail={"how": e.how, "regime_id": e.regime_id})
        self.s.finished = True
        self._wake = True

    @workflow.query
    def get_state(self) -> WatchState:
        return self.s


