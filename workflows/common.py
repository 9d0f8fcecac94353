"""Messages shared by the regime and buddy workflows and the activities they call."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag
from temporalio.common import SearchAttributeKey

from domain.models import Actor, Rung, Trust

# The search attributes the workflows keep up to date (registered by infra/clients.py SEARCH_ATTRIBUTES).
SA_ODS = SearchAttributeKey.for_keyword("TrustOdsCode")
SA_PHASE = SearchAttributeKey.for_keyword("RegimePhase")
SA_NEXT = SearchAttributeKey.for_datetime("NextDeadline")
SA_LEVEL = SearchAttributeKey.for_int("EscalationLevel")
SA_REGIME = SearchAttributeKey.for_keyword("RegimeId")

APPLY_EFFECTS = "apply_effects"
ARCHIVE_STATE = "archive_state"
BANK_HOLIDAYS = "bank_holidays"


# ---------------------------------------------------------------------------- effects
# What a workflow asks to have written, one model per kind, told apart by `type`. The workflows build them; the
# effects activity (activities/effects.py) writes the first four, and the regime workflow does the last two
# itself (starting or ending a partnership) before it sends the batch. An effect of a kind this code does not
# know (a batch written by a newer worker, or a parked one edited by hand) decodes as `UnknownEffect`, which
# the activity refuses loudly: the batch is parked as a dead letter with the error, and the clocks go on.
class TaskView(BaseModel):
    """The task row a step opens or updates (the inbox)."""

    step_id: str
    kind: str
    title: str
    role: str
    due: date
    subject: dict[str, Any] = Field(default_factory=dict)
    paused: bool = False
    assignee: str | None = None


class TaskOpen(BaseModel):
    type: Literal["task_open"] = "task_open"
    seq: int = 0
    step: TaskView


class TaskClose(BaseModel):
    type: Literal["task_close"] = "task_close"
    seq: int = 0
    step_id: str
    state: str
    outcome: str
    closed_by: str
    at: str | None = None  # ISO 8601 instant


class AuditEffect(BaseModel):
    """One entry of the regime's audit chain. Its fields are hashed as written (`at` an ISO 8601 string, as
    the chains already in PostgreSQL were hashed), so they stay primitive."""

    type: Literal["audit"] = "audit"
    seq: int = 0
    event: str
    actor: str
    role: str
    request_id: str | None = None
    step_id: str | None = None
    step_kind: str | None = None
    reason: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict)
    at: str


class Notify(BaseModel):
    type: Literal["notify"] = "notify"
    seq: int = 0
    step_id: str | None = None
    rung: str
    recipients: list[str]
    subject: str
    body: str


class StartBuddy(BaseModel):
    type: Literal["start_buddy"] = "start_buddy"
    seq: int = 0
    partnership_id: str
    request: dict[str, Any]


class EndBuddy(BaseModel):
    type: Literal["end_buddy"] = "end_buddy"
    seq: int = 0
    partnership_id: str
    reason: str
    # Not now but on this date: the regulator let the partnership run on after exit (issue 14 item 2).
    until: date | None = None


class UnknownEffect(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    seq: int = 0


_KINDS = {"task_open", "task_close", "audit", "notify", "start_buddy", "end_buddy"}


def _effect_kind(v: Any) -> str:
    kind = v.get("type") if isinstance(v, dict) else getattr(v, "type", None)
    return kind if kind in _KINDS else "unknown"


Effect = Annotated[
    Annotated[TaskOpen, Tag("task_open")] | Annotated[TaskClose, Tag("task_close")]
    | Annotated[AuditEffect, Tag("audit")] | Annotated[Notify, Tag("notify")]
    | Annotated[StartBuddy, Tag("start_buddy")] | Annotated[EndBuddy, Tag("end_buddy")]
    | Annotated[UnknownEffect, Tag("unknown")],
    Discriminator(_effect_kind),
]
# Effects the activity writes; the others (starting or ending a partnership) are done by the workflow itself.
WRITTEN_EFFECTS = (TaskOpen, TaskClose, AuditEffect, Notify)


class RegimeProjection(BaseModel):
    """The regime's row in the operations views (table `regimes`), sent with every batch."""

    regime_id: str
    ods_code: str
    trust_name: str
    multi_site: bool
    entry_date: date
    phase: str
    segment: int
    next_due: date | None = None
    overdue: int = Field(description="open steps past their due date")
    escalation_level: int = Field(description="the highest escalation level reached by an open step (0: none)")
    buddy_count: int
    extensions: int
    exit_date: date | None = None
    previous_regime_id: str | None = None
    sos_letter: bool
    closed: bool
    closure_solution: str | None = Field(None, description="merger, acquisition, service_reconfiguration or other, "
                                                           "when the regime was closed by a structural solution")
    successor_ods_code: str | None = Field(None, description="the organisation the trust became (merger, "
                                                             "acquisition)")
    measures: str = Field("quality", description="quality, finance or combined special measures")


class EffectBatch(BaseModel):
    """Everything a workflow wants written, in order: tasks, audit entries, notifications, its projection.

    Each effect carries `seq`, a counter kept in workflow state (it survives continue-as-new), so the
    activity writes each effect once however often it is retried.
    """

    workflow_id: str
    regime_id: str
    ods_code: str
    effects: list[Effect]
    projection: RegimeProjection | None = None


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




class BuddyStart(BaseModel):
    """Input of a buddy partnership child workflow on its first run."""

    regime_id: str
    parent_workflow_id: str
    trust: Trust
    request: BuddyRequest
    ladder: list[Rung]
    continue_as_new_after_events: int = 8000
    # Who agrees the buddy support package: the regime's policy (domain/policy.py, issue 14 item 14).
    package_agreed_by: Literal["regulator_and_trust", "trusts_and_id"] = "regulator_and_trust"
    # Started by a watch-list entry (workflows/watchlist.py): no search attribute, no inbox task.
    confidential: bool = False
    # The host's months-4-6 date for the buddy trust's funding agreement (issue 16 item 1): a regime with central
    # funding passes entry + 6 months. None (every partnership recorded before): no funding agreement step.
    funding_agreement_due_from: date | None = None


class YearRange(BaseModel):
    """The years of bank holidays a regime asks the calendar activity for (activities/calendar.py)."""

    first_year: int = Field(ge=1990, le=2200)
    last_year: int = Field(ge=1990, le=2200)


class ArchiveBatch(BaseModel):
    """What leaves a workflow's state at continue-as-new (activities/archive.py)."""

    workflow_id: str
    regime_id: str
    steps: list[dict[str, Any]] = Field(default_factory=list, description="steps in JSON mode, each with its "
                                                                          "'escalations'")
    records: list[dict[str, Any]] = Field(default_factory=list, description="{'kind', 'position', 'record'}")
