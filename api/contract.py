"""The API's response models: what every success answer carries, as published in /openapi.json.

A route declares one of these as its `response_model`. Routes that answer with an already JSON-mode body
(`JSONResponse`: the regime state, the idempotent writes) skip FastAPI's second walk over it; the fuzz test
(tests/test_fuzz.py, schemathesis's response-schema conformance check) holds every answer to the schema
declared here, and tests/test_contract.py drives the API through a client generated from it.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from domain.ledger import BuddyState, LedgerTotals, LedgerView
from domain.models import BuddySummary, RegimeState, Step
from domain.policy import Policy
from workflows.common import RegimeProjection


def as_is(body: Any) -> JSONResponse:
    """The answer exactly as the route built it (FastAPI's own JSON encoding), not re-validated through its
    response model, which would coerce values (an id given as text to a number, a `+00:00` offset to `Z`):
    the model documents the answer; the fuzz test and tests/test_contract.py hold the answer to it."""
    return JSONResponse(jsonable_encoder(body))


class Out(BaseModel):
    # Answers may gain fields in a later version: clients must ignore what they do not know.
    model_config = ConfigDict(extra="allow")


# ------------------------------------------------------------------ health
class Liveness(Out):
    status: Literal["ok"]


class Readiness(Out):
    status: Literal["ready", "degraded", "unavailable"]
    checks: dict[str, str] = Field(description="postgresql, temporal, dead_letters: 'ok' or what is wrong")


# ------------------------------------------------------------------ regimes
class Placed(Out):
    regime_id: str
    workflow_id: str
    phase: str
    previous_regime_id: str | None = None
    policy: Policy | None = Field(None, description="the policy the regime was placed under (POLICY_* settings)")


class RegimeSummary(RegimeProjection, Out):
    """A regime's row in the operational view (PostgreSQL), kept up to date by its workflow's effects: the
    projection each batch of effects carries (workflows/common.py), with the row's bookkeeping."""
    workflow_id: str
    last_seq: int
    created_at: datetime
    updated_at: datetime


class RegimePage(Out):
    items: list[RegimeSummary]
    limit: int
    offset: int


class DeadlineBasis(Out):
    """Where a step's due date comes from: a statutory clock (the guidance sets it), a service default (the
    service chose it where the guidance sets no date), or the regulator's amendment of either."""
    kind: Literal["statutory", "service_default", "amended"]
    source: str = Field(description="statutory: the guidance section (e.g. 'seed 000 §4a(iv)'); service_default: "
                                    "the setting or constant that changes it (e.g. 'domain.steps.REVIEW_DAYS'); "
                                    "amended: who moved the date, when and why")
    rule: str = Field(description="the catalogue's rule for the kind, in words (before any amendment)")
    amended_from: DeadlineSpec | None = Field(None, description="amended: the rule's own basis, which the "
                                                                "amendment replaced")


class StepWithBasis(Step):
    model_config = ConfigDict(extra="allow")
    deadline_basis: DeadlineBasis | None = Field(
        None, description="where the due date comes from; null for a kind no catalogue has (never for steps the "
                          "service opens)")


class RegimeView(RegimeState):
    """The regime's live state as its workflow holds it (with what it archived merged back in), its open
    steps, and its operational row. Every step carries its `deadline_basis`."""
    model_config = ConfigDict(extra="allow")
    regime_id: str
    steps: dict[str, StepWithBasis] = Field(default_factory=dict)
    open_steps: list[StepWithBasis]
    projection: RegimeSummary
    policy: Policy = Field(description="the policy the regime runs under, as recorded when it was placed "
                                       "(the same as placement.policy; docs/regime.md)")
    trust_regimes: dict[str, Any] = Field(
        default_factory=dict, description="the trust's regimes side by side ({regime_id, measures, phase, segment, "
                                          "entry_date, exit_date}), what it is in special measures for now (`in`) and "
                                          "its segment: 4 while in quality or finance special measures, 3 only when "
                                          "in neither (seed 002)")


class StepDecided(Out):
    """The step after the decision, with the regime's phase (a regime step) or the partnership's stage and
    ledger totals (a partnership step)."""
    step: Step
    phase: str | None = None
    stage: str | None = None
    ledger: LedgerTotals | None = None


class InspectionAccepted(Out):
    accepted: str = Field(description="the outcome's reference")
    regime_id: str


class InspectionWithdrawn(Out):
    withdrawn: str = Field(description="the outcome's reference")


class EnforcementRecorded(Out):
    enforcement_actions: int = Field(description="how many enforcement actions the regime has recorded; for a "
                                                 "repeat, the number of the first record")
    already_recorded: bool = False
    record: dict[str, Any] | None = None


class DelegationRecorded(Out):
    role: str
    from_user_id: str
    to_user_id: str
    until: date
    reason: str
    by: str
    at: datetime


class Closed(Out):
    phase: str
    closure: dict[str, Any] | None = None
    already_closed: bool = False


# ------------------------------------------------------------------ partnerships
class PartnershipItem(BuddySummary):
    model_config = ConfigDict(extra="allow")
    paid_share: float = Field(description="paid / agreed level, 0..1 (for display only)")
    share_used: float = Field(description="deprecated: the same figure as paid_share, whose name says what it is",
                              json_schema_extra={"deprecated": True})


class PartnershipPage(Out):
    regime_id: str
    items: list[PartnershipItem]


class PartnershipView(BuddyState):
    model_config = ConfigDict(extra="allow")
    steps: dict[str, StepWithBasis] = Field(default_factory=dict)
    open_steps: list[StepWithBasis]
    ledger_totals: LedgerTotals | None = None


class PaymentLine(Out):
    workstream: str
    description: str
    amount_pence: int


class Payment(Out):
    id: int
    quarter: int
    amount_pence: int
    authorised_by: str
    authorised_at: datetime
    recorded_at: datetime
    lines: list[PaymentLine]


class LedgerWithPayments(LedgerView):
    model_config = ConfigDict(extra="allow")
    payments: list[Payment]
    recorded_paid_pence: int


# ------------------------------------------------------------------ tasks
class TaskTrust(Out):
    ods_code: str
    name: str


class Task(Out):
    regime_id: str
    workflow_id: str
    step_id: str
    kind: str
    title: str
    role: str
    assignee: str | None = None
    trust: TaskTrust
    subject: dict[str, Any]
    due: date
    days_left: int
    overdue_days: int
    paused: bool
    status: Literal["red", "amber", "green"]
    deadline_basis: DeadlineBasis | None = Field(None, description="where the due date comes from")


class TaskPage(Out):
    items: list[Task]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last")
    today: date = Field(description="the London date the days were counted from")


# ------------------------------------------------------------------ audit
class AuditEntry(Out):
    id: int
    regime_id: str
    workflow_id: str
    seq: int
    at: datetime
    actor: str
    role: str
    event: str
    step_id: str | None = None
    step_kind: str | None = None
    reason: str | None = None
    detail: dict[str, Any]
    request_id: str | None = None
    prev_hash: str
    hash: str
    hash_alg: Literal["sha256", "hmac-sha256"]


class AuditPage(Out):
    items: list[AuditEntry]


class TrustAuditPage(Out):
    ods_code: str
    items: list[AuditEntry]
    next: int | None = Field(description="pass as `after` for the next page; null on the last")


class Checkpoint(Out):
    last_id: int
    count: int
    at: datetime


class ChainVerdict(Out):
    regime_id: str
    intact: bool
    entries: int
    first_bad_entry: str | None = Field(None, description="the audit id of the first entry that does not "
                                                                 "match")
    reason: str | None = None
    checkpoint: Checkpoint | None = None
    cached: bool
    entries_read: int


class Notification(Out):
    id: int
    workflow_id: str
    seq: int
    regime_id: str
    step_id: str | None = None
    rung: str | None = None
    recipients: list[str]
    subject: str
    body: str
    created_at: datetime
    sent_at: datetime | None = None


class NotificationPage(Out):
    items: list[Notification]


# ------------------------------------------------------------------ step kinds
class ActionSpec(Out):
    payload_schema: str = Field(description="the name of the payload's schema in #/components/schemas")
    reason_required: bool = Field(description="the decision must carry a comment saying why")


class DeadlineSpec(Out):
    rule: str = Field(description="when a step of this kind falls due, in words")
    basis: Literal["statutory", "service_default"] = Field(
        description="statutory: set by the regime's guidance (`source` names the section); service_default: chosen "
                    "by the service where the guidance sets no date (`source` names the constant that changes it)")
    source: str = Field(description="the guidance section (e.g. 'seed 000 §4a(iv)') or the service's constant "
                                    "(e.g. 'domain.steps.REVIEW_DAYS')")


class StepKindSpec(Out):
    kind: str
    workflow: Literal["regime", "partnership"]
    title: str
    short_title: str = Field(description="the title in tables and on the timeline")
    role: str
    group: str
    recurs: Literal["monthly", "quarterly"] | None = Field(
        description="a recurring kind opens one step a month or a quarter (its step ids carry the period)")
    deadline: DeadlineSpec
    actions: dict[str, ActionSpec]


class StepKindList(Out):
    items: list[StepKindSpec]


# ------------------------------------------------------------------ publishing the step payloads
def step_kinds() -> list[StepKindSpec]:
    """Every step kind a decision can be made on: who acts, its actions, each action's payload schema."""
    from domain.ledger import BUDDY_STEPS
    from domain.steps import CATALOGUE

    out = []
    for workflow, catalogue in (("regime", CATALOGUE), ("partnership", BUDDY_STEPS)):
        for kind, spec in catalogue.items():
            out.append(StepKindSpec(
                kind=kind, workflow=workflow, title=spec.title, short_title=spec.label, role=spec.role,
                group=spec.group, recurs=spec.recurs, deadline=deadline_spec(spec.deadline),
                actions={a: ActionSpec(payload_schema=m.__name__, reason_required=a in spec.needs_reason)
                         for a, m in spec.actions.items()}))
    return out


def deadline_spec(deadline: Any) -> DeadlineSpec:
    """A catalogue entry's `Deadline` as the contract publishes it."""
    from domain.steps import Statutory

    assert deadline is not None, "every step kind has a deadline rule in its catalogue entry"
    if isinstance(deadline.basis, Statutory):
        return DeadlineSpec(rule=deadline.rule, basis="statutory", source=deadline.basis.section)
    return DeadlineSpec(rule=deadline.rule, basis="service_default", source=deadline.basis.setting)


def deadlines_markdown() -> str:
    """The table of every step kind's deadline rule and basis in docs/regime.md ("Statutory clocks and service
    defaults"), generated from the catalogues (tests/test_deadline_basis.py keeps the two the same)."""
    lines = ["| step | workflow | due | basis | source |", "| --- | --- | --- | --- | --- |"]
    for s in step_kinds():
        basis = "statutory" if s.deadline.basis == "statutory" else "service default"
        lines.append(f"| `{s.kind}` ({s.short_title}) | {s.workflow} | {s.deadline.rule} | {basis} | "
                     f"`{s.deadline.source}` |")
    return "\n".join(lines)


def deadline_basis(kind: str | None, amendments: list[dict[str, Any]] | None = None) -> dict[str, Any] | None:
    """A step's `DeadlineBasis` as JSON, computed from its kind's catalogue entry (never stored in workflow
    state) and its amendments: `amended` once the regulator has moved its due date (a pause alone leaves the
    date, and so its basis, as it was). None for a kind no catalogue has."""
    from domain.ledger import BUDDY_STEPS
    from domain.steps import CATALOGUE
    from domain.watchlist import WATCH_STEPS

    spec = (CATALOGUE.get(kind) or BUDDY_STEPS.get(kind) or WATCH_STEPS.get(kind)) if kind else None
    if spec is None or spec.deadline is None:
        return None
    own = deadline_spec(spec.deadline)
    moved = [a for a in amendments or [] if (a.get("old") or {}).get("due") != (a.get("new") or {}).get("due")]
    if not moved:
        return {"kind": own.basis, "source": own.source, "rule": own.rule}
    last = moved[-1]
    when = str(last.get("at") or "")[:10]
    source = f"moved to {(last.get('new') or {}).get('due')} by {last.get('by')} on {when}: {last.get('reason')}"
    return {"kind": "amended", "source": source, "rule": own.rule, "amended_from": own.model_dump()}


def publish_step_payloads(doc: dict[str, Any]) -> None:
    """Put every step kind's payload models in the document's components, type a decision's `payload` as
    one of them, and map each step kind and action to its payload (`x-step-payloads` on decideStep; the
    same mapping at run time from `GET /step-kinds`). The step id is in the path, so the payload cannot be a
    discriminated union on a field of its own: the mapping says which schema applies."""
    from pydantic.json_schema import models_json_schema

    from domain.ledger import BUDDY_STEPS
    from domain.steps import CATALOGUE

    models = {m.__name__: m for c in (CATALOGUE, BUDDY_STEPS) for spec in c.values() for m in spec.actions.values()}
    _, top = models_json_schema([(m, "validation") for m in models.values()],
                                ref_template="#/components/schemas/{model}")
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in top.get("$defs", {}).items():
        schemas.setdefault(name, schema)
    refs = [{"$ref": f"#/components/schemas/{name}"} for name in sorted(models)]
    decision = schemas["DecisionRequest"]["properties"]["payload"]
    decision.pop("additionalProperties", None)
    decision.pop("type", None)
    decision["anyOf"] = refs
    mapping = {s.kind: {a: {"$ref": f"#/components/schemas/{spec.payload_schema}",
                                                "reason_required": spec.reason_required}
                                            for a, spec in s.actions.items()} for s in step_kinds()}
    for ops in doc.get("paths", {}).values():
        for op in ops.values():
            if op.get("operationId") == "decideStep":
                op["x-step-payloads"] = mapping
