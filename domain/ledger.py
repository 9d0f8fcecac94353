"""A buddy partnership's money: the agreed level, the support plan's costs and the quarterly ledger;
and the partnership's steps, messages and long-lived state (the workflow in workflows/buddy.py runs them).

Pure rules, no I/O and no clock, so the workflow and the property tests use the same code. Money is
integer pence everywhere (`StrictInt`: a float or a string is refused, never rounded).

The rules (seed 000 §3 and §4a(ii)):
- the improvement director signs off each quarter's delivery plan and forecast, never above what is
  left of the agreed level once the forecasts of quarters not yet settled are counted (forecasts never
  total more than what is left; issue 14);
- the improvement director, the trust and the buddy each confirm that the quarter's support was
  delivered, or dispute it with a reason; a dispute blocks payment until the regulator records a
  resolution (which may lower what is payable) and the disputing party confirms;
- only then does the improvement director authorise a payment, never above the quarter's forecast,
  any resolved amount, or what is left of the agreed level, with every invoice line naming a workstream
  of the support plan;
- a quarter is paid at most once, and `remaining` counts every authorised pound as spent.

Every check raises `LedgerError(kind, message)`; `kind` is a rejection type the API maps to a status.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from enum import StrEnum
from functools import partial
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    field_validator,
    model_validator,
)

from domain.models import SYSTEM, Actor, AuthorisedShare, BuddySummary, Escalation, Rung, Step, Trust
from domain.steps import (
    FUNDING_DECISION_DAYS,
    Deadline,
    EmptyPayload,
    Refused,
    Routine,
    RoutineContext,
    ServiceDefault,
    Statutory,
    StepKind,
    after_in,
    check_in,
    where_a_decision_arrives,
)
from domain.text import text
from domain.vocab import AuditEvent, RejectionKind, Role, kind_event

PARTIES: tuple[str, ...] = (Role.improvement_director, Role.trust, Role.buddy)

Pence = Annotated[StrictInt, Field(ge=0, le=10_000_000_000, description="an amount in pence")]
PositivePence = Annotated[StrictInt, Field(gt=0, le=10_000_000_000, description="an amount in pence")]
# A partnership keeps its plan, the draft under agreement and every proposed change in its state, so one
# plan is bounded as a whole, well under Temporal's 2 MiB payload limit (docs/limits.md).
SUPPORT_PLAN_MAX_CHARS = 200_000
WorkstreamId = Annotated[str, Field(min_length=1, max_length=60, pattern=r"^[a-z0-9][a-z0-9-]*$")]


class LedgerError(Refused):
    """A ledger rule refuses: a decision the workflow turns into its rejection of this kind."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(kind, message)
        self.message = message


# ---------------------------------------------------------------------------- agreements and plans
class AgreementInPrinciple(BaseModel):
    """What the regulator and the buddy agree in principle: the total reimbursable and the terms."""

    model_config = ConfigDict(extra="forbid")
    agreed_level_pence: PositivePence
    terms_of_reference: text(8000, min_length=1)


class Workstream(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: WorkstreamId
    name: text(200, min_length=1)
    activities: list[text(500, min_length=1)] = Field(min_length=1, max_length=100)
    projected_cost_pence: Pence


class SupportPlan(BaseModel):
    """The buddy's support plan: workstreams, their activities and projected costs."""

    model_config = ConfigDict(extra="forbid")
    workstreams: list[Workstream] = Field(min_length=1, max_length=50)

    @field_validator("workstreams")
    @classmethod
    def _unique_ids(cls, v: list[Workstream]) -> list[Workstream]:
        ids = [w.id for w in v]
        if len(ids) != len(set(ids)):
            raise ValueError("workstream ids must be unique")
        chars = sum(len(w.name) + sum(len(a) for a in w.activities) for w in v)
        if chars > SUPPORT_PLAN_MAX_CHARS:
            raise ValueError(f"the plan holds {chars:,} characters of names and activities; at most "
                             f"{SUPPORT_PLAN_MAX_CHARS:,}")
        return v

    @property
    def projected_total_pence(self) -> int:
        return sum(w.projected_cost_pence for w in self.workstreams)

    def workstream_ids(self) -> set[str]:
        return {w.id for w in self.workstreams}


class Line(BaseModel):
    """One line of a quarter's forecast or invoice; each names its workstream."""

    model_config = ConfigDict(extra="forbid")
    workstream: WorkstreamId
    description: text(500, min_length=1)
    amount_pence: PositivePence


class ForecastPayload(BaseModel):
    """The quarter's delivery plan and forecast cost (no lines: nothing is planned to be paid)."""

    model_config = ConfigDict(extra="forbid")
    lines: list[Line] = Field(default_factory=list, max_length=200)


class InvoicePayload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lines: list[Line] = Field(min_length=1, max_length=200)


class BuddyFundingAgreementPayload(BaseModel):
    """The buddy trust's funding agreement as the regulator records it (issue 16 item 1: "funding agreements for the
    trust and the buddy finalised in months 4-6", seed 000's timeline): the sum agreed, never above the agreed level
    of the agreement in principle."""

    model_config = ConfigDict(extra="forbid")
    agreed_pence: PositivePence
    terms: text(4000, min_length=1) | None = Field(None, description="what the funding covers, its conditions")


class BuddyFunding(BaseModel):
    """The buddy trust's funding agreement: recorded by the regulator, finalised once the buddy agrees it."""

    agreed_pence: int
    terms: str | None = None
    recorded_by: str
    recorded_on: date
    finalised_on: date | None = None
    returned_reason: str | None = Field(None, max_length=4000)


class ResolutionPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    resolution: text(4000, min_length=1)
    agreed_pence: Pence | None = Field(None, description="what the parties agree is payable, if less")


def total(lines: list[Line]) -> int:
    return sum(ln.amount_pence for ln in lines)


# ---------------------------------------------------------------------------- the ledger
class Confirmation(BaseModel):
    party: str
    by: str
    verdict: Literal["confirmed", "disputed"]
    reason: str | None = None


class Dispute(BaseModel):
    party: str
    by: str
    reason: str
    resolved: bool = False
    resolution: str | None = None
    resolved_by: str | None = None
    agreed_pence: int | None = None
    not_payable: bool = False


class Quarter(BaseModel):
    number: int
    start: date
    end: date
    forecast_pence: int | None = None
    forecast_lines: list[Line] = Field(default_factory=list)
    forecast_by: str | None = None
    confirmations: dict[str, Confirmation] = Field(default_factory=dict)
    disputes: list[Dispute] = Field(default_factory=list)
    cap_pence: int | None = None
    authorised_pence: int | None = None
    invoice_lines: list[Line] = Field(default_factory=list)
    authorised_by: str | None = None
    authorised_at: datetime | None = None
    declined: str | None = None
    payment_id: int | None = None
    paid_pence: int = 0

    def answered_by(self) -> list[tuple[str, str]]:
        """(party, user) for every confirmation and dispute given on this quarter."""
        return [(c.party, c.by) for c in self.confirmations.values()] + [(d.party, d.by) for d in self.disputes]

    @property
    def open_dispute(self) -> Dispute | None:
        return next((d for d in self.disputes if not d.resolved), None)

    @property
    def all_confirmed(self) -> bool:
        return all(self.confirmations.get(p) is not None and self.confirmations[p].verdict == "confirmed"
                   for p in PARTIES) and self.open_dispute is None

    @property
    def outstanding(self) -> list[str]:
        return [p for p in PARTIES if p not in self.confirmations or self.confirmations[p].verdict != "confirmed"]

    @property
    def payable_cap(self) -> int:
        """The most this quarter may pay: its forecast, lowered by any resolved amount."""
        cap = self.forecast_pence or 0
        return min(cap, self.cap_pence) if self.cap_pence is not None else cap

    @property
    def settled(self) -> bool:
        """Nothing more will happen to this quarter's money."""
        return self.payment_id is not None or self.declined is not None

    @property
    def stage(self) -> str:
        if self.payment_id is not None:
            return "paid"
        if self.declined is not None:
            return "nothing_payable"
        if self.authorised_pence is not None:
            return "authorised"
        if self.open_dispute is not None:
            return "disputed"
        if self.all_confirmed:
            return "confirmed"
        if self.confirmations:
            return "confirming"
        return "forecast_signed_off" if self.forecast_pence is not None else "planning"


class LedgerTotals(AuthorisedShare):
    agreed_level_pence: int
    forecast_pence: int
    confirmed_pence: int
    authorised_pence: int
    paid_pence: int
    remaining_pence: int


class Ledger(BaseModel):
    agreed_level_pence: int
    quarters: list[Quarter] = Field(default_factory=list)

    @model_validator(mode="after")
    def _numbered(self) -> Ledger:
        if [q.number for q in self.quarters] != list(range(1, len(self.quarters) + 1)):
            raise ValueError("quarters must be numbered 1, 2, 3... in order")
        return self

    # ------------------------------------------------------------------ reading
    def quarter(self, n: int) -> Quarter:
        if not 1 <= n <= len(self.quarters):
            raise LedgerError(RejectionKind.unknown_step, f"there is no quarter {n}")
        return self.quarters[n - 1]

    @property
    def authorised_pence(self) -> int:
        return sum(q.authorised_pence or 0 for q in self.quarters)

    @property
    def paid_pence(self) -> int:
        return sum(q.paid_pence for q in self.quarters)

    @property
    def remaining_pence(self) -> int:
        """What may still be committed: the agreed level less everything authorised (paid or not)."""
        return self.agreed_level_pence - self.authorised_pence

    def unsettled_forecast_pence(self, *, besides: int | None = None) -> int:
        """What the quarters signed off but not yet authorised, paid or declined may still pay (each one's
        forecast, lowered by any resolved amount), leaving out quarter `besides`."""
        return sum(q.payable_cap for q in self.quarters
                   if q.number != besides and q.forecast_pence is not None and q.authorised_pence is None
                   and not q.settled)

    def forecastable_pence(self, *, besides: int | None = None) -> int:
        """What a new forecast may be: what is left of the agreed level less the forecasts still to settle."""
        return max(0, self.remaining_pence - self.unsettled_forecast_pence(besides=besides))

    def totals(self) -> LedgerTotals:
        auth = self.authorised_pence
        return LedgerTotals(
            agreed_level_pence=self.agreed_level_pence,
            forecast_pence=sum(q.forecast_pence or 0 for q in self.quarters),
            confirmed_pence=sum(q.payable_cap for q in self.quarters if q.all_confirmed and q.declined is None),
            authorised_pence=auth,
            paid_pence=self.paid_pence,
            remaining_pence=self.remaining_pence,
            authorised_share=round(auth / self.agreed_level_pence, 4) if self.agreed_level_pence else 0.0,
        )

    # ------------------------------------------------------------------ quarters
    def open_quarter(self, n: int, start: date, end: date) -> Quarter:
        if n != len(self.quarters) + 1:
            raise LedgerError(RejectionKind.rule_broken, f"quarter {n} cannot open after quarter {len(self.quarters)}")
        q = Quarter(number=n, start=start, end=end)
        self.quarters.append(q)
        return q

    def check_forecast(self, n: int, lines: list[Line], workstreams: set[str], *, count_unsettled: bool = True) -> None:
        """Forecasts never total more than what is left: the new one plus those of the quarters not yet settled
        stay within the agreed level less what is authorised. `count_unsettled=False` is the rule before issue
        14 (authorised money only), which the partnership's update handler keeps so that a forecast a recorded
        history accepted replays accepted (the validator applies the whole rule; docs/versioning.md)."""
        q = self.quarter(n)
        if q.forecast_pence is not None:
            raise LedgerError(RejectionKind.step_not_open, f"quarter {n}'s forecast is already signed off")
        _check_workstreams(lines, workstreams)
        amount = total(lines)
        if amount > self.remaining_pence:
            raise LedgerError(RejectionKind.rule_broken, f"the forecast of {money(amount)} is above what is left of the agreed "
                                            f"level ({money(self.remaining_pence)})")
        pending = self.unsettled_forecast_pence(besides=n)
        if count_unsettled and amount > self.remaining_pence - pending:
            raise LedgerError(RejectionKind.rule_broken,
                              f"the forecast of {money(amount)} and the {money(pending)} forecast for quarters not yet "
                              f"settled are above what is left of the agreed level ({money(self.remaining_pence)}); "
                              f"at most {money(self.forecastable_pence(besides=n))} may be forecast")

    def sign_off_forecast(self, n: int, lines: list[Line], by: str, workstreams: set[str], *,
                          count_unsettled: bool = True) -> Quarter:
        self.check_forecast(n, lines, workstreams, count_unsettled=count_unsettled)
        q = self.quarter(n)
        q.forecast_lines = list(lines)
        q.forecast_pence = total(lines)
        q.forecast_by = by
        return q

    # ------------------------------------------------------------------ confirmations
    def check_confirmation(self, n: int, party: str, by: str, verdict: str = "confirmed") -> None:
        q = self.quarter(n)
        if party not in PARTIES:
            raise LedgerError(RejectionKind.wrong_role, f"{party} does not confirm delivery")
        if q.settled or q.authorised_pence is not None:
            raise LedgerError(RejectionKind.step_not_open, f"quarter {n} is already {q.stage}")
        mine = q.confirmations.get(party)
        if mine is not None:
            what = "confirmed" if mine.verdict == "confirmed" else "disputed (awaiting the regulator's resolution)"
            raise LedgerError(RejectionKind.step_not_open, f"the {party.replace('_', ' ')} has already {what} quarter {n}")
        for other, who in q.answered_by():
            if other != party and who == by:
                raise LedgerError(RejectionKind.separation_of_duties, f"{by} already answered for the {other.replace('_', ' ')} "
                                                        f"on quarter {n}")
        if verdict not in ("confirmed", "disputed"):
            raise LedgerError(RejectionKind.unknown_action, f"'{verdict}' is neither a confirmation nor a dispute")

    def confirm(self, n: int, party: str, by: str) -> Quarter:
        self.check_confirmation(n, party, by, "confirmed")
        q = self.quarter(n)
        q.confirmations[party] = Confirmation(party=party, by=by, verdict="confirmed")
        return q

    def dispute(self, n: int, party: str, by: str, reason: str) -> Quarter:
        self.check_confirmation(n, party, by, "disputed")
        if not reason.strip():
            raise LedgerError(RejectionKind.reason_required, "a dispute needs a reason")
        q = self.quarter(n)
        q.confirmations[party] = Confirmation(party=party, by=by, verdict="disputed", reason=reason)
        q.disputes.append(Dispute(party=party, by=by, reason=reason))
        return q

    def check_resolution(self, n: int, by: str, agreed_pence: int | None) -> Dispute:
        q = self.quarter(n)
        d = q.open_dispute
        if d is None:
            raise LedgerError(RejectionKind.step_not_open, f"quarter {n} has no open dispute")
        if any(who == by for _, who in q.answered_by()):
            raise LedgerError(RejectionKind.separation_of_duties, f"{by} answered for a party on quarter {n} and cannot also "
                                                    "resolve its dispute")
        if agreed_pence is not None and agreed_pence > q.payable_cap:
            raise LedgerError(RejectionKind.rule_broken, f"the agreed amount {money(agreed_pence)} is above the quarter's "
                                            f"payable limit ({money(q.payable_cap)})")
        return d

    def resolve(self, n: int, by: str, resolution: str, agreed_pence: int | None = None) -> Dispute:
        """The dispute is settled; the disputing party must now confirm (its earlier answer is cleared)."""
        d = self.check_resolution(n, by, agreed_pence)
        q = self.quarter(n)
        d.resolved, d.resolution, d.resolved_by, d.agreed_pence = True, resolution, by, agreed_pence
        if agreed_pence is not None:
            q.cap_pence = agreed_pence if q.cap_pence is None else min(q.cap_pence, agreed_pence)
        q.confirmations.pop(d.party, None)
        return d

    def resolve_not_payable(self, n: int, by: str, resolution: str) -> Dispute:
        d = self.check_resolution(n, by, None)
        q = self.quarter(n)
        d.resolved, d.resolution, d.resolved_by, d.not_payable = True, resolution, by, True
        q.declined = f"dispute resolved as not payable: {resolution}"
        return d

    # ------------------------------------------------------------------ authorisation and payment
    def check_authorisation(self, n: int, lines: list[Line], by: str, workstreams: set[str]) -> None:
        q = self.quarter(n)
        if q.authorised_pence is not None or q.settled:
            raise LedgerError(RejectionKind.step_not_open, f"quarter {n} is already {q.stage}; it is paid at most once")
        if q.forecast_pence is None:
            raise LedgerError(RejectionKind.rule_broken, f"quarter {n}'s forecast is not signed off")
        if q.open_dispute is not None:
            raise LedgerError(RejectionKind.rule_broken, f"quarter {n} is disputed; nothing is paid until it is resolved")
        if not q.all_confirmed:
            raise LedgerError(RejectionKind.rule_broken, f"quarter {n} still needs confirmation by: "
                                            + ", ".join(p.replace("_", " ") for p in q.outstanding))
        for party, who in q.answered_by():
            if party != Role.improvement_director and who == by:
                raise LedgerError(RejectionKind.separation_of_duties, f"{by} answered quarter {n} for the {party} and cannot "
                                                        "authorise its payment")
        if not lines:
            raise LedgerError(RejectionKind.invalid_payload, "an authorisation needs at least one invoice line")
        _check_workstreams(lines, workstreams)
        amount = total(lines)
        if amount > (q.forecast_pence or 0):
            raise LedgerError(RejectionKind.rule_broken, f"{money(amount)} is above quarter {n}'s forecast "
                                            f"({money(q.forecast_pence or 0)})")
        if q.cap_pence is not None and amount > q.cap_pence:
            raise LedgerError(RejectionKind.rule_broken, f"{money(amount)} is above the amount agreed when the dispute was "
                                            f"resolved ({money(q.cap_pence)})")
        if amount > self.remaining_pence:
            raise LedgerError(RejectionKind.rule_broken, f"{money(amount)} is above what is left of the agreed level "
                                            f"({money(self.remaining_pence)})")

    def authorise(self, n: int, lines: list[Line], by: str, workstreams: set[str]) -> Quarter:
        self.check_authorisation(n, lines, by, workstreams)
        q = self.quarter(n)
        q.invoice_lines = list(lines)
        q.authorised_pence = total(lines)
        q.authorised_by = by
        return q

    def check_decline(self, n: int) -> None:
        q = self.quarter(n)
        if q.authorised_pence is not None or q.settled:
            raise LedgerError(RejectionKind.step_not_open, f"quarter {n} is already {q.stage}")

    def decline(self, n: int, reason: str) -> Quarter:
        self.check_decline(n)
        q = self.quarter(n)
        q.declined = reason or "declined"
        return q

    def record_payment(self, n: int, payment_id: int, amount_pence: int) -> bool:
        """Record the payment written for quarter n. Repeating the same record is a no-op (False)."""
        q = self.quarter(n)
        if q.authorised_pence is None:
            raise LedgerError(RejectionKind.rule_broken, f"quarter {n} has no authorised payment")
        if amount_pence != q.authorised_pence:
            raise LedgerError(RejectionKind.rule_broken, f"payment of {money(amount_pence)} does not match the authorised "
                                            f"{money(q.authorised_pence)}")
        if q.payment_id is not None:
            if q.payment_id != payment_id:
                raise LedgerError(RejectionKind.conflict, f"quarter {n} is already paid by payment {q.payment_id}")
            return False
        q.payment_id = payment_id
        q.paid_pence = amount_pence
        return True

    def awaiting_payment(self) -> list[Quarter]:
        return [q for q in self.quarters if q.authorised_pence is not None and q.payment_id is None]


def _check_workstreams(lines: list[Line], workstreams: set[str]) -> None:
    unknown = sorted({ln.workstream for ln in lines} - workstreams)
    if unknown:
        raise LedgerError(RejectionKind.invalid_payload, f"not workstreams of the support plan: {', '.join(unknown)}")


def money(pence: int) -> str:
    sign = "-" if pence < 0 else ""
    pounds, p = divmod(abs(pence), 100)
    return f"{sign}£{pounds:,}.{p:02d}"


# ---------------------------------------------------------------------------- payment messages
RECORD_PAYMENT = "record_buddy_payment"


class PaymentInstruction(BaseModel):
    """An authorised quarter to record as paid; (partnership_id, quarter) is its idempotency key."""

    model_config = ConfigDict(extra="forbid")
    partnership_id: str = Field(min_length=1, max_length=300)
    quarter: int = Field(ge=1)
    regime_id: str
    buddy_ods: str
    amount_pence: PositivePence
    lines: list[Line] = Field(min_length=1)
    authorised_by: str
    authorised_at: datetime

    @model_validator(mode="after")
    def _lines_add_up(self) -> PaymentInstruction:
        if total(self.lines) != self.amount_pence:
            raise ValueError(f"lines total {total(self.lines)} pence, payment {self.amount_pence} pence")
        return self


class PaymentRecord(BaseModel):
    payment_id: int
    partnership_id: str
    quarter: int
    amount_pence: int
    recorded_at: datetime
    created: bool = Field(description="False when the row was already there (a retry)")


# ---------------------------------------------------------------------------- the partnership's steps
class BuddyKind(StrEnum):
    """A buddy partnership's step kinds. Their rules are the BUDDY_STEPS entries below;
    everywhere else names a kind through this enum, never a string literal (tests/test_catalogue.py)."""

    buddy_aip_regulator = "buddy_aip_regulator"
    buddy_aip_buddy = "buddy_aip_buddy"
    buddy_sign_regulator = "buddy_sign_regulator"
    buddy_sign_trust = "buddy_sign_trust"
    buddy_sign_buddy = "buddy_sign_buddy"
    buddy_support_plan = "buddy_support_plan"
    buddy_plan_agree_regulator = "buddy_plan_agree_regulator"
    buddy_plan_agree_trust = "buddy_plan_agree_trust"
    buddy_plan_agree_id = "buddy_plan_agree_id"
    buddy_plan_change_id = "buddy_plan_change_id"
    buddy_plan_change_trust = "buddy_plan_change_trust"
    buddy_forecast = "buddy_forecast"
    buddy_confirm_id = "buddy_confirm_id"
    buddy_confirm_trust = "buddy_confirm_trust"
    buddy_confirm_buddy = "buddy_confirm_buddy"
    buddy_resolve = "buddy_resolve"
    buddy_authorise = "buddy_authorise"
    buddy_funding_agreement = "buddy_funding_agreement"
    buddy_funding_agreement_buddy = "buddy_funding_agreement_buddy"


# Days allowed where the seed names no deadline; the seed's two deadlines are 6 weeks each.
AIP_DAYS = 14
FORMAL_AGREEMENT_DAYS = 42
SUPPORT_PLAN_DAYS = 42
AGREE_DAYS = 14
FORECAST_LEAD_DAYS = 28
CONFIRM_DAYS = 14
RESOLVE_DAYS = 14
AUTHORISE_DAYS = 14
# The buddy trust's funding agreement (issue 16 item 1) is finalised in months 4-6 like the trust's (seed 000's
# timeline gives the window, the day is the service's: the regime's own agreement date, 6 months after entry,
# domain.steps.FUNDING_MONTHS). A partnership started late has its formal agreement and support plan first (6 weeks
# each, seed 000 §3), so its agreement is due no sooner than this many days after it starts.
FUNDING_AGREEMENT_MIN_DAYS = FORMAL_AGREEMENT_DAYS + SUPPORT_PLAN_DAYS


def funding_agreement_due(due_from: date, started_on: date) -> date:
    """When the buddy trust's funding agreement is due: the host's months-4-6 date (`due_from`, a regime's entry
    + 6 months), or 12 weeks after the partnership started if that is later (one started late is not overdue at once)."""
    return max(due_from, started_on + timedelta(days=FUNDING_AGREEMENT_MIN_DAYS))


# ---------------------------------------------------------------------------- routine work (tools/simulate)
# What a diligent party does once a partnership step falls due. `ctx.state` is the partnership as
# GET /regimes/{id}/buddies/{pid} shows it, `ctx.config` the scenario's add_buddy settings.
ROUTINE_TERMS = "Mentoring of the board and of the services rated inadequate; secondments by agreement."


def _routine_aip(ctx: RoutineContext) -> dict[str, Any]:
    return ctx.config.get("agreement_in_principle") or {"agreed_level_pence": 20_000_000,
                                                        "terms_of_reference": ROUTINE_TERMS}


def _routine_ledger(ctx: RoutineContext) -> dict[str, Any]:
    return ctx.state.get("ledger") or {"agreed_level_pence": 0, "quarters": []}


def _routine_support_plan(ctx: RoutineContext) -> dict[str, Any]:
    return ctx.config.get("support_plan") or {"workstreams": [
        {"id": "improvement-support", "name": "Improvement support", "activities": ["mentoring"],
         "projected_cost_pence": _routine_ledger(ctx)["agreed_level_pence"]}]}


def _routine_lines(ctx: RoutineContext, amount: int, what: str) -> dict[str, Any]:
    plan = ctx.state.get("plan") or {"workstreams": [{"id": "improvement-support"}]}
    return {"lines": [{"workstream": plan["workstreams"][0]["id"], "description": what, "amount_pence": amount}]}


def _routine_remaining(ctx: RoutineContext) -> int:
    return (ctx.state.get("ledger_totals") or {}).get("remaining_pence", 0)


def _routine_forecast(ctx: RoutineContext) -> dict[str, Any]:
    """The scenario's quarterly amount (an eighth of the agreed level by default), within what is left once the
    forecasts of quarters not yet settled are counted against it."""
    ledger = _routine_ledger(ctx)
    pending = sum(q["forecast_pence"] or 0 for q in ledger["quarters"]
                  if q["forecast_pence"] and q["payment_id"] is None and q["declined"] is None
                  and q["authorised_pence"] is None)
    quarterly = ctx.config.get("quarterly_pence") or ledger["agreed_level_pence"] // 8
    amount = max(0, min(quarterly, _routine_remaining(ctx) - pending))
    return _routine_lines(ctx, amount, "planned support") if amount else {}


def _routine_funding(ctx: RoutineContext) -> dict[str, Any]:
    """The routine buddy funding agreement: the partnership's agreed level."""
    return {"agreed_pence": _routine_ledger(ctx)["agreed_level_pence"],
            "terms": "Reimbursement of the buddy's support plan, quarterly, up to the agreed level"}


def _routine_invoice(ctx: RoutineContext) -> dict[str, Any] | None:
    """The quarter's forecast, within any resolved amount and what is left; None when nothing is payable."""
    q = next(q for q in _routine_ledger(ctx)["quarters"] if q["number"] == ctx.step["subject"]["quarter"])
    cap = q["forecast_pence"] or 0
    if q.get("cap_pence") is not None:
        cap = min(cap, q["cap_pence"])
    amount = min(cap, _routine_remaining(ctx))
    return _routine_lines(ctx, amount, "support delivered") if amount > 0 else None


_E = EmptyPayload
_S, _D = Statutory, ServiceDefault
_SIX_WEEKS = _S("seed 000 §3")
def _plan_agreement(who: str, role: str) -> StepKind:
    """One party's agreement of the buddy's draft support plan (who agrees: the regime's policy
    buddy_package_agreed_by, domain/policy.py)."""
    return StepKind(
        f"Buddy support plan agreed by {who}", role, "support_plan", {"agree": _E, "return": _E}, frozenset({"return"}),
        deadline=Deadline("6 weeks after the formal agreement, at least 14 days after the draft (AGREE_DAYS)",
                          _SIX_WEEKS),
        routine=Routine("agree"))


BUDDY_STEPS: dict[str, StepKind] = {
    BuddyKind.buddy_aip_regulator: StepKind(
        "Buddy agreement in principle recorded (regulator)", Role.regulator, "agreement_in_principle",
        {"record": AgreementInPrinciple},
        deadline=Deadline("14 days after the partnership starts", _D("domain.ledger.AIP_DAYS")),
        routine=Routine("record", _routine_aip)),
    BuddyKind.buddy_aip_buddy: StepKind(
        "Buddy agreement in principle accepted (buddy)", Role.buddy, "agreement_in_principle",
        {"accept": _E, "decline": _E}, frozenset({"decline"}),
        deadline=Deadline("14 days after the regulator records it", _D("domain.ledger.AIP_DAYS")),
        routine=Routine("accept")),
    BuddyKind.buddy_sign_regulator: StepKind(
        "Formal buddy agreement signed by the regulator", Role.regulator, "formal_agreement", {"sign": _E},
        deadline=Deadline("6 weeks after the agreement in principle", _SIX_WEEKS), routine=Routine("sign")),
    BuddyKind.buddy_sign_trust: StepKind(
        "Formal buddy agreement signed by the trust", Role.trust, "formal_agreement", {"sign": _E},
        deadline=Deadline("6 weeks after the agreement in principle", _SIX_WEEKS), routine=Routine("sign")),
    BuddyKind.buddy_sign_buddy: StepKind(
        "Formal buddy agreement signed by the buddy", Role.buddy, "formal_agreement", {"sign": _E},
        deadline=Deadline("6 weeks after the agreement in principle", _SIX_WEEKS), routine=Routine("sign")),
    BuddyKind.buddy_support_plan: StepKind(
        "Buddy support plan drafted (buddy)", Role.buddy, "support_plan", {"submit": SupportPlan},
        deadline=Deadline("6 weeks after the formal agreement", _SIX_WEEKS),
        routine=Routine("submit", _routine_support_plan)),
    BuddyKind.buddy_plan_agree_regulator: _plan_agreement("the regulator", Role.regulator),
    BuddyKind.buddy_plan_agree_trust: _plan_agreement("the trust", Role.trust),
    BuddyKind.buddy_plan_agree_id: _plan_agreement("the improvement director", Role.improvement_director),
    BuddyKind.buddy_plan_change_id: StepKind(
        "Support plan change approved by the improvement director", Role.improvement_director, "plan_change",
        {"approve": _E, "reject": _E}, frozenset({"reject"}),
        deadline=Deadline("14 days after the buddy proposes the change", _D("domain.ledger.AGREE_DAYS"))),
    BuddyKind.buddy_plan_change_trust: StepKind(
        "Support plan change approved by the trust", Role.trust, "plan_change",
        {"approve": _E, "reject": _E}, frozenset({"reject"}),
        deadline=Deadline("14 days after the buddy proposes the change", _D("domain.ledger.AGREE_DAYS"))),
    BuddyKind.buddy_forecast: StepKind(
        "Quarter's delivery plan and forecast signed off (improvement director)", Role.improvement_director, "quarter",
        {"sign_off": ForecastPayload}, recurs="quarterly",
        deadline=Deadline("the day before the quarter starts (opens 28 days before); the first quarter's 14 days "
                          "after it starts", _D("domain.ledger.FORECAST_LEAD_DAYS")),
        routine=Routine("sign_off", _routine_forecast)),
    BuddyKind.buddy_confirm_id: StepKind(
        "Quarter's support confirmed as delivered (improvement director)", Role.improvement_director, "quarter",
        {"confirm": _E, "dispute": _E}, frozenset({"dispute"}), recurs="quarterly",
        deadline=Deadline("14 days after the quarter ends", _D("domain.ledger.CONFIRM_DAYS")),
        routine=Routine("confirm")),
    BuddyKind.buddy_confirm_trust: StepKind(
        "Quarter's support confirmed as delivered (trust)", Role.trust, "quarter",
        {"confirm": _E, "dispute": _E}, frozenset({"dispute"}), recurs="quarterly",
        deadline=Deadline("14 days after the quarter ends", _D("domain.ledger.CONFIRM_DAYS")),
        routine=Routine("confirm")),
    BuddyKind.buddy_confirm_buddy: StepKind(
        "Quarter's support confirmed as delivered (buddy)", Role.buddy, "quarter",
        {"confirm": _E, "dispute": _E}, frozenset({"dispute"}), recurs="quarterly",
        deadline=Deadline("14 days after the quarter ends", _D("domain.ledger.CONFIRM_DAYS")),
        routine=Routine("confirm")),
    BuddyKind.buddy_resolve: StepKind(
        "Quarter's dispute resolved (regulator)", Role.regulator, "quarter",
        {"resolve": ResolutionPayload, "not_payable": _E}, frozenset({"not_payable"}), recurs="quarterly",
        deadline=Deadline("14 days after the dispute", _D("domain.ledger.RESOLVE_DAYS"))),
    BuddyKind.buddy_authorise: StepKind(
        "Quarter's buddy payment authorised (improvement director)", Role.improvement_director, "quarter",
        {"authorise": InvoicePayload, "decline": _E}, frozenset({"decline"}), recurs="quarterly",
        deadline=Deadline("14 days after all three parties confirm the quarter", _D("domain.ledger.AUTHORISE_DAYS")),
        routine=Routine("authorise", _routine_invoice, otherwise=("decline", "nothing payable for this quarter"))),
    # The buddy trust's funding agreement, finalised in months 4-6 like the trust's (issue 16 item 1): only in a
    # partnership of a regime with central funding (Partnership.funding_agreement_due_from). Payments do not wait
    # for it: the agreed level and the quarterly cycle govern them.
    BuddyKind.buddy_funding_agreement: StepKind(
        "Buddy funding agreement recorded (regulator)", Role.regulator, "funding",
        {"record": BuddyFundingAgreementPayload},
        deadline=Deadline("finalised in months 4-6 (seed 000's timeline) like the trust's: the regime's funding "
                          "agreement date (6 months after entry), or 12 weeks after the partnership starts if later; "
                          "opens when the formal agreement is signed (14 days after a return, if later)",
                          _D("domain.ledger.funding_agreement_due")),
        routine=Routine("record", _routine_funding)),
    BuddyKind.buddy_funding_agreement_buddy: StepKind(
        "Buddy funding agreement agreed (buddy)", Role.buddy, "funding", {"agree": _E, "return": _E},
        frozenset({"return"}),
        deadline=Deadline("14 days after the regulator records it", _D("domain.steps.FUNDING_DECISION_DAYS")),
        routine=Routine("agree")),
}
FUNDING_KINDS = (BuddyKind.buddy_funding_agreement, BuddyKind.buddy_funding_agreement_buddy)
CONFIRM_KIND = {Role.improvement_director: BuddyKind.buddy_confirm_id, Role.trust: BuddyKind.buddy_confirm_trust,
                Role.buddy: BuddyKind.buddy_confirm_buddy}
SIGN_KINDS = (BuddyKind.buddy_sign_regulator, BuddyKind.buddy_sign_trust, BuddyKind.buddy_sign_buddy)


# ---------------------------------------------------------------------------- messages and state
class Partnership(BaseModel):
    """Who the partnership is between; fixed for its life."""

    partnership_id: str
    key: str = Field(description="prefix of its step ids: buddy ODS, plus the service when scoped")
    regime_id: str
    parent_workflow_id: str
    trust: Trust
    buddy: Trust
    scope: str
    ladder: list[Rung]
    started_by: Actor
    continue_as_new_after_events: int = 8000
    # Who agrees the support package (the regime's policy buddy_package_agreed_by): the regulator and the trust
    # (seed 000 §4a(ii)), or the trust and the improvement director besides the buddy that drafts it (§3).
    package_agreed_by: Literal["regulator_and_trust", "trusts_and_id"] = "regulator_and_trust"
    # A partnership of a trust on the challenged-providers watch list (issue 16 item 4): not in the public domain,
    # so it sets no search attribute and writes no inbox task; its steps are read and decided through the entry.
    confidential: bool = False
    # The host's months-4-6 date for the buddy trust's funding agreement (issue 16 item 1): a regime with central
    # funding passes its entry + 6 months. None (every partnership recorded before): no funding agreement step.
    funding_agreement_due_from: date | None = None
    # The London day the partnership started (None in a state carried from a run before the field).
    started_on: date | None = None


class PlanChangeRecord(BaseModel):
    number: int
    plan: SupportPlan | None = Field(None, description="None once the change is decided and its plan archived")
    reason: str
    proposed_by: str
    proposed_at: datetime
    status: Literal["pending", "approved", "rejected"] = "pending"


class RunOn(BaseModel):
    """The regulator's decision at exit to let a partnership run on to `until` (seed 000 §1), with its reason
    (PartnershipAtExit.reason, at most 2,000 characters, and the words the regime puts before it)."""
    until: date
    reason: str = Field(max_length=2200)


class BuddyState(BaseModel):
    p: Partnership
    stage: Literal["agreement_in_principle", "formal_agreement", "support_plan", "quarterly_cycle", "settling",
                   "ended"] = "agreement_in_principle"
    terms_of_reference: str | None = None
    agreed_in_principle_on: date | None = None
    formal_agreement_on: date | None = None
    plan: SupportPlan | None = None
    plan_draft: SupportPlan | None = None
    plan_version: int = 0
    plan_agreed_on: date | None = None
    plan_changes: list[PlanChangeRecord] = Field(default_factory=list)
    ledger: Ledger | None = None
    funding: BuddyFunding | None = None
    next_forecast_quarter: int = 2
    next_review_quarter: int = 1
    steps: dict[str, Step] = Field(default_factory=dict)
    escalations: list[Escalation] = Field(default_factory=list)
    ending: dict[str, Any] | None = None
    # The regime exited and the regulator let the partnership run on to a date (issue 14 item 2): it ends then.
    run_until: RunOn | None = None
    payment_failures: dict[int, str] = Field(default_factory=dict)
    last_summary: BuddySummary | None = None
    seq: int = 0
    # Bounded state (docs/limits.md): ids of steps archived to PostgreSQL at continue-as-new (never reused),
    # and how many records of each kind were archived (their positions continue from there).
    retired_step_ids: list[str] = Field(default_factory=list)
    archived_counts: dict[str, int] = Field(default_factory=dict)
    runs: int = 1
    finished: bool = False


class BuddyContinue(BaseModel):
    """Input of a partnership run after continue-as-new: the whole state."""

    model_config = ConfigDict(extra="forbid")
    state: BuddyState


class PartnershipEnd(BaseModel):
    """The regulator ends a partnership early; the current quarter is settled first."""

    model_config = ConfigDict(extra="forbid")
    reason: text(4000, min_length=1)
    actor: Actor


class PlanChange(BaseModel):
    """A significant change to the support plan, proposed by the buddy; the ID and the trust approve it."""

    model_config = ConfigDict(extra="forbid")
    plan: SupportPlan
    reason: text(4000, min_length=1)
    actor: Actor


class LedgerView(BaseModel):
    partnership_id: str
    buddy_ods: str
    scope: str
    stage: str
    totals: LedgerTotals | None
    quarters: list[Quarter]


class BuddyStepView(BaseModel):
    step: Step
    stage: str
    ledger: LedgerTotals | None = None


# ---------------------------------------------------------------------------- what each action leads to
# Registered beside the definitions, as for the regime's steps (domain/steps.py `after`); the partnership
# workflow (workflows/buddy.py) calls the handler once the step is closed, with its validated payload.
buddy_after = partial(after_in, BUDDY_STEPS)
buddy_check = partial(check_in, BUDDY_STEPS)


def confirming_party(kind: str) -> str:
    return next(p for p, k in CONFIRM_KIND.items() if k == kind)


@buddy_after(BuddyKind.buddy_aip_regulator)
def _aip_recorded(rt, st, d, payload: AgreementInPrinciple) -> None:
    rt.record_aip(payload, d.actor, st)


@buddy_after(BuddyKind.buddy_aip_buddy, "decline")
def _aip_declined(rt, st, d, payload) -> None:
    rt.finish_early(f"the buddy declined the agreement in principle: {d.comment}", d.actor)


@buddy_after(BuddyKind.buddy_aip_buddy, "accept")
def _aip_accepted(rt, st, d, payload) -> None:
    today = rt.today()
    rt.s.agreed_in_principle_on = today
    rt.s.stage = "formal_agreement"
    due = today + timedelta(days=FORMAL_AGREEMENT_DAYS)
    for kind in SIGN_KINDS:
        rt.open_step(kind, due, kind.removeprefix("buddy_"))


@buddy_after(BuddyKind.buddy_sign_regulator)
@buddy_after(BuddyKind.buddy_sign_trust)
@buddy_after(BuddyKind.buddy_sign_buddy)
def _signed(rt, st, d, payload) -> None:
    today = rt.today()
    signed = [s for s in rt.s.steps.values() if s.kind in SIGN_KINDS and s.status == "done"]
    if {s.kind for s in signed} == set(SIGN_KINDS):
        rt.s.formal_agreement_on = today
        rt.s.stage = "support_plan"
        rt.audit(AuditEvent.formal_agreement_signed, SYSTEM, reason="signed by the regulator, the trust and the buddy")
        rt.open_step(BuddyKind.buddy_support_plan, today + timedelta(days=SUPPORT_PLAN_DAYS), "support_plan")
        if rt.s.p.funding_agreement_due_from is not None:  # a regime with central funding (issue 16 item 1)
            rt.open_step(BuddyKind.buddy_funding_agreement, partnership_funding_due(rt.s.p),
                         BuddyKind.buddy_funding_agreement.removeprefix("buddy_"))


def partnership_funding_due(p: Partnership) -> date:
    """The partnership's funding agreement due date (funding_agreement_due); only for a partnership that has one."""
    assert p.funding_agreement_due_from is not None and p.started_on is not None
    return funding_agreement_due(p.funding_agreement_due_from, p.started_on)


@buddy_after(BuddyKind.buddy_support_plan)
def _plan_drafted(rt, st, d, payload: SupportPlan) -> None:
    rt.s.plan_draft = payload
    due = max(rt.plan_deadline(), rt.today() + timedelta(days=AGREE_DAYS))
    if rt.s.p.package_agreed_by == "trusts_and_id":  # seed 000 §3: both trusts and the ID (the buddy drafted it)
        rt.open_step(BuddyKind.buddy_plan_agree_trust, due, "plan_agree_trust")
        rt.open_step(BuddyKind.buddy_plan_agree_id, due, "plan_agree_id")
        return
    rt.open_step(BuddyKind.buddy_plan_agree_regulator, due, "plan_agree_regulator")
    rt.open_step(BuddyKind.buddy_plan_agree_trust, due, "plan_agree_trust")


@buddy_after(BuddyKind.buddy_plan_agree_regulator, "return")
@buddy_after(BuddyKind.buddy_plan_agree_trust, "return")
@buddy_after(BuddyKind.buddy_plan_agree_id, "return")
def _plan_returned(rt, st, d, payload) -> None:
    rt.cancel(lambda s: s.kind.startswith("buddy_plan_agree"), "support plan returned")
    again = rt.open_step(BuddyKind.buddy_support_plan, max(rt.plan_deadline(), rt.today() + timedelta(days=14)),
                         "support_plan")
    again.data["returned_reason"] = d.comment


@buddy_after(BuddyKind.buddy_plan_agree_regulator, "agree")
@buddy_after(BuddyKind.buddy_plan_agree_trust, "agree")
@buddy_after(BuddyKind.buddy_plan_agree_id, "agree")
def _plan_agreed(rt, st, d, payload) -> None:
    if all(s.status == "done" and s.outcome == "agree" for s in rt.open_round_agreements()):
        rt.start_cycle()


@buddy_after(BuddyKind.buddy_forecast)
def _forecast_signed_off(rt, st, d, payload: ForecastPayload) -> None:
    n = st.subject.get("quarter")
    # The validator checked the forecast against the unsettled ones too (_forecast_within_what_is_left); here,
    # replayed, the rule a recorded history was taken under: a forecast accepted then is recorded again.
    q = rt.require_ledger().sign_off_forecast(n, payload.lines, d.actor.user_id, rt.workstreams(),
                                              count_unsettled=False)
    rt.audit(kind_event(BuddyKind.buddy_forecast, "signed_off"), d.actor, step=st, reason=f"Q{n}: {money(q.forecast_pence or 0)}")
    rt.maybe_open_authorisation(n)


@buddy_after(BuddyKind.buddy_confirm_id, "confirm")
@buddy_after(BuddyKind.buddy_confirm_trust, "confirm")
@buddy_after(BuddyKind.buddy_confirm_buddy, "confirm")
def _delivery_confirmed(rt, st, d, payload) -> None:
    n = st.subject.get("quarter")
    rt.require_ledger().confirm(n, confirming_party(st.kind), d.actor.user_id)
    rt.maybe_open_authorisation(n)


@buddy_after(BuddyKind.buddy_confirm_id, "dispute")
@buddy_after(BuddyKind.buddy_confirm_trust, "dispute")
@buddy_after(BuddyKind.buddy_confirm_buddy, "dispute")
def _delivery_disputed(rt, st, d, payload) -> None:
    n = st.subject.get("quarter")
    rt.require_ledger().dispute(n, confirming_party(st.kind), d.actor.user_id, d.comment or "")
    if not any(s.kind == BuddyKind.buddy_resolve and s.status == "open" for s in rt.quarter_steps(n)):
        rt.open_step(BuddyKind.buddy_resolve, rt.today() + timedelta(days=RESOLVE_DAYS), f"q{n}.resolve", quarter=n)


@buddy_after(BuddyKind.buddy_resolve, "not_payable")
def _resolved_not_payable(rt, st, d, payload) -> None:
    n = st.subject.get("quarter")
    rt.require_ledger().resolve_not_payable(n, d.actor.user_id, d.comment or "")
    rt.cancel(lambda s: s.subject.get("quarter") == n, "dispute resolved as not payable")


@buddy_after(BuddyKind.buddy_resolve, "resolve")
def _resolved(rt, st, d, payload: ResolutionPayload) -> None:
    n, today, ledger = st.subject.get("quarter"), rt.today(), rt.require_ledger()
    disp = ledger.resolve(n, d.actor.user_id, payload.resolution, payload.agreed_pence)
    kind = CONFIRM_KIND[disp.party]
    rt.open_step(kind, today + timedelta(days=CONFIRM_DAYS), f"q{n}.{kind.removeprefix('buddy_')}", quarter=n)
    if ledger.quarter(n).open_dispute is not None:
        rt.open_step(BuddyKind.buddy_resolve, today + timedelta(days=RESOLVE_DAYS), f"q{n}.resolve", quarter=n)


@buddy_after(BuddyKind.buddy_authorise, "authorise")
def _payment_authorised(rt, st, d, payload: InvoicePayload) -> None:
    q = rt.require_ledger().authorise(st.subject.get("quarter"), payload.lines, d.actor.user_id, rt.workstreams())
    q.authorised_at = rt.now()


@buddy_after(BuddyKind.buddy_authorise, "decline")
def _payment_declined(rt, st, d, payload) -> None:
    rt.require_ledger().decline(st.subject.get("quarter"), d.comment or "declined")


@buddy_after(BuddyKind.buddy_funding_agreement)
def _funding_recorded(rt, st, d, payload: BuddyFundingAgreementPayload) -> None:
    """The regulator recorded the buddy trust's funding agreement: the buddy agrees it (as the trust and the
    improvement director agree the trust's, workflows/funding.py)."""
    rt.s.funding = BuddyFunding(agreed_pence=payload.agreed_pence, terms=payload.terms, recorded_by=d.actor.user_id,
                                recorded_on=rt.today())
    party = BuddyKind.buddy_funding_agreement_buddy
    rt.open_step(party, rt.today() + timedelta(days=FUNDING_DECISION_DAYS), party.removeprefix("buddy_"),
                 extra={"agreement": st.id})


@buddy_after(BuddyKind.buddy_funding_agreement_buddy, "agree")
def _funding_finalised(rt, st, d, payload) -> None:
    f = rt.s.funding
    assert f is not None
    f.finalised_on = rt.today()
    rt.audit(kind_event(BuddyKind.buddy_funding_agreement, "finalised"), SYSTEM, step=st,
             reason=f"{money(f.agreed_pence)}, agreed by the regulator and the buddy",
             detail={"agreed_pence": f.agreed_pence, "agreement": st.subject.get("agreement")})


@buddy_after(BuddyKind.buddy_funding_agreement_buddy, "return")
def _funding_returned(rt, st, d, payload) -> None:
    """The buddy returns it with a reason: the regulator records it again (14 days, or by its own date if later)."""
    if rt.s.funding is not None:
        rt.s.funding.returned_reason = d.comment
    kind = BuddyKind.buddy_funding_agreement
    again = rt.open_step(kind, max(partnership_funding_due(rt.s.p), rt.today() + timedelta(days=FUNDING_DECISION_DAYS)),
                         kind.removeprefix("buddy_"))
    again.data["returned_reason"] = d.comment


@buddy_after(BuddyKind.buddy_plan_change_id)
@buddy_after(BuddyKind.buddy_plan_change_trust)
def _plan_change_decided(rt, st, d, payload) -> None:
    rt.plan_change_decided(st, d)


# ---------------------------------------------------------------------------- rules a decision must meet
# Beyond role, action, reason, payload and separation of duties (workflows/engine.py validate_decision), the
# money rules: `@buddy_check(kind)` rules raise LedgerError to refuse the decision before anything changes.
@buddy_check(BuddyKind.buddy_support_plan)
def _plan_within_the_agreed_level(rt, st, d, payload: SupportPlan) -> None:
    led = rt.require_ledger()
    if payload.projected_total_pence > led.agreed_level_pence:
        raise LedgerError(RejectionKind.rule_broken, f"projected costs of {money(payload.projected_total_pence)} are "
                                        f"above the agreed level ({money(led.agreed_level_pence)})")


@buddy_check(BuddyKind.buddy_funding_agreement)
def _funding_within_the_agreed_level(rt, st, d, payload: BuddyFundingAgreementPayload) -> None:
    # A new step no recorded history holds: the rule applies in the handler too.
    led = rt.require_ledger()
    if payload.agreed_pence > led.agreed_level_pence:
        raise LedgerError(RejectionKind.rule_broken, f"the funding agreement of {money(payload.agreed_pence)} is above "
                                                     f"the partnership's agreed level ({money(led.agreed_level_pence)}, "
                                                     "its agreement in principle)")


@buddy_check(BuddyKind.buddy_forecast)
def _forecast_within_what_is_left(rt, st, d, payload: ForecastPayload) -> None:
    assert rt.s.plan is not None
    # Forecasts of quarters not yet settled count only where the decision arrives (issue 14): the handler runs
    # this check again on replay, where a forecast accepted before the rule must be accepted again.
    rt.require_ledger().check_forecast(st.subject.get("quarter"), payload.lines, rt.s.plan.workstream_ids(),
                                       count_unsettled=where_a_decision_arrives())


@buddy_check(*CONFIRM_KIND.values())
def _confirmation_allowed(rt, st, d, payload) -> None:
    rt.require_ledger().check_confirmation(st.subject.get("quarter"), confirming_party(st.kind), d.actor.user_id,
                                           "confirmed" if d.action == "confirm" else "disputed")


@buddy_check(BuddyKind.buddy_resolve)
def _resolution_allowed(rt, st, d, payload) -> None:
    agreed = payload.agreed_pence if isinstance(payload, ResolutionPayload) else None
    rt.require_ledger().check_resolution(st.subject.get("quarter"), d.actor.user_id, agreed)


@buddy_check(BuddyKind.buddy_authorise)
def _authorisation_allowed(rt, st, d, payload) -> None:
    n = st.subject.get("quarter")
    if d.action == "authorise":
        assert isinstance(payload, InvoicePayload) and rt.s.plan is not None
        rt.require_ledger().check_authorisation(n, payload.lines, d.actor.user_id, rt.s.plan.workstream_ids())
    else:
        rt.require_ledger().check_decline(n)
