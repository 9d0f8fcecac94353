"""Direct support and central funding of the improvement programme (issue 16 item 1; seed 004: the improvement
director, buddying and access to central funding are the three interventions; seed 000 §4a(iv): a financial
review of the plan gives assurance that it is achievable).

The regulator records the funding agreement (the areas of direct support and a ceiling) once the plan has had
its financial review; the trust and the improvement director agree it. The trust then requests drawdowns against
themes or actions of its plan; the improvement director approves each and the regulator authorises it; the
payment is recorded once by an activity keyed by (regime, drawdown number) under a UNIQUE constraint, as the
buddy payments are. Money is integer pence; nothing is ever authorised above the ceiling.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from domain.text import text

# Previous trusts were given up to about £500,000 (seed 004; domain.md): the usual maximum of a ceiling, a setting
# (FUNDING_USUAL_MAX_PENCE) recorded in each regime when it is placed; a higher ceiling needs a reason.
USUAL_MAX_PENCE = 50_000_000
MAX_CEILING_PENCE = 10_000_000_000  # £100m: a bound on input, far above any agreement
MAX_DRAWDOWNS = 200
RECORD_DRAWDOWN = "record_funding_drawdown"

Pence = int


class FundingAgreementPayload(BaseModel):
    """The regulator's funding agreement with the trust: the areas of direct support and the ceiling."""
    model_config = ConfigDict(extra="forbid")
    ceiling_pence: int = Field(gt=0, le=MAX_CEILING_PENCE, description="the most the agreement will ever pay, pence")
    areas: list[text(200, min_length=1)] = Field(min_length=1, max_length=30,
                                                 description="areas of direct support, e.g. 'maternity staffing'")
    above_usual_reason: text(2000, min_length=1) | None = Field(
        None, description="why the ceiling is above the usual maximum (FUNDING_USUAL_MAX_PENCE); required then")


class FinancialReviewPayload(BaseModel):
    """The financial review of the improvement plan: is it achievable with the money it needs?"""
    model_config = ConfigDict(extra="forbid")
    reviewed_on: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")
    achievable: bool
    summary: text(4000, min_length=1)


DrawdownStatus = Literal["requested", "approved", "authorised", "paid", "refused"]


class Drawdown(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n: int
    amount_pence: int
    against: list[text(100)] = Field(max_length=20)
    purpose: text(2000)
    status: DrawdownStatus = "requested"
    requested_by: text(200)
    requested_on: text(10)
    approved_by: text(200) | None = None
    authorised_by: text(200) | None = None
    authorised_at: datetime | None = None
    payment_id: int | None = None
    refused_reason: text(4000) | None = None
    payment_failure: text(4000) | None = None


class FundingState(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ceiling_pence: int = 0
    areas: list[text(200)] = Field(default_factory=list, max_length=30)
    agreed: bool = False
    agreed_on: text(10) | None = None
    drawdowns: list[Drawdown] = Field(default_factory=list, max_length=MAX_DRAWDOWNS)

    def committed_pence(self) -> int:
        """Requested, approved, authorised or paid: what the ceiling must still cover."""
        return sum(d.amount_pence for d in self.drawdowns if d.status != "refused")

    def paid_pence(self) -> int:
        return sum(d.amount_pence for d in self.drawdowns if d.status == "paid")

    def authorised_pence(self) -> int:
        return sum(d.amount_pence for d in self.drawdowns if d.status in ("authorised", "paid"))

    def remaining_pence(self) -> int:
        return self.ceiling_pence - self.committed_pence()

    def get(self, n: int) -> Drawdown | None:
        return next((d for d in self.drawdowns if d.n == n), None)

    def figures(self) -> dict:
        """The agreement, its totals and drawdowns as the API shows them (a regime's, a watch-list entry's)."""
        return {"agreed": self.agreed, "agreed_on": self.agreed_on, "ceiling_pence": self.ceiling_pence,
                "areas": list(self.areas), "requested_pence": self.committed_pence(),
                "authorised_pence": self.authorised_pence(), "paid_pence": self.paid_pence(),
                "remaining_pence": self.remaining_pence(),
                "drawdowns": [d.model_dump(mode="json") for d in self.drawdowns]}


class DrawdownInstruction(BaseModel):
    """An authorised drawdown to record as paid; (regime_id, drawdown) is its idempotency key."""
    model_config = ConfigDict(extra="forbid")
    regime_id: text(100, min_length=1)
    drawdown: int = Field(ge=1)
    amount_pence: int = Field(gt=0)
    against: list[text(100)] = Field(max_length=20)
    authorised_by: text(200, min_length=1)
    authorised_at: datetime


class DrawdownRecord(BaseModel):
    payment_id: int
    amount_pence: int
    recorded_at: datetime
    created: bool = Field(description="False when the row was already there (a retry)")
