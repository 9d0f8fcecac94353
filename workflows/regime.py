"""The regime workflow: one per trust per spell in special measures.

Message API
- update `decide_step(Decision) -> StepView`: a person acts on an open step (validator rejects
  wrong role, closed step, unknown action, missing reason, bad payload, separation of duties).
- update `amend_deadline(DeadlineChange) -> StepView`: the regulator moves a due date or pauses a clock.
- update `announce_reinspection(ReinspectionAnnouncement) -> StepView`: CQC names the re-inspection date.
- update `close_regime(Closure) -> str`: the regulator closes the regime by a structural solution.
- update `record_enforcement(Enforcement) -> int`: CQC records an enforcement action.
- update `add_buddy(BuddyRequest) -> BuddySummary`: the regulator starts a buddy partnership (child workflow).
- signal `record_inspection(InspectionSignal)`: a published CQC outcome (idempotent on its reference).
- signal `withdraw_inspection(Withdrawal)`: a published outcome withdrawn.
- signal `buddy_changed(BuddySummary)`: a partnership reports its state.
- query `get_state() -> RegimeState`.

Every deadline is a London date; the loop sleeps until the next instant at which something is due
(a rung of an escalation ladder or a scheduled opening) and recomputes it whenever state changes.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.buddyhost import BuddyHost
from workflows.funding import FundingRuntime
from workflows.programme import ProgrammeRuntime

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel

    from activities.calendar import CalendarActivities
    from domain import dates, schedule
    from domain.documents import DocumentPayload, is_reference
    from domain.models import (
        SYSTEM,
        Actor,
        BankHolidays,
        BuddySummary,
        Closure,
        DeadlineChange,
        Decision,
        Delegation,
        DirectorTime,
        DraftReport,
        DrawdownMessage,
        Enforcement,
        EvidenceRecord,
        InspectionRecord,
        InspectionSignal,
        Placement,
        PlanChange,
        RegimeStart,
        RegimeState,
        ReinspectionAnnouncement,
        Rung,
        Step,
        StepView,
        Withdrawal,
    )
    from domain.programme import ProposedChange
    from domain.ratings import InspectionOutcome, KeyQuestionRatings
    from domain.rules import SEGMENT_IN_SPECIAL_MEASURES, Verdict, entry_rule, exit_rule
    from domain.steps import (
        CATALOGUE,
        DECISION_DAYS,
        FACTUAL_ACCURACY_DAYS,
        FUNDING_MONTHS,
        QUALITY_SUMMIT_DAYS,
        Kind,
        where_a_decision_arrives,
    )
    from domain.vocab import ACTIVE_PHASES, AuditEvent, Phase, RejectionKind, Role
    from workflows.common import (
        SA_LEVEL,
        SA_NEXT,
        SA_ODS,
        SA_PHASE,
        BuddyRequest,
        BuddyStart,
        EffectBatch,
        EndBuddy,
        RegimeProjection,
        TaskView,
        YearRange,
    )
    from workflows.engine import RECORDS_KEPT, StepEngine, reject, same_person


PARTY_ROLES = (Role.trust, Role.improvement_director, Role.regulator, Role.commissioner, Role.buddy, Role.cqc)
# Patch ids (docs/versioning.md). Each guards a behaviour change that regimes already running must not see
# while they replay the path they took before it.
FOLLOWUPS_FROM_MEETING_DATE = "followups-from-meeting-date"
# A decision that lands while a batch of effects is being written changes the state after the search
# attributes were upserted for that flush; without this patch they stayed stale until the next timer
# (months, for an exit), so Temporal's visibility showed the old phase.
SEARCH_ATTRIBUTES_AFTER_FLUSH = "search-attributes-after-flush"
# The monthly Oversight and Assurance Group and Integrated Delivery Meeting (domain.md's timers table)
# became steps after regimes were already running: they take them from their next month.
MONTHLY_OVERSIGHT_MEETINGS = "monthly-oversight-meetings"
# A partnership just started is handed off by continuing the regime as new; that used to happen inside the
# flush that started it (without catching up with time or archiving, and never again if effects were queued).
# With this patch the flush only asks, and the run loop continues as new at its next safe point like any other
# continue-as-new (StepEngine._run_loop).
HAND_OFF_FROM_RUN_LOOP = "hand-off-from-run-loop"
# Issue 14 item 5: a regime placed without entry ratings (the 2013 cohort) had no exit verdict on its
# re-inspection, so CQC could recommend exit with no reason whatever the ratings; now the re-inspection is judged
# on its own ratings. Asked only when such a regime records an outcome.
EXIT_RULE_WITHOUT_ENTRY_RATINGS = "exit-rule-without-entry-ratings"
# The years of bank holidays a regime holds ahead of today (infra/bank_holidays.YEARS_AHEAD, for its placement).
HOLIDAY_YEARS_AHEAD = 2
# Closed steps of these kinds stay in the state: the rules look back at them (withdrawn outcomes, the latest
# recommendation, the number of re-inspections), and there are a few a year at most.
LOOKBACK_KINDS = frozenset({Kind.reinspection, Kind.cqc_recommendation, Kind.regulator_decision,
                            Kind.secretary_of_state_letter})


@workflow.defn
class RegimeWorkflow(StepEngine, ProgrammeRuntime, FundingRuntime, BuddyHost):
    CATALOGUE = CATALOGUE

    @workflow.init
    def __init__(self, start: RegimeStart) -> None:
        # State exists before the first activation, so updates and queries that reach a new run
        # (right after continue-as-new) see it.
        self._effects: list[dict[str, Any]] = []
        self._wake = False
        self._updates_this_run = 0
        self._sa: tuple | None = None
        self._hand_off = False
        self._holidays_retry_at: datetime | None = None
        if start.state is not None:
            self.s = start.state
            self.s.runs += 1
        else:
            assert start.placement is not None
            self.s = RegimeState(placement=start.placement)
            rules = start.placement.calendar
            if rules is not None and rules.bank_holidays == "next_working_day":
                self.s.bank_holidays = start.bank_holidays  # before the entry steps open: their dates may move
            self._enter(start.placement)

    # ---------------------------------------------------------------- run loop
    @workflow.run
    async def run(self, start: RegimeStart) -> RegimeState:
        await self._run_loop()
        return self.s

    WAKE_RESET_BEFORE_FLUSH = False  # as its histories recorded (StepEngine.WAKE_RESET_BEFORE_FLUSH)

    def _continue_as_new_after_events(self) -> int:
        return self.s.placement.continue_as_new_after_events

    def _continue_input(self) -> RegimeStart:
        return RegimeStart(state=self.s)

    def _continue_as_new_requested(self) -> bool:
        return self._hand_off

    # ---------------------------------------------------------------- entry
    def _enter(self, p: Placement) -> None:
        self.s.segment = SEGMENT_IN_SPECIAL_MEASURES
        if p.measures == "finance":
            basis = f"finance special measures, the regulator's decision: {p.regulator_reason}"
        elif p.basis == Kind.cqc_recommendation and p.entry_ratings is not None:
            verdict = entry_rule(p.entry_ratings)
            if verdict.met:
                basis = "CQC recommendation; entry rule met: " + "; ".join(verdict.reasons)
            else:  # since issue 14 item 4 (placements the API refused before: no history takes this path)
                basis = (f"CQC recommendation, confirmed by the regulator although the entry rule is not met "
                         f"({'; '.join(verdict.reasons)}): {p.regulator_reason}")
        else:
            basis = f"regulator decision without CQC recommendation: {p.regulator_reason}"
        if p.entry_outcome is not None:
            self.s.inspections.append(InspectionRecord(outcome=p.entry_outcome, received_at=workflow.now()))
        self.audit(AuditEvent.regime_entered, p.placed_by, reason=basis, detail={
            "trust": p.trust.model_dump(), "entry_date": p.entry_date.isoformat(), "segment": 4,
            "previous_regime_id": p.previous_regime_id,
        })
        for due in schedule.entry_steps(p.entry_date, p.measures):
            self.open_step(due.kind, due.due, step_id=due.step_id)
        if p.appointment_before_placement is not None:  # (None in every placement recorded before issue 16)
            self._appointed_before_placement(p.appointment_before_placement)
        summit = (schedule.entry_summit(p.entry_date, self.today())
                  if p.quality_summits and p.measures != "finance" else None)
        if summit is not None:  # (none for a regime taken on after its date: it was held before)
            self.open_step(summit.kind, summit.due, step_id=summit.step_id, subject=dict(summit.subject))
        buddy = schedule.buddy_appointment(p.entry_date, self.today()) if p.buddy_appointment else None
        if buddy is not None:
            self.open_step(buddy.kind, buddy.due, step_id=buddy.step_id)
        if p.programme:
            self.schedule_programme(p.entry_date, dates.add_months(p.entry_date, schedule.REINSPECTION_MONTHS),
                                    p.measures)
        # Monthly returns are tracked from the month the service took the regime on.
        self.s.next_monthly = schedule.first_tracked_month(
            p.entry_date, self.today(), p.calendar.first_return_lead_days if p.calendar else None)

    def _appointed_before_placement(self, d: Decision) -> None:
        """The improvement director appointed before placement (on the watch list): the regime's own decision on
        its appointment step, taken at entry by the path a decision that arrives later takes (take_decision: the
        step done with its comment, its audit entry, the director assigned by the kind's @after handler). A step
        imported as done (completed_steps) is left as it is; a decision the rules refuse leaves the step open."""
        st = next((s for s in self.s.steps.values()
                   if s.kind == Kind.appoint_improvement_director and s.status == "open"), None)
        if st is None:
            return
        try:
            self.take_decision(d.model_copy(update={"step_id": st.id}))
        except ApplicationError as e:  # (the API builds it from the entry's own decision: not expected)
            workflow.logger.warning("appointment before placement not taken: %s", e)

    # ---------------------------------------------------------------- time
    def _ladder(self) -> list[Rung]:
        return self.s.placement.ladder

    def _notice_subject(self, st: Step, rung: str) -> str:
        return f"[{rung}] {self.s.placement.trust.ods_code}: {st.title}"

    def _where(self) -> str:
        return "this regime"

    def _regime_id(self) -> str:
        return self.s.placement.regime_id

    def funding_usual_max(self) -> int | None:
        return self.s.placement.funding_usual_max_pence

    def _still_needed(self, st: Step) -> bool:
        """Closed steps the rules read again: re-inspections and what decided on them (few), and any step of
        a decision still open (the plan a sign-off is about, who acted on it: separation of duties)."""
        if st.kind in LOOKBACK_KINDS:
            return True
        return any(o.status == "open" and (o.subject.get("plan_step") == st.id
                                           or (o.group == st.group and _same_decision(o, st)))
                   for o in self.s.steps.values())

    def _records_to_archive(self) -> list[tuple[str, list[Any], Any]]:
        out: list[tuple[str, list[Any], Any]] = []
        for kind, attr in (("inspection", "inspections"), ("enforcement", "enforcement"), ("decision", "decisions")):
            items = getattr(self.s, attr)
            if len(items) > RECORDS_KEPT:
                old = items[:len(items) - RECORDS_KEPT]
                out.append((kind, [i.model_dump(mode="json") if hasattr(i, "model_dump") else i for i in old],
                            lambda attr=attr, n=len(old): setattr(self.s, attr, getattr(self.s, attr)[n:])))
        ended = [pid for pid, b in self.s.buddies.items() if b.ended]
        if len(ended) > RECORDS_KEPT:
            gone = ended[:len(ended) - RECORDS_KEPT]

            def drop(gone: list[str] = gone) -> None:
                for pid in gone:
                    del self.s.buddies[pid]
            out.append(("buddy", [self.s.buddies[pid].model_dump(mode="json") for pid in gone], drop))
        return out

    def _next_wake(self) -> datetime | None:
        candidates = self._ladder_wakes() + self._effects_wake() + self._programme_wakes()
        if self._drawdowns_retry_at is not None and self._drawdowns_due():
            candidates.append(self._drawdowns_retry_at)
        if self.s.next_monthly is not None and self.s.phase in ACTIVE_PHASES:
            candidates.append(dates.london_midnight(self.s.next_monthly))
        return min(candidates) if candidates else None

    def _process_time(self) -> None:
        now = workflow.now()
        while (
            self.s.next_monthly is not None
            and self.s.phase in ACTIVE_PHASES
            and dates.london_midnight(self.s.next_monthly) <= now
        ):
            m = self.s.next_monthly
            ret, *meetings = schedule.monthly_steps(m)
            self.open_step(ret.kind, ret.due, step_id=ret.step_id, subject=dict(ret.subject))
            if workflow.patched(MONTHLY_OVERSIGHT_MEETINGS):
                for due in meetings:
                    self.open_step(due.kind, due.due, step_id=due.step_id, subject=dict(due.subject))
            self.s.next_monthly = dates.add_months(m, 1)
        self._open_scheduled()
        self._open_action_steps()
        self._fire_due_rungs()

    async def _before_time(self) -> None:
        """Keep the bank holidays YEARS_AHEAD years ahead of today (CalendarRules.bank_holidays): the calendar
        activity gives the later years, recorded in history, and years before last year are dropped (bounded
        state). Nothing is asked of a regime that moves no deadline (placed before the rule, or under `stay`)."""
        held = self.s.bank_holidays
        today = self.today()
        if held is None or held.last_year >= today.year + HOLIDAY_YEARS_AHEAD:
            return
        if self._holidays_retry_at is not None and workflow.now() < self._holidays_retry_at:
            return
        try:
            more = await workflow.execute_activity_method(
                CalendarActivities.bank_holidays,
                YearRange(first_year=held.last_year + 1, last_year=today.year + HOLIDAY_YEARS_AHEAD),
                start_to_close_timeout=timedelta(seconds=30), retry_policy=RetryPolicy(maximum_attempts=3))
        except ActivityError:
            # Deadlines in the years not held stay where the rules put them until a later try succeeds.
            self._holidays_retry_at = workflow.now() + timedelta(days=1)
            return
        keep_from = today.year - 1
        self.s.bank_holidays = BankHolidays(
            first_year=max(held.first_year, keep_from), last_year=more.last_year,
            days={d: n for d, n in {**held.days, **more.days}.items() if d.year >= keep_from})

    def _working_due(self, due: date) -> date:
        """The due date the rules gave, or the next working day when it falls on a bank holiday the regime holds
        (CalendarRules.bank_holidays == next_working_day)."""
        held = self.s.bank_holidays
        if held is None or not held.covers(due):
            return due
        return dates.off_bank_holiday(due, held.days)

    # ---------------------------------------------------------------- steps
    def open_step(self, kind: str, due: date, *, step_id: str | None = None,
              subject: dict[str, Any] | None = None) -> Step:
        spec = CATALOGUE[kind]
        sid = self.free_step_id(step_id or kind)
        moved = self._working_due(due)
        st = Step(id=sid, kind=kind, title=spec.title, role=spec.role, group=spec.group, due=moved,
                  opened_at=workflow.now(), subject=subject or {}, due_moved_from=due if moved != due else None)
        self.s.steps[sid] = st
        pre = next((c for c in self.s.placement.completed_steps if c.kind == kind
                    and not any(s.data.get("imported_from") == c.kind + c.completed_on.isoformat()
                                for s in self.s.steps.values())), None)
        if pre is not None:
            st.status, st.outcome = "done", "completed_before_go_live"
            st.completed_at = dates.end_of_day(pre.completed_on) - timedelta(seconds=1)
            st.completed_by = pre.by
            st.late = pre.completed_on > due
            st.data["imported_from"] = kind + pre.completed_on.isoformat()
            self.audit(AuditEvent.step_imported, SYSTEM, step=st, reason=pre.note or "completed before go-live",
                        detail={"completed_on": pre.completed_on.isoformat(), "by": pre.by})
            return st
        self.announce_opened(st)
        return st

    def task(self, st: Step) -> TaskView:
        return super().task(st).model_copy(update={"assignee": self.s.assignees.get(st.role)})

    def cancel_open(self, reason: str, keep: tuple[str, ...] = ()) -> None:
        for st in self.s.steps.values():
            if st.status == "open" and st.kind not in keep:
                self.close_step(st, "cancelled", SYSTEM, reason)

    # ---------------------------------------------------------------- effects
    def projection(self) -> RegimeProjection:
        p = self.s.placement
        return RegimeProjection(
            regime_id=p.regime_id, ods_code=p.trust.ods_code, trust_name=p.trust.name,
            multi_site=p.trust.multi_site, entry_date=p.entry_date, phase=self.s.phase, segment=self.s.segment,
            **self._clock_figures(), buddy_count=sum(1 for b in self.s.buddies.values() if not b.ended),
            extensions=len(self.s.extensions), exit_date=self.s.exit_date, previous_regime_id=p.previous_regime_id,
            sos_letter=self.s.sos_letter is not None, closed=self.s.finished,
            closure_solution=(self.s.closure or {}).get("solution"),
            successor_ods_code=(self.s.closure or {}).get("successor_ods_code"),
            measures=self.s.placement.measures,
        )

    def _clock_figures(self) -> dict[str, Any]:
        """The open steps' next due date, how many are overdue, and the highest escalation level reached."""
        open_steps = [s for s in self.s.steps.values() if s.status == "open"]
        today = self.today()
        nxt = min((s.due for s in open_steps if not s.paused), default=None)
        return {"next_due": nxt,
                "overdue": sum(1 for s in open_steps if s.due < today and not s.paused),
                "escalation_level": max((s.next_rung for s in open_steps if s.late or s.next_rung > 0), default=0)}

    async def _flush(self) -> None:
        self._upsert_search_attributes()
        if self._effects_retry_at is not None and workflow.now() < self._effects_retry_at:
            return  # the database was unavailable: wait for the retry time rather than hold the loop again
        await self._record_drawdowns()  # (nothing to do, and no command, without an authorised drawdown)
        handed_off = False
        while self._effects:
            batch, self._effects = self._effects, []
            for eff in batch:
                handed_off = await self._signal_partnerships(eff) or handed_off
            written = await self._write_effects(
                EffectBatch(workflow_id=workflow.info().workflow_id, regime_id=self.s.placement.regime_id,
                            ods_code=self.s.placement.trust.ods_code, effects=batch,
                            projection=self.projection()))
            if not written:
                return  # queued again; the run loop goes on and tries later (StepEngine._write_effects)
            if not self._effects and workflow.patched(SEARCH_ATTRIBUTES_AFTER_FLUSH):
                self._upsert_search_attributes()
            if not self._effects and self._drawdowns_due():
                # A drawdown authorised while this flush was writing: the loop clears its wake flag after the
                # flush (WAKE_RESET_BEFORE_FLUSH), so it is paid now rather than at the next timer, days later.
                # (Nothing is ever due in a history recorded before issue 16: no extra command on replay.)
                await self._record_drawdowns()
        if handed_off:
            # A running child is in-flight work for its parent, which stops the regime's timers being skipped
            # (tests, simulation) for as long as the partnership lives; with ABANDON the link is cut at the
            # regime's next continue-as-new anyway, so a partnership just started is handed off at once.
            if workflow.patched(HAND_OFF_FROM_RUN_LOOP):
                self._hand_off = True
            else:
                await self._hand_off_partnerships()

    async def _hand_off_partnerships(self) -> None:
        """Runs that took this path before HAND_OFF_FROM_RUN_LOOP continue as new from inside the flush."""
        if self.s.finished or self._effects_pending() or not workflow.patched("buddy-handoff-continue-as-new"):
            return
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self._flush()
        if not self.s.finished and not self._effects_pending():
            workflow.continue_as_new(RegimeStart(state=self.s))

    def _host_id(self) -> str:
        return self.s.placement.regime_id

    def _buddy_start(self, req: BuddyRequest) -> BuddyStart:
        p = self.s.placement
        # A regime with central funding (issue 16 item 1): the buddy trust's funding agreement is finalised in months
        # 4-6 like the trust's, whose date is entry + 6 months. A child's input is not part of the parent's replay.
        funding_from = (dates.add_months(p.entry_date, FUNDING_MONTHS[1][1])
                        if p.funding_usual_max_pence is not None else None)
        return BuddyStart(regime_id=p.regime_id, parent_workflow_id=workflow.info().workflow_id, trust=p.trust,
                          request=req, ladder=p.ladder, continue_as_new_after_events=p.continue_as_new_after_events,
                          package_agreed_by=p.policy.buddy_package_agreed_by, funding_agreement_due_from=funding_from)

    def _upsert_search_attributes(self) -> None:
        proj = self.projection()
        nxt = proj.next_due
        values = (self.s.placement.trust.ods_code, self.s.phase, nxt, proj.escalation_level)
        if values == self._sa:
            return
        self._sa = values
        pairs = [SA_ODS.value_set(values[0]), SA_PHASE.value_set(values[1]),
                                            SA_LEVEL.value_set(values[3])]
        pairs.append(SA_NEXT.value_set(dates.end_of_day(nxt)) if nxt else SA_NEXT.value_unset())
        workflow.upsert_search_attributes(pairs)

    # ---------------------------------------------------------------- decisions
    def check_parties(self, actor: Actor, step: Step) -> None:
        """Separation of duties: one person never acts for two parties of the same decision."""
        for other in self.s.steps.values():
            if other.group != step.group or other.role == step.role:
                continue
            if _same_decision(other, step) and any(same_person(a, actor) for a in other.actions):
                raise reject(RejectionKind.separation_of_duties,
                             f"{actor.user_id} already acted as {other.role.replace('_', ' ')} on "
                             f"'{other.title}' and cannot also act as {step.role.replace('_', ' ')}")

    @workflow.update
    def decide_step(self, d: Decision) -> StepView:
        return StepView(step=self.take_decision(d), phase=self.s.phase)

    @decide_step.validator
    def _validate_decision_update(self, d: Decision) -> None:
        self.validate_decision(d)
        # Only when a decision arrives, never again in the handler: a decision a history recorded before this
        # rule (by another user of the role) must replay as it was taken.
        st = self.s.steps[d.step_id]
        self._check_assignee(d.actor, st.role)

    def _check_assignee(self, actor: Actor, role: str) -> None:
        """The appointed improvement director acts on the director's steps, or whoever covers with a current
        delegation; before an appointment any improvement director of the trust may."""
        assignee = self.s.assignees.get(role)
        if assignee is None or actor.user_id == assignee or actor.role != role:
            return
        today = self.today()
        if any(g.get("role") == role and g.get("to_user_id") == actor.user_id
               and date.fromisoformat(g["until"]) >= today for g in self.s.delegations):
            return
        raise reject(RejectionKind.not_assignee, f"the appointed {role.replace('_', ' ')} is {assignee}; {actor.user_id} may act "
                                    "only with a delegation recorded by the regulator or by them")

    # ---------------------------------------------------------------- delegation
    @workflow.update
    def delegate(self, g: Delegation) -> dict[str, Any]:
        """Cover for the appointed improvement director until a date (a new handler: nothing replays it)."""
        self._updates_this_run += 1
        self._validate_delegate(g)
        role = Role.improvement_director
        today = self.today()
        # Expired delegations leave the state (they are in the audit log): the list stays short.
        self.s.delegations = [x for x in self.s.delegations if date.fromisoformat(x["until"]) >= today]
        entry = {"role": role, "from_user_id": self.s.assignees[role], "to_user_id": g.to_user_id,
                 "until": g.until.isoformat(), "reason": g.reason, "by": g.actor.user_id,
                 "at": workflow.now().isoformat()}
        self.s.delegations.append(entry)
        self.audit(AuditEvent.delegation_recorded, g.actor, reason=g.reason, detail={
            k: entry[k] for k in ("role", "from_user_id", "to_user_id", "until")})
        self._wake = True
        return entry

    @delegate.validator
    def _validate_delegate(self, g: Delegation) -> None:
        role = Role.improvement_director
        assignee = self.s.assignees.get(role)
        if assignee is None:
            raise reject(RejectionKind.rule_broken, "no improvement director has been appointed: there is nobody to cover for")
        if not (g.actor.role == Role.regulator or (g.actor.role == role and g.actor.user_id == assignee)):
            raise reject(RejectionKind.wrong_role, "the regulator, or the appointed improvement director, records cover")
        if g.until < self.today():
            raise reject(RejectionKind.rule_broken, f"the cover ends on {g.until.isoformat()}, in the past")
        if g.to_user_id == assignee:
            raise reject(RejectionKind.rule_broken, f"{assignee} is the appointed improvement director")
        if self.s.finished:
            raise reject(RejectionKind.step_not_open, "the regime is closed")
        if len(self.s.delegations) >= 50:
            raise reject(RejectionKind.conflict, "50 delegations are current; let some end first")

    def payload_model(self, st: Step, d: Decision) -> type[BaseModel]:
        """The step's typed payload, or a document reference where the payload is a document (the API stores
        documents in PostgreSQL and sends their reference: domain/documents.py)."""
        if is_reference(st.kind, d.action, d.payload):
            return DocumentPayload
        return CATALOGUE[st.kind].actions[d.action]

    def latest_recommendation(self) -> str | None:
        recs = [s for s in self.s.steps.values() if s.kind == Kind.cqc_recommendation and s.status == "done"]
        return recs[-1].outcome if recs else None

    def followups_from(self, held: date) -> date:
        """The day a board-to-board's follow-ups (letter to the chair, capability review) count from.

        They count from the day the boards met (a business date), not the day someone recorded the
        meeting, so recording it late no longer moves their deadlines. Introduced by a patch: a run that
        took the old path before the change keeps it until it continues as new.
        """
        today = self.today()
        if not workflow.patched(FOLLOWUPS_FROM_MEETING_DATE):
            return today
        return min(held, today)

    def decision_recorded(self, d: Decision) -> date:
        """The regulator's decision on a re-inspection, kept in the state's record; returns today."""
        today = self.today()
        self.s.decisions.append({"decision": d.action, "on": today.isoformat(), "by": d.actor.user_id,
                                 "reason": d.comment, "payload": d.payload})
        return today

    def draft_letter(self, reason: str) -> dict[str, Any]:
        cur = self._current_inspection()
        areas: list[str] = []
        if cur is not None:
            r = cur.outcome.ratings
            areas = [f"{q} rated {getattr(r, q).value.replace('_', ' ')}" for q in
                     ("safe", "effective", "caring", "responsive", "well_led")
                     if getattr(r, q).rank < 1]
            areas += [f"{c.service} at {c.site} rated inadequate" for c in cur.outcome.core_services
                      if c.rating.rank < 1]
        months = dates.months_between(self.s.placement.entry_date, self.today())
        return {
            "drafted_on": self.today().isoformat(),
            "trust": self.s.placement.trust.name, "ods_code": self.s.placement.trust.ods_code,
            "months_in_special_measures": months,
            "reasons": [reason] + (cur.verdict.reasons if cur and cur.verdict else []),
            "areas_requiring_improvement": areas,
            "improvement_required": [f"{a.split(' rated ')[0]} to at least requires improvement" for a in areas],
            "extensions": len(self.s.extensions),
        }

    def n_reinspections(self) -> int:
        return sum(1 for s in self.s.steps.values() if s.kind == Kind.reinspection)

    def set_phase(self, phase: str, actor: Actor, reason: str) -> None:
        old, self.s.phase = self.s.phase, phase
        self.audit(AuditEvent.phase_changed, actor, reason=reason, detail={"from": old, "to": phase,
                                                                   "segment": self.s.segment})

    def finish(self, how: str, reason: str) -> None:
        self.cancel_open(reason)
        self.audit(AuditEvent.regime_closed, SYSTEM, reason=reason, detail={"how": how})
        self.s.finished = True

    def end_buddies(self, reason: str, keep: dict[str, Any] | None = None) -> None:
        """End every running partnership, except those in `keep` (partnership id -> PartnershipAtExit), which run
        on to their date (the regulator's decision at exit, issue 14 item 2)."""
        for b in self.s.buddies.values():
            if b.ended:
                continue
            run_on = (keep or {}).get(b.partnership_id)
            if run_on is None:
                self.emit(EndBuddy(partnership_id=b.partnership_id, reason=reason))
                continue
            self.s.buddies[b.partnership_id] = b.model_copy(update={"continue_until": run_on.continue_until})
            self.emit(EndBuddy(partnership_id=b.partnership_id, until=run_on.continue_until,
                               reason=f"runs on after exit until {run_on.continue_until.isoformat()}: {run_on.reason}"))

    # ---------------------------------------------------------------- deadlines
    @workflow.update
    def amend_deadline(self, c: DeadlineChange) -> StepView:
        self._updates_this_run += 1
        self._validate_amend(c)
        st = self._amend(c)
        self._wake = True
        return StepView(step=st, phase=self.s.phase)

    @amend_deadline.validator
    def _validate_amend(self, c: DeadlineChange) -> None:
        self._check_amend(c)

    # ---------------------------------------------------------------- re-inspection
    @workflow.update
    def announce_reinspection(self, a: ReinspectionAnnouncement) -> StepView:
        self._updates_this_run += 1
        self._validate_announce(a)
        st = self._open_reinspection()
        assert st is not None
        st.data["announced_date"] = a.inspection_date.isoformat()
        self.audit(AuditEvent.reinspection_announced, a.actor, step=st, reason=f"inspection on {a.inspection_date}")
        b2b = self.open_step(Kind.board_to_board_pre_inspection, max(self.today(), a.inspection_date - timedelta(days=1)))
        self.readiness_at_risk(a.actor, a.inspection_date)  # (no readiness steps in a regime without a programme)
        self._wake = True
        return StepView(step=b2b, phase=self.s.phase)

    @announce_reinspection.validator
    def _validate_announce(self, a: ReinspectionAnnouncement) -> None:
        if a.actor.role not in (Role.cqc, Role.regulator):
            raise reject(RejectionKind.wrong_role, "re-inspections are announced by CQC or the regulator")
        if self._open_reinspection() is None:
            raise reject(RejectionKind.step_not_open, "no re-inspection is pending")
        if a.inspection_date < self.today():
            raise reject(RejectionKind.rule_broken, "the inspection date is in the past")

    def _open_reinspection(self) -> Step | None:
        return next((s for s in self.s.steps.values() if s.kind == Kind.reinspection and s.status == "open"), None)

    def _current_inspection(self) -> InspectionRecord | None:
        cur = [r for r in self.s.inspections if r.status == "current"]
        return cur[-1] if cur else None

    @workflow.signal
    def record_inspection(self, sig: InspectionSignal) -> None:
        self._wake = True
        o = sig.outcome
        same = [r for r in self.s.inspections if r.outcome.reference == o.reference]
        if same and o.kind == "published":
            self.audit(AuditEvent.inspection_duplicate_ignored, sig.actor, reason=f"{o.reference} already recorded")
            return
        rec = InspectionRecord(outcome=o, received_at=workflow.now())
        if self._older_than_current(rec, sig.actor):
            return
        for r in same:
            r.status = "superseded"
            r.notes.append(f"corrected on {self.today().isoformat()}")
        rec.verdict = self._exit_verdict(o)
        self.s.inspections.append(rec)
        self.audit(AuditEvent.inspection_recorded if o.kind == "published" else AuditEvent.inspection_corrected,
                   sig.actor,
                   reason=_verdict_text(rec),
                   detail={"reference": o.reference, "ratings": o.ratings.model_dump(mode="json"),
                           **({"inspection_type": o.inspection_type, "well_led_assessed": o.well_led_assessed,
                               "special_measures_reinspection": self._is_the_reinspection(o)} if o.typed else {})})
        self._after_report(o, correction=bool(same))
        self._after_inspection(rec, correction=bool(same))

    def _after_report(self, o: InspectionOutcome, correction: bool) -> None:
        """CQC has published its report (seed 000 §4a: after every inspection, a draft report to the trust for
        factual accuracy, then a Quality Summit): the window for comments on the draft closes, and a regime
        placed since issue 14 item 15 holds a Quality Summit on the report."""
        for st in self.s.steps.values():
            if st.kind == Kind.factual_accuracy and st.status == "open" and st.subject.get("reference") == o.reference:
                self.close_step(st, "cancelled", SYSTEM, f"CQC published its report {o.reference}")
        if correction or not self.s.placement.quality_summits or self.s.finished:
            return
        published = o.published or self.today()
        self.open_step(Kind.quality_summit, max(published, self.today()) + timedelta(days=QUALITY_SUMMIT_DAYS),
                       subject={"report": o.reference})

    @workflow.update
    def record_draft_report(self, r: DraftReport) -> StepView:
        """CQC sent the trust its draft report for factual accuracy: the trust's step opens (seed 000 §4a)."""
        self._updates_this_run += 1
        self._validate_draft(r)
        st = self.open_step(Kind.factual_accuracy, r.sent_on + timedelta(days=FACTUAL_ACCURACY_DAYS),
                            subject={"reference": r.reference})
        st.data["draft_sent_on"] = r.sent_on.isoformat()
        self.audit(AuditEvent.draft_report_sent, r.actor, step=st, reason=f"draft report {r.reference} sent to the "
                   f"trust for factual accuracy on {r.sent_on.isoformat()}", detail={"reference": r.reference})
        self._wake = True
        return StepView(step=st, phase=self.s.phase)

    @record_draft_report.validator
    def _validate_draft(self, r: DraftReport) -> None:
        if r.actor.role != Role.cqc:
            raise reject(RejectionKind.wrong_role, "CQC sends its draft report")
        if self.s.finished:
            raise reject(RejectionKind.step_not_open, "the regime is closed")
        if r.sent_on > self.today():
            raise reject(RejectionKind.rule_broken, "a draft report is recorded once it is sent, not in advance")
        if any(i.outcome.reference == r.reference for i in self.s.inspections):
            raise reject(RejectionKind.conflict, f"CQC has published {r.reference} already")
        if any(st.kind == Kind.factual_accuracy and st.subject.get("reference") == r.reference
               for st in self.s.steps.values()):
            raise reject(RejectionKind.conflict, f"the draft of {r.reference} was sent to the trust already")

    def _older_than_current(self, rec: InspectionRecord, actor: Actor) -> bool:
        """An outcome older than the current one is kept for the record and not acted on."""
        o = rec.outcome
        newer = [r for r in self.s.inspections if r.status == "current"
                 and r.outcome.inspection_end > o.inspection_end and r.outcome.reference != o.reference]
        if not newer:
            return False
        rec.status = "older_ignored"
        rec.notes.append(f"older than {newer[-1].outcome.reference}; kept for the record, not acted on")
        self.s.inspections.append(rec)
        self.audit(AuditEvent.inspection_older_ignored, actor, reason=rec.notes[-1], detail={"reference": o.reference})
        return True

    def _exit_verdict(self, o: InspectionOutcome) -> Verdict | None:
        """The exit rule on an outcome, while the regime has not exited. A regime placed without ratings (the
        2013 cohort) is judged on the outcome's own ratings; before EXIT_RULE_WITHOUT_ENTRY_RATINGS it was not
        judged at all, and runs that recorded an outcome that way keep it."""
        if self.s.phase == Phase.exited or not self._is_the_reinspection(o):
            return None
        entry = self._entry_ratings()
        if entry is None and not workflow.patched(EXIT_RULE_WITHOUT_ENTRY_RATINGS):
            return None
        return exit_rule(entry, o)

    def _is_the_reinspection(self, o: InspectionOutcome) -> bool:
        """Whether an outcome is the special-measures re-inspection, the one that leads to CQC's recommendation
        and the exit decision: CQC says so, and the inspection ended on or after entry (seed 002). An outcome
        recorded before outcomes said so is taken as it, as it was then, if a re-inspection is open."""
        if not o.typed:
            return True
        return bool(o.special_measures_reinspection) and o.inspection_end >= self.s.placement.entry_date

    def _entry_ratings(self) -> KeyQuestionRatings | None:
        p = self.s.placement
        if p.entry_ratings is not None:
            return p.entry_ratings
        return p.entry_outcome.ratings if p.entry_outcome else None

    def _after_inspection(self, rec: InspectionRecord, correction: bool) -> None:
        """The re-inspection's outcome closes the open re-inspection and asks CQC for its recommendation; any
        other outcome (a focused or targeted inspection, a comprehensive one CQC did not make the re-inspection)
        is recorded and shown, and leaves the re-inspection and its clock as they are."""
        if self.s.phase not in ACTIVE_PHASES or not self._is_the_reinspection(rec.outcome):
            return
        verdict = rec.verdict.model_dump() if rec.verdict else None
        pending_rec = self._pending_exit_decision()
        if correction and pending_rec is not None:
            pending_rec.data["verdict"] = verdict
            return
        ri = self._open_reinspection()
        if ri is None:
            return
        self.close_step(ri, "published", SYSTEM, rec.outcome.reference)
        ri.data["reference"] = rec.outcome.reference
        for s in self.s.steps.values():
            if s.kind == Kind.board_to_board_pre_inspection and s.status == "open":
                s.data["note"] = "inspection took place before the meeting was recorded"
        rs = self.open_step(Kind.cqc_recommendation, self.today() + timedelta(days=DECISION_DAYS),
                            subject={"reference": rec.outcome.reference})
        rs.data["verdict"] = verdict

    def _pending_exit_decision(self) -> Step | None:
        """CQC's recommendation or the regulator's decision, while one waits on a re-inspection's outcome."""
        return next((s for s in self.s.steps.values()
                     if s.kind in (Kind.cqc_recommendation, Kind.regulator_decision) and s.status == "open"), None)

    @workflow.signal
    def withdraw_inspection(self, w: Withdrawal) -> None:
        hits = [r for r in self.s.inspections if r.outcome.reference == w.reference and r.status == "current"]
        if not hits:
            self.audit(AuditEvent.inspection_withdrawal_ignored, w.actor, reason=f"no current outcome {w.reference}")
            self._wake = True
            return
        for r in hits:
            r.status = "withdrawn"
            r.notes.append(f"withdrawn: {w.reason}")
        self.audit(AuditEvent.inspection_withdrawn, w.actor, reason=w.reason, detail={"reference": w.reference})
        self._reopen_reinspection(w)
        self._wake = True

    def _reopen_reinspection(self, w: Withdrawal) -> None:
        """A decision that rested on the withdrawn outcome goes back to waiting for a re-inspection."""
        reopened = False
        for s in self.s.steps.values():
            if s.status == "open" and s.subject.get("reference") == w.reference:
                self.close_step(s, "cancelled", w.actor, "inspection withdrawn")
                reopened = True
        if not reopened:
            return
        done = [s for s in self.s.steps.values() if s.kind == Kind.reinspection and s.data.get("reference") == w.reference]
        due = done[-1].due if done else self.today() + timedelta(days=90)
        self.open_step(Kind.reinspection, max(due, self.today() + timedelta(days=1)),
                       step_id=f"{Kind.reinspection}-{self.n_reinspections() + 1}")

    # ---------------------------------------------------------------- closure and enforcement
    @workflow.update
    def close_regime(self, c: Closure) -> str:
        self._updates_this_run += 1
        self._validate_close(c)
        self.s.closure = {"solution": c.solution, "reason": c.reason, "by": c.actor.user_id,
                          "on": self.today().isoformat(),
                          **{k: v for k, v in (("successor_ods_code", c.successor_ods_code),
                                               ("successor_name", c.successor_name), ("cqc_view", c.cqc_view))
                             if v is not None}}
        self.set_phase(Phase.closed_structural, c.actor, f"{c.solution.replace('_', ' ')}: {c.reason}")
        self.s.next_monthly = None
        self.end_buddies("regime closed by a structural solution")
        self.finish("structural_solution", c.reason)
        self._wake = True
        return self.s.phase

    @close_regime.validator
    def _validate_close(self, c: Closure) -> None:
        if c.actor.role != Role.regulator:
            raise reject(RejectionKind.wrong_role, "only the regulator closes a regime")
        if self.s.finished:
            raise reject(RejectionKind.step_not_open, "the regime is already closed")
        # Issue 14 item 8: a trust that has exited is no longer in special measures; its regime ends with the
        # post-exit board-to-board. A rule added while regimes run: asked where a decision arrives only.
        if self.s.phase == Phase.exited and where_a_decision_arrives():
            raise reject(RejectionKind.rule_broken, "the trust has exited special measures: its regime ends with "
                                                    "the post-exit board-to-board, not by a structural solution")

    @workflow.update
    def record_enforcement(self, e: Enforcement) -> int:
        self._updates_this_run += 1
        self._check_enforcement(e)
        self.s.enforcement.append({"action": e.action, "detail": e.detail, "by": e.actor.user_id,
                                   "on": self.today().isoformat()})
        self.audit(AuditEvent.enforcement_recorded, e.actor, reason=e.detail, detail={"action": e.action})
        self._wake = True
        return len(self.s.enforcement)

    @record_enforcement.validator
    def _validate_enforcement(self, e: Enforcement) -> None:
        self._check_enforcement(e)
        # An enforcement action's business key (issue 17, finding 13): the same action with the same detail
        # by the same person on the same (London) day is the same record, sent again. Refused here, in the
        # validator only, so nothing reaches history; validators do not run on replay, so regimes that did
        # record duplicates before this rule replay unchanged. The API answers it with the first record.
        today = self.today().isoformat()
        for n, rec in enumerate(self.s.enforcement, 1):
            if (rec.get("action"), rec.get("detail"), rec.get("by"), rec.get("on")) == \
                    (e.action, e.detail, e.actor.user_id, today):
                raise ApplicationError(f"this enforcement action was already recorded today (number {n})",
                                       {"number": n, "record": rec}, type=RejectionKind.duplicate, non_retryable=True)

    def _check_enforcement(self, e: Enforcement) -> None:
        if e.actor.role != Role.cqc:
            raise reject(RejectionKind.wrong_role, "enforcement actions are CQC's")
        if self.s.finished:
            raise reject(RejectionKind.step_not_open, "the regime is closed")

    # ---------------------------------------------------------------- buddies
    @workflow.update
    def add_buddy(self, req: BuddyRequest) -> BuddySummary:
        self._updates_this_run += 1
        self._validate_add_buddy(req)
        summary = self.begin_partnership(req)
        for st in list(self.s.steps.values()):  # the months 1-3 step is done (issue 14 item 14)
            if st.kind == Kind.appoint_buddy and st.status == "open":
                self.close_step(st, "buddy_agreed", req.actor, f"{req.buddy.name} ({req.scope})")
        self._wake = True
        return summary

    @add_buddy.validator
    def _validate_add_buddy(self, req: BuddyRequest) -> None:
        if self.s.phase not in ACTIVE_PHASES:
            raise reject(RejectionKind.step_not_open, f"the regime is {self.s.phase}")
        self.check_new_buddy(req, self.s.placement.trust.ods_code)  # (the regulator's; the rules the entry shares)

    # ---------------------------------------------------------------- the plan as a programme (issue 15)
    @workflow.update
    def propose_plan_change(self, c: PlanChange) -> StepView:
        """The trust proposes a new version of the agreed plan; the improvement director agrees or returns it."""
        self._updates_this_run += 1
        self._validate_plan_change(c)
        assert self.s.programme is not None
        st = self.open_step(Kind.plan_change_review, self.today() + timedelta(days=7),
                            subject={"version_sha256": c.sha256, "proposed_by": c.actor.user_id,
                                     **({"person": c.actor.person_id} if c.actor.person_id else {})})
        self.s.programme.proposed = ProposedChange(sha256=c.sha256, index=c.plan, step_id=st.id,
                                                   proposed_by=c.actor.user_id, person=c.actor.person_id,
                                                   reason=c.reason)
        self.audit(AuditEvent.plan_change_proposed, c.actor, step=st, reason=c.reason,
                   detail={"sha256": c.sha256, "actions": len(c.plan.actions), "themes": len(c.plan.themes)})
        self._wake = True
        return StepView(step=st, phase=self.s.phase)

    @propose_plan_change.validator
    def _validate_plan_change(self, c: PlanChange) -> None:
        if c.actor.role != Role.trust:
            raise reject(RejectionKind.wrong_role, "the trust owns the plan and proposes its changes")
        if self.s.finished or self.s.phase not in ACTIVE_PHASES:
            raise reject(RejectionKind.step_not_open, f"the regime is {self.s.phase}")
        prog = self.s.programme
        if prog is None or not prog.versions:
            raise reject(RejectionKind.rule_broken, "there is no agreed plan to change yet: the first version is the "
                                                    "improvement plan step's")
        if prog.proposed is not None:
            raise reject(RejectionKind.conflict, f"a change is waiting for the improvement director "
                                                 f"({prog.proposed.step_id})")
        if prog.current() is not None and prog.current().sha256 == c.sha256:
            raise reject(RejectionKind.conflict, "this is the agreed version already")

    @workflow.update
    def record_evidence(self, e: EvidenceRecord) -> int:
        """An evidence item against plan actions (and key questions): its number."""
        self._updates_this_run += 1
        self._validate_evidence(e)
        self.s.evidence_seq += 1
        if self.s.programme is not None:
            self.s.programme.evidence += 1
        self.audit(AuditEvent.evidence_recorded, e.actor, reason=e.title, detail={
            "number": self.s.evidence_seq, "dated": e.dated.isoformat(), "shows": e.shows, "actions": e.actions,
            "key_questions": e.key_questions, "sha256": e.sha256, "url": e.url})
        self._wake = True
        return self.s.evidence_seq

    @record_evidence.validator
    def _validate_evidence(self, e: EvidenceRecord) -> None:
        if e.actor.role != Role.trust:
            raise reject(RejectionKind.wrong_role, "the trust collects the evidence")
        if self.s.finished:
            raise reject(RejectionKind.step_not_open, "the regime is closed")
        known = self.s.programme.actions if self.s.programme else {}
        unknown = [a for a in e.actions if a not in known]
        if unknown:
            raise reject(RejectionKind.invalid_payload, f"actions: {', '.join(unknown[:10])} not in the agreed plan")
        if e.dated > self.today():
            raise reject(RejectionKind.rule_broken, "evidence is dated on or before the day it is recorded")

    # ---------------------------------------------------------------- central funding (issue 16 item 1)
    @workflow.update
    def request_drawdown(self, m: DrawdownMessage) -> StepView:
        """The trust asks for funding under the agreed ceiling; the improvement director approves it next."""
        self._updates_this_run += 1
        self._validate_drawdown(m)
        st = self.add_drawdown(m)
        self._wake = True
        return StepView(step=st, phase=self.s.phase)

    @request_drawdown.validator
    def _validate_drawdown(self, m: DrawdownMessage) -> None:
        self.check_drawdown(m)

    # ---------------------------------------------------------------- the cost of the interventions (issue 16)
    @workflow.update
    def record_director_time(self, t: DirectorTime) -> dict[str, Any]:
        """The improvement director's days in a month, costed at the rate given (the API's setting when recorded)."""
        self._updates_this_run += 1
        self._validate_director_time(t)
        before = self.s.director_time.get(t.month)
        entry = {"days": t.days, "rate_pence": t.rate_pence, "cost_pence": t.cost_pence, "by": t.actor.user_id,
                 "at": workflow.now().isoformat(), "reason": t.reason}
        self.s.director_time[t.month] = entry
        self.audit(AuditEvent.director_time_recorded, t.actor, reason=t.reason or f"{t.days} days in {t.month}",
                   detail={"month": t.month, "days": t.days, "rate_pence": t.rate_pence, "cost_pence": t.cost_pence,
                           "corrects": before})
        self._wake = True
        return {"month": t.month, **entry}

    @record_director_time.validator
    def _validate_director_time(self, t: DirectorTime) -> None:
        if t.actor.role not in (Role.improvement_director, Role.regulator):
            raise reject(RejectionKind.wrong_role, "the improvement director records their time, or the regulator")
        if t.actor.role == Role.improvement_director:
            self._check_assignee(t.actor, Role.improvement_director)
        today = self.today()
        entry = self.s.placement.entry_date
        if not f"{entry.year:04d}-{entry.month:02d}" <= t.month <= f"{today.year:04d}-{today.month:02d}":
            raise reject(RejectionKind.rule_broken, f"{t.month} is not a month of this regime up to now "
                                                    f"(entered {entry.isoformat()})")
        before = self.s.director_time.get(t.month)
        if before is not None and not (t.reason and t.reason.strip()):
            raise reject(RejectionKind.reason_required, f"{t.month} was recorded already ({before['days']} days by "
                                                        f"{before['by']}): a correction needs a reason")

    @workflow.signal
    def buddy_changed(self, summary: BuddySummary) -> None:
        self.s.buddies[summary.partnership_id] = summary
        self._wake = True

    @workflow.query
    def get_state(self) -> RegimeState:
        return self.s


def _verdict_text(rec: InspectionRecord) -> str | None:
    if rec.verdict is None:
        return None
    return ("exit rule met: " if rec.verdict.met else "exit rule not met: ") + "; ".join(rec.verdict.reasons)


def _same_decision(a: Step, b: Step) -> bool:
    """Two steps belong to the same decision when they share a group and concern the same thing."""
    if a.group == CATALOGUE[Kind.improvement_plan].group:
        pa = a.subject.get("plan_step", a.id)
        pb = b.subject.get("plan_step", b.id)
        return pa == pb
    if a.group == CATALOGUE[Kind.monthly_return].group:
        return a.subject.get("month") == b.subject.get("month")
    if a.group == CATALOGUE[Kind.drawdown_approval].group:
        # A drawdown's approval and authorisation; a funding agreement's parties (issue 16).
        return any(k in a.subject and a.subject.get(k) == b.subject.get(k) for k in ("drawdown", "agreement"))
    if a.group == CATALOGUE[Kind.evidence_file].group and "file_step" in a.subject | b.subject:
        # An evidence file and its checks (issue 15): whoever completed it does not also check it.
        return a.subject.get("file_step", a.id) == b.subject.get("file_step", b.id)
    return a.subject.get("reference") == b.subject.get("reference") if a.group == "exit_decision" else False
