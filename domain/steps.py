"""The catalogue of human steps: who acts, which actions they may take, and what each action carries."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl

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


@dataclass(frozen=True)
class StepKind:
    title: str
    role: str
    group: str
    actions: dict[str, type[BaseModel]]
    # Actions that send work back or refuse: a reason is required.
    needs_reason: frozenset[str] = field(default_factory=frozenset)


_E = EmptyPayload
CATALOGUE: dict[str, StepKind] = {
    "improvement_plan": StepKind("Improvement plan submitted", "trust", "improvement_plan",
                                 {"submit": ImprovementPlanPayload}),
    "plan_review": StepKind("Improvement plan agreed by the improvement director", "improvement_director",
                            "improvement_plan", {"agree": _E, "return": _E}, frozenset({"return"})),
    "plan_signoff_regulator": StepKind("Improvement plan signed off by the regulator", "regulator",
                                       "improvement_plan", {"sign_off": _E, "return": _E}, frozenset({"return"})),
    "plan_signoff_commissioner": StepKind("Improvement plan signed off by the commissioner", "commissioner",
                                          "improvement_plan", {"sign_off": _E, "return": _E}, frozenset({"return"})),
    "appoint_improvement_director": StepKind("Improvement director appointed", "regulator", "appointment",
                                             {"record": AppointmentPayload}),
    "board_to_board": StepKind("Board-to-board meeting (within 3 months of entry)", "regulator", "board_to_board",
                               {"record": MeetingPayload}),
    "board_to_board_pre_inspection": StepKind("Board-to-board before the CQC re-inspection", "regulator",
                                              "board_to_board", {"record": MeetingPayload}),
    "board_to_board_post_exit": StepKind("Board-to-board within 6 months of exit", "regulator", "board_to_board",
                                         {"record": MeetingPayload}),
    "letter_to_chair": StepKind("Follow-up letter to the chair", "regulator", "board_to_board",
                                {"record": LetterPayload}),
    "capability_review": StepKind("Board capability review completed", "regulator", "capability_review",
                                  {"record": CompletionPayload}),
    "monthly_return": StepKind("Monthly progress return and public update (trust)", "trust", "monthly_return",
                               {"submit": MonthlyReturnPayload}),
    "monthly_return_cosign": StepKind("Monthly progress return co-signed (improvement director)",
                                      "improvement_director", "monthly_return",
                                      {"cosign": _E, "return": _E}, frozenset({"return"})),
    "oversight_meeting": StepKind("Oversight and Assurance Group held (monthly)", "regulator", "oversight",
                                  {"record": OversightMeetingPayload}),
    "delivery_meeting": StepKind("Integrated Delivery Meeting held (monthly)", "regulator", "oversight",
                                 {"record": DeliveryMeetingPayload}),
    "reinspection": StepKind("CQC re-inspection published", "cqc", "reinspection", {}),
    "cqc_recommendation": StepKind("CQC recommendation after re-inspection", "cqc", "exit_decision",
                                   {"recommend_exit": _E, "recommend_remain": _E}, frozenset({"recommend_remain"})),
    "regulator_decision": StepKind("Regulator's decision after re-inspection", "regulator", "exit_decision",
                                   {"exit": ExitDecisionPayload, "extend": ExtendPayload,
                                    "refer_to_secretary_of_state": _E},
                                   frozenset({"extend", "refer_to_secretary_of_state"})),
    "revised_action_plan": StepKind("Revised action plan published (extension)", "trust", "improvement_plan",
                                    {"submit": ImprovementPlanPayload}),
    "secretary_of_state_letter": StepKind("Chief Inspector's letter to the Secretary of State", "cqc",
                                          "secretary_of_state", {"send": LetterPayload}),
}

# Steps that need at most this many days after they open when no statutory date applies.
REVIEW_DAYS = 7
SIGNOFF_DAYS = 14
DECISION_DAYS = 14
LETTER_DAYS = 14
REVISED_PLAN_DAYS = 28
CAPABILITY_REVIEW_MONTHS = 3
