"""The catalogue of human steps: who acts, which actions they may take, and what each action carries."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from enum import StrEnum
from functools import partial
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl

from domain.dates import add_months
from domain.models import SYSTEM
from domain.rules import SEGMENT_AFTER_QUALITY_EXIT
from domain.text import text


class PlanAction(BaseModel):
    model_config = ConfigDict(extra="forbid")
    category: Literal["must_do", "should_do"]
    description: text(2000, min_length=1)
    owner: text(200, min_length=1) = Field(description="accountable post, e.g. 'Director of Nursing'")
    metric: text(500, min_length=1)
    target_date: date | None = None


class ImprovementPlanPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    actions: list[PlanAction] = Field(min_length=1, max_length=500)

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


class CompletionPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    completed_on: date
    summary: text(4000) | None = None


class MonthlyReturnPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    summary: text(8000, min_length=1)
    public_update_url: HttpUrl | None = None


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
    on_trajectory: bool = Field(description="progress is in line with the planned improvement trajectory")
    summary: text(4000) | None = None


class AppointmentPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    appointed_on: date
    improvement_director_user_id: text(200, min_length=1)


class ExitDecisionPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    continued_support: list[text(200, min_length=1)] = Field(default_factory=list, max_length=50)


class ExtendPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    months: int = Field(6, ge=1, le=24)


class EmptyPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")


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


@dataclass(frozen=True)
class StepKind:
    title: str
    role: str
    group: str
    actions: dict[str, type[BaseModel]]
    # Actions that send work back or refuse: a reason is required.
    needs_reason: frozenset[str] = field(default_factory=frozenset)
    # What follows each action (the `after` registrations below): action -> handler, "*" for any action.
    after: dict[str, Any] = field(default_factory=dict, compare=False)
    # Rules a decision on this kind must meet besides the common ones (the `check` registrations below).
    checks: list[Any] = field(default_factory=list, compare=False)


_E = EmptyPayload
CATALOGUE: dict[str, StepKind] = {
    Kind.improvement_plan: StepKind("Improvement plan submitted", "trust", "improvement_plan",
                                 {"submit": ImprovementPlanPayload}),
    Kind.plan_review: StepKind("Improvement plan agreed by the improvement director", "improvement_director",
                            "improvement_plan", {"agree": _E, "return": _E}, frozenset({"return"})),
    Kind.plan_signoff_regulator: StepKind("Improvement plan signed off by the regulator", "regulator",
                                       "improvement_plan", {"sign_off": _E, "return": _E}, frozenset({"return"})),
    Kind.plan_signoff_commissioner: StepKind("Improvement plan signed off by the commissioner", "commissioner",
                                          "improvement_plan", {"sign_off": _E, "return": _E}, frozenset({"return"})),
    Kind.appoint_improvement_director: StepKind("Improvement director appointed", "regulator", "appointment",
                                             {"record": AppointmentPayload}),
    Kind.board_to_board: StepKind("Board-to-board meeting (within 3 months of entry)", "regulator", "board_to_board",
                               {"record": MeetingPayload}),
    Kind.board_to_board_pre_inspection: StepKind("Board-to-board before the CQC re-inspection", "regulator",
                                              "board_to_board", {"record": MeetingPayload}),
    Kind.board_to_board_post_exit: StepKind("Board-to-board within 6 months of exit", "regulator", "board_to_board",
                                         {"record": MeetingPayload}),
    Kind.letter_to_chair: StepKind("Follow-up letter to the chair", "regulator", "board_to_board",
                                {"record": LetterPayload}),
    Kind.capability_review: StepKind("Board capability review completed", "regulator", "capability_review",
                                  {"record": CompletionPayload}),
    Kind.monthly_return: StepKind("Monthly progress return and public update (trust)", "trust", "monthly_return",
                               {"submit": MonthlyReturnPayload}),
    Kind.monthly_return_cosign: StepKind("Monthly progress return co-signed (improvement director)",
                                      "improvement_director", "monthly_return",
                                      {"cosign": _E, "return": _E}, frozenset({"return"})),
    Kind.oversight_meeting: StepKind("Oversight and Assurance Group held (monthly)", "regulator", "oversight",
                                  {"record": OversightMeetingPayload}),
    Kind.delivery_meeting: StepKind("Integrated Delivery Meeting held (monthly)", "regulator", "oversight",
                                 {"record": DeliveryMeetingPayload}),
    Kind.reinspection: StepKind("CQC re-inspection published", "cqc", "reinspection", {}),
    Kind.cqc_recommendation: StepKind("CQC recommendation after re-inspection", "cqc", "exit_decision",
                                   {"recommend_exit": _E, "recommend_remain": _E}, frozenset({"recommend_remain"})),
    Kind.regulator_decision: StepKind("Regulator's decision after re-inspection", "regulator", "exit_decision",
                                   {"exit": ExitDecisionPayload, "extend": ExtendPayload,
                                    "refer_to_secretary_of_state": _E},
                                   frozenset({"extend", "refer_to_secretary_of_state"})),
    Kind.revised_action_plan: StepKind("Revised action plan published (extension)", "trust", "improvement_plan",
                                    {"submit": ImprovementPlanPayload}),
    Kind.secretary_of_state_letter: StepKind("Chief Inspector's letter to the Secretary of State", "cqc",
                                          "secretary_of_state", {"send": LetterPayload}),
}

# Steps that need at most this many days after they open when no statutory date applies.
REVIEW_DAYS = 7
SIGNOFF_DAYS = 14
DECISION_DAYS = 14
LETTER_DAYS = 14
REVISED_PLAN_DAYS = 28
CAPABILITY_REVIEW_MONTHS = 3


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
        rt.audit("improvement_plan.signed_off", SYSTEM, step=plan,
                 reason="agreed by the improvement director; signed off by regulator and commissioner")


@after(Kind.appoint_improvement_director)
def _director_appointed(rt, st, d, payload: AppointmentPayload) -> None:
    rt.s.assignees["improvement_director"] = payload.improvement_director_user_id
    for o in rt.s.steps.values():
        if o.status == "open" and o.role == "improvement_director":
            rt.emit({"type": "task_open", "step": rt.task(o)})


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
    rt.finish("exited", "post-exit board-to-board held")


@after(Kind.monthly_return)
def _return_submitted(rt, st, d, payload) -> None:
    rt.open_step(Kind.monthly_return_cosign, max(st.due, rt.today() + timedelta(days=3)),
                 step_id=st.id.replace(Kind.monthly_return, Kind.monthly_return_cosign), subject=st.subject)


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
        rt.audit("delivery_meeting.record", d.actor, step=idm, reason=why)
        rt.close_step(idm, "record", d.actor, why)


@after(Kind.cqc_recommendation)
def _cqc_recommended(rt, st, d, payload) -> None:
    rt.open_step(Kind.regulator_decision, rt.today() + timedelta(days=DECISION_DAYS), subject=st.subject)


@after(Kind.regulator_decision, "exit")
def _exit_decided(rt, st, d, payload: ExitDecisionPayload) -> None:
    today = rt.decision_recorded(d)
    rt.s.continued_support = list(payload.continued_support)
    rt.s.exit_date = today
    rt.s.segment = SEGMENT_AFTER_QUALITY_EXIT
    rt.cancel_open("regime exited special measures")
    rt.s.next_monthly = None
    support = rt.s.continued_support
    rt.set_phase("exited", d.actor, "exit on CQC's recommendation" +
                 (f"; continued support: {', '.join(support)}" if support else ""))
    rt.open_step(Kind.board_to_board_post_exit, add_months(today, 6))
    rt.end_buddies("the trust exited special measures")


@after(Kind.regulator_decision, "extend")
def _extension_decided(rt, st, d, payload: ExtendPayload) -> None:
    today = rt.decision_recorded(d)
    months = payload.months
    end = add_months(today, months)
    rt.s.extensions.append({"number": len(rt.s.extensions) + 1, "decided_on": today.isoformat(),
                            "months": months, "ends": end.isoformat(), "reason": d.comment})
    if rt.s.phase != "long_term_solution":
        rt.set_phase("extended", d.actor, f"extended by {months} months to {end.isoformat()}")
    rt.open_step(Kind.revised_action_plan, today + timedelta(days=REVISED_PLAN_DAYS))
    rt.open_step(Kind.reinspection, end, step_id=f"reinspection-{rt.n_reinspections() + 1}")


@after(Kind.regulator_decision, "refer_to_secretary_of_state")
def _referral_decided(rt, st, d, payload) -> None:
    today = rt.decision_recorded(d)
    rt.s.sos_letter = rt.draft_letter(d.comment or "")
    rt.open_step(Kind.secretary_of_state_letter, today + timedelta(days=LETTER_DAYS))


@after(Kind.secretary_of_state_letter)
def _letter_to_secretary_of_state_sent(rt, st, d, payload) -> None:
    rt.s.sos_letter = {**(rt.s.sos_letter or {}), "sent_on": d.payload.get("sent_on"), "sent_by": d.actor.user_id}
    rt.set_phase("long_term_solution", d.actor, "Chief Inspector wrote to the Secretary of State")
    rt.open_step(Kind.reinspection, add_months(rt.today(), 6), step_id=f"reinspection-{rt.n_reinspections() + 1}")


# ---------------------------------------------------------------------------- rules a decision must meet
# Beyond role, action, reason and payload (checked for every kind by the workflow's validator), a kind may
# register its own rule: `@check(kind)` raises `RuleBroken` (or another Rejection) to refuse a decision.
class Refused(Exception):  # noqa: N818 - a refusal, not an error of the service
    """A rule refuses the decision; the workflow turns it into its rejection of that kind."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def check(*kinds: str):
    def register(fn: Handler) -> Handler:
        for kind in kinds:
            CATALOGUE[kind].checks.append(fn)
        return fn
    return register


@check(Kind.regulator_decision)
def _decision_follows_the_recommendation(rt, st, d) -> None:
    if d.action == "exit" and rt.latest_recommendation() != "recommend_exit":
        raise Refused("RuleBroken", "the regulator takes a trust out of special measures only on CQC's "
                                    "recommendation to exit")
    if d.action == "refer_to_secretary_of_state" and rt.s.phase != "extended":
        raise Refused("RuleBroken", "the Chief Inspector writes to the Secretary of State only at the end of "
                                    "an extension")


@check(Kind.oversight_meeting, Kind.delivery_meeting)
def _meeting_held_this_month(rt, st, d) -> None:
    held = date.fromisoformat(str(d.payload["meeting_date"]))
    month = date.fromisoformat(st.subject["month"] + "-01")
    if held > rt.today():
        raise Refused("RuleBroken", "a meeting is recorded once it has been held, not in advance")
    if held < month:
        raise Refused("RuleBroken", f"a meeting held on {held.isoformat()} is not this month's "
                                    f"({st.subject['month']})")


@check(Kind.cqc_recommendation)
def _exit_against_the_rule_needs_a_reason(rt, st, d) -> None:
    if d.action == "recommend_exit":
        verdict = st.data.get("verdict") or {}
        if verdict.get("met") is False and not (d.comment and d.comment.strip()):
            raise Refused("ReasonRequired", "the exit rule is not met on this outcome; recommending exit "
                                            "anyway needs CQC's reason")
