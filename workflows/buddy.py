"""Buddy partnership workflow: one per partnership (regime + buddy ODS code [+ service]), started by the regime.

The chain (seed 000 §3, §4a(ii)): agreement in principle (regulator records the agreed level and terms,
the buddy accepts) → formal agreement signed by the regulator, the trust and the buddy within 6 weeks
(three steps) → initial support plan drafted by the buddy within 6 weeks of the formal agreement and
agreed by the regulator and the trust → quarters, for as long as the partnership runs: the improvement
director signs off each quarter's forecast before it starts; after it ends the ID, the trust and the buddy
each confirm delivery (or dispute it; the regulator resolves); the ID authorises the payment; the
payment activity records it once. Every step has a deadline and climbs the regime's escalation ladder.

Step ids start with the partnership key so they are unique within the regime: `RBB.sign_trust`,
`RBB-maternity.q3.confirm_buddy`. Every step's subject carries `buddy_ods` and `partnership_id` (the API
authorises buddy users by it).

Message API
- update `decide_step(Decision) -> BuddyStepView`: a person acts on an open step.
- update `amend_deadline(DeadlineChange) -> BuddyStepView`: the regulator moves a due date or pauses a clock.
- update `end_early(PartnershipEnd) -> BuddySummary`: the regulator ends the partnership with a reason;
  the current quarter is cut short at today and settled, later quarters are dropped.
- update `propose_plan_change(PlanChange) -> PlanChangeRecord`: the buddy proposes a significant change
  to the support plan; the improvement director and the trust approve it.
- signal `end_partnership(str)`: the regime has ended (exit or closure); as `end_early`.
- query `get_state() -> BuddyState`, `get_ledger() -> LedgerView`, `get_summary() -> BuddySummary`.
The partnership reports a `BuddySummary` to the regime (signal `buddy_changed`) whenever it changes.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.payments import PaymentActivities
    from domain import dates, schedule
    from domain.ledger import (
        AGREE_DAYS,
        AIP_DAYS,
        AUTHORISE_DAYS,
        BUDDY_STEPS,
        CONFIRM_DAYS,
        CONFIRM_KIND,
        FORECAST_LEAD_DAYS,
        FUNDING_KINDS,
        PARTIES,
        SUPPORT_PLAN_DAYS,
        AgreementInPrinciple,
        BuddyContinue,
        BuddyKind,
        BuddyState,
        BuddyStepView,
        Ledger,
        LedgerView,
        Partnership,
        PartnershipEnd,
        PaymentInstruction,
        PlanChange,
        PlanChangeRecord,
        Quarter,
        RunOn,
        money,
    )
    from domain.models import SYSTEM, Action, Actor, BuddySummary, DeadlineChange, Decision, Rung, Step
    from domain.vocab import AuditEvent, RejectionKind, Role
    from workflows.common import SA_ODS, SA_REGIME, BuddyStart, EffectBatch, Notify, TaskClose, TaskOpen
    from workflows.engine import StepEngine, reject, same_person

PRE_CYCLE = ("agreement_in_principle", "formal_agreement", "support_plan")

# Recording a payment retries quickly within PAYMENT_GIVE_UP (a database restart or failover), then gives
# the loop back for PAYMENT_BACKOFF: the partnership's deadlines must not wait on the payment store. A
# conflicting row is a business failure, never retried: people must look at it.
_PAYMENT_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                             maximum_interval=timedelta(seconds=30), non_retryable_error_types=["PaymentConflict"])
PAYMENT_GIVE_UP = timedelta(minutes=2)
PAYMENT_BACKOFF = timedelta(minutes=5)


def partnership_key(buddy_ods: str, scope: str) -> str:
    return buddy_ods if scope == "trust-wide" else f"{buddy_ods}-{scope}"


@workflow.defn
class BuddyPartnershipWorkflow(StepEngine):
    CATALOGUE = BUDDY_STEPS

    @workflow.init
    def __init__(self, start: BuddyStart | BuddyContinue) -> None:
        # State exists before the first activation so messages reaching a fresh run see it.
        self._effects: list[dict[str, Any]] = []
        self._payments_retry_at: datetime | None = None
        self._wake = False
        self._updates_this_run = 0
        if isinstance(start, BuddyContinue):
            self.s = start.state
            self.s.runs += 1
            return
        req = start.request
        self.s = BuddyState(p=Partnership(
            partnership_id=workflow.info().workflow_id, key=partnership_key(req.buddy.ods_code, req.scope),
            regime_id=start.regime_id, parent_workflow_id=start.parent_workflow_id, trust=start.trust,
            buddy=req.buddy, scope=req.scope, ladder=start.ladder, started_by=req.actor,
            continue_as_new_after_events=start.continue_as_new_after_events,
            package_agreed_by=start.package_agreed_by, confidential=start.confidential,
            funding_agreement_due_from=start.funding_agreement_due_from, started_on=self.today(),
        ))
        self._begin(start)

    # ---------------------------------------------------------------- run loop
    @workflow.run
    async def run(self, start: BuddyStart | BuddyContinue) -> BuddySummary:
        # Partnership search attributes: codes only, never a person; none for a watch-list trust's partnership.
        if not self.s.p.confidential:
            workflow.upsert_search_attributes([SA_ODS.value_set(self.s.p.trust.ods_code),
                                               SA_REGIME.value_set(self.s.p.regime_id)])
        await self._run_loop()
        return self.summary()

    def _continue_as_new_after_events(self) -> int:
        return self.s.p.continue_as_new_after_events

    def _continue_input(self) -> BuddyContinue:
        return BuddyContinue(state=self.s)

    # ---------------------------------------------------------------- start
    def _begin(self, start: BuddyStart) -> None:
        req = start.request
        self.audit(AuditEvent.partnership_started, req.actor, reason=f"{req.buddy.name} ({req.scope})",
                    detail={"partnership_id": self.s.p.partnership_id, "buddy_ods": req.buddy.ods_code,
                            "scope": req.scope})
        aip_due = self.today() + timedelta(days=AIP_DAYS)
        if req.agreement_in_principle is None:
            self.open_step(BuddyKind.buddy_aip_regulator, aip_due, "aip_regulator")
            return
        # The regulator brought the agreement in principle with the request: record it as its step, done.
        aip = AgreementInPrinciple.model_validate(req.agreement_in_principle)
        st = self._new_step(BuddyKind.buddy_aip_regulator, self.today(), "aip_regulator")
        st.status, st.outcome, st.completed_at, st.completed_by = "done", "record", workflow.now(), req.actor.user_id
        st.actions.append(Action(action="record", by=req.actor.user_id, role=req.actor.role, at=workflow.now()))
        st.data.update(aip.model_dump(mode="json"))
        self.record_aip(aip, req.actor, st)

    def record_aip(self, aip: AgreementInPrinciple, actor: Actor, st: Step) -> None:
        self.s.ledger = Ledger(agreed_level_pence=aip.agreed_level_pence)
        self.s.terms_of_reference = aip.terms_of_reference
        self.audit(f"{BuddyKind.buddy_aip_regulator}.record", actor, step=st,
                    reason=f"agreed level {money(aip.agreed_level_pence)}",
                    detail={"agreed_level_pence": aip.agreed_level_pence})
        self.open_step(BuddyKind.buddy_aip_buddy, self.today() + timedelta(days=AIP_DAYS), "aip_buddy")

    # ---------------------------------------------------------------- time
    def _ladder(self) -> list[Rung]:
        return self.s.p.ladder

    def _notice_subject(self, st: Step, rung: str) -> str:
        return f"[{rung}] {self.s.p.trust.ods_code} buddy {self.s.p.key}: {st.title}"

    def _where(self) -> str:
        return f"partnership {self.s.p.partnership_id}"

    def _regime_id(self) -> str:
        return self.s.p.regime_id

    def _still_needed(self, st: Step) -> bool:
        """A partnership archives the steps of settled quarters and of decided plan changes; the rules read
        the rest again (the agreement's signatures, the latest round of plan agreement)."""
        led, q, c = self.s.ledger, st.subject.get("quarter"), st.subject.get("change")
        if q is not None and led is not None and 1 <= q <= len(led.quarters) and led.quarter(q).settled:
            return False
        if c is not None and 1 <= c <= len(self.s.plan_changes) and self.s.plan_changes[c - 1].status != "pending":
            return False
        return True

    def _records_to_archive(self) -> list[tuple[str, list[Any], Any]]:
        # A decided change keeps its number, status and reason in the state; its plan (the bulk) is archived.
        decided = [r for r in self.s.plan_changes if r.status != "pending" and r.plan is not None]
        if not decided:
            return []

        def strip() -> None:
            for r in decided:
                r.plan = None
        return [("plan_change", [r.model_dump(mode="json") for r in decided], strip)]

    def _audit_detail(self, detail: dict[str, Any]) -> dict[str, Any]:
        return {"partnership_id": self.s.p.partnership_id, **detail}

    def _quarter_dates(self, n: int) -> tuple[date, date]:
        assert self.s.plan_agreed_on is not None
        return schedule.quarter_dates(self.s.plan_agreed_on, n)

    def _forecast_opens(self, n: int) -> datetime:
        return dates.london_midnight(self._quarter_dates(n)[0] - timedelta(days=FORECAST_LEAD_DAYS))

    def _review_opens(self, q: Quarter) -> datetime:
        return dates.london_midnight(q.end + timedelta(days=1))

    def _next_wake(self) -> datetime | None:
        candidates = self._ladder_wakes() + self._effects_wake()
        if self.s.run_until is not None and self.s.ending is None:
            candidates.append(dates.london_midnight(self.s.run_until.until))
        if self._payments_retry_at is not None and self._payments_retry_at > workflow.now():
            candidates.append(self._payments_retry_at)
        if self.s.stage == "quarterly_cycle":
            candidates.append(self._forecast_opens(self.s.next_forecast_quarter))
            led = self.s.ledger
            if led is not None and self.s.next_review_quarter <= len(led.quarters):
                candidates.append(self._review_opens(led.quarter(self.s.next_review_quarter)))
        return min(candidates) if candidates else None

    def _process_time(self) -> None:
        now = workflow.now()
        if self.s.run_until is not None and self.s.ending is None and not self.s.finished \
                and dates.london_midnight(self.s.run_until.until) <= now:
            self._begin_end(self.s.run_until.reason, SYSTEM)
        led = self.s.ledger
        while self.s.stage == "quarterly_cycle" and led is not None:
            if self._forecast_opens(self.s.next_forecast_quarter) <= now:
                self._open_quarter(self.s.next_forecast_quarter)
                self.s.next_forecast_quarter += 1
            elif self.s.next_review_quarter <= len(led.quarters) and \
                    self._review_opens(led.quarter(self.s.next_review_quarter)) <= now:
                self._open_review(self.s.next_review_quarter)
            else:
                break
        self._fire_due_rungs()

    # ---------------------------------------------------------------- quarters
    def _open_quarter(self, n: int) -> None:
        assert self.s.ledger is not None
        start, end = self._quarter_dates(n)
        self.s.ledger.open_quarter(n, start, end)
        due = start + timedelta(days=AGREE_DAYS) if n == 1 else start - timedelta(days=1)
        self.open_step(BuddyKind.buddy_forecast, due, f"q{n}.forecast", quarter=n)

    def _open_review(self, n: int) -> None:
        due = self.today() + timedelta(days=CONFIRM_DAYS)
        for party in PARTIES:
            self.open_step(CONFIRM_KIND[party], due, f"q{n}.{CONFIRM_KIND[party].removeprefix('buddy_')}", quarter=n)
        self.s.next_review_quarter = n + 1

    def quarter_steps(self, n: int) -> list[Step]:
        return [s for s in self.s.steps.values() if s.subject.get("quarter") == n]

    def maybe_open_authorisation(self, n: int) -> None:
        assert self.s.ledger is not None
        q = self.s.ledger.quarter(n)
        if q.forecast_pence is None or not q.all_confirmed or q.settled or q.authorised_pence is not None:
            return
        if any(s.kind == BuddyKind.buddy_authorise and s.status == "open" for s in self.quarter_steps(n)):
            return
        self.open_step(BuddyKind.buddy_authorise, self.today() + timedelta(days=AUTHORISE_DAYS), f"q{n}.authorise", quarter=n)

    # ---------------------------------------------------------------- steps
    def _new_step(self, kind: str, due: date, name: str, *, quarter: int | None = None,
                  extra: dict[str, Any] | None = None) -> Step:
        spec = BUDDY_STEPS[kind]
        sid = self.free_step_id(f"{self.s.p.key}.{name}")
        title = f"{spec.title}: {self.s.p.buddy.name}" + ("" if self.s.p.scope == "trust-wide" else
                                                         f" ({self.s.p.scope})")
        if quarter is not None:
            title = f"Q{quarter} " + title
        subject = {"buddy_ods": self.s.p.buddy.ods_code, "partnership_id": self.s.p.partnership_id,
                   "scope": self.s.p.scope, **({"quarter": quarter} if quarter is not None else {}), **(extra or {})}
        st = Step(id=sid, kind=kind, title=title, role=spec.role, group=spec.group, due=due,
                  opened_at=workflow.now(), subject=subject)
        self.s.steps[sid] = st
        return st

    def open_step(self, kind: str, due: date, name: str, *, quarter: int | None = None,
              extra: dict[str, Any] | None = None) -> Step:
        st = self._new_step(kind, due, name, quarter=quarter, extra=extra)
        self.announce_opened(st)
        self._wake = True
        return st

    def cancel(self, pred, reason: str) -> None:
        for st in self.s.steps.values():
            if st.status == "open" and pred(st):
                self.close_step(st, "cancelled", SYSTEM)
                st.data["cancelled_because"] = reason

    # ---------------------------------------------------------------- effects
    def emit(self, effect: Any) -> None:
        # A watch-list trust's partnership writes no inbox task: the inbox is read by everyone who reads the
        # trust's regimes, and by CQC (its steps are read and decided through the entry, api/routes/watchlist.py).
        if self.s.p.confidential and isinstance(effect, TaskOpen | TaskClose):
            return
        super().emit(effect)

    async def _flush(self) -> None:
        if self._effects_retry_at is not None and workflow.now() < self._effects_retry_at:
            return  # the database was unavailable: wait for the retry time rather than hold the loop again
        while True:
            if not await self._record_payments():
                return  # the payment store is unavailable: tried again at _payments_retry_at
            if self._effects:
                batch, self._effects = self._effects, []
                if not await self._write_effects(
                        EffectBatch(workflow_id=workflow.info().workflow_id, regime_id=self.s.p.regime_id,
                                    ods_code=self.s.p.trust.ods_code, effects=batch)):
                    return  # queued again; the run loop goes on and tries later (StepEngine._write_effects)
            self._check_settled()
            if not self._effects:
                await self._report()
            if not self._effects and not self._payments_due():
                break

    def _payments_due(self) -> list[Quarter]:
        led = self.s.ledger
        if led is None:
            return []
        return [q for q in led.awaiting_payment() if q.number not in self.s.payment_failures]

    async def _record_payments(self) -> bool:
        """Record every authorised payment not yet recorded; False when the store could not be reached."""
        led = self.s.ledger
        if self._payments_retry_at is not None and workflow.now() < self._payments_retry_at:
            return False
        self._payments_retry_at = None
        for q in self._payments_due():
            assert led is not None and q.authorised_pence is not None and q.authorised_by is not None
            ins = PaymentInstruction(
                partnership_id=self.s.p.partnership_id, quarter=q.number, regime_id=self.s.p.regime_id,
                buddy_ods=self.s.p.buddy.ods_code, amount_pence=q.authorised_pence, lines=q.invoice_lines,
                authorised_by=q.authorised_by, authorised_at=q.authorised_at or workflow.now())
            try:
                rec = await workflow.execute_activity_method(
                    PaymentActivities.record_payment, ins, start_to_close_timeout=timedelta(seconds=30),
                    schedule_to_close_timeout=PAYMENT_GIVE_UP, retry_policy=_PAYMENT_RETRY)
            except ActivityError as e:
                if not (isinstance(e.cause, ApplicationError) and e.cause.type == RejectionKind.payment_conflict):
                    # The store was unavailable for the whole attempt window: the quarter stays authorised
                    # and unpaid in the ledger (which continue-as-new carries), and is tried again later.
                    # The payment row is keyed by partnership and quarter, so a retry never pays twice.
                    self._payments_retry_at = workflow.now() + PAYMENT_BACKOFF
                    workflow.logger.warning("payment Q%d of %s not recorded: %s; next try at %s", q.number,
                                            self.s.p.partnership_id, e.cause or e, self._payments_retry_at)
                    return False
                self._payment_refused(q, e)
                continue
            led.record_payment(q.number, rec.payment_id, rec.amount_pence)
            self.audit(AuditEvent.buddy_payment_recorded, SYSTEM,
                        reason=f"Q{q.number}: {money(rec.amount_pence)} (payment {rec.payment_id})",
                        detail={"quarter": q.number, "payment_id": rec.payment_id,
                                "amount_pence": rec.amount_pence, "first_write": rec.created,
                                "lines": [ln.model_dump() for ln in q.invoice_lines]})
        return True

    def _payment_refused(self, q: Quarter, e: ActivityError) -> None:
        """A conflicting row (the same quarter with another amount): people must look."""
        msg = str(e.cause.message if isinstance(e.cause, ApplicationError) else e.cause or e)
        self.s.payment_failures[q.number] = msg
        self.audit(AuditEvent.buddy_payment_refused, SYSTEM, reason=msg, detail={"quarter": q.number})
        self.emit(Notify(rung="payment_refused", recipients=[Role.operations, Role.improvement_director],
                         subject=f"[payment refused] {self.s.p.trust.ods_code} buddy {self.s.p.key} Q{q.number}",
                         body=msg))

    async def _report(self) -> None:
        summary = self.summary()
        if summary == self.s.last_summary:
            return
        self.s.last_summary = summary
        try:
            await workflow.get_external_workflow_handle(self.s.p.parent_workflow_id).signal("buddy_changed", summary)
        except Exception as e:  # the regime has closed: the partnership still settles its money
            workflow.logger.info("regime %s not told of %s: %s", self.s.p.parent_workflow_id,
                                 self.s.p.partnership_id, e)

    # ---------------------------------------------------------------- views
    def summary(self) -> BuddySummary:
        led = self.s.ledger
        # Parties yet to confirm a quarter under review (a party whose dispute is open has not confirmed).
        outstanding = [f"Q{q.number}:{party}" for q in (led.quarters if led else [])
                       if q.number < self.s.next_review_quarter and not q.settled and q.authorised_pence is None
                       for party in q.outstanding]
        return BuddySummary(
            partnership_id=self.s.p.partnership_id, buddy_ods=self.s.p.buddy.ods_code,
            buddy_name=self.s.p.buddy.name, scope=self.s.p.scope, stage=self.s.stage,
            **(led.totals().model_dump() if led else {}),
            current_quarter=self._current_quarter(), confirmations_outstanding=outstanding,
            ended=self.s.finished,
            continue_until=self.s.run_until.until if self.s.run_until and not self.s.finished else None,
        )

    def _current_quarter(self) -> int | None:
        led = self.s.ledger
        if led is None or not led.quarters:
            return None
        today = self.today()
        started = [q.number for q in led.quarters if q.start <= today]
        return max(started) if started else None

    def _view(self, st: Step) -> BuddyStepView:
        return BuddyStepView(step=st, stage=self.s.stage, ledger=self.s.ledger.totals() if self.s.ledger else None)

    @workflow.query
    def get_state(self) -> BuddyState:
        return self.s

    @workflow.query
    def get_ledger(self) -> LedgerView:
        led = self.s.ledger
        return LedgerView(partnership_id=self.s.p.partnership_id, buddy_ods=self.s.p.buddy.ods_code,
                          scope=self.s.p.scope, stage=self.s.stage, totals=led.totals() if led else None,
                          quarters=list(led.quarters) if led else [])

    @workflow.query
    def get_summary(self) -> BuddySummary:
        return self.summary()

    # ---------------------------------------------------------------- decisions
    @workflow.update
    def decide_step(self, d: Decision) -> BuddyStepView:
        return self._view(self.take_decision(d))

    @decide_step.validator
    def _validate_decision(self, d: Decision) -> None:
        self.validate_decision(d)

    def check_parties_after_payload(self, actor: Actor, st: Step) -> None:
        """One person never acts for two parties of the same decision (agreement, plan, change, quarter)."""
        key = (st.group, st.subject.get("quarter"), st.subject.get("change"))
        proposer = st.subject.get("proposed_by")
        if proposer == actor.user_id and actor.role != Role.buddy:
            raise reject(RejectionKind.separation_of_duties, f"{actor.user_id} proposed this change for the buddy and cannot "
                                               f"also approve it as {actor.role.replace('_', ' ')}")
        for other in self.s.steps.values():
            if (other.group, other.subject.get("quarter"), other.subject.get("change")) != key:
                continue
            for a in other.actions:
                if same_person(a, actor) and a.role != actor.role:
                    raise reject(RejectionKind.separation_of_duties,
                                 f"{actor.user_id} already acted as {a.role.replace('_', ' ')} on "
                                 f"'{other.title}' and cannot also act as {actor.role.replace('_', ' ')}")

    def require_ledger(self) -> Ledger:
        assert self.s.ledger is not None
        return self.s.ledger

    def workstreams(self) -> set[str]:
        return self.s.plan.workstream_ids() if self.s.plan else set()

    def plan_deadline(self) -> date:
        assert self.s.formal_agreement_on is not None
        return self.s.formal_agreement_on + timedelta(days=SUPPORT_PLAN_DAYS)

    def open_round_agreements(self) -> list[Step]:
        latest: dict[str, Step] = {}
        for s in self.s.steps.values():
            if s.kind.startswith("buddy_plan_agree") and s.status != "cancelled":
                latest[s.kind] = s
        return list(latest.values()) if len(latest) == 2 else []

    def start_cycle(self) -> None:
        assert self.s.plan_draft is not None
        self.s.plan, self.s.plan_draft = self.s.plan_draft, None
        self.s.plan_version = 1
        self.s.plan_agreed_on = self.today()
        self.s.stage = "quarterly_cycle"
        by = ("the trust and the improvement director" if self.s.p.package_agreed_by == "trusts_and_id"
              else "the regulator and the trust")
        self.audit(AuditEvent.support_plan_agreed, SYSTEM, reason=f"agreed by {by}",
                    detail={"projected_total_pence": self.s.plan.projected_total_pence,
                            "workstreams": sorted(self.s.plan.workstream_ids())})
        self._open_quarter(1)
        self.s.next_forecast_quarter = 2
        self.s.next_review_quarter = 1

    # ---------------------------------------------------------------- deadlines
    @workflow.update
    def amend_deadline(self, c: DeadlineChange) -> BuddyStepView:
        self._validate_amend(c)
        self._updates_this_run += 1
        st = self._amend(c)
        self._wake = True
        return self._view(st)

    @amend_deadline.validator
    def _validate_amend(self, c: DeadlineChange) -> None:
        self._check_amend(c)

    # ---------------------------------------------------------------- plan changes
    @workflow.update
    def propose_plan_change(self, c: PlanChange) -> PlanChangeRecord:
        self._validate_plan_change(c)
        self._updates_this_run += 1
        rec = PlanChangeRecord(number=len(self.s.plan_changes) + 1, plan=c.plan, reason=c.reason,
                               proposed_by=c.actor.user_id, proposed_at=workflow.now())
        self.s.plan_changes.append(rec)
        self.audit(AuditEvent.support_plan_change_proposed, c.actor, reason=c.reason,
                    detail={"change": rec.number, "projected_total_pence": c.plan.projected_total_pence})
        due = self.today() + timedelta(days=AGREE_DAYS)
        extra = {"change": rec.number, "proposed_by": c.actor.user_id}
        self.open_step(BuddyKind.buddy_plan_change_id, due, f"plan_change-{rec.number}.approve_id", extra=extra)
        self.open_step(BuddyKind.buddy_plan_change_trust, due, f"plan_change-{rec.number}.approve_trust", extra=extra)
        self._wake = True
        return rec

    @propose_plan_change.validator
    def _validate_plan_change(self, c: PlanChange) -> None:
        if c.actor.role != Role.buddy:
            raise reject(RejectionKind.wrong_role, "the buddy proposes changes to its support plan")
        if self.s.stage != "quarterly_cycle" or self.s.plan is None:
            raise reject(RejectionKind.step_not_open, f"the partnership is at stage '{self.s.stage}'; only an agreed plan "
                                        "of a running partnership changes")
        if any(r.status == "pending" for r in self.s.plan_changes):
            raise reject(RejectionKind.conflict, "a change to the support plan is already awaiting approval")
        led = self.require_ledger()
        if c.plan.projected_total_pence > led.agreed_level_pence:
            raise reject(RejectionKind.rule_broken, f"projected costs of {money(c.plan.projected_total_pence)} are above the "
                                       f"agreed level ({money(led.agreed_level_pence)})")
        keep = c.plan.workstream_ids()
        for q in led.quarters:
            if not q.settled and any(ln.workstream not in keep for ln in q.forecast_lines):
                raise reject(RejectionKind.rule_broken, f"Q{q.number}'s signed-off forecast uses workstreams this change "
                                           "removes")

    def plan_change_decided(self, st: Step, d: Decision) -> None:
        rec = self.s.plan_changes[st.subject["change"] - 1]
        if rec.status != "pending":
            return
        if d.action == "reject":
            rec.status = "rejected"
            self.cancel(lambda s: s.subject.get("change") == rec.number, "change rejected")
            self.audit(AuditEvent.support_plan_change_rejected, d.actor, reason=d.comment, detail={"change": rec.number})
            return
        both = [s for s in self.s.steps.values() if s.subject.get("change") == rec.number]
        if all(s.status == "done" and s.outcome == "approve" for s in both):
            rec.status = "approved"
            assert rec.plan is not None  # a pending change's plan is never archived
            self.s.plan = rec.plan
            self.s.plan_version += 1
            self.audit(AuditEvent.support_plan_changed, SYSTEM, reason=rec.reason,
                        detail={"change": rec.number, "version": self.s.plan_version,
                                "projected_total_pence": rec.plan.projected_total_pence})

    # ---------------------------------------------------------------- ending
    @workflow.update
    def end_early(self, e: PartnershipEnd) -> BuddySummary:
        self._validate_end(e)
        self._updates_this_run += 1
        self._begin_end(e.reason, e.actor)
        self._wake = True
        return self.summary()

    @end_early.validator
    def _validate_end(self, e: PartnershipEnd) -> None:
        if e.actor.role != Role.regulator:
            raise reject(RejectionKind.wrong_role, "the regulator ends a buddy partnership")
        if self.s.finished or self.s.ending is not None:
            raise reject(RejectionKind.step_not_open, f"the partnership is already {self.s.stage}")
        if not e.reason.strip():
            raise reject(RejectionKind.reason_required, "ending a partnership early needs a reason")

    @workflow.signal
    def run_on(self, run: RunOn) -> None:
        """The regime exited and the regulator let this partnership run on to `run.until` (issue 14 item 2): its
        quarters, confirmations and payments continue; it ends on that date as if the regulator ended it then."""
        if not self.s.finished and self.s.ending is None:
            self.s.run_until = run
            self.audit(AuditEvent.partnership_continues, SYSTEM, reason=run.reason,
                       detail={"until": run.until.isoformat()})
        self._wake = True

    @workflow.signal
    def end_partnership(self, reason: str) -> None:
        if not self.s.finished and self.s.ending is None:
            self._begin_end(reason, SYSTEM)
        self._wake = True

    def _begin_end(self, reason: str, actor: Actor) -> None:
        today = self.today()
        self.s.ending = {"reason": reason, "by": actor.user_id, "role": actor.role, "on": today.isoformat()}
        self.audit(AuditEvent.partnership_ending, actor, reason=reason)
        if self.s.stage in PRE_CYCLE:
            self.finish_early(reason, actor)
            return
        led = self.require_ledger()
        self.s.stage = "settling"
        self.cancel(lambda s: s.group == "plan_change", "partnership ended")
        self.cancel(lambda s: s.kind in FUNDING_KINDS, "partnership ended")  # its funding agreement is not needed
        for r in self.s.plan_changes:
            if r.status == "pending":
                r.status = "rejected"
        for q in led.quarters:
            if q.settled or q.authorised_pence is not None:
                continue
            if q.start > today:
                self._drop_quarter(q, "the partnership ended before the quarter began")
            elif q.number >= self.s.next_review_quarter:
                # The current quarter: cut short at today and settled now.
                if q.forecast_pence is None:
                    self._drop_quarter(q, "the partnership ended before the quarter's forecast was signed off")
                    continue
                q.end = today
                self._open_review(q.number)
                self.audit(AuditEvent.buddy_quarter_cut_short, actor, reason=reason,
                            detail={"quarter": q.number, "end": today.isoformat()})

    def _drop_quarter(self, q: Quarter, why: str) -> None:
        self.require_ledger().decline(q.number, why)
        self.cancel(lambda s: s.subject.get("quarter") == q.number, why)

    def finish_early(self, reason: str, actor: Actor) -> None:
        self.cancel(lambda s: True, reason)
        self.s.stage = "ended"
        self.s.finished = True
        self.audit(AuditEvent.partnership_ended, actor, reason=reason)

    def _check_settled(self) -> None:
        if self.s.stage != "settling" or self.s.finished:
            return
        if any(s.status == "open" for s in self.s.steps.values()):
            return
        if not all(q.settled or q.number in self.s.payment_failures for q in self.require_ledger().quarters):
            return
        self.s.stage = "ended"
        self.s.finished = True
        totals = self.require_ledger().totals()
        self.audit(AuditEvent.partnership_ended, SYSTEM, reason=(self.s.ending or {}).get("reason"),
                    detail={"paid_pence": totals.paid_pence, "remaining_pence": totals.remaining_pence})
