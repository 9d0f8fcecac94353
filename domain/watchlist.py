"""The challenged-providers watch list (issue 16 item 4; seed 004: trusts at risk of going into special measures
that receive support; "this list is not in the public domain").

An entry is its own definition on the step engine (workflows/watchlist.py): the regulator adds a trust with its
reasons, reviews the entry every few months and takes it off with a reason; the trust can receive an improvement
director with the same step and deadline as a regime. Placing the trust in special measures later links the
regime to its time on the list. Confidentiality is a rule of the service: an entry is in its own table, has no
search attribute and no inbox task, appears in no list, page or export of regimes, and only the regulator,
operations and the trust's own assigned users see it; every read is recorded (who looked).
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from domain.funding import FundingState
from domain.models import Actor, BuddySummary, Escalation, Rung, Step, Trust
from domain.steps import (
    CATALOGUE,
    Deadline,
    EmptyPayload,
    Kind,
    Routine,
    ServiceDefault,
    StepKind,
)
from domain.text import text
from domain.vocab import Role

WATCH_REVIEW_MONTHS = 3  # the regulator reviews an entry every 3 months (service default)
# An entry's id: `watch-<ODS>-<day added>`, numbered from the second time a trust is put on the list on one day.
ENTRY_ID_PATTERN = r"^watch-[A-Z0-9]{3,6}-\d{4}-\d{2}-\d{2}(-\d{1,4})?$"
ENTRY_ID_MAX = 40


class WatchKind(StrEnum):
    watch_review = "watch_review"


class WatchStart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    entry_id: text(40, min_length=1)
    trust: Trust
    added_on: date
    reasons: list[text(2000, min_length=1)] = Field(min_length=1, max_length=20)
    ladder: list[Rung]
    actor: Actor
    continue_as_new_after_events: int = 8000
    funding_usual_max_pence: int | None = None


class WatchEnd(BaseModel):
    """The regulator takes the trust off the list (`removed`, with its reason), or the trust is placed in special
    measures (`placed`, naming the regime)."""
    model_config = ConfigDict(extra="forbid")
    how: Literal["removed", "placed"]
    reason: text(2000, min_length=1)
    regime_id: text(100) | None = None
    actor: Actor


class WatchState(BaseModel):
    start: WatchStart
    status: Literal["on_list", "removed", "placed"] = "on_list"
    steps: dict[str, Step] = Field(default_factory=dict)
    escalations: list[Escalation] = Field(default_factory=list)
    assignees: dict[str, str] = Field(default_factory=dict)
    delegations: list[dict[str, Any]] = Field(default_factory=list)
    ended: dict[str, Any] | None = None
    funding: FundingState | None = None
    # Buddy partnerships (the regime's child workflow, confidential): workflows/buddyhost.py
    buddies: dict[str, BuddySummary] = Field(default_factory=dict)
    seq: int = 0
    retired_step_ids: list[str] = Field(default_factory=list)
    archived_counts: dict[str, int] = Field(default_factory=dict)
    runs: int = 1
    finished: bool = False


class WatchInput(BaseModel):
    """Workflow input: a new entry, or the state carried by continue-as-new."""
    start: WatchStart | None = None
    state: WatchState | None = None


# The entry's steps: the improvement director's appointment is the regime's own definition (the same step and
# deadline, seed 004: the same interventions); the review is the watch list's.
WATCH_STEPS: dict[str, StepKind] = {
    Kind.appoint_improvement_director: CATALOGUE[Kind.appoint_improvement_director],
    # Central funding with the same steps and payments as a regime's (seed 004: the same three interventions).
    **{k: CATALOGUE[k] for k in (Kind.funding_agreement, Kind.funding_agreement_trust,
                                 Kind.funding_agreement_director, Kind.drawdown_approval,
                                 Kind.drawdown_authorisation)},
    WatchKind.watch_review: StepKind(
        "Watch-list entry reviewed: keep the trust on the list or take it off (regulator)", Role.regulator,
        "watch_list", {"keep": EmptyPayload, "remove": EmptyPayload}, frozenset({"keep", "remove"}),
        short_title="Watch-list review",
        deadline=Deadline("every 3 months while the trust is on the list", ServiceDefault(
            "domain.watchlist.WATCH_REVIEW_MONTHS")),
        routine=Routine("keep", lambda ctx: None, otherwise=("keep", "still at risk"))),
}
