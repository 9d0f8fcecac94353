"""Typed messages and the long-lived state of the regime workflows (carried whole by continue-as-new)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, PlainSerializer, computed_field

from domain.funding import FundingState
from domain.policy import BASELINE, Policy
from domain.programme import KeyQuestion, PlanIndex, ProgrammeState
from domain.ratings import InspectionOutcome, KeyQuestionRatings
from domain.rules import Verdict
from domain.text import JsonObject, text
from domain.vocab import PARTY_ROLES, Phase, Role

# The roles a token may carry (every Role but the service's own `system`).
ROLES: tuple[Role, ...] = PARTY_ROLES
ODS_PATTERN = r"^[A-Z0-9]{3,6}$"
# RegimeState.phase: read as a Phase, written as its string. The workflow assigns the field directly (the
# state has no validate_assignment), with a member or, from code not yet on Phase, the string: either is
# written the same, without pydantic's "expected enum" warning.
StatePhase = Annotated[Phase, PlainSerializer(str, return_type=str)]


class Actor(BaseModel):
    """Who acts: a user id (the token's subject, never a name or e-mail) and the role they act in."""

    user_id: text(200, min_length=1)
    role: Role
    request_id: text(100) | None = None
    person_id: text(200) | None = Field(None, description="the person behind the account, when the identity "
                                                         "provider gives one (AUTH_PERSON_CLAIM): separation of "
                                                         "duties compares people, not accounts")


SYSTEM = Actor(user_id="system", role=Role.system)

# domain.steps imports SYSTEM: import its Kind only now that SYSTEM is defined (either module can come first).
from domain.steps import Kind  # noqa: E402


class Rung(BaseModel):
    """One rung of the escalation ladder (ESCALATION_LADDER): `offset_days` from a step's due date, and who is
    told (`responsible`, a role, or a regulator level such as `regulator_dd`)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(strict=True, min_length=1)
    offset_days: int = Field(strict=True)
    notify: list[str] = Field(default_factory=list)


class Trust(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ods_code: str = Field(pattern=ODS_PATTERN, examples=["RXX"])
    name: text(200, min_length=1)
    multi_site: bool = False


class CompletedStep(BaseModel):
    """A step already done before the regime came into the service (regimes under way)."""

    model_config = ConfigDict(extra="forbid")
    kind: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$")
    completed_on: date
    by: text(200, min_length=1)
    note: text(4000) | None = None


BankHolidaysRule = Literal["next_working_day", "stay"]


class CalendarRules(BaseModel):
    """The service defaults a regime's deadlines follow where the seeds give no rule (issue 14, items 7 and 13),
    recorded at placement from the settings so that a later change of them leaves running regimes as they are.
    A placement recorded before these rules has none (`Placement.calendar` is None) and keeps the rules it was
    placed under: the first return on the first 3rd Monday after entry, and no deadline moved for a holiday."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    first_return_lead_days: int = Field(
        14, ge=1, le=28,
        description="The first monthly return is due on the first 3rd Monday at least this many days after entry "
                    "(or after go-live, for a regime already under way). Service default (FIRST_RETURN_LEAD_DAYS)")
    bank_holidays: BankHolidaysRule = Field(
        "next_working_day",
        description="A deadline on an England and Wales bank holiday moves to the next working day "
                    "(next_working_day) or stays (stay). Service default (BANK_HOLIDAYS)")


class BankHolidays(BaseModel):
    """England and Wales bank holidays of the years `first_year`..`last_year`, as the `holidays` library gave
    them when they were fetched (infra/bank_holidays.py): recorded in the workflow's history (its input, or an
    activity's result), so a library upgrade never moves a running regime's deadline."""

    model_config = ConfigDict(extra="forbid")
    first_year: int = Field(ge=1990, le=2200)
    last_year: int = Field(ge=1990, le=2200)
    days: dict[date, str] = Field(default_factory=dict, description="date -> the holiday's name")

    def covers(self, d: date) -> bool:
        return self.first_year <= d.year <= self.last_year


class Placement(BaseModel):
    """Input of the regime workflow on its first run."""

    regime_id: str
    trust: Trust
    entry_date: date
    basis: Literal[Kind.cqc_recommendation, Kind.regulator_decision]
    entry_ratings: KeyQuestionRatings | None = None
    entry_outcome: InspectionOutcome | None = None
    regulator_reason: text(4000) | None = None
    previous_regime_id: str | None = None
    completed_steps: list[CompletedStep] = Field(default_factory=list)
    ladder: list[Rung]
    placed_by: Actor
    continue_as_new_after_events: int = 8000
    # The policy the regime runs under (domain/policy.py), from the POLICY_* settings when it was placed. A
    # placement recorded before regimes recorded one decodes to BASELINE, the choices the service made then.
    policy: Policy = Field(default_factory=lambda: BASELINE)
    calendar: CalendarRules | None = None
    # Regimes placed since issue 14 item 15 hold a Quality Summit on CQC's report at entry and after each later
    # report (seed 000 §4a); False for every placement recorded before, which keeps the steps it had.
    quality_summits: bool = False
    # Regimes placed since issue 14 item 14 have the regulator's step to agree a buddy in months 1-3.
    buddy_appointment: bool = False
    # Regimes placed since issue 15 track the plan as a programme from entry: the formal review in months 7-9,
    # two self-assessments and the evidence files before the re-inspection (workflows/programme.py).
    programme: bool = False
    # What the trust is in special measures for (issue 16 item 3; seed 002): quality (every placement recorded
    # before), finance (its own definition: the regulator's finance decision, a financial recovery plan, exit
    # decided by the regulator), or both at once with one joined-up programme.
    measures: Literal["quality", "finance", "combined"] = "quality"
    # The usual maximum of a funding agreement's ceiling when the regime was placed (FUNDING_USUAL_MAX_PENCE);
    # None for placements before issue 16 (they have no funding steps).
    funding_usual_max_pence: int | None = None
    # The improvement director appointed before placement (issue 16 item 4: while the trust was on the watch list),
    # as the regime's own decision on its appointment step, which the regime takes at entry instead of leaving the
    # step open (RegimeWorkflow._enter). None for every placement recorded before: the step opens as it did.
    appointment_before_placement: Decision | None = None


class ScheduledStep(BaseModel):
    """A step the regime opens on a later day (`opens`), due on `due` (issue 15: the formal review, the
    self-assessments, the evidence files)."""

    model_config = ConfigDict(extra="forbid")
    opens: date
    kind: text(64, min_length=1)
    due: date
    step_id: text(200) | None = None
    subject: dict[text(40), text(40)] = Field(default_factory=dict, max_length=5)


class PlanChange(BaseModel):
    """The trust proposes a change to the agreed plan (a new version, stored as a document): the improvement
    director agrees it or returns it (issue 15 item 1)."""

    model_config = ConfigDict(extra="forbid")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="the new version's document (PostgreSQL)")
    plan: PlanIndex
    reason: text(2000, min_length=1)
    actor: Actor


class EvidenceRecord(BaseModel):
    """An evidence item collected against plan actions (issue 15 item 4): the document itself is in PostgreSQL
    (its hash here) or lives elsewhere (its URL)."""

    model_config = ConfigDict(extra="forbid")
    title: text(200, min_length=1)
    dated: date
    shows: text(2000, min_length=1)
    actions: list[text(16, min_length=1)] = Field(default_factory=list, max_length=50)
    key_questions: list[KeyQuestion] = Field(default_factory=list, max_length=5)
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    url: text(2000) | None = None
    actor: Actor


class DirectorTime(BaseModel):
    """The improvement director's time in a month (issue 16 item 2), costed at the day rate when it is recorded.
    Recording a month again corrects it and needs a reason."""

    model_config = ConfigDict(extra="forbid")
    month: str = Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="YYYY-MM")
    days: float = Field(ge=0, le=31, multiple_of=0.5, description="days worked on the regime, in half days")
    rate_pence: int = Field(ge=0, le=10_000_000)
    reason: text(2000, min_length=1) | None = None
    actor: Actor

    @property
    def cost_pence(self) -> int:
        """days x rate in integer pence, a half penny rounded up."""
        return (round(self.days * 2) * self.rate_pence + 1) // 2


class DrawdownMessage(BaseModel):
    """The trust asks for central funding against its plan's themes or actions (issue 16 item 1)."""

    model_config = ConfigDict(extra="forbid")
    amount_pence: int = Field(gt=0, le=10_000_000_000)
    against: list[text(100, min_length=1)] = Field(min_length=1, max_length=20,
                                                   description="plan themes or action ids the money is for")
    purpose: text(2000, min_length=1)
    actor: Actor


class DraftReport(BaseModel):
    """CQC has sent the trust its draft report of inspection `reference` to check for factual accuracy (seed 000
    §4a): the trust's step opens."""

    model_config = ConfigDict(extra="forbid")
    reference: text(64, min_length=1)
    sent_on: date
    actor: Actor


class Decision(BaseModel):
    """A person deciding an open step. `expected_status` guards against stale decisions."""

    model_config = ConfigDict(extra="forbid")
    step_id: text(200, min_length=1)
    action: text(64, min_length=1)
    actor: Actor
    comment: text(4000) | None = None
    payload: JsonObject = Field(default_factory=dict)


class DeadlineChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    step_id: text(200, min_length=1)
    new_due: date | None = None
    pause: bool | None = None
    reason: text(2000, min_length=1)
    actor: Actor


class Closure(BaseModel):
    model_config = ConfigDict(extra="forbid")
    solution: Literal["merger", "service_reconfiguration", "acquisition", "other"]
    reason: text(4000, min_length=1)
    actor: Actor
    # Issue 14 item 8 (seed 002, "long-term solution"; domain.md "Who the trust becomes"): who the trust becomes,
    # so its history stays linked, and CQC's view on whether the solution is viable. None in closures recorded
    # before.
    successor_ods_code: str | None = Field(None, pattern=ODS_PATTERN)
    successor_name: text(200, min_length=1) | None = None
    cqc_view: text(4000, min_length=1) | None = Field(None, description="CQC's view on whether the solution is "
                                                                        "viable")


class Enforcement(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["conditions", "special_administration", "cancellation_of_registration", "warning_notice"]
    detail: text(4000, min_length=1)
    actor: Actor


class ReinspectionAnnouncement(BaseModel):
    model_config = ConfigDict(extra="forbid")
    inspection_date: date
    actor: Actor


class InspectionSignal(BaseModel):
    outcome: InspectionOutcome
    actor: Actor


class Withdrawal(BaseModel):
    reference: text(64, min_length=1)
    reason: text(4000, min_length=1)
    actor: Actor


class Action(BaseModel):
    """One thing a person did on a step (a step may see submit, return, resubmit...)."""

    action: str
    by: str
    role: Role
    at: datetime
    comment: str | None = None
    person: str | None = None  # Actor.person_id, when known


class Delegation(BaseModel):
    """Cover for the appointed improvement director: another user acts on the director's steps until a date."""
    model_config = ConfigDict(extra="forbid")
    to_user_id: text(200, min_length=1)
    until: date
    reason: text(2000, min_length=1)
    actor: Actor


class Step(BaseModel):
    id: str
    kind: str
    title: str
    role: Role
    group: str
    due: date
    opened_at: datetime
    status: Literal["open", "done", "cancelled"] = "open"
    outcome: str | None = None
    completed_at: datetime | None = None
    completed_by: str | None = None
    late: bool = False
    paused: bool = False
    next_rung: int = 0
    subject: dict[str, Any] = Field(default_factory=dict)
    data: dict[str, Any] = Field(default_factory=dict)
    actions: list[Action] = Field(default_factory=list)
    amendments: list[dict[str, Any]] = Field(default_factory=list)
    # The date the rules gave when it fell on a bank holiday and `due` is the next working day (CalendarRules).
    due_moved_from: date | None = None


class Escalation(BaseModel):
    step_id: str
    step_title: str
    rung: str
    level: int
    at: datetime
    due: date
    notified: list[str]
    reason: str


class InspectionRecord(BaseModel):
    outcome: InspectionOutcome
    received_at: datetime
    status: Literal["current", "superseded", "older_ignored", "withdrawn"] = "current"
    verdict: Verdict | None = None
    notes: list[str] = Field(default_factory=list)


class AuthorisedShare(BaseModel):
    """Authorised money as a share of a partnership's agreed level. It was called `used_share`: the old name
    still reads (states and payloads recorded with it) and is still written beside it, marked deprecated, for
    readers of the API that use it."""

    authorised_share: float = Field(0.0, validation_alias=AliasChoices("authorised_share", "used_share"),
                                    description="authorised / agreed level, 0..1 (for display only)")

    @computed_field(json_schema_extra={"deprecated": True},
                    description="deprecated: the same figure as authorised_share, whose name says what it is")
    @property
    def used_share(self) -> float:
        return self.authorised_share


class BuddySummary(AuthorisedShare):
    partnership_id: str
    buddy_ods: str
    buddy_name: str
    scope: str
    stage: str
    agreed_level_pence: int = 0
    forecast_pence: int = 0
    confirmed_pence: int = 0
    authorised_pence: int = 0
    paid_pence: int = 0
    remaining_pence: int = 0
    current_quarter: int | None = None
    confirmations_outstanding: list[str] = Field(default_factory=list)
    ended: bool = False
    continue_until: date | None = Field(None, description="runs on after the regime's exit until this date")


class RegimeState(BaseModel):
    placement: Placement
    phase: StatePhase = Phase.in_special_measures
    segment: int = 4
    steps: dict[str, Step] = Field(default_factory=dict)
    escalations: list[Escalation] = Field(default_factory=list)
    inspections: list[InspectionRecord] = Field(default_factory=list)
    decisions: list[dict[str, Any]] = Field(default_factory=list)
    extensions: list[dict[str, Any]] = Field(default_factory=list)
    enforcement: list[dict[str, Any]] = Field(default_factory=list)
    continued_support: list[str] = Field(default_factory=list)
    sos_letter: dict[str, Any] | None = None
    # An extension the regulator has decided that waits for the Secretary of State's agreement and CQC's letter to
    # the regulator (policy secretary_of_state_letter = recommending_extension, seed 002).
    pending_extension: dict[str, Any] | None = None
    closure: dict[str, Any] | None = None
    exit_date: date | None = None
    buddies: dict[str, BuddySummary] = Field(default_factory=dict)
    next_monthly: date | None = None
    assignees: dict[str, str] = Field(default_factory=dict, description="role -> user id, once known")
    delegations: list[dict[str, Any]] = Field(default_factory=list, description="cover for an assignee: "
                                              "{role, from_user_id, to_user_id, until, reason, by, at}")
    seq: int = 0
    # Bounded state (docs/limits.md): ids of steps archived to PostgreSQL at continue-as-new (never reused),
    # and how many records of each kind were archived (their positions continue from there).
    retired_step_ids: list[str] = Field(default_factory=list)
    archived_counts: dict[str, int] = Field(default_factory=dict)
    runs: int = 1
    finished: bool = False
    # The bank holidays deadlines move for (CalendarRules.bank_holidays), a few years at a time: None for a
    # regime placed before the rule, or under `stay`.
    bank_holidays: BankHolidays | None = None
    # The improvement plan as a programme (issue 15): None until a plan carrying its summary is agreed.
    programme: ProgrammeState | None = None
    scheduled: list[ScheduledStep] = Field(default_factory=list)
    evidence_seq: int = 0
    # Central funding (issue 16 item 1): None until the regulator records a funding agreement.
    funding: FundingState | None = None
    # A combined regime: the day the regulator took the trust out of finance special measures.
    finance_exited_on: date | None = None
    # The improvement director's recorded time, month (YYYY-MM) -> {days, rate_pence, cost_pence, by, at, reason}.
    director_time: dict[str, dict[str, Any]] = Field(default_factory=dict)


class RegimeStart(BaseModel):
    """Workflow input: a new placement, or the state carried by continue-as-new."""

    placement: Placement | None = None
    state: RegimeState | None = None
    # The bank holidays of the placement's first years, fetched by the API when it places the regime.
    bank_holidays: BankHolidays | None = None


class StepView(BaseModel):
    step: Step
    phase: Phase
