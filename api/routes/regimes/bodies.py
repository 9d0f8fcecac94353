"""What a request to the regimes routes carries: its body models and its bounded path parameters."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field, model_validator

from domain.ledger import AgreementInPrinciple
from domain.models import ODS_PATTERN, CompletedStep, Trust
from domain.policy import PolicyChoices
from domain.ratings import InspectionOutcome, KeyQuestionRatings
from domain.steps import Kind
from domain.text import text

# Path parameters are bounded like every other text the API accepts.
RegimeIdPath = Annotated[text(200, min_length=1), Path()]
StepIdPath = Annotated[text(200, min_length=1), Path()]
ReferencePath = Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")]


class PlacementRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "trust": {"ods_code": "RXX", "name": "Example Hospitals NHS Trust", "multi_site": False},
        "entry_date": "2026-10-05", "basis": Kind.cqc_recommendation,
        "ratings": {"safe": "inadequate", "effective": "requires_improvement", "caring": "good",
                    "responsive": "requires_improvement", "well_led": "inadequate", "overall": "inadequate"}}]})
    trust: Trust
    entry_date: date
    measures: Literal["quality", "finance", "combined"] = Field(
        "quality", description="what the trust is placed in special measures for: quality (CQC's recommendation or "
                               "the regulator's decision), finance (the regulator's finance decision: basis "
                               "regulator_decision with its reason), or both at once with one joined-up programme")
    basis: Literal[Kind.cqc_recommendation, Kind.regulator_decision] = Kind.cqc_recommendation
    ratings: KeyQuestionRatings | None = Field(None, description="the CQC ratings that triggered entry")
    inspection: InspectionOutcome | None = Field(None, description="the full triggering inspection outcome")
    regulator_reason: text(4000) | None = Field(
        None, description="the regulator's reason: required when it places without CQC's recommendation, and "
                          "when it confirms a CQC recommendation whose ratings do not meet the entry rule")
    completed_steps: list[CompletedStep] = Field(default_factory=list, max_length=100)
    watch_list_entry_id: str | None = Field(None, pattern=r"^watch-[A-Z0-9]{3,6}-\d{4}-\d{2}-\d{2}$",
                                            description="the trust's current challenged-providers watch-list entry "
                                                        "(regulator): it ends, linked to this regime")
    policy: PolicyChoices | None = Field(
        None, description="choices where the sources disagree made for this regime instead of the POLICY_* settings "
                          "(domain/policy.py, docs/regime.md); recorded in the regime with the names of those chosen")
    continue_as_new_after_events: int | None = Field(
        None, ge=200, le=40_000, description="operational tuning (admin only): history length at which the "
                                             "regime continues as new")

    @model_validator(mode="after")
    def _ratings(self) -> PlacementRequest:
        if self.ratings is None and self.inspection is not None:
            self.ratings = self.inspection.ratings
        return self


class DecisionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"action": "submit", "payload": {"actions": [
            {"category": "must_do", "description": "Staff the emergency department to safe levels",
             "owner": "Chief Nurse", "metric": "RN fill rate >= 95%", "target_date": "2027-03-31"}]}},
        {"action": "agree", "payload": {}},
        {"action": "return", "comment": "The plan does not answer CQC's finding on sepsis screening",
         "payload": {}},
    ]})
    action: text(64, min_length=1) = Field(examples=["submit", "agree", "return", "sign_off"])
    comment: text(4000) | None = None
    # Checked in `check_payload` against the model of the step kind's action, then for its shape and text
    # wherever the model does not reach, so every error names its exact field.
    payload: dict[str, Any] = Field(default_factory=dict, description="what the action carries: one of the "
                                    "payload schemas, the one of the step kind's action (`x-step-payloads` "
                                    "on this operation, or GET /step-kinds)")
    role: text(40) | None = Field(None, description="the role to act in, when the user holds several")


class DeadlineRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"new_due": "2027-02-15", "reason": "The trust's board meets on 10 February; agreed with the ID"},
        {"pause": True, "reason": "Paused while the merger is consulted on"}]})
    new_due: date | None = None
    pause: bool | None = None
    reason: text(2000, min_length=1)


class AnnouncementRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    inspection_date: date


class DraftReportRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"sent_on": "2027-10-04"}]})
    sent_on: date = Field(description="the day CQC sent the trust its draft report to check for factual accuracy")


class WithdrawalRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: text(4000, min_length=1)


class ClosureRequest(BaseModel):
    """The regime ends by a structural solution (a long-term solution, seed 002). A merger or an acquisition
    names the organisation the trust becomes (its ODS code), so the trust's history stays linked to it."""
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "solution": "merger", "reason": "Merged into Eastleigh University Hospitals NHS Foundation Trust",
        "successor_ods_code": "REH", "successor_name": "Eastleigh University Hospitals NHS Foundation Trust",
        "cqc_view": "The merged organisation's plans for urgent care are credible"}]})
    solution: Literal["merger", "service_reconfiguration", "acquisition", "other"]
    reason: text(4000, min_length=1)
    successor_ods_code: str | None = Field(None, pattern=ODS_PATTERN, description="the organisation the trust "
                                           "becomes (required for a merger or an acquisition)")
    successor_name: text(200, min_length=1) | None = None
    cqc_view: text(4000, min_length=1) | None = Field(None, description="CQC's view on whether the solution is "
                                                                        "viable")

    @model_validator(mode="after")
    def _successor_named(self) -> ClosureRequest:
        if self.solution in ("merger", "acquisition") and not self.successor_ods_code:
            raise ValueError(f"a {self.solution} names the organisation the trust becomes: successor_ods_code")
        return self


class EnforcementRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["conditions", "special_administration", "cancellation_of_registration", "warning_notice"]
    detail: text(4000, min_length=1)


class BuddyAddRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "buddy": {"ods_code": "RYY", "name": "Partner Teaching Hospitals NHS FT"}, "scope": "trust-wide",
        "agreement_in_principle": {"agreed_level_pence": 25_000_000,
                                   "terms_of_reference": "Mentoring of the board and the nursing directorate"}}]})
    buddy: Trust
    scope: str = Field("trust-wide", min_length=1, max_length=100, pattern=r"^[a-z0-9-]+$")
    # Checked here against the model the partnership will validate it with (BuddyRequest keeps a dict).
    agreement_in_principle: AgreementInPrinciple | None = None


class DelegationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to_user_id: text(200, min_length=1) = Field(description="the user who covers (an improvement director of the trust)")
    until: date = Field(description="the last day of the cover (London date)")
    reason: text(2000, min_length=1)


class InspectionReport(InspectionOutcome):
    """A published CQC outcome as CQC sends it: it must say what kind of inspection it was, whether it assessed
    well-led, and whether CQC made it the special-measures re-inspection (the only one that leads to CQC's
    recommendation and the exit decision; seed 002). Other outcomes are recorded and shown."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "reference": "INS-RXX-2", "inspection_start": "2027-09-13", "inspection_end": "2027-09-16",
        "published": "2027-10-20", "inspection_type": "comprehensive", "well_led_assessed": True,
        "special_measures_reinspection": True,
        "ratings": {"safe": "requires_improvement", "effective": "good", "caring": "good",
                    "responsive": "requires_improvement", "well_led": "requires_improvement",
                    "overall": "requires_improvement"}}]})
    inspection_type: Literal["comprehensive", "focused", "targeted"]
    well_led_assessed: bool
    special_measures_reinspection: bool = Field(
        description="CQC made this inspection the special-measures re-inspection (it assessed well-led and "
                    "ended on or after entry)")

    @model_validator(mode="after")
    def _reinspection_assesses_well_led(self) -> InspectionReport:
        if self.special_measures_reinspection and not self.well_led_assessed:
            raise ValueError("the special-measures re-inspection assesses well-led (seed 002): set "
                             "well_led_assessed, or special_measures_reinspection false for another inspection")
        return self
