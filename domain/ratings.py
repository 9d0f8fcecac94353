"""CQC ratings and inspection outcomes."""

from __future__ import annotations

from datetime import date
from enum import IntEnum, StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from domain.text import text


class Rating(StrEnum):
    outstanding = "outstanding"
    good = "good"
    requires_improvement = "requires_improvement"
    inadequate = "inadequate"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {
    Rating.inadequate: 0,
    Rating.requires_improvement: 1,
    Rating.good: 2,
    Rating.outstanding: 3,
}


class KeyQuestion(IntEnum):
    safe = 1
    effective = 2
    caring = 3
    responsive = 4
    well_led = 5


KEY_QUESTIONS = ("safe", "effective", "caring", "responsive", "well_led")


class KeyQuestionRatings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    safe: Rating
    effective: Rating
    caring: Rating
    responsive: Rating
    well_led: Rating
    overall: Rating

    def inadequate_questions(self) -> list[str]:
        return [k for k in KEY_QUESTIONS if getattr(self, k) is Rating.inadequate]


class CoreServiceRating(BaseModel):
    model_config = ConfigDict(extra="forbid")
    site: text(200, min_length=1)
    service: text(200, min_length=1) = Field(examples=["maternity"])
    rating: Rating


class InspectionOutcome(BaseModel):
    """A published CQC inspection outcome. `reference` identifies the inspection report."""

    model_config = ConfigDict(extra="forbid")
    reference: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
    inspection_start: date
    inspection_end: date
    published: date
    ratings: KeyQuestionRatings
    core_services: list[CoreServiceRating] = Field(default_factory=list, max_length=500)
    multi_site: bool = False
    trajectory_evidence: text(4000) | None = Field(
        None,
        description="CQC's evidence of a continuing trajectory of improvement (multi-site exceptional route)",
    )
    # Deprecated (issue 14): never read. CQC's recommendation is a decision of its own, the
    # `cqc_recommendation` step (recommend_exit / recommend_remain), and entry on CQC's recommendation is the
    # placement's `basis`. Outcomes recorded in workflow histories and states carry "recommendation": "none",
    # and the model forbids unknown fields, so the field stays to decode them; whatever it holds is dropped.
    recommendation: Literal["enter", "exit", "remain", "none"] | None = Field(
        None, deprecated=True,
        description="deprecated and ignored: CQC recommends through the cqc_recommendation step "
                    "(POST /regimes/{regime_id}/steps/{step_id}/decisions), not with the outcome")
    kind: Literal["published", "correction"] = "published"
    # What kind of inspection it was, and whether CQC made it the special-measures re-inspection (issue 14 item
    # 1; seed 002: CQC monitors quality throughout and may inspect at any time, and only the re-inspection, which
    # assesses well-led, leads to the exit decision). Outcomes recorded before these fields have them None and
    # keep the rule they were recorded under: any outcome while a re-inspection is open was taken as it.
    inspection_type: Literal["comprehensive", "focused", "targeted"] | None = Field(
        None, description="comprehensive, focused or targeted (CQC's own terms)")
    well_led_assessed: bool | None = Field(None, description="the inspection assessed the well-led key question")
    special_measures_reinspection: bool | None = Field(
        None, description="CQC made this inspection the special-measures re-inspection: only that one leads to "
                          "CQC's recommendation and the regulator's exit decision; any other outcome is recorded "
                          "and shown, and can lead to a Quality Summit and to enforcement")

    @property
    def typed(self) -> bool:
        """The outcome says what kind of inspection it was (recorded since issue 14)."""
        return self.special_measures_reinspection is not None

    @field_validator("recommendation", mode="after")
    @classmethod
    def _dropped(cls, v: str | None) -> None:
        return None

    @model_validator(mode="after")
    def _dates_in_order(self) -> InspectionOutcome:
        if self.inspection_end < self.inspection_start:
            raise ValueError("inspection_end is before inspection_start")
        if self.published < self.inspection_end:
            raise ValueError("published is before inspection_end")
        return self
