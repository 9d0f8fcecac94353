"""The regime workflow's part in central funding (issue 16 item 1): the funding agreement and its parties,
drawdowns and their payment. A mixin of RegimeWorkflow, deterministic; nothing here runs for a regime without a
funding agreement (every history recorded before issue 16), so those histories replay unchanged."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.funding import FundingActivities
    from domain.funding import Drawdown, DrawdownInstruction, FundingAgreementPayload, FundingState
    from domain.models import SYSTEM, Actor, Decision, DrawdownMessage, Step
    from domain.steps import FUNDING_DECISION_DAYS, Kind
    from domain.vocab import AuditEvent, RejectionKind, Role
    from workflows.common import Notify

PAYMENT_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                            maximum_interval=timedelta(seconds=30))
PAYMENT_GIVE_UP = timedelta(minutes=2)
PAYMENT_BACKOFF = timedelta(minutes=5)


def money(pence: int) -> str:
    return f"£{pence // 100:,}.{pence % 100:02d}"


class FundingRuntime:
    """Host: a regime, or a watch-list entry (the same steps and payments, issue 16 item 4). `s` has `funding`,
    `steps`, `finished`; `_regime_id()` names the row its payments are recorded against."""

    s: Any
    _drawdowns_retry_at: Any = None

    def funding_usual_max(self) -> int | None:
        """The usual maximum of a ceiling recorded when the regime was placed (or the entry added); None before."""
        raise NotImplementedError

    # ---------------------------------------------------------------- the agreement
    def funding_recorded(self, st: Step, payload: FundingAgreementPayload) -> None:
        """The regulator recorded the agreement: the trust and the improvement director agree it."""
        f = self.s.funding or FundingState()
        self.s.funding = f
        if f.agreed:  # a later agreement (a new ceiling) replaces the terms; drawdowns stay as they are
            f.agreed = False
        f.ceiling_pence, f.areas = payload.ceiling_pence, list(payload.areas)
        due = self.today() + timedelta(days=FUNDING_DECISION_DAYS)
        for kind in (Kind.funding_agreement_trust, Kind.funding_agreement_director):
            self.open_step(kind, due, subject={"agreement": st.id})

    def funding_party_agreed(self, st: Step, actor: Actor) -> None:
        f = self.s.funding
        if f is None:
            return
        parties = [o for o in self.s.steps.values() if o.subject.get("agreement") == st.subject.get("agreement")
                   and o.kind in (Kind.funding_agreement_trust, Kind.funding_agreement_director)]
        if all(o.status == "done" and o.outcome == "agree" for o in parties):
            f.agreed, f.agreed_on = True, self.today().isoformat()
            self.audit(AuditEvent.funding_agreed, SYSTEM, reason=f"ceiling {money(f.ceiling_pence)}; areas: "
                       f"{', '.join(f.areas)}", detail={"ceiling_pence": f.ceiling_pence, "areas": f.areas})

    def funding_returned(self, st: Step, d: Decision) -> None:
        for o in self.s.steps.values():
            if o.status == "open" and o.subject.get("agreement") == st.subject.get("agreement"):
                self.close_step(o, "cancelled", SYSTEM, "funding agreement returned")
        again = self.open_step(Kind.funding_agreement, self.today() + timedelta(days=FUNDING_DECISION_DAYS),
                               subject={"returned": st.id})
        again.data["returned_reason"] = d.comment

    # ---------------------------------------------------------------- drawdowns
    def check_drawdown(self, m: DrawdownMessage) -> None:
        from workflows.engine import reject

        if m.actor.role != Role.trust:
            raise reject(RejectionKind.wrong_role, "the trust requests drawdowns")
        f = self.s.funding
        if f is None or not f.agreed:
            raise reject(RejectionKind.rule_broken, "there is no agreed funding agreement to draw on")
        if self.s.finished:
            raise reject(RejectionKind.step_not_open, "the regime is closed")
        if len(f.drawdowns) >= 200:
            raise reject(RejectionKind.conflict, "200 drawdowns on one agreement: agree a new one")
        if m.amount_pence > f.remaining_pence():
            raise reject(RejectionKind.rule_broken, f"{money(m.amount_pence)} is above what is left under the "
                         f"ceiling ({money(f.remaining_pence())} of {money(f.ceiling_pence)})")
        prog = getattr(self.s, "programme", None)
        if prog is not None and prog.versions:
            known, what = set(prog.actions) | set(prog.themes), "a theme or action of the agreed plan"
        else:  # no plan tracked as a programme (a watch-list entry): the agreement's areas of direct support
            known, what = set(f.areas), "an area of direct support of the agreement"
        unknown = [a for a in m.against if a not in known]
        if unknown:
            raise reject(RejectionKind.invalid_payload, f"against: {', '.join(unknown[:10])} is not {what}")

    def add_drawdown(self, m: DrawdownMessage) -> Step:
        f = self.s.funding
        assert f is not None
        n = max((x.n for x in f.drawdowns), default=0) + 1
        f.drawdowns.append(Drawdown(n=n, amount_pence=m.amount_pence, against=list(m.against), purpose=m.purpose,
                                    requested_by=m.actor.user_id, requested_on=self.today().isoformat()))
        st = self.open_step(Kind.drawdown_approval, self.today() + timedelta(days=FUNDING_DECISION_DAYS),
                            step_id=f"{Kind.drawdown_approval}-{n}", subject={"drawdown": str(n)})
        self.audit(AuditEvent.drawdown_requested, m.actor, step=st, reason=m.purpose,
                   detail={"drawdown": n, "amount_pence": m.amount_pence, "against": list(m.against)})
        return st

    def drawdown_decided(self, st: Step, d: Decision) -> None:
        f = self.s.funding
        dd = f.get(int(st.subject["drawdown"])) if f else None
        if dd is None:
            return
        if d.action == "refuse":
            dd.status, dd.refused_reason = "refused", d.comment
            return
        if d.action == "approve":
            dd.status, dd.approved_by = "approved", d.actor.user_id
            self.open_step(Kind.drawdown_authorisation, self.today() + timedelta(days=FUNDING_DECISION_DAYS),
                           step_id=f"{Kind.drawdown_authorisation}-{dd.n}", subject={"drawdown": str(dd.n)})
            return
        dd.status, dd.authorised_by, dd.authorised_at = "authorised", d.actor.user_id, workflow.now()

    def _drawdowns_due(self) -> list[Drawdown]:
        f = self.s.funding
        return [] if f is None else [x for x in f.drawdowns if x.status == "authorised" and not x.payment_failure]

    async def _record_drawdowns(self) -> bool:
        """Record every authorised drawdown not yet paid; False when the store could not be reached."""
        due = self._drawdowns_due()
        if not due:
            return True
        if self._drawdowns_retry_at is not None and workflow.now() < self._drawdowns_retry_at:
            return False
        self._drawdowns_retry_at = None
        for dd in due:
            assert dd.authorised_by is not None and dd.authorised_at is not None
            ins = DrawdownInstruction(regime_id=self._regime_id(), drawdown=dd.n, amount_pence=dd.amount_pence,
                                      against=dd.against, authorised_by=dd.authorised_by, authorised_at=dd.authorised_at)
            try:
                rec = await workflow.execute_activity_method(
                    FundingActivities.record_drawdown, ins, start_to_close_timeout=timedelta(seconds=30),
                    schedule_to_close_timeout=PAYMENT_GIVE_UP, retry_policy=PAYMENT_RETRY)
            except ActivityError as e:
                if isinstance(e.cause, ApplicationError) and e.cause.type == RejectionKind.payment_conflict:
                    dd.payment_failure = str(e.cause.message)[:4000]
                    self.audit(AuditEvent.drawdown_payment_refused, SYSTEM, reason=dd.payment_failure,
                               detail={"drawdown": dd.n})
                    self.emit(Notify(rung="payment_refused", recipients=[Role.operations, Role.regulator],
                                     subject=f"[payment refused] {self._regime_id()} drawdown {dd.n}",
                                     body=dd.payment_failure))
                    continue
                # The store was unavailable for the whole window: the drawdown stays authorised and unpaid (the
                # state carries it) and is tried again; the row's key means a retry never pays twice.
                self._drawdowns_retry_at = workflow.now() + PAYMENT_BACKOFF
                return False
            dd.status, dd.payment_id = "paid", rec.payment_id
            self.audit(AuditEvent.drawdown_paid, SYSTEM, reason=f"drawdown {dd.n}: {money(rec.amount_pence)} "
                       f"(payment {rec.payment_id})", detail={"drawdown": dd.n, "payment_id": rec.payment_id,
                                                             "amount_pence": rec.amount_pence,
                                                             "first_write": rec.created})
        return True
