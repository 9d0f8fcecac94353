"""The catalogue of human steps: who acts, which actions they may take, and what each action carries."""

from __future__ import annotations

from collections.abc import Callable
from copy import deepcopy
from dataclasses import dataclass, field
from datetime import date, timedelta
from enum import StrEnum
from functools import partial
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, model_validator
from temporalio import workflow

from domain.dates import add_months
from domain.funding import FinancialReviewPayload, FundingAgreementPayload
from domain.programme import (
    ACTION_ID,
    DEFAULT_THEME,
    MAX_THEMES,
    KeyQuestion,
    Status,
    action_id,
)
from domain.ratings import Rating
from domain.rules import SEGMENT_AFTER_QUALITY_EXIT
from domain.text import text
from domain.vocab import Phase, RejectionKind, Role, decision_event, kind_event


class PlanAction(BaseModel):
    model_config = ConfigDict(extra="forbid")
    category: Literal["must_do", "should_do"]
    description: text(2000, min_length=1)
    owner: text(200, min_length=1) = Field(description="accountable post, e.g. 'Director of Nursing' (a role in the "
                                                      "trust, never a person's name)")
    metric: text(500, min_length=1)
    target_date: date | None = None
    # Issue 15 (the plan as a programme): all optional, so plans submitted before keep their meaning.
    id: str | None = Field(None, pattern=ACTION_ID, description="the action's id, kept across versions (default: "
                           "its position, A1, A2, ...)")
    theme: text(100, min_length=1) | None = Field(None, description=f"e.g. 'Mortality', 'Sepsis' (default "
                                                                    f"'{DEFAULT_THEME}')")
    finding: text(500, min_length=1) | None = Field(None, description="the CQC finding the action answers")
    measured_by: text(200, min_length=1) | None = Field(None, description="who measures the metric (a post)")
    horizon: Literal[30, 60, 90] | None = Field(None, description="30/60/90-day horizon in the first three months")


class DroppedAction(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action_id: str = Field(pattern=ACTION_ID)
    reason: text(2000, min_length=1)


class ImprovementPlanPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    actions: list[PlanAction] = Field(min_length=1, max_length=500)
    published_at: HttpUrl | None = Field(None, description="where the plan is published (a revised action plan "
                                                           "after an extension is published: issue 15 item 5)")
    published_on: date | None = None
    dropped: list[DroppedAction] = Field(default_factory=list, max_length=500,
                                         description="outstanding actions of the agreed plan this version leaves "
                                                     "out, each with its reason")

    @model_validator(mode="after")
    def _ids_unique(self) -> ImprovementPlanPayload:
        ids = [a.id or action_id(n) for n, a in enumerate(self.actions, 1)]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"action ids must be unique: {', '.join(dup[:10])} appear more than once")
        if len({a.theme or DEFAULT_THEME for a in self.actions}) > MAX_THEMES:
            raise ValueError(f"at most {MAX_THEMES} themes")
        return self

    def counts(self) -> dict[str, int]:
        return {
            "must_do": sum(a.category == "must_do" for a in self.actions),
            "should_do": sum(a.category == "should_do" for a in self.actions),
        }


class MeetingPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    meeting_date: date
    commission_capability_review: bool = False


class LetterPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sent_on: date
    commission_capability_review: bool = False


class AgreementPayload(BaseModel):
    """The Secretary of State's answer to the Chief Inspector's letter recommending an extension (seed 002)."""
    model_config = ConfigDict(extra="forbid")
    answered_on: date


class SummitAttendance(BaseModel):
    model_config = ConfigDict(extra="forbid")
    organisation: text(200, min_length=1) = Field(description="e.g. 'the trust', 'CQC', 'NHS TDA', a CCG by name")
    ods_code: text(6) | None = Field(None, pattern=r"^[A-Z0-9]{3,6}$")
    people: list[text(200, min_length=1)] = Field(min_length=1, max_length=30,
                                                  description="who attended for it (name and post)")


class QualitySummitPayload(BaseModel):
    """A Quality Summit on CQC's report: local stakeholders come together to discuss the findings and develop
    the plan (seed 000 §1, §4a; seed 001)."""
    model_config = ConfigDict(extra="forbid")
    held_on: date
    attendees: list[SummitAttendance] = Field(min_length=1, max_length=40)
    summary: text(4000) | None = None


class FactualAccuracyPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sent_on: date = Field(description="the day the trust sent its factual accuracy comments to CQC")
    summary: text(4000) | None = None


class CompletionPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    completed_on: date
    summary: text(4000) | None = None


class ActionProgress(BaseModel):
    """The trust's report on one action for the month (issue 15 item 2)."""
    model_config = ConfigDict(extra="forbid")
    action_id: str = Field(pattern=ACTION_ID)
    status: Status
    metric_value: text(200) | None = Field(None, description="the metric's latest value, as measured")
    evidence: list[text(64, min_length=1)] = Field(default_factory=list, max_length=20,
                                                   description="evidence item ids (POST .../evidence)")
    note: text(1000) | None = None


class MonthlyReturnPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    summary: text(8000, min_length=1) | None = None
    public_update_url: HttpUrl | None = None
    actions: list[ActionProgress] = Field(default_factory=list, max_length=500,
                                          description="progress per action of the agreed plan: the return is built "
                                                      "from these (a summary is then optional)")

    @model_validator(mode="after")
    def _something_to_report(self) -> MonthlyReturnPayload:
        if not self.summary and not self.actions:
            raise ValueError("give the progress per action (actions), a summary, or both")
        ids = [a.action_id for a in self.actions]
        if len(set(ids)) != len(ids):
            raise ValueError("each action is reported once")
        return self


class Challenge(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action_id: str = Field(pattern=ACTION_ID)
    reason: text(2000, min_length=1)


class CosignPayload(BaseModel):
    """The improvement director co-signs the month's return, challenging any action's report with a reason."""
    model_config = ConfigDict(extra="forbid")
    challenges: list[Challenge] = Field(default_factory=list, max_length=500)


class OversightMeetingPayload(BaseModel):
    """The monthly Oversight and Assurance Group, chaired by the regulator's delivery and development team
    (seed 000 §4b(iii)). Some trusts merge it with the monthly Integrated Delivery Meeting."""
    model_config = ConfigDict(extra="forbid")
    meeting_date: date
    deep_dive: text(500) | None = Field(None, description="area of concern chosen for a deep dive, "
                                                                    "reported back at the next meeting")
    held_with_idm: bool = Field(False, description="merged with this month's Integrated Delivery Meeting, "
                                                   "which it then also records")


class DeliveryMeetingPayload(BaseModel):
    """The monthly Integrated Delivery Meeting (seed 000 §4b(iv)): progress against the plan's trajectory."""
    model_config = ConfigDict(extra="forbid")
    meeting_date: date
    on_trajectory: bool | None = Field(None, description="progress is in line with the planned improvement "
                                       "trajectory; for a plan tracked as a programme it comes from the plan's "
                                       "state, and a different answer needs override_reason")
    summary: text(4000) | None = None
    override_reason: text(2000, min_length=1) | None = Field(None, description="why the meeting's answer differs "
                                                                               "from the plan's state")


class AppointmentPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    appointed_on: date
    improvement_director_user_id: text(200, min_length=1)


class PartnershipAtExit(BaseModel):
    """A buddy partnership the regulator lets run on after exit (seed 000 §1: 'a partner trust's programme of work
    scheduled for completion a few months after special measures formally ends')."""
    model_config = ConfigDict(extra="forbid")
    continue_until: date = Field(description="the partnership ends on this date (after the exit, within "
                                             f"{24} months); its quarters, confirmations and payments continue")
    reason: text(2000, min_length=1)


class SupportItem(BaseModel):
    """Other continued support after exit (seed 000 §1, §4d), tracked until the post-exit board-to-board."""
    model_config = ConfigDict(extra="forbid")
    description: text(500, min_length=1)
    owner: text(200, min_length=1) = Field(description="who delivers it, e.g. 'NHS TDA improvement director'")
    due: date = Field(description="by when; on or before the post-exit board-to-board (6 months after exit)")


def partnership_named(regime_id: str, running: Any, key: str) -> str | None:
    """The id of the partnership `key` names among `running` ids: the id itself, or the buddy's key (ODS code, with
    '-scope' when not trust-wide) as in workflows.common.buddy_workflow_id."""
    for pid in (key, f"{regime_id}-buddy-{key}"):
        if pid in running:
            return pid
    return None


# A partnership runs on after exit for at most this many months (seed 000 §1: 'a few months').
CONTINUE_AFTER_EXIT_MONTHS = 24


class ExitDecisionPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    continued_support: list[text(200, min_length=1)] = Field(default_factory=list, max_length=50)
    partnerships: dict[text(200, min_length=1), PartnershipAtExit] = Field(
        default_factory=dict, max_length=20,
        description="partnership (its id, or its buddy's ODS code with '-scope' when not trust-wide) -> run on to "
                    "a date; every partnership not named here ends at exit")
    support_items: list[SupportItem] = Field(default_factory=list, max_length=50,
                                             description="continued support with an owner and a date, tracked "
                                                         "until the post-exit board-to-board")


# An extension is "up to a further 6 months" (seed 000 §1) or "usually 6 months" (seed 002, "Removing trusts").
EXTENSION_GUIDANCE_MONTHS = 6


class ExtendPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    months: int = Field(6, ge=1, le=24, description=f"up to {EXTENSION_GUIDANCE_MONTHS} as the guidance has it; "
                        "longer only with beyond_guidance_reason")
    beyond_guidance_reason: text(2000, min_length=1) | None = Field(
        None, description=f"why the extension is longer than the guidance's {EXTENSION_GUIDANCE_MONTHS} months; "
                          f"required when months is above {EXTENSION_GUIDANCE_MONTHS}, refused otherwise")


class FinanceReviewPayload(BaseModel):
    """The regulator's review of finance special measures: the trust exits, or remains (with the reason)."""
    model_config = ConfigDict(extra="forbid")
    reviewed_on: date
    summary: text(4000, min_length=1)


class EmptyPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ActionDonePayload(BaseModel):
    """The trust marks a plan action done (or its month's report says so)."""
    model_config = ConfigDict(extra="forbid")
    completed_on: date
    evidence: list[text(64, min_length=1)] = Field(default_factory=list, max_length=20)
    note: text(1000) | None = None


class ActionChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action_id: str = Field(pattern=ACTION_ID)
    change: text(1000, min_length=1)


class ProgrammeReviewPayload(BaseModel):
    """The delivery team's formal review of the improvement plan (issue 15 item 3)."""
    model_config = ConfigDict(extra="forbid")
    reviewed_on: date
    assessment: Literal["on_track", "concerns", "off_track"]
    conclusion: text(4000, min_length=1)
    changes: list[ActionChange] = Field(default_factory=list, max_length=200,
                                        description="the actions the review changes, and how")


class KeyQuestionFinding(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rating: Rating = Field(description="the rating the trust expects CQC to give on this evidence")
    summary: text(2000, min_length=1)


class SelfAssessmentPayload(BaseModel):
    """A self-assessment of inspection readiness or a mini-inspection against CQC's key lines of enquiry (seed 000
    §4a(vii)), with its findings by key question."""
    model_config = ConfigDict(extra="forbid")
    held_on: date
    form: Literal["self_assessment", "mini_inspection"]
    findings: dict[KeyQuestion, KeyQuestionFinding] = Field(min_length=1, max_length=5)


class EvidenceFilePayload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    evidence: list[text(64, min_length=1)] = Field(default_factory=list, max_length=200,
                                                   description="evidence item ids the file holds")
    summary: text(4000) | None = None


class Kind(StrEnum):
    """The regime's step kinds. Their rules are the CATALOGUE entries below;
    everywhere else names a kind through this enum, never a string literal (tests/test_catalogue.py)."""

    improvement_plan = "improvement_plan"
    plan_review = "plan_review"
    plan_signoff_regulator = "plan_signoff_regulator"
    plan_signoff_commissioner = "plan_signoff_commissioner"
    appoint_improvement_director = "appoint_improvement_director"
    board_to_board = "board_to_board"
    board_to_board_pre_inspection = "board_to_board_pre_inspection"
    board_to_board_post_exit = "board_to_board_post_exit"
    letter_to_chair = "letter_to_chair"
    capability_review = "capability_review"
    monthly_return = "monthly_return"
    monthly_return_cosign = "monthly_return_cosign"
    oversight_meeting = "oversight_meeting"
    delivery_meeting = "delivery_meeting"
    reinspection = "reinspection"
    cqc_recommendation = "cqc_recommendation"
    regulator_decision = "regulator_decision"
    revised_action_plan = "revised_action_plan"
    secretary_of_state_letter = "secretary_of_state_letter"
    extension_letter = "extension_letter"
    secretary_of_state_agreement = "secretary_of_state_agreement"
    cqc_letter_to_regulator = "cqc_letter_to_regulator"
    continued_support_item = "continued_support_item"
    quality_summit = "quality_summit"
    appoint_buddy = "appoint_buddy"
    factual_accuracy = "factual_accuracy"
    # The improvement plan as a programme (issue 15)
    plan_action = "plan_action"
    plan_change_review = "plan_change_review"
    programme_review = "programme_review"
    self_assessment = "self_assessment"
    evidence_file = "evidence_file"
    evidence_file_check = "evidence_file_check"
    evidence_file_buddy_review = "evidence_file_buddy_review"
    # Direct support and central funding (issue 16 item 1)
    financial_review = "financial_review"
    funding_agreement = "funding_agreement"
    funding_agreement_trust = "funding_agreement_trust"
    funding_agreement_director = "funding_agreement_director"
    drawdown_approval = "drawdown_approval"
    drawdown_authorisation = "drawdown_authorisation"
    # Finance special measures (issue 16 item 3)
    finance_review = "finance_review"


# domain.models names Kind members (a placement's basis) and the handlers below use its SYSTEM actor: each module
# imports the other once what the other needs of it is defined, so either can be imported first.
from domain.models import SYSTEM  # noqa: E402


# ---------------------------------------------------------------------------- deadlines and routine work
@dataclass(frozen=True)
class Statutory:
    """A deadline the seeds set (/work/shared/seeds): the section that sets it, e.g. "seed 000 §4a(iv)"."""

    section: str


@dataclass(frozen=True)
class ServiceDefault:
    """A deadline the seeds do not set: the service chooses it; `setting` names the constant that changes it."""

    setting: str


@dataclass(frozen=True)
class Deadline:
    """When a step of the kind falls due, in words, and where that rule comes from. The due dates themselves are
    computed where the step opens (domain.schedule, the handlers below, the workflows); this says which rule
    they apply, so people can tell a statutory clock from a service default (GET /step-kinds, the web pages)."""

    rule: str
    basis: Statutory | ServiceDefault


@dataclass(frozen=True)
class RoutineContext:
    """What a routine decision is made from: the simulated day, the step and its workflow's state as the API
    shows them, the scenario's settings (a partnership's `support_plan`, `quarterly_pence`, ...) and the user
    id that acts in a role."""

    today: date
    step: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    user: Callable[[str], str] = str


def _no_payload(ctx: RoutineContext) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class Routine:
    """What a diligent person does once a step of the kind falls due (a scenario's routine work, tools/simulate):
    `action` with the payload `payload(ctx)` builds; when that is None nothing can be done as routine, and
    `otherwise` (action, comment) is sent instead with no payload."""

    action: str
    payload: Callable[[RoutineContext], dict[str, Any] | None] = _no_payload
    otherwise: tuple[str, str] | None = None

    def decision(self, ctx: RoutineContext) -> tuple[str, dict[str, Any], str | None]:
        """(action, payload, comment or None) for the step in `ctx`."""
        payload = self.payload(ctx)
        if payload is None:
            assert self.otherwise is not None, f"routine {self.action} has no payload and no alternative"
            return self.otherwise[0], {}, self.otherwise[1]
        return self.action, payload, None


def dated(name: str, **more: Any) -> Callable[[RoutineContext], dict[str, Any]]:
    """A routine payload whose `name` field is the simulated day, followed by the fixed fields `more`."""
    return lambda ctx: {name: ctx.today.isoformat(), **more}


@dataclass(frozen=True)
class StepKind:
    title: str
    role: str
    group: str
    actions: dict[str, type[BaseModel]]
    # Actions that send work back or refuse: a reason is required.
    needs_reason: frozenset[str] = field(default_factory=frozenset)
    # The title in tables and on the timeline (None: `title`).
    short_title: str | None = None
    # A kind that recurs has one step a month or a quarter; the timeline gives it one row, its ids carry the period.
    recurs: Literal["monthly", "quarterly"] | None = None
    # The title carries the number of the step id ("reinspection-2": "CQC re-inspection 2"), as one of a series,
    # rather than "(2)" for a step opened again.
    numbered: bool = False
    deadline: Deadline | None = None
    routine: Routine | None = None
    # What follows each action (the `after` registrations below): action -> handler, "*" for any action.
    after: dict[str, Any] = field(default_factory=dict, compare=False)
    # Rules a decision on this kind must meet besides the common ones (the `check` registrations below).
    checks: list[Any] = field(default_factory=list, compare=False)

    @property
    def label(self) -> str:
        return self.short_title or self.title


# Steps that need at most this many days after they open when no statutory date applies.
REVIEW_DAYS = 7
SIGNOFF_DAYS = 14
DECISION_DAYS = 14
LETTER_DAYS = 14
AGREEMENT_DAYS = 28
QUALITY_SUMMIT_DAYS = 28
FACTUAL_ACCURACY_DAYS = 14
URGENT_LETTER_DAYS = 7
REVISED_PLAN_DAYS = 28
CAPABILITY_REVIEW_MONTHS = 3
# The plan as a programme (issue 15): service defaults where the seeds give no date.
ACTION_STEP_LEAD_DAYS = 14  # a plan action's step opens this many days before its target date
PROGRAMME_REVIEW_MONTHS = (7, 9)  # the delivery team's formal review: opens, and is due, this many months in
SELF_ASSESSMENT_MONTHS = ((4, 6), (8, 10))  # two self-assessments (seed 000 §4a(vii)): open, due (months after entry)
EVIDENCE_FILES_OPEN_MONTHS_BEFORE = 3  # the evidence files open this many months before the re-inspection is due
EVIDENCE_FILE_DAYS_BEFORE = 28  # each key question's file complete this many days before the re-inspection
EVIDENCE_CHECK_DAYS_BEFORE = 14  # and checked by the improvement director (and the buddy) by this many days before
FUNDING_MONTHS = ((0, 4), (0, 6))  # the financial review, then the funding agreement "in months 4-6": open, due
FUNDING_DECISION_DAYS = 14  # each party's agreement, each drawdown's approval and authorisation
FINANCE_REVIEW_MONTHS = (12, 6)  # the regulator's first finance exit review after entry, then after each "remain"

# The payloads of the routine plans a diligent trust submits (tools/simulate).
ROUTINE_PLAN = {"actions": [
    {"category": "must_do", "description": "Staff the emergency department to safe levels",
     "owner": "Chief Nurse", "metric": "registered nurse fill rate at least 95%"},
    {"category": "should_do", "description": "Audit sepsis screening monthly",
     "owner": "Medical Director", "metric": "screening within 1 hour at least 90%"}]}
ROUTINE_REVISED_PLAN = {"actions": [
    {"category": "must_do", "description": "Embed the new leadership team's governance",
     "owner": "Chief Executive", "metric": "board assurance framework reviewed monthly"}]}


PUBLISHED_AT = "https://trust.example.nhs.uk/special-measures/revised-action-plan"


def _routine_revision(ctx: RoutineContext) -> dict[str, Any]:
    """The routine revised plan after an extension: ROUTINE_REVISED_PLAN, published today; with a plan tracked as
    a programme, every outstanding action of the agreed plan is dropped, superseded by the revised plan (issue 15
    item 5: each is carried or dropped with a reason)."""
    plan = deepcopy(ROUTINE_REVISED_PLAN)
    actions = ((ctx.state.get("programme") or {}).get("actions") or {})
    dropped = [{"action_id": aid, "reason": "superseded by the revised plan"} for aid, a in actions.items()
               if a.get("status") != "done"]
    return plan | {"published_at": PUBLISHED_AT, "published_on": ctx.today.isoformat(), "dropped": dropped}


def _copy(payload: dict[str, Any]) -> Callable[[RoutineContext], dict[str, Any]]:
    return lambda ctx: deepcopy(payload)


def _appointment(ctx: RoutineContext) -> dict[str, Any]:
    return {"appointed_on": ctx.today.isoformat(), "improvement_director_user_id": ctx.user(Role.improvement_director)}


_E = EmptyPayload
_S, _D = Statutory, ServiceDefault
CATALOGUE: dict[str, StepKind] = {
    Kind.improvement_plan: StepKind(
        "Improvement plan submitted", Role.trust, "improvement_plan", {"submit": ImprovementPlanPayload},
        short_title="Improvement plan",
        deadline=Deadline("28 days after entry (14 days after it is returned, if later)",
                          _S("seed 000 §4a(iv)")),
        routine=Routine("submit", _copy(ROUTINE_PLAN))),
    Kind.plan_review: StepKind(
        "Improvement plan agreed by the improvement director", Role.improvement_director, "improvement_plan",
        {"agree": _E, "return": _E}, frozenset({"return"}),
        short_title="Plan agreed by the ID",
        deadline=Deadline("7 days after the plan is submitted, not before the plan's own due date",
                          _D("domain.steps.REVIEW_DAYS")),
        routine=Routine("agree")),
    Kind.plan_signoff_regulator: StepKind(
        "Improvement plan signed off by the regulator", Role.regulator, "improvement_plan",
        {"sign_off": _E, "return": _E}, frozenset({"return"}),
        short_title="Plan sign-off: regulator",
        deadline=Deadline("14 days after the improvement director agrees the plan", _D("domain.steps.SIGNOFF_DAYS")),
        routine=Routine("sign_off")),
    Kind.plan_signoff_commissioner: StepKind(
        "Improvement plan signed off by the commissioner", Role.commissioner, "improvement_plan",
        {"sign_off": _E, "return": _E}, frozenset({"return"}),
        short_title="Plan sign-off: commissioner",
        deadline=Deadline("14 days after the improvement director agrees the plan", _D("domain.steps.SIGNOFF_DAYS")),
        routine=Routine("sign_off")),
    Kind.appoint_improvement_director: StepKind(
        "Improvement director appointed", Role.regulator, "appointment", {"record": AppointmentPayload},
        short_title="Improvement director appointed",
        deadline=Deadline("3 months after entry (months 1-3)", _S("seed 000 §4c")),
        routine=Routine("record", _appointment)),
    Kind.board_to_board: StepKind(
        "Board-to-board meeting (within 3 months of entry)", Role.regulator, "board_to_board", {"record": MeetingPayload},
        short_title="Board-to-board (3 months)",
        deadline=Deadline("3 months after entry", _S("seed 000 §4b(i)")),
        routine=Routine("record", dated("meeting_date"))),
    Kind.board_to_board_pre_inspection: StepKind(
        "Board-to-board before the CQC re-inspection", Role.regulator, "board_to_board", {"record": MeetingPayload},
        short_title="Board-to-board before re-inspection",
        deadline=Deadline("the day before the announced re-inspection", _S("seed 000 §4b(i)")),
        routine=Routine("record", dated("meeting_date"))),
    Kind.board_to_board_post_exit: StepKind(
        "Board-to-board within 6 months of exit", Role.regulator, "board_to_board", {"record": MeetingPayload},
        short_title="Board-to-board after exit",
        deadline=Deadline("6 months after exit", _S("seed 000 §4d")),
        routine=Routine("record", dated("meeting_date"))),
    Kind.letter_to_chair: StepKind(
        "Follow-up letter to the chair", Role.regulator, "board_to_board", {"record": LetterPayload},
        short_title="Letter to the chair",
        deadline=Deadline("14 days after the board-to-board", _D("domain.steps.LETTER_DAYS")),
        routine=Routine("record", dated("sent_on"))),
    Kind.capability_review: StepKind(
        "Board capability review completed", Role.regulator, "capability_review", {"record": CompletionPayload},
        short_title="Board capability review",
        deadline=Deadline("3 months after it is commissioned", _D("domain.steps.CAPABILITY_REVIEW_MONTHS")),
        routine=Routine("record", dated("completed_on"))),
    Kind.monthly_return: StepKind(
        "Monthly progress return and public update (trust)", Role.trust, "monthly_return",
        {"submit": MonthlyReturnPayload},
        short_title="Monthly returns (trust)", recurs="monthly",
        deadline=Deadline("the 3rd Monday of every month; the first at least FIRST_RETURN_LEAD_DAYS (14) days after "
                          "entry or go-live", _S("seed 000 §4a(v)")),
        routine=Routine("submit", _copy({"summary": "progress against the improvement plan"}))),
    Kind.monthly_return_cosign: StepKind(
        "Monthly progress return co-signed (improvement director)", Role.improvement_director, "monthly_return",
        {"cosign": CosignPayload, "return": _E}, frozenset({"return"}),
        short_title="Monthly returns co-signed (ID)", recurs="monthly",
        deadline=Deadline("the return's 3rd Monday, at least 3 days after the trust submits it",
                          _S("seed 000 §4a(v)")),
        routine=Routine("cosign")),
    Kind.oversight_meeting: StepKind(
        "Oversight and Assurance Group held (monthly)", Role.regulator, "oversight", {"record": OversightMeetingPayload},
        short_title="Oversight and Assurance Group (monthly)", recurs="monthly",
        deadline=Deadline("the last day of every month (the seed says monthly; the day is the service's)",
                          _D("domain.schedule.monthly_steps")),
        routine=Routine("record", dated("meeting_date"))),
    Kind.delivery_meeting: StepKind(
        "Integrated Delivery Meeting held (monthly)", Role.regulator, "oversight", {"record": DeliveryMeetingPayload},
        short_title="Integrated Delivery Meeting (monthly)", recurs="monthly",
        deadline=Deadline("the last day of every month (the seed says monthly; the day is the service's)",
                          _D("domain.schedule.monthly_steps")),
        # With an agreed plan tracked as a programme, the meeting takes the plan's answer (issue 15 item 3).
        routine=Routine("record", lambda ctx: {"meeting_date": ctx.today.isoformat()} | (
            {} if (ctx.state.get("programme") or {}).get("versions") else {"on_trajectory": True}))),
    Kind.reinspection: StepKind(
        "CQC re-inspection published", Role.cqc, "reinspection", {},
        short_title="CQC re-inspection", numbered=True,
        deadline=Deadline("12 months after entry; then at the end of each extension (usually 6 months), and 6 months "
                          "after the letter to the Secretary of State", _S("seed 000 §1; seed 002"))),
    Kind.cqc_recommendation: StepKind(
        "CQC recommendation after re-inspection", Role.cqc, "exit_decision",
        {"recommend_exit": _E, "recommend_remain": _E}, frozenset({"recommend_remain"}),
        short_title="CQC recommendation",
        deadline=Deadline("14 days after the re-inspection report is published", _D("domain.steps.DECISION_DAYS"))),
    Kind.regulator_decision: StepKind(
        "Regulator's decision after re-inspection", Role.regulator, "exit_decision",
        {"exit": ExitDecisionPayload, "extend": ExtendPayload, "refer_to_secretary_of_state": _E},
        frozenset({"extend", "refer_to_secretary_of_state"}),
        short_title="Regulator's decision",
        deadline=Deadline("14 days after CQC's recommendation", _D("domain.steps.DECISION_DAYS"))),
    Kind.revised_action_plan: StepKind(
        "Revised action plan published (extension)", Role.trust, "improvement_plan", {"submit": ImprovementPlanPayload},
        short_title="Revised action plan",
        deadline=Deadline("28 days after the extension is decided", _D("domain.steps.REVISED_PLAN_DAYS")),
        routine=Routine("submit", _routine_revision)),
    Kind.secretary_of_state_letter: StepKind(
        "Chief Inspector's letter to the Secretary of State", Role.cqc, "secretary_of_state", {"send": LetterPayload},
        short_title="Letter to the Secretary of State",
        deadline=Deadline("14 days after the regulator refers the trust", _D("domain.steps.LETTER_DAYS"))),
    Kind.continued_support_item: StepKind(
        "Continued support after exit delivered", Role.regulator, "continued_support", {"record": CompletionPayload},
        short_title="Continued support after exit",
        deadline=Deadline("the date the regulator gives it at exit, on or before the post-exit board-to-board",
                          _S("seed 000 §4d"))),
    Kind.appoint_buddy: StepKind(
        "Buddy trust agreed (months 1-3)", Role.regulator, "appointment", {"no_buddy": _E}, frozenset({"no_buddy"}),
        short_title="Buddy trust agreed",
        deadline=Deadline("3 months after entry (months 1-3); done when the regulator adds a buddy partnership, or "
                          "decides with its reason that none is needed", _S("seed 000 §4c")),
        # A scenario that adds no partnership by then: the regulator says none is needed (a reason is required).
        routine=Routine("no_buddy", lambda ctx: None, otherwise=("no_buddy", "no buddy partnership in this scenario"))),
    Kind.quality_summit: StepKind(
        "Quality Summit held on CQC's report", Role.regulator, "quality_summit", {"record": QualitySummitPayload},
        short_title="Quality Summit",
        deadline=Deadline("28 days after CQC publishes its report (after entry: 28 days after entry)",
                          _D("domain.steps.QUALITY_SUMMIT_DAYS")),
        routine=Routine("record", lambda ctx: {"held_on": ctx.today.isoformat(), "attendees": [
            {"organisation": "the trust", "people": ["Chief Executive"]},
            {"organisation": "CQC", "people": ["Head of Hospital Inspection"]},
            {"organisation": "NHS TDA", "people": ["Delivery and Development director"]}]})),
    Kind.factual_accuracy: StepKind(
        "Factual accuracy comments on CQC's draft report", Role.trust, "quality_summit",
        {"send_comments": FactualAccuracyPayload, "no_comments": _E},
        short_title="Draft report: factual accuracy",
        deadline=Deadline("14 days after CQC sends the draft report (about 10 working days)",
                          _D("domain.steps.FACTUAL_ACCURACY_DAYS")),
        routine=Routine("no_comments")),
    # The letter recommending an extension and what follows it (seed 002, "Removing trusts"), for regimes whose
    # policy is secretary_of_state_letter = recommending_extension (domain/policy.py): the extension the regulator
    # decides takes effect once the Secretary of State agrees and CQC has written to the regulator.
    Kind.extension_letter: StepKind(
        "Chief Inspector's letter to the Secretary of State recommending the extension", Role.cqc,
        "secretary_of_state", {"send": LetterPayload},
        short_title="Letter recommending the extension",
        deadline=Deadline("14 days after the regulator decides the extension", _D("domain.steps.LETTER_DAYS"))),
    Kind.secretary_of_state_agreement: StepKind(
        "Secretary of State's answer on the extension", Role.cqc, "secretary_of_state",
        {"agree": AgreementPayload, "decline": AgreementPayload}, frozenset({"decline"}),
        short_title="Secretary of State agrees the extension",
        deadline=Deadline("28 days after the Chief Inspector's letter is sent", _D("domain.steps.AGREEMENT_DAYS"))),
    Kind.cqc_letter_to_regulator: StepKind(
        "CQC's letter to the regulator: urgent consideration of the action plans", Role.cqc, "secretary_of_state",
        {"send": LetterPayload},
        short_title="CQC's letter to the regulator",
        deadline=Deadline("7 days after the Secretary of State agrees", _D("domain.steps.URGENT_LETTER_DAYS"))),
    # The improvement plan as a programme (issue 15; seed 000 §4a).
    Kind.plan_action: StepKind(
        "Plan action done by its target date", Role.trust, "programme",
        {"done": ActionDonePayload},
        short_title="Plan actions", recurs=None,
        deadline=Deadline("the action's target date in the agreed plan; the step opens ACTION_STEP_LEAD_DAYS (14) "
                          "days before it and closes when the action is reported done", _S("seed 000 §4a(iv)")),
        routine=Routine("done", dated("completed_on"))),
    Kind.plan_change_review: StepKind(
        "Change to the improvement plan agreed by the improvement director", Role.improvement_director, "programme",
        {"agree": _E, "return": _E}, frozenset({"return"}),
        short_title="Plan change agreed by the ID",
        deadline=Deadline("7 days after the trust proposes the change", _D("domain.steps.REVIEW_DAYS")),
        routine=Routine("agree")),
    Kind.programme_review: StepKind(
        "Formal review of the improvement plan (delivery team)", Role.regulator, "programme",
        {"record": ProgrammeReviewPayload},
        short_title="Formal plan review",
        deadline=Deadline("in months 7-9: opens 7 months after entry, due 9 months after entry",
                          _D("domain.steps.PROGRAMME_REVIEW_MONTHS")),
        routine=Routine("record", dated("reviewed_on", assessment="on_track",
                                        conclusion="the plan is delivering; no change"))),
    Kind.self_assessment: StepKind(
        "Self-assessment or mini-inspection against CQC's key lines of enquiry", Role.trust, "readiness",
        {"record": SelfAssessmentPayload},
        short_title="Self-assessment", numbered=True,
        deadline=Deadline("two before the re-inspection (seed 000 §4a(vii): two within the 12 months): the first "
                          "due 6 months after entry, the second 10 months after",
                          _D("domain.steps.SELF_ASSESSMENT_MONTHS")),
        routine=Routine("record", lambda ctx: {"held_on": ctx.today.isoformat(), "form": "self_assessment",
                                               "findings": {q: {"rating": "requires_improvement",
                                                                "summary": "evidence reviewed"}
                                                            for q in ("safe", "well_led")}})),
    Kind.evidence_file: StepKind(
        "Evidence file for the re-inspection complete (key question)", Role.trust, "readiness",
        {"complete": EvidenceFilePayload},
        short_title="Evidence files",
        deadline=Deadline("28 days before the re-inspection is due; the files open 3 months before it",
                          _D("domain.steps.EVIDENCE_FILE_DAYS_BEFORE")),
        routine=Routine("complete", _copy({"summary": "evidence file complete"}))),
    Kind.evidence_file_check: StepKind(
        "Evidence file checked by the improvement director", Role.improvement_director, "readiness",
        {"checked": _E, "return": _E}, frozenset({"return"}),
        short_title="Evidence files checked (ID)",
        deadline=Deadline("14 days before the re-inspection is due, and at least 7 days after the file is complete",
                          _D("domain.steps.EVIDENCE_CHECK_DAYS_BEFORE")),
        routine=Routine("checked")),
    Kind.evidence_file_buddy_review: StepKind(
        "Evidence file quality-checked by the buddy trust", Role.buddy, "readiness",
        {"reviewed": _E, "return": _E}, frozenset({"return"}),
        short_title="Evidence files checked (buddy)",
        deadline=Deadline("with the improvement director's check (seed 000 §4a(vii): the buddy trust's risk team "
                          "can quality-check the evidence)", _D("domain.steps.EVIDENCE_CHECK_DAYS_BEFORE")),
        routine=Routine("reviewed")),
    # Direct support and central funding (issue 16 item 1; seed 004, seed 000 §4a(iv)).
    Kind.financial_review: StepKind(
        "Financial review of the improvement plan", Role.regulator, "funding", {"record": FinancialReviewPayload},
        short_title="Financial review of the plan",
        deadline=Deadline("4 months after entry, before the funding agreement",
                          _D("domain.steps.FUNDING_MONTHS")),
        routine=Routine("record", dated("reviewed_on", achievable=True, summary="the plan is affordable"))),
    Kind.funding_agreement: StepKind(
        "Funding agreement recorded (areas of direct support, ceiling)", Role.regulator, "funding",
        {"record": FundingAgreementPayload},
        short_title="Funding agreement",
        deadline=Deadline("finalised in months 4-6: due 6 months after entry",
                          _D("domain.steps.FUNDING_MONTHS")),
        routine=Routine("record", _copy({"ceiling_pence": 25_000_000, "areas": ["clinical governance"]}))),
    Kind.funding_agreement_trust: StepKind(
        "Funding agreement agreed by the trust", Role.trust, "funding", {"agree": _E, "return": _E},
        frozenset({"return"}), short_title="Funding agreement: trust",
        deadline=Deadline("14 days after the regulator records it", _D("domain.steps.FUNDING_DECISION_DAYS")),
        routine=Routine("agree")),
    Kind.funding_agreement_director: StepKind(
        "Funding agreement agreed by the improvement director", Role.improvement_director, "funding",
        {"agree": _E, "return": _E}, frozenset({"return"}), short_title="Funding agreement: ID",
        deadline=Deadline("14 days after the regulator records it", _D("domain.steps.FUNDING_DECISION_DAYS")),
        routine=Routine("agree")),
    Kind.drawdown_approval: StepKind(
        "Drawdown approved by the improvement director", Role.improvement_director, "funding",
        {"approve": _E, "refuse": _E}, frozenset({"refuse"}), short_title="Drawdowns approved (ID)",
        deadline=Deadline("14 days after the trust requests it", _D("domain.steps.FUNDING_DECISION_DAYS")),
        routine=Routine("approve")),
    Kind.drawdown_authorisation: StepKind(
        "Drawdown authorised by the regulator", Role.regulator, "funding",
        {"authorise": _E, "refuse": _E}, frozenset({"refuse"}), short_title="Drawdowns authorised (regulator)",
        deadline=Deadline("14 days after the improvement director approves it",
                          _D("domain.steps.FUNDING_DECISION_DAYS")),
        routine=Routine("authorise")),
    Kind.finance_review: StepKind(
        "Finance special measures reviewed: exit or remain (regulator)", Role.regulator, "exit_decision",
        {"exit": FinanceReviewPayload, "remain": FinanceReviewPayload}, frozenset({"remain"}),
        short_title="Finance exit review",
        deadline=Deadline("12 months after entry, then 6 months after each decision to remain (the regulator decides "
                          "the exit from finance special measures, seed 002; the months are the service's)",
                          _D("domain.steps.FINANCE_REVIEW_MONTHS")),
        routine=Routine("exit", dated("reviewed_on", summary="the financial recovery plan is delivered"))),
}


# ---------------------------------------------------------------------------- what each action leads to
# A step kind's consequences are registered here, beside its definition: `@after(kind)` for every action of
# the kind, `@after(kind, action)` for one. The regime workflow (workflows/regime.py) calls the handler
# once the step is closed, with the decision and its payload validated by the action's model. Handlers run
# inside the workflow: deterministic code only, every effect through the runtime `rt` they are given
# (RegimeWorkflow: open_step, close_step, audit, emit, task, today, and its state `rt.s`).
Handler = Any  # Callable[[RegimeWorkflow, Step, Decision, BaseModel], None]


def after_in(catalogue: dict[str, StepKind], kind: str, *actions: str):
    """Register what follows a decision on `kind` (all its actions, or only `actions`)."""
    spec = catalogue[kind]

    def register(fn: Handler) -> Handler:
        for a in actions or ("*",):
            assert a == "*" or a in spec.actions, f"{kind} has no action {a}"
            assert a not in spec.after, f"{kind}.{a} has a handler already"
            spec.after[a] = fn
        return fn
    return register


def handler_for(spec: StepKind, action: str) -> Handler | None:
    return spec.after.get(action) or spec.after.get("*")


after = partial(after_in, CATALOGUE)


@after(Kind.improvement_plan)
@after(Kind.revised_action_plan)
def _plan_submitted(rt, st, d, payload) -> None:
    rt.open_step(Kind.plan_review, max(rt.today() + timedelta(days=REVIEW_DAYS), st.due),
                 subject={"plan_step": st.id})


@after(Kind.plan_review, "return")
def _plan_returned_by_director(rt, st, d, payload) -> None:
    plan = rt.s.steps[st.subject["plan_step"]]
    again = rt.open_step(plan.kind, max(plan.due, rt.today() + timedelta(days=14)), subject={"returned": st.id})
    again.data["returned_reason"] = d.comment


@after(Kind.plan_review, "agree")
def _plan_agreed(rt, st, d, payload) -> None:
    plan = rt.s.steps[st.subject["plan_step"]]
    for kind in (Kind.plan_signoff_regulator, Kind.plan_signoff_commissioner):
        rt.open_step(kind, rt.today() + timedelta(days=SIGNOFF_DAYS), subject={"plan_step": plan.id})
    # A plan submitted since issue 15 carries its summary: the agreed version is the programme's baseline.
    index, document = plan.data.get("plan"), plan.data.get("document")
    if index is not None and document is not None:
        rt.adopt_plan(index, document["sha256"], "revision" if plan.kind == Kind.revised_action_plan else "plan",
                      d.actor, plan.id)


@after(Kind.plan_change_review, "agree")
def _plan_change_agreed(rt, st, d, payload) -> None:
    proposed = rt.s.programme.proposed if rt.s.programme else None
    if proposed is not None and proposed.step_id == st.id:
        rt.s.programme.proposed = None
        rt.adopt_plan(proposed.index.model_dump(mode="json"), proposed.sha256, "change", d.actor, st.id)


@after(Kind.plan_change_review, "return")
def _plan_change_returned(rt, st, d, payload) -> None:
    if rt.s.programme is not None and rt.s.programme.proposed is not None \
            and rt.s.programme.proposed.step_id == st.id:
        rt.s.programme.proposed = None


@after(Kind.plan_action)
def _plan_action_done(rt, st, d, payload) -> None:
    rt.action_done(st.subject.get("action"))


@after(Kind.evidence_file, "complete")
def _evidence_file_complete(rt, st, d, payload) -> None:
    rt.evidence_file_completed(st)


@after(Kind.evidence_file_check, "return")
@after(Kind.evidence_file_buddy_review, "return")
def _evidence_file_returned(rt, st, d, payload) -> None:
    for o in rt.s.steps.values():  # the other check on the same file starts again with the file
        if o.status == "open" and o.kind in (Kind.evidence_file_check, Kind.evidence_file_buddy_review) \
                and o.subject.get("file_step") == st.subject.get("file_step"):
            rt.close_step(o, "cancelled", SYSTEM, "evidence file returned")
    subject = {k: v for k, v in st.subject.items() if k not in ("file_step", "buddy_ods")} | {"returned": st.id}
    again = rt.open_step(Kind.evidence_file, max(st.due, rt.today() + timedelta(days=14)),
                         step_id=f"{Kind.evidence_file}-{st.subject.get('key_question')}", subject=subject)
    again.data["returned_reason"] = d.comment


@after(Kind.delivery_meeting)
def _delivery_meeting_held(rt, st, d, payload: DeliveryMeetingPayload) -> None:
    if rt.s.programme is None or not rt.s.programme.versions:
        return
    plan_says, why = rt.s.programme.on_trajectory(rt.today())
    st.data.update(plan_on_trajectory=plan_says, plan_reason=why,
                   on_trajectory=plan_says if payload.on_trajectory is None else payload.on_trajectory)


@after(Kind.plan_signoff_regulator, "return")
@after(Kind.plan_signoff_commissioner, "return")
def _plan_returned_at_signoff(rt, st, d, payload) -> None:
    plan = rt.s.steps[st.subject["plan_step"]]
    for o in rt.s.steps.values():
        if o.status == "open" and o.kind.startswith("plan_signoff"):
            rt.close_step(o, "cancelled", SYSTEM, "plan returned")
    rt.open_step(plan.kind, rt.today() + timedelta(days=14), subject={"returned": st.id})


@after(Kind.plan_signoff_regulator, "sign_off")
@after(Kind.plan_signoff_commissioner, "sign_off")
def _plan_signed(rt, st, d, payload) -> None:
    plan = rt.s.steps[st.subject["plan_step"]]
    if all(o.status == "done" and o.outcome == "sign_off" for o in rt.s.steps.values()
           if o.kind.startswith("plan_signoff") and o.subject.get("plan_step") == plan.id):
        plan.data["signed_off_on"] = rt.today().isoformat()
        rt.audit(kind_event(Kind.improvement_plan, "signed_off"), SYSTEM, step=plan,
                 reason="agreed by the improvement director; signed off by regulator and commissioner")


@after(Kind.appoint_improvement_director)
def _director_appointed(rt, st, d, payload: AppointmentPayload) -> None:
    rt.s.assignees[Role.improvement_director] = payload.improvement_director_user_id
    for o in rt.s.steps.values():
        if o.status == "open" and o.role == Role.improvement_director:
            rt.show_task(o)


@after(Kind.board_to_board)
@after(Kind.board_to_board_pre_inspection)
def _boards_met(rt, st, d, payload: MeetingPayload) -> None:
    held = rt.followups_from(payload.meeting_date)
    rt.open_step(Kind.letter_to_chair, held + timedelta(days=LETTER_DAYS), subject={"meeting_step": st.id})
    if payload.commission_capability_review:
        rt.open_step(Kind.capability_review, add_months(held, CAPABILITY_REVIEW_MONTHS))


@after(Kind.letter_to_chair)
def _letter_sent(rt, st, d, payload: LetterPayload) -> None:
    if payload.commission_capability_review:
        rt.open_step(Kind.capability_review, add_months(rt.today(), CAPABILITY_REVIEW_MONTHS))


@after(Kind.board_to_board_post_exit)
def _post_exit_boards_met(rt, st, d, payload) -> None:
    if rt.s.phase == Phase.in_finance_special_measures:
        return  # after the quality exit of a combined regime: the regime goes on in finance special measures
    rt.finish(Phase.exited, "post-exit board-to-board held")


def _quality_exit_still_in_finance(rt, d) -> None:
    """A combined regime's quality exit while the trust is still in finance special measures (seed 002: it stays in
    segment 4): the quality steps end, the joined-up programme and the finance review go on."""
    today = rt.decision_recorded(d)  # (the decision's record keeps the day; exit_date is the end of both)
    rt.set_phase(Phase.in_finance_special_measures, d.actor, "exit from quality special measures on CQC's "
                 "recommendation; still in finance special measures, so in segment 4")
    rt.open_step(Kind.board_to_board_post_exit, add_months(today, 6))


@after(Kind.finance_review, "remain")
def _finance_remains(rt, st, d, payload) -> None:
    rt.open_step(Kind.finance_review, add_months(rt.today(), FINANCE_REVIEW_MONTHS[1]))


@after(Kind.finance_review, "exit")
def _finance_exit(rt, st, d, payload) -> None:
    """The regulator takes the trust out of finance special measures. Only when it is in neither quality nor finance
    special measures does it move to segment 3 (seed 002)."""
    today = rt.today()
    rt.s.finance_exited_on = today
    still_quality = rt.s.placement.measures == "combined" and rt.s.phase != Phase.in_finance_special_measures
    if still_quality:
        rt.audit(kind_event(Kind.finance_review, "finance_exited"), d.actor, step=st,
                 reason="out of finance special measures; still in quality special measures, so in segment 4")
        return
    rt.decision_recorded(d)
    rt.s.exit_date = today
    rt.s.segment = SEGMENT_AFTER_QUALITY_EXIT
    rt.cancel_open("the trust exited special measures", keep=(Kind.quality_summit, Kind.factual_accuracy,
                                                             Kind.board_to_board_post_exit))
    rt.s.next_monthly = None
    rt.set_phase(Phase.exited, d.actor, "exit from finance special measures decided by the regulator" +
                 ("; out of quality special measures already" if rt.s.placement.measures == "combined" else ""))
    if not any(s.kind == Kind.board_to_board_post_exit and s.status == "open" for s in rt.s.steps.values()):
        rt.open_step(Kind.board_to_board_post_exit, add_months(today, 6))
    rt.end_buddies("the trust exited special measures")


@after(Kind.monthly_return)
def _return_submitted(rt, st, d, payload) -> None:
    rt.open_step(Kind.monthly_return_cosign, max(st.due, rt.today() + timedelta(days=3)),
                 step_id=st.id.replace(Kind.monthly_return, Kind.monthly_return_cosign), subject=st.subject)
    progress, document = st.data.get("progress"), st.data.get("document")
    if progress is not None and document is not None:
        rt.take_progress(st.subject.get("month") or st.id, document["sha256"], progress["statuses"], d.actor)


@after(Kind.monthly_return_cosign, "cosign")
def _return_cosigned(rt, st, d, payload) -> None:
    if rt.s.programme is None or not isinstance(payload, CosignPayload):
        return
    for c in payload.challenges:
        a = rt.s.programme.actions.get(c.action_id)
        if a is not None:
            a.challenged = True


@after(Kind.monthly_return_cosign, "return")
def _return_sent_back(rt, st, d, payload) -> None:
    rt.open_step(Kind.monthly_return, max(st.due, rt.today() + timedelta(days=7)), subject=st.subject)


@after(Kind.oversight_meeting)
def _oversight_held(rt, st, d, payload: OversightMeetingPayload) -> None:
    if not payload.held_with_idm:
        return
    idm = rt.s.steps.get(st.id.replace(Kind.oversight_meeting, Kind.delivery_meeting))
    if idm is not None and idm.status == "open":
        why = "held together with the Oversight and Assurance Group"
        idm.data.update({"meeting_date": d.payload["meeting_date"], "held_with": st.id})
        rt.audit(decision_event(Kind.delivery_meeting, "record"), d.actor, step=idm, reason=why)
        rt.close_step(idm, "record", d.actor, why)


@after(Kind.cqc_recommendation)
def _cqc_recommended(rt, st, d, payload) -> None:
    rt.open_step(Kind.regulator_decision, rt.today() + timedelta(days=DECISION_DAYS), subject=st.subject)


@after(Kind.regulator_decision, "exit")
def _exit_decided(rt, st, d, payload: ExitDecisionPayload) -> None:
    if rt.s.placement.measures == "combined" and rt.s.finance_exited_on is None:
        _quality_exit_still_in_finance(rt, d)
        return
    today = rt.decision_recorded(d)
    rt.s.continued_support = list(payload.continued_support) + [
        f"{i.description} ({i.owner}, by {i.due.isoformat()})" for i in payload.support_items]
    rt.s.exit_date = today
    rt.s.segment = SEGMENT_AFTER_QUALITY_EXIT
    # A Quality Summit on the report and the trust's comments on a draft stay open: CQC's process after an
    # inspection is the same whatever it led to (seed 000 §4a). Before issue 14 item 15 there were none.
    rt.cancel_open("regime exited special measures", keep=(Kind.quality_summit, Kind.factual_accuracy))
    rt.s.next_monthly = None
    support = rt.s.continued_support
    rt.set_phase(Phase.exited, d.actor, "exit on CQC's recommendation" +
                 (f"; continued support: {', '.join(support)}" if support else ""))
    rt.open_step(Kind.board_to_board_post_exit, add_months(today, 6))
    for item in payload.support_items:
        rt.open_step(Kind.continued_support_item, item.due, step_id=Kind.continued_support_item.value,
                     subject={"description": item.description, "owner": item.owner})
    running = {pid for pid, b in rt.s.buddies.items() if not b.ended}
    keep = {partnership_named(rt.s.placement.regime_id, running, key): run_on
            for key, run_on in payload.partnerships.items()}
    rt.end_buddies("the trust exited special measures", keep=keep)


@after(Kind.regulator_decision, "extend")
def _extension_decided(rt, st, d, payload: ExtendPayload) -> None:
    today = rt.decision_recorded(d)
    months = payload.months
    end = add_months(today, months)
    record = {"number": len(rt.s.extensions) + 1, "decided_on": today.isoformat(),
              "months": months, "ends": end.isoformat(), "reason": d.comment}
    if months > EXTENSION_GUIDANCE_MONTHS and payload.beyond_guidance_reason:
        # Only decisions taken since the rule carry the reason, so a recorded history (no such field) records
        # the same extension on replay as it did; the regime page marks any extension above 6 months.
        record.update(beyond_guidance=True, beyond_guidance_reason=payload.beyond_guidance_reason)
    if rt.s.placement.policy.secretary_of_state_letter == "recommending_extension":
        # Seed 002: the Chief Inspector writes to the Secretary of State setting out the reasons for recommending
        # the extension; it takes effect on the Secretary of State's agreement and CQC's letter to the regulator.
        # Regimes recorded before this policy could be chosen all run end_of_extension: they never come here.
        rt.s.pending_extension = record
        rt.open_step(Kind.extension_letter, today + timedelta(days=LETTER_DAYS), subject={"extension": record["number"]})
        return
    _extension_takes_effect(rt, record, d.actor, today, f"extended by {months} months to {end.isoformat()}")


def _extension_takes_effect(rt, record: dict[str, Any], actor: Any, today: date, why: str) -> None:
    rt.s.extensions.append(record)
    if rt.s.phase != Phase.long_term_solution:
        rt.set_phase(Phase.extended, actor, why)
    rt.open_step(Kind.revised_action_plan, today + timedelta(days=REVISED_PLAN_DAYS))
    rt.open_step(Kind.reinspection, date.fromisoformat(record["ends"]),
                 step_id=f"reinspection-{rt.n_reinspections() + 1}")
    if rt.s.placement.programme:  # readiness again for the next re-inspection (issue 15)
        rt.schedule_evidence_files(date.fromisoformat(record["ends"]))


@after(Kind.extension_letter)
def _extension_letter_sent(rt, st, d, payload: LetterPayload) -> None:
    pending = rt.s.pending_extension or {}
    pending["letter_sent_on"] = payload.sent_on.isoformat()
    rt.open_step(Kind.secretary_of_state_agreement, max(payload.sent_on, rt.today()) + timedelta(days=AGREEMENT_DAYS),
                 subject=st.subject)


@after(Kind.secretary_of_state_agreement, "agree")
def _secretary_of_state_agreed(rt, st, d, payload: AgreementPayload) -> None:
    pending = rt.s.pending_extension or {}
    pending["secretary_of_state_agreed_on"] = payload.answered_on.isoformat()
    rt.open_step(Kind.cqc_letter_to_regulator, rt.today() + timedelta(days=URGENT_LETTER_DAYS), subject=st.subject)


@after(Kind.secretary_of_state_agreement, "decline")
def _secretary_of_state_declined(rt, st, d, payload: AgreementPayload) -> None:
    # The extension does not take effect: the regulator decides again on the same re-inspection.
    rt.s.pending_extension = None
    rt.open_step(Kind.regulator_decision, rt.today() + timedelta(days=DECISION_DAYS),
                 subject={"secretary_of_state_declined": payload.answered_on.isoformat(), "reason": d.comment})


@after(Kind.cqc_letter_to_regulator)
def _urgent_consideration_triggered(rt, st, d, payload: LetterPayload) -> None:
    record = rt.s.pending_extension
    rt.s.pending_extension = None
    if record is None:
        return
    record["cqc_letter_on"] = payload.sent_on.isoformat()
    why = (f"extended by {record['months']} months to {record['ends']}, the Secretary of State having agreed on "
           f"{record.get('secretary_of_state_agreed_on')}")
    _extension_takes_effect(rt, record, d.actor, rt.today(), why)


def may_refer(rt) -> bool:
    """The regulator refers a trust to the Secretary of State at the end of an extension (seed 000 §1), once for
    each extension: a long regime, extended again after the letter, can be referred again at that one's end."""
    ext = rt.s.extensions
    return bool(ext) and not ext[-1].get("referred_on") and rt.s.pending_extension is None


@after(Kind.regulator_decision, "refer_to_secretary_of_state")
def _referral_decided(rt, st, d, payload) -> None:
    today = rt.decision_recorded(d)
    number = int((rt.s.sos_letter or {}).get("number", 1 if rt.s.sos_letter else 0)) + 1
    if rt.s.extensions:
        rt.s.extensions[-1]["referred_on"] = today.isoformat()
    rt.s.sos_letter = rt.draft_letter(d.comment or "") | {"number": number}
    rt.open_step(Kind.secretary_of_state_letter, today + timedelta(days=LETTER_DAYS))


@after(Kind.secretary_of_state_letter)
def _letter_to_secretary_of_state_sent(rt, st, d, payload) -> None:
    rt.s.sos_letter = {**(rt.s.sos_letter or {}), "sent_on": d.payload.get("sent_on"), "sent_by": d.actor.user_id}
    if rt.s.phase != Phase.long_term_solution:
        rt.set_phase(Phase.long_term_solution, d.actor, "Chief Inspector wrote to the Secretary of State")
    rt.open_step(Kind.reinspection, add_months(rt.today(), 6), step_id=f"reinspection-{rt.n_reinspections() + 1}")


# ---------------------------------------------------------------------------- rules a decision must meet
# Beyond role, action, reason and payload (checked for every kind by the workflow's validator), a kind may
# register its own rule: `@check(kind)` raises `Refused` (with a rejection kind) to refuse a decision.
class Refused(Exception):  # noqa: N818 - a refusal, not an error of the service
    """A rule refuses the decision; the workflow turns it into its rejection of that kind."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def check_in(catalogue: dict[str, StepKind], *kinds: str):
    """Register a rule a decision on `kinds` must meet: `rule(rt, step, decision, payload)`, the payload typed
    by the action's model; it raises `Refused` (or a subclass) to refuse the decision."""
    def register(fn: Handler) -> Handler:
        for kind in kinds:
            catalogue[kind].checks.append(fn)
        return fn
    return register


check = partial(check_in, CATALOGUE)


@check(Kind.regulator_decision)
def _decision_follows_the_recommendation(rt, st, d, payload) -> None:
    if d.action == "exit" and rt.latest_recommendation() != "recommend_exit":
        raise Refused(RejectionKind.rule_broken, "the regulator takes a trust out of special measures only on CQC's "
                                    "recommendation to exit")
    if d.action == "refer_to_secretary_of_state" and not may_refer(rt):
        # A history recorded before a letter could follow each extension (phase `extended` was the rule) replays
        # as it was accepted; the handler, which is replayed, accepts what either rule accepts.
        if where_a_decision_arrives() or rt.s.phase != Phase.extended:
            raise Refused(RejectionKind.rule_broken, "the Chief Inspector writes to the Secretary of State at the end "
                                                     "of an extension, once for each extension")


def where_a_decision_arrives() -> bool:
    """True where a rule added while regimes run may refuse a decision: an update's validator (read-only, never
    replayed) and code outside a workflow (unit tests). False in the update handler, which runs the checks
    again and IS replayed: there a decision a recorded history accepted before the rule must be accepted
    again, so a new rule asks this first (docs/versioning.md, "Changes made without a patch")."""
    return not workflow.in_workflow() or workflow.unsafe.is_read_only()


@check(Kind.regulator_decision)
def _extension_beyond_guidance_says_why(rt, st, d, payload) -> None:
    if d.action != "extend" or not isinstance(payload, ExtendPayload) or not where_a_decision_arrives():
        return
    if payload.months > EXTENSION_GUIDANCE_MONTHS and not (payload.beyond_guidance_reason or "").strip():
        raise Refused(RejectionKind.reason_required,
                      f"an extension of {payload.months} months is longer than the {EXTENSION_GUIDANCE_MONTHS} the "
                      "guidance gives (up to a further 6 months, seed 000; usually 6 months, seed 002): say why in "
                      "beyond_guidance_reason")
    if payload.months <= EXTENSION_GUIDANCE_MONTHS and payload.beyond_guidance_reason is not None:
        raise Refused(RejectionKind.invalid_payload,
                      f"beyond_guidance_reason is for an extension longer than {EXTENSION_GUIDANCE_MONTHS} months; "
                      f"this one is {payload.months}")


@check(Kind.regulator_decision)
def _continued_support_is_the_regimes_and_after_exit(rt, st, d, payload) -> None:
    if d.action != "exit" or not isinstance(payload, ExitDecisionPayload) or not where_a_decision_arrives():
        return
    today = rt.today()
    running = {pid for pid, b in rt.s.buddies.items() if not b.ended}
    for key, run_on in payload.partnerships.items():
        pid = partnership_named(rt.s.placement.regime_id, running, key)
        if pid is None:
            raise Refused(RejectionKind.invalid_payload, f"partnerships: {key} is not a running partnership of this "
                                                         f"regime (running: {', '.join(sorted(running)) or 'none'})")
        if not today < run_on.continue_until <= add_months(today, CONTINUE_AFTER_EXIT_MONTHS):
            raise Refused(RejectionKind.invalid_payload,
                          f"partnerships: {pid} may run on to a date after today and within "
                          f"{CONTINUE_AFTER_EXIT_MONTHS} months of the exit, not {run_on.continue_until.isoformat()}")
    board = add_months(today, 6)
    for n, item in enumerate(payload.support_items):
        if not today < item.due <= board:
            raise Refused(RejectionKind.invalid_payload,
                          f"support_items[{n}]: due after today and on or before the post-exit board-to-board "
                          f"({board.isoformat()}), not {item.due.isoformat()}")


@check(Kind.quality_summit)
def _summit_held_already(rt, st, d, payload) -> None:
    if isinstance(payload, QualitySummitPayload) and payload.held_on > rt.today():
        raise Refused(RejectionKind.rule_broken, "a Quality Summit is recorded once it has been held, not in advance")


@check(Kind.factual_accuracy)
def _comments_sent_already(rt, st, d, payload) -> None:
    if isinstance(payload, FactualAccuracyPayload) and payload.sent_on > rt.today():
        raise Refused(RejectionKind.rule_broken, "the comments are recorded once they are sent, not in advance")


@check(Kind.oversight_meeting, Kind.delivery_meeting)
def _meeting_held_this_month(rt, st, d, payload) -> None:
    held = date.fromisoformat(str(d.payload["meeting_date"]))
    month = date.fromisoformat(st.subject["month"] + "-01")
    if held > rt.today():
        raise Refused(RejectionKind.rule_broken, "a meeting is recorded once it has been held, not in advance")
    if held < month:
        raise Refused(RejectionKind.rule_broken, f"a meeting held on {held.isoformat()} is not this month's "
                                    f"({st.subject['month']})")


@check(Kind.cqc_recommendation)
def _exit_against_the_rule_needs_a_reason(rt, st, d, payload) -> None:
    if d.action == "recommend_exit":
        verdict = st.data.get("verdict") or {}
        if verdict.get("met") is False and not (d.comment and d.comment.strip()):
            raise Refused(RejectionKind.reason_required, "the exit rule is not met on this outcome; recommending exit "
                                            "anyway needs CQC's reason")


# ---------------------------------------------------------------------------- the plan as a programme (issue 15)
def _programme(rt):
    return getattr(rt.s, "programme", None)


def _unknown_actions(rt, ids) -> list[str]:
    prog = _programme(rt)
    known = prog.actions if prog is not None else {}
    return [i for i in ids if i not in known]


@check(Kind.monthly_return)
def _progress_is_on_the_agreed_plan(rt, st, d, payload) -> None:
    progress = getattr(payload, "progress", None)
    if progress is None or not where_a_decision_arrives():
        return
    prog = _programme(rt)
    if prog is None or not prog.versions:
        raise Refused(RejectionKind.rule_broken, "there is no agreed plan yet to report progress on per action; "
                                                 "send a summary")
    unknown = _unknown_actions(rt, progress.statuses)
    if unknown:
        raise Refused(RejectionKind.invalid_payload, f"actions: {', '.join(unknown[:10])} not in the agreed plan "
                                                     f"(version {prog.versions[-1].n})")
    undone = [a for a, s in progress.statuses.items() if s != "done" and prog.actions[a].status == "done"]
    if undone:
        raise Refused(RejectionKind.rule_broken, f"actions: {', '.join(undone[:10])} are done; report them done, or "
                                                 "propose a change to the plan that reopens them")


@check(Kind.monthly_return_cosign)
def _challenges_name_reported_actions(rt, st, d, payload) -> None:
    if isinstance(payload, CosignPayload) and payload.challenges:
        unknown = _unknown_actions(rt, [c.action_id for c in payload.challenges])
        if unknown:
            raise Refused(RejectionKind.invalid_payload, f"challenges: {', '.join(unknown[:10])} not in the "
                                                         "agreed plan")


@check(Kind.plan_change_review)
def _change_agreed_by_another_person(rt, st, d, payload) -> None:
    by, person = st.subject.get("proposed_by"), st.subject.get("person")
    if d.actor.user_id == by or (person is not None and person == d.actor.person_id):
        raise Refused(RejectionKind.separation_of_duties, f"{d.actor.user_id} proposed this change for the trust "
                                                          "and cannot also agree it as improvement director")


@check(Kind.programme_review)
def _review_names_plan_actions(rt, st, d, payload) -> None:
    if not isinstance(payload, ProgrammeReviewPayload):
        return
    if payload.reviewed_on > rt.today():
        raise Refused(RejectionKind.rule_broken, "a review is recorded once it has taken place, not in advance")
    unknown = _unknown_actions(rt, [c.action_id for c in payload.changes])
    if unknown:
        raise Refused(RejectionKind.invalid_payload, f"changes: {', '.join(unknown[:10])} not in the agreed plan")


@check(Kind.plan_action)
def _action_done_already(rt, st, d, payload) -> None:
    if isinstance(payload, ActionDonePayload) and payload.completed_on > rt.today():
        raise Refused(RejectionKind.rule_broken, "an action is marked done once it is done, not in advance")


@check(Kind.self_assessment)
def _assessment_held_already(rt, st, d, payload) -> None:
    if isinstance(payload, SelfAssessmentPayload) and payload.held_on > rt.today():
        raise Refused(RejectionKind.rule_broken, "a self-assessment is recorded once it has been held")


@check(Kind.delivery_meeting)
def _trajectory_from_the_plan(rt, st, d, payload) -> None:
    if not isinstance(payload, DeliveryMeetingPayload):
        return
    prog = _programme(rt)
    if prog is None or not prog.versions:
        if payload.on_trajectory is None and where_a_decision_arrives():
            raise Refused(RejectionKind.invalid_payload, "on_trajectory: required (there is no agreed plan tracked "
                                                         "as a programme to take it from)")
        return
    plan_says, why = prog.on_trajectory(rt.today())
    if payload.on_trajectory is not None and payload.on_trajectory != plan_says and not payload.override_reason:
        raise Refused(RejectionKind.reason_required,
                      f"the plan's state says {'on' if plan_says else 'off'} trajectory ({why}); the meeting may "
                      "say otherwise with its override_reason")


@check(Kind.revised_action_plan)
def _revision_starts_from_the_outstanding_actions(rt, st, d, payload) -> None:
    index = getattr(payload, "plan", None)
    prog = _programme(rt)
    if index is None or prog is None or not prog.versions or not where_a_decision_arrives():
        return
    carried = {a.id for a in index.actions} | set(index.dropped)
    missing = [aid for aid, a in prog.actions.items() if a.status != "done" and aid not in carried]
    if missing:
        raise Refused(RejectionKind.rule_broken,
                      f"the revised plan starts from the outstanding actions: {', '.join(missing[:10])}"
                      f"{' ...' if len(missing) > 10 else ''} are neither in it nor dropped with a reason "
                      "(GET /regimes/{id}/plan/revision-draft gives the draft)")
    if not index.published:
        raise Refused(RejectionKind.invalid_payload, "a revised action plan is published: give published_at and "
                                                     "published_on")


# ---------------------------------------------------------------------------- central funding (issue 16 item 1)
@check(Kind.funding_agreement)
def _agreement_after_review_within_the_usual_ceiling(rt, st, d, payload) -> None:
    if not isinstance(payload, FundingAgreementPayload) or not where_a_decision_arrives():
        return
    reviews = [s for s in rt.s.steps.values() if s.kind == Kind.financial_review]
    # (A regime the service took on after the review's date has none: its agreement is not held up by it.)
    if reviews and not any(s.status == "done" for s in reviews):
        raise Refused(RejectionKind.rule_broken, "the plan's financial review comes first (seed 000 §4a(iv): it "
                                                 "gives assurance the plan is achievable)")
    usual = rt.funding_usual_max()
    if usual is not None and payload.ceiling_pence > usual and not payload.above_usual_reason:
        raise Refused(RejectionKind.reason_required, f"a ceiling of {payload.ceiling_pence:,} pence is above the usual "
                                                     f"maximum of {usual:,}: say why in above_usual_reason")


@after(Kind.funding_agreement)
def _agreement_recorded(rt, st, d, payload: FundingAgreementPayload) -> None:
    rt.funding_recorded(st, payload)


@after(Kind.funding_agreement_trust, "agree")
@after(Kind.funding_agreement_director, "agree")
def _agreement_agreed(rt, st, d, payload) -> None:
    rt.funding_party_agreed(st, d.actor)


@after(Kind.funding_agreement_trust, "return")
@after(Kind.funding_agreement_director, "return")
def _agreement_returned(rt, st, d, payload) -> None:
    rt.funding_returned(st, d)


@check(Kind.drawdown_approval, Kind.drawdown_authorisation)
def _drawdown_by_other_people_within_the_ceiling(rt, st, d, payload) -> None:
    f = rt.s.funding
    dd = f.get(int(st.subject["drawdown"])) if f else None
    if dd is None:
        raise Refused(RejectionKind.unknown_step, "no such drawdown")
    if d.actor.user_id in (dd.requested_by, dd.approved_by):
        raise Refused(RejectionKind.separation_of_duties, f"{d.actor.user_id} already acted on drawdown {dd.n}")
    if d.action in ("approve", "authorise") and f.authorised_pence() + dd.amount_pence > f.ceiling_pence:
        raise Refused(RejectionKind.rule_broken, f"drawdown {dd.n} of {dd.amount_pence:,} pence would take the "
                                                 f"authorised total above the ceiling of {f.ceiling_pence:,}")


@after(Kind.drawdown_approval)
@after(Kind.drawdown_authorisation)
def _drawdown_decided(rt, st, d, payload) -> None:
    rt.drawdown_decided(st, d)
