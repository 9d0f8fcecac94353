"""Regimes: placement, state, decisions on steps, deadlines, CQC outcomes, closure, buddies."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from typing import Annotated, Any, Literal

import asyncpg
from fastapi import APIRouter, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from temporalio.client import (
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import (
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDReusePolicy,
)
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api import documents, idempotency
from api.auth import User
from api.contract import (
    Closed,
    DelegationRecorded,
    EnforcementRecorded,
    InspectionAccepted,
    InspectionWithdrawn,
    Placed,
    RegimePage,
    RegimeView,
    StepDecided,
)
from api.deps import CurrentUser, DbPool, RequestId, SettingsDep, TemporalClientDep
from api.errors import Problem, stuck_problem, temporal_problem, workflow_task_failing
from api.idempotency import idempotent
from domain import dates
from domain.documents import DOCUMENT_ACTIONS
from domain.ledger import BUDDY_STEPS, AgreementInPrinciple
from domain.models import (
    Actor,
    BuddySummary,
    Closure,
    CompletedStep,
    DeadlineChange,
    Decision,
    Delegation,
    Enforcement,
    InspectionSignal,
    Placement,
    RegimeStart,
    RegimeState,
    ReinspectionAnnouncement,
    Rung,
    StepView,
    Trust,
    Withdrawal,
)
from domain.ratings import InspectionOutcome, KeyQuestionRatings
from domain.rules import entry_rule
from domain.steps import CATALOGUE
from domain.text import json_error, text
from settings import Settings
from workflows.buddy import BuddyPartnershipWorkflow
from workflows.common import BuddyRequest
from workflows.regime import RegimeWorkflow

router = APIRouter(prefix="/regimes", tags=["regimes"])

REJECTION_STATUS = {
    "WrongRole": 403, "SeparationOfDuties": 403, "NotAssignee": 403, "StepNotOpen": 409, "Conflict": 409, "UnknownStep": 404,
    "UnknownAction": 422, "ReasonRequired": 422, "InvalidPayload": 422, "RuleBroken": 422, "Duplicate": 409,
}


# Path parameters are bounded like every other text the API accepts.
RegimeIdPath = Annotated[text(200, min_length=1), Path()]
StepIdPath = Annotated[text(200, min_length=1), Path()]
ReferencePath = Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")]


def regime_id_for(ods: str, entry: date) -> str:
    return f"regime-{ods}-{entry.isoformat()}"


class PlacementRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "trust": {"ods_code": "RXX", "name": "Example Hospitals NHS Trust", "multi_site": False},
        "entry_date": "2026-10-05", "basis": "cqc_recommendation",
        "ratings": {"safe": "inadequate", "effective": "requires_improvement", "caring": "good",
                    "responsive": "requires_improvement", "well_led": "inadequate", "overall": "inadequate"}}]})
    trust: Trust
    entry_date: date
    basis: Literal["cqc_recommendation", "regulator_decision"] = "cqc_recommendation"
    ratings: KeyQuestionRatings | None = Field(None, description="the CQC ratings that triggered entry")
    inspection: InspectionOutcome | None = Field(None, description="the full triggering inspection outcome")
    regulator_reason: text(4000) | None = Field(None, description="required when the regulator places without "
                                                                 "the entry rule")
    completed_steps: list[CompletedStep] = Field(default_factory=list, max_length=100)
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


class WithdrawalRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: text(4000, min_length=1)


class ClosureRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    solution: Literal["merger", "service_reconfiguration", "acquisition", "other"]
    reason: text(4000, min_length=1)


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


# ------------------------------------------------------------------ helpers
def unknown_regime(regime_id: str) -> Problem:
    """The one answer for a regime that does not exist *and* for one the user may not see (issue 17,
    finding 9): a user of another trust cannot tell the two apart, by status, type or detail."""
    return Problem(404, "unknown-regime", f"no regime '{regime_id}'")


async def regime_row(pool: asyncpg.Pool, regime_id: str, user: User | None = None, *,
                     as_buddy: bool = False) -> asyncpg.Record:
    """The regime's projection row; with `user`, only if the user may see the regime (its trust's
    readers, and with `as_buddy` the buddy of one of its partnerships), else the same 404 as for a regime
    that does not exist. Checked before anything else is read, Temporal included."""
    row = await pool.fetchrow("SELECT * FROM regimes WHERE regime_id = $1", regime_id)
    if row is None:
        raise unknown_regime(regime_id)
    if user is not None and not user.may_read_trust(row["ods_code"]):
        if not (as_buddy and user.may_act_as_buddy(user.org) and await pool.fetchval(
                "SELECT 1 FROM tasks WHERE regime_id = $1 AND subject->>'buddy_ods' = $2 LIMIT 1",
                regime_id, user.org)):
            raise unknown_regime(regime_id)
    return row


async def step_target(pool: asyncpg.Pool, regime_id: str,
                      step_id: str) -> tuple[str, str | None, dict[str, Any], str | None]:
    """(workflow id, role, subject, kind) of a step. The task row says; a step opened a moment ago may not have
    its row yet, and a partnership's step ids carry their partnership ("<buddy ODS>[-scope].<step>")."""
    task = await pool.fetchrow(
        "SELECT role, subject, workflow_id, kind FROM tasks WHERE regime_id=$1 AND step_id=$2", regime_id, step_id)
    if task is not None:
        return task["workflow_id"], task["role"], task["subject"] or {}, task["kind"]
    if "." in step_id:
        key = step_id.split(".", 1)[0]
        return f"{regime_id}-buddy-{key}", None, {"buddy_ods": key.split("-", 1)[0]}, None
    return regime_id, None, {}, None


async def check_payload(client: Any, regime_id: str, wf_id: str, step_id: str, kind: str | None,
                        req: DecisionRequest) -> str | None:
    """Validate a decision's payload against its step kind's model here, so a payload that does not fit is a
    422 naming its fields and never reaches Temporal. Without a task row (a step opened a moment ago, or
    projections behind) the workflow says which kind the step is."""
    partnership = wf_id != regime_id
    if kind is None:
        kind = await _kind_from_workflow(client, wf_id, step_id, partnership)
    # An unknown step or action is refused by the workflow, which names what is allowed.
    spec = (BUDDY_STEPS if partnership else CATALOGUE).get(kind or "")
    if spec is not None and req.action in spec.actions:
        try:
            spec.actions[req.action].model_validate(req.payload)
        except ValidationError as e:
            raise RequestValidationError([{"loc": ("body", "payload", *err["loc"]), "msg": err["msg"],
                                           "type": err["type"]} for err in e.errors(include_url=False)]) from None
    # Whatever the step (even one the API cannot name): bounded in shape, no control character.
    found = json_error(req.payload)
    if found is not None:
        path, err = found
        raise RequestValidationError([{"loc": ("body", "payload", *path), "msg": err.message(), "type": err.type}])
    return kind


async def _kind_from_workflow(client: Any, wf_id: str, step_id: str, partnership: bool) -> str | None:
    query = BuddyPartnershipWorkflow.get_state if partnership else RegimeWorkflow.get_state
    try:
        state = await client.get_workflow_handle(wf_id).query(query, rpc_timeout=timedelta(seconds=5))
    except Exception:  # the update that follows reports what is wrong with the workflow, truthfully
        return None
    step = state.steps.get(step_id)
    return step.kind if step is not None else None


def require_read(user: User, row: asyncpg.Record) -> None:
    if not user.may_read_trust(row["ods_code"]):
        raise unknown_regime(row["regime_id"])


def acting_role(user: User, wanted: str | None, fallback: str | None = None) -> str:
    if wanted:
        if wanted not in user.roles:
            raise Problem(403, "role-not-held", f"you do not hold the role '{wanted}'")
        return wanted
    if fallback and fallback in user.roles:
        return fallback
    actors = [r for r in user.roles if r != "operations"]
    if not actors:
        raise Problem(403, "read-only", "operations users read everything and change nothing")
    return actors[0]


def require_act(user: User, role: str, ods: str, subject: dict[str, Any] | None = None) -> None:
    if role == "operations":
        raise Problem(403, "read-only", "operations users read everything and change nothing")
    partner_org = (subject or {}).get("buddy_ods")
    if partner_org and role != "buddy" and user.org == partner_org:
        raise Problem(403, "separation-of-duties",
                      f"a member of the buddy trust {partner_org} cannot act for another party of its partnership")
    if role == "buddy":
        # The buddy role and the buddy's own organisation, both: an org claim alone is not a party.
        if not user.may_act_as_buddy((subject or {}).get("buddy_ods")):
            raise Problem(403, "forbidden-partnership", "a buddy acts only on its own partnership")
        return
    if not user.may_act_for_trust(role, ods):
        raise Problem(403, "forbidden-trust", f"as {role.replace('_', ' ')} you are not assigned to trust {ods}")


def actor(user: User, role: str, rid: str) -> Actor:
    try:
        # The request id comes from a header, which may carry bytes no record should hold: drop them.
        clean_rid = "".join(c for c in rid if c.isprintable())[:100] or None
        return Actor(user_id=user.sub, role=role, request_id=clean_rid, person_id=user.person)  # type: ignore[arg-type]
    except ValidationError:
        raise Problem(401, "unauthenticated", "the token's subject is not a usable user id (control characters)",
                      headers={"WWW-Authenticate": "Bearer"}) from None


def check_message_size(arg: Any, settings: Settings) -> None:
    """Refuse (413) a message Temporal would refuse or, worse, that would fail the workflow task carrying it
    on every attempt and so wedge the regime: measured as the data converter encodes it (the request's
    fields plus the actor and envelope), whatever MAX_BODY_BYTES lets in."""
    size = sum(p.ByteSize() for p in pydantic_data_converter.payload_converter.to_payloads([arg]))
    limit = settings.temporal_max_message_bytes
    if size > limit:
        raise Problem(413, "too-large-for-workflow-engine",
                      f"the request encodes to {size:,} bytes for the workflow engine, more than its limit of "
                      f"{limit:,} (TEMPORAL_MAX_MESSAGE_BYTES); nothing was changed: send less (docs/limits.md)",
                      size_bytes=size, limit_bytes=limit)


async def run_update(handle: WorkflowHandle, update: Any, arg: Any, settings: Settings) -> Any:
    check_message_size(arg, settings)
    wait = settings.temporal_update_timeout_seconds
    try:
        # Without a deadline the SDK polls for the update's acceptance for ever when the workflow cannot
        # take it (a failing task, no worker), and so would the request.
        async with asyncio.timeout(wait + 5):
            for attempt in range(40):
                try:
                    # Under an Idempotency-Key the update id comes from the key: a retry that re-runs the
                    # request (its first answer was never stored) gets the first delivery's outcome back.
                    return await handle.execute_update(update, arg, id=idempotency.update_id.get(),
                                                       rpc_timeout=timedelta(seconds=wait))
                except RPCError as e:
                    # A run that has just continued as new cannot take an update until its first task; a
                    # workflow task in a failed state will not take it however often we ask.
                    if e.status != RPCStatusCode.FAILED_PRECONDITION or attempt == 39 or workflow_task_failing(e):
                        raise temporal_problem(e) from None
                    await asyncio.sleep(0.05)
    except WorkflowUpdateFailedError as e:
        cause = e.cause
        if isinstance(cause, ApplicationError):
            status = REJECTION_STATUS.get(cause.type or "", 422)
            extra = cause.details[0] if cause.details and isinstance(cause.details[0], dict) else {}
            raise Problem(status, _kebab(cause.type or "rejected"), cause.message, **extra) from None
        raise Problem(409, "rejected", str(cause or e)) from None
    except (WorkflowUpdateRPCTimeoutOrCancelledError, TimeoutError):
        raise await _not_taken(handle, wait) from None
    raise AssertionError("unreachable")


async def _not_taken(handle: WorkflowHandle, wait: float) -> Problem:
    """Why the workflow did not answer an update in time, from its pending workflow task."""
    attempt = 0
    try:
        raw = (await handle.describe(rpc_timeout=timedelta(seconds=5))).raw_description
        if raw.HasField("pending_workflow_task"):
            attempt = raw.pending_workflow_task.attempt
    except Exception:  # describing is only for a better message
        pass
    if attempt > 1:
        return stuck_problem(f"workflow task attempt {attempt}; the request was not taken within {wait:g} s")
    return Problem(503, "update-not-taken",
                   f"the regime's workflow did not take the request within {wait:g} s: no worker processed its "
                   "task (the worker may be down or overloaded). It is not recorded now, but Temporal may still "
                   "apply it when a worker runs: read the step before sending it again, or resend it with the "
                   "same Idempotency-Key", headers={"Retry-After": "30"})


def _kebab(s: str) -> str:
    return "".join("-" + c.lower() if c.isupper() else c for c in s).lstrip("-")


def _json(model: BaseModel) -> Any:
    return model.model_dump(mode="json")


async def live_state(client: Any, regime_id: str, closed: bool = False, pool: Any = None) -> RegimeState:
    """The regime's state as its workflow has it, with what it archived at continue-as-new merged back in
    when `pool` is given (api/archive.py): everything people read comes through here."""
    state = await _workflow_state(client, regime_id, closed)
    if pool is None:
        return state
    from api.archive import regime_with_archive

    return await regime_with_archive(pool, regime_id, state)


async def _workflow_state(client: Any, regime_id: str, closed: bool) -> RegimeState:
    if closed:
        # A closed regime's final state is its workflow's result, read from the last event of its
        # history. A query would make a worker replay the whole history (hundreds of ms for a year).
        try:
            return await client.get_workflow_handle_for(RegimeWorkflow.run, regime_id).result(
                rpc_timeout=timedelta(seconds=5))
        except (WorkflowFailureError, RPCError):
            pass  # terminated by an operator, or not completed yet: ask the workflow as for a live one
    # Just after continue-as-new the new run has no workflow task yet and cannot answer; it will shortly.
    for attempt in range(40):
        try:
            return await client.get_workflow_handle(regime_id).query(RegimeWorkflow.get_state,
                                                                     rpc_timeout=timedelta(seconds=10))
        except RPCError as e:
            if e.status != RPCStatusCode.FAILED_PRECONDITION or attempt == 39:
                raise
            await asyncio.sleep(0.05)
    raise AssertionError("unreachable")


# ------------------------------------------------------------------ placement
@router.post("", status_code=201, operation_id="placeRegime", response_model=Placed, summary="Place a trust in special measures (starts its regime)")
async def place(req: PlacementRequest, request: Request, user: CurrentUser, pool: DbPool,
                client: TemporalClientDep, settings: SettingsDep, rid: RequestId):
    if not user.has("regulator", "admin"):
        raise Problem(403, "forbidden-role", "only the regulator places a trust in special measures")
    if req.entry_date > dates.london_date(_now()):
        raise Problem(422, "rule-broken", "the entry date is in the future")
    if req.ratings is None and req.basis == "cqc_recommendation":
        raise Problem(422, "rule-broken", "a placement on CQC's recommendation needs the CQC ratings")
    if req.ratings is not None and req.basis == "cqc_recommendation":
        verdict = entry_rule(req.ratings)
        if not verdict.met:
            raise Problem(422, "entry-rule-not-met",
                          "the ratings do not meet the entry rule: " + "; ".join(verdict.reasons)
                          + ". The regulator may place on its own evidence with basis 'regulator_decision' "
                            "and a regulator_reason.", reasons=verdict.reasons)
    if req.continue_as_new_after_events is not None and not user.has("admin"):
        raise Problem(403, "forbidden-role", "continue_as_new_after_events is an admin setting")
    if req.basis == "regulator_decision" and not (req.regulator_reason and req.regulator_reason.strip()):
        raise Problem(422, "reason-required", "a placement by regulator decision needs regulator_reason")

    async def handler() -> tuple[int, Any]:
        ods = req.trust.ods_code
        regime_id = regime_id_for(ods, req.entry_date)
        previous = await pool.fetchrow(
            "SELECT regime_id, phase FROM regimes WHERE ods_code = $1 ORDER BY created_at DESC LIMIT 1", ods)
        if previous and previous["phase"] in ("in_special_measures", "extended", "long_term_solution"):
            raise Problem(409, "already-in-special-measures",
                          f"trust {ods} is already in special measures ({previous['regime_id']})",
                          regime_id=previous["regime_id"])
        try:
            await pool.execute(
                """INSERT INTO regimes (regime_id, workflow_id, ods_code, trust_name, multi_site, entry_date, phase,
                                        previous_regime_id) VALUES ($1,$1,$2,$3,$4,$5,'in_special_measures',$6)""",
                regime_id, ods, req.trust.name, req.trust.multi_site, req.entry_date,
                previous["regime_id"] if previous else None)
        except asyncpg.UniqueViolationError:
            raise Problem(409, "already-in-special-measures", f"trust {ods} is already in special measures "
                                                              f"or a regime {regime_id} exists") from None
        placement = Placement(
            regime_id=regime_id, trust=req.trust, entry_date=req.entry_date, basis=req.basis,
            entry_ratings=req.ratings, entry_outcome=req.inspection, regulator_reason=req.regulator_reason,
            previous_regime_id=previous["regime_id"] if previous else None, completed_steps=req.completed_steps,
            ladder=[Rung.model_validate(r) for r in settings.ladder],
            placed_by=actor(user, "regulator" if user.has("regulator") else "admin", rid),
        )
        if req.continue_as_new_after_events:
            placement.continue_as_new_after_events = req.continue_as_new_after_events
        try:
            check_message_size(RegimeStart(placement=placement), settings)
            await client.start_workflow(
                RegimeWorkflow.run, RegimeStart(placement=placement), id=regime_id,
                task_queue=settings.temporal_task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                search_attributes=TypedSearchAttributes([
                    SearchAttributePair(SearchAttributeKey.for_keyword("TrustOdsCode"), ods),
                    SearchAttributePair(SearchAttributeKey.for_keyword("RegimePhase"), "in_special_measures"),
                    SearchAttributePair(SearchAttributeKey.for_keyword("RegimeId"), regime_id),
                ]),
            )
        except WorkflowAlreadyStartedError:
            await pool.execute("DELETE FROM regimes WHERE regime_id = $1 AND last_seq = 0", regime_id)
            raise Problem(409, "already-in-special-measures", f"regime {regime_id} already exists") from None
        except BaseException:
            await pool.execute("DELETE FROM regimes WHERE regime_id = $1 AND last_seq = 0", regime_id)
            raise
        return 201, {"regime_id": regime_id, "workflow_id": regime_id, "phase": "in_special_measures",
                     "previous_regime_id": placement.previous_regime_id}

    return await idempotent(request, pool, user, _json(req), handler)


def _now():
    from datetime import UTC, datetime

    return datetime.now(UTC)


# ------------------------------------------------------------------ reads
@router.get("", operation_id="listRegimes", response_model=RegimePage, summary="List regimes (filter by phase, trust, overdue, escalated)")
async def list_regimes(user: CurrentUser, pool: DbPool,
                       phase: str | None = None, ods_code: str | None = Query(None, max_length=10),
                       q: str | None = Query(None, max_length=100), overdue_only: bool = False,
                       escalated_only: bool = False, limit: int = Query(100, ge=1, le=1000),
                       offset: int = Query(0, ge=0, le=1_000_000)):
    clauses, args = ["TRUE"], []
    readable = user.readable_trusts()  # the rule every read of a regime checks (User.may_read_trust)
    if readable is not None:
        args.append(readable)
        clauses.append(f"ods_code = ANY(${len(args)})")
    for col, val in (("phase", phase), ("ods_code", ods_code)):
        if val:
            args.append(val)
            clauses.append(f"{col} = ${len(args)}")
    if q:
        args.append(f"%{q}%")
        clauses.append(f"(trust_name ILIKE ${len(args)} OR ods_code ILIKE ${len(args)})")
    if overdue_only:
        clauses.append("overdue > 0")
    if escalated_only:
        clauses.append("escalation_level > 0")
    args += [limit, offset]
    rows = await pool.fetch(
        f"SELECT * FROM regimes WHERE {' AND '.join(clauses)} ORDER BY next_due NULLS LAST, regime_id "
        f"LIMIT ${len(args) - 1} OFFSET ${len(args)}", *args)
    return JSONResponse({"items": [_regime_json(r) for r in rows], "limit": limit, "offset": offset})


def _regime_json(r: asyncpg.Record) -> dict[str, Any]:
    d = dict(r)
    for k, v in d.items():
        if hasattr(v, "isoformat"):
            d[k] = v.isoformat()
    return d


@router.get("/{regime_id}", operation_id="getRegime", response_model=RegimeView, summary="A regime's live state: phase, steps, escalations, inspections, buddies")
async def get_regime(regime_id: RegimeIdPath, user: CurrentUser, pool: DbPool, client: TemporalClientDep):
    row = await regime_row(pool, regime_id, user)
    state = await live_state(client, regime_id, closed=row["closed"], pool=pool)
    s = _json(state)
    s["regime_id"] = regime_id
    s["open_steps"] = [st for st in s["steps"].values() if st["status"] == "open"]
    s["projection"] = _regime_json(row)
    # Already JSON-mode: skip FastAPI's jsonable_encoder walk over the whole state (bench/ lifecycle_cost).
    return JSONResponse(s)


# ------------------------------------------------------------------ decisions
@router.post("/{regime_id}/steps/{step_id}/decisions", operation_id="decideStep", response_model=StepDecided,
             summary="Decide an open step (submit, agree, return...)")
async def decide(regime_id: RegimeIdPath, step_id: StepIdPath, req: DecisionRequest, request: Request, user: CurrentUser,
                 pool: DbPool, client: TemporalClientDep, settings: SettingsDep, rid: RequestId):
    row = await regime_row(pool, regime_id, user, as_buddy=True)
    wf_id, task_role, subject, kind = await step_target(pool, regime_id, step_id)
    role = acting_role(user, req.role, task_role)
    require_act(user, role, row["ods_code"], subject)
    kind = await check_payload(client, regime_id, wf_id, step_id, kind, req)

    async def handler() -> tuple[int, Any]:
        payload = req.payload
        doc_kind = DOCUMENT_ACTIONS.get((kind or "", req.action)) if wf_id == regime_id else None
        if doc_kind is not None:
            # A document is stored once in PostgreSQL; the workflow (and its history) gets the reference.
            content = CATALOGUE[kind or ""].actions[req.action].model_validate(req.payload).model_dump(mode="json")
            ref = await documents.store(pool, regime_id, step_id, doc_kind, content, user.sub)
            payload = {"document": ref.model_dump(mode="json")}
        d = Decision(step_id=step_id, action=req.action, actor=actor(user, role, rid), comment=req.comment,
                     payload=payload)
        handle = client.get_workflow_handle(wf_id)
        update = RegimeWorkflow.decide_step if wf_id == regime_id else "decide_step"
        view = await run_update(handle, update, d, settings)
        return 200, _json(view) if isinstance(view, BaseModel) else view

    return await idempotent(request, pool, user, {"step": step_id, **_json(req)}, handler)


@router.post("/{regime_id}/steps/{step_id}/deadline", operation_id="amendDeadline", response_model=StepDecided,
             summary="Move a due date or pause a clock (regulator)")
async def amend(regime_id: RegimeIdPath, step_id: StepIdPath, req: DeadlineRequest, request: Request, user: CurrentUser,
                pool: DbPool, client: TemporalClientDep, settings: SettingsDep, rid: RequestId):
    row = await regime_row(pool, regime_id, user)
    require_act(user, "regulator", row["ods_code"])
    wf_id, _, _, _ = await step_target(pool, regime_id, step_id)

    async def handler() -> tuple[int, Any]:
        c = DeadlineChange(step_id=step_id, new_due=req.new_due, pause=req.pause, reason=req.reason,
                           actor=actor(user, "regulator", rid))
        update = RegimeWorkflow.amend_deadline if wf_id == regime_id else "amend_deadline"
        view = await run_update(client.get_workflow_handle(wf_id), update, c, settings)
        return 200, _json(view) if isinstance(view, BaseModel) else view

    return await idempotent(request, pool, user, {"step": step_id, **_json(req)}, handler)


# ------------------------------------------------------------------ CQC
@router.post("/{regime_id}/inspections", status_code=202, operation_id="recordInspection",
             response_model=InspectionAccepted, summary="Record a published CQC inspection outcome")
async def record_inspection(regime_id: RegimeIdPath, outcome: InspectionOutcome, request: Request, user: CurrentUser,
                            pool: DbPool, client: TemporalClientDep, settings: SettingsDep, rid: RequestId):
    row = await regime_row(pool, regime_id, user)
    require_act(user, "cqc", row["ods_code"])
    if row["multi_site"] != outcome.multi_site:
        raise Problem(422, "rule-broken", f"trust {row['ods_code']} is "
                      f"{'multi-site' if row['multi_site'] else 'single-site'}; the outcome says otherwise")

    async def handler() -> tuple[int, Any]:
        sig = InspectionSignal(outcome=outcome, actor=actor(user, "cqc", rid))
        check_message_size(sig, settings)
        await client.get_workflow_handle(regime_id).signal(RegimeWorkflow.record_inspection, sig)
        return 202, {"accepted": outcome.reference, "regime_id": regime_id}

    return await idempotent(request, pool, user, _json(outcome), handler)


@router.post("/{regime_id}/inspections/{reference}/withdrawal", status_code=202, operation_id="withdrawInspection",
             response_model=InspectionWithdrawn,
             summary="Withdraw a published CQC outcome")
async def withdraw(regime_id: RegimeIdPath, reference: ReferencePath, req: WithdrawalRequest, request: Request, user: CurrentUser,
                   pool: DbPool, client: TemporalClientDep, settings: SettingsDep, rid: RequestId):
    row = await regime_row(pool, regime_id, user)
    require_act(user, "cqc", row["ods_code"])

    async def handler() -> tuple[int, Any]:
        w = Withdrawal(reference=reference, reason=req.reason, actor=actor(user, "cqc", rid))
        check_message_size(w, settings)
        await client.get_workflow_handle(regime_id).signal(RegimeWorkflow.withdraw_inspection, w)
        return 202, {"withdrawn": reference}

    return await idempotent(request, pool, user, {"ref": reference, **_json(req)}, handler)


@router.post("/{regime_id}/reinspection", operation_id="announceReinspection", response_model=StepView,
             summary="Announce the date of the CQC re-inspection")
async def announce(regime_id: RegimeIdPath, req: AnnouncementRequest, request: Request, user: CurrentUser,
                   pool: DbPool, client: TemporalClientDep, settings: SettingsDep, rid: RequestId):
    row = await regime_row(pool, regime_id, user)
    role = acting_role(user, None, "cqc" if user.has("cqc") else "regulator")
    require_act(user, role, row["ods_code"])

    async def handler() -> tuple[int, Any]:
        view = await run_update(client.get_workflow_handle(regime_id), RegimeWorkflow.announce_reinspection,
                                ReinspectionAnnouncement(inspection_date=req.inspection_date,
                                                         actor=actor(user, role, rid)), settings)
        return 200, _json(view)

    return await idempotent(request, pool, user, _json(req), handler)


@router.post("/{regime_id}/enforcement", operation_id="recordEnforcement", response_model=EnforcementRecorded,
             summary="Record a CQC enforcement action")
async def enforcement(regime_id: RegimeIdPath, req: EnforcementRequest, request: Request, user: CurrentUser,
                      pool: DbPool, client: TemporalClientDep, settings: SettingsDep, rid: RequestId):
    row = await regime_row(pool, regime_id, user)
    require_act(user, "cqc", row["ods_code"])

    async def handler() -> tuple[int, Any]:
        # An enforcement action happens once: the same action and detail by the same person on the same
        # London day is the same record (the workflow's validator refuses the repeat and names the first);
        # it is answered 200 with that record's number, with or without an Idempotency-Key. Requests for one
        # regime take turns here, so two identical ones sent together cannot both pass the validator.
        async with pool.acquire() as conn:
            await conn.execute("SELECT pg_advisory_lock(hashtextextended($1, 0))", f"enforcement:{regime_id}")
            try:
                n = await run_update(client.get_workflow_handle(regime_id), RegimeWorkflow.record_enforcement,
                                     Enforcement(action=req.action, detail=req.detail, actor=actor(user, "cqc", rid)),
                                     settings)
            except Problem as p:
                if p.kind != "duplicate" or "number" not in p.extra:
                    raise
                return 200, {"enforcement_actions": p.extra["number"], "already_recorded": True,
                             "record": p.extra.get("record")}
            finally:
                await conn.execute("SELECT pg_advisory_unlock(hashtextextended($1, 0))", f"enforcement:{regime_id}")
        return 200, {"enforcement_actions": n}

    return await idempotent(request, pool, user, _json(req), handler)


class DelegationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to_user_id: text(200, min_length=1) = Field(description="the user who covers (an improvement director of the trust)")
    until: date = Field(description="the last day of the cover (London date)")
    reason: text(2000, min_length=1)


@router.post("/{regime_id}/delegations", status_code=201, operation_id="recordDelegation",
             response_model=DelegationRecorded,
             summary="Record cover for the appointed improvement director (the regulator, or that director)")
async def delegate(regime_id: RegimeIdPath, req: DelegationRequest, request: Request, user: CurrentUser, pool: DbPool,
                   client: TemporalClientDep, settings: SettingsDep, rid: RequestId):
    row = await regime_row(pool, regime_id, user)
    role = "regulator" if user.has("regulator") else "improvement_director"
    require_act(user, role, row["ods_code"])

    async def handler() -> tuple[int, Any]:
        entry = await run_update(client.get_workflow_handle(regime_id), RegimeWorkflow.delegate,
                                 Delegation(to_user_id=req.to_user_id, until=req.until, reason=req.reason,
                                            actor=actor(user, role, rid)), settings)
        return 201, entry

    return await idempotent(request, pool, user, _json(req), handler)


@router.post("/{regime_id}/closure", operation_id="closeRegime", response_model=Closed, summary="Close the regime by a structural solution (regulator)")
async def close(regime_id: RegimeIdPath, req: ClosureRequest, request: Request, user: CurrentUser, pool: DbPool,
                client: TemporalClientDep, settings: SettingsDep, rid: RequestId):
    row = await regime_row(pool, regime_id, user)
    require_act(user, "regulator", row["ods_code"])

    async def handler() -> tuple[int, Any]:
        # A regime is closed once: closing a regime already closed by a structural solution answers that
        # first closure (what it was, by whom, when) and records nothing, with or without an Idempotency-Key.
        if not row["closed"]:
            try:
                phase = await run_update(client.get_workflow_handle(regime_id), RegimeWorkflow.close_regime,
                                         Closure(solution=req.solution, reason=req.reason,
                                                 actor=actor(user, "regulator", rid)), settings)
                return 200, {"phase": phase}
            except Problem as p:
                if p.status not in (404, 409):  # the regime finished meanwhile (this closure or another)
                    raise
                first = await _first_closure(pool, client, regime_id)
                if first is None:
                    raise
                return 200, first
        first = await _first_closure(pool, client, regime_id)
        if first is None:
            raise Problem(409, "step-not-open", "the regime is already closed (it did not end by a closure)",
                          phase=row["phase"])
        return 200, first

    return await idempotent(request, pool, user, _json(req), handler)


async def _first_closure(pool: asyncpg.Pool, client: Any, regime_id: str) -> dict[str, Any] | None:
    """The closure that closed the regime, as the answer to a repeated closure; None if it ended otherwise."""
    closed = await pool.fetchval("SELECT closed FROM regimes WHERE regime_id = $1", regime_id)
    state = await live_state(client, regime_id, closed=bool(closed))
    if state.phase != "closed_structural" or not state.closure:
        return None
    return {"phase": state.phase, "closure": state.closure, "already_closed": True}


@router.post("/{regime_id}/buddies", status_code=201, operation_id="addBuddy", response_model=BuddySummary,
             summary="Start a buddy partnership (regulator)")
async def add_buddy(regime_id: RegimeIdPath, req: BuddyAddRequest, request: Request, user: CurrentUser,
                    pool: DbPool, client: TemporalClientDep, settings: SettingsDep, rid: RequestId):
    row = await regime_row(pool, regime_id, user)
    require_act(user, "regulator", row["ods_code"])

    aip = _json(req.agreement_in_principle) if req.agreement_in_principle is not None else None

    async def handler() -> tuple[int, Any]:
        summary = await run_update(client.get_workflow_handle(regime_id), RegimeWorkflow.add_buddy,
                                   BuddyRequest(buddy=req.buddy, scope=req.scope, actor=actor(user, "regulator", rid),
                                                agreement_in_principle=aip), settings)
        return 201, _json(summary)

    return await idempotent(request, pool, user, _json(req), handler)
