"""Messages shared by the regime and buddy workflows and the activities they call."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from domain.models import Actor, Rung, Trust

APPLY_EFFECTS = "apply_effects"
ARCHIVE_STATE = "archive_state"


class EffectBatch(BaseModel):
    """Everything a workflow wants written, in order: tasks, audit entries, notifications, its projection.

    Each effect carries `seq`, a counter kept in workflow state (it survives continue-as-new), so the
    activity writes each effect once however often it is retried.
    """

    workflow_id: str
    regime_id: str
    ods_code: str
    effects: list[dict[str, Any]]
    projection: dict[str, Any] | None = None


class BuddyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    buddy: Trust
    scope: str = Field("trust-wide", min_length=1, max_length=100, pattern=r"^[a-z0-9-]+$",
                       examples=["trust-wide", "maternity"])
    actor: Actor
    agreement_in_principle: dict[str, Any] | None = None


def buddy_workflow_id(regime_id: str, buddy_ods: str, scope: str) -> str:
    base = f"{regime_id}-buddy-{buddy_ods}"
    return base if scope == "trust-wide" else f"{base}-{scope}"


Phase = Literal["in_special_measures", "extended", "long_term_solution", "exited", "closed_structural"]


class BuddyStart(BaseModel):
    """Input of a buddy partnership child workflow on its first run."""

    regime_id: str
    parent_workflow_id: str
    trust: Trust
    request: BuddyRequest
    ladder: list[Rung]
    continue_as_new_after_events: int = 8000


class ArchiveBatch(BaseModel):
    """What leaves a workflow's state at continue-as-new (activities/archive.py)."""

    workflow_id: str
    regime_id: str
    steps: list[dict[str, Any]] = Field(default_factory=list, description="steps in JSON mode, each with its "
                                                                          "'escalations'")
    records: list[dict[str, Any]] = Field(default_factory=list, description="{'kind', 'position', 'record'}")
