"""What the regimes routes do once permitted: ask the regime's workflow through Temporal (placement, updates,
signals, its live state) and PostgreSQL (projections, documents), check what only they can check (a payload
against its step kind, the size Temporal takes) and build the answers. Each action returns (status, body)
for api.idempotency.idempotent."""

from __future__ import annotations

import asyncio
import logging
from datetime import date, timedelta
from typing import Any

import asyncpg
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
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
from api.contract import deadline_basis
from api.errors import Problem, rejection_problem, stuck_problem, temporal_problem, workflow_task_failing
from api.routes.regimes.bodies import (
    AnnouncementRequest,
    BuddyAddRequest,
    ClosureRequest,
    DeadlineRequest,
    DecisionRequest,
    DelegationRequest,
    DraftReportRequest,
    EnforcementRequest,
    PlacementRequest,
    WithdrawalRequest,
)
from api.routes.regimes.permissions import actor, placing_role, require_may_place, require_may_tune
from api.routes.regimes.watch_link import appointment_before_placement
from domain import dates
from domain import ladder as escalation
from domain.documents import DOCUMENT_ACTIONS
from domain.ledger import BUDDY_STEPS
from domain.models import (
    Closure,
    DeadlineChange,
    Decision,
    Delegation,
    DraftReport,
    Enforcement,
    InspectionSignal,
    Placement,
    RegimeStart,
    RegimeState,
    ReinspectionAnnouncement,
    Rung,
    Withdrawal,
)
from domain.ratings import InspectionOutcome
from domain.rules import entry_rule
from domain.steps import CATALOGUE, Kind
from domain.text import json_error
from domain.vocab import ACTIVE_PHASES, Phase, Role
from infra import bank_holidays
from settings import Settings
from workflows.buddy import BuddyPartnershipWorkflow
from workflows.common import BuddyRequest
from workflows.regime import RegimeWorkflow

log = logging.getLogger(__name__)


def regime_id_for(ods: str, entry: date, measures: str = "quality") -> str:
    """`regime-<ODS>-<entry date>`; a finance regime, which can run beside a quality one, `regime-<ODS>-finance-<date>`."""
    return f"regime-{ods}-finance-{entry.isoformat()}" if measures == "finance" else f"regime-{ods}-{entry.isoformat()}"


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
            extra = cause.details[0] if cause.details and isinstance(cause.details[0], dict) else {}
            raise rejection_problem(cause.type, cause.message, **extra) from None
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


def as_json(model: BaseModel) -> Any:
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
def check_placement(user: User, req: PlacementRequest) -> None:
    """The entry rule and the placement's own rules, in the order they are answered."""
    require_may_place(user)
    if req.entry_date > dates.london_date(_now()):
        raise Problem(422, "rule-broken", "the entry date is in the future")
    if req.ratings is None and req.basis == Kind.cqc_recommendation:
        raise Problem(422, "rule-broken", "a placement on CQC's recommendation needs the CQC ratings")
    if req.ratings is not None and req.basis == Kind.cqc_recommendation:
        # The entry rule is the normal trigger, not a gate (seeds 000 §1 and 002: the recommendation is
        # *typically* made on it): a recommendation that does not meet it stands once the regulator confirms it
        # with its reason, and is recorded as what it is (issue 14 item 4).
        verdict = entry_rule(req.ratings)
        if not verdict.met and not (req.regulator_reason and req.regulator_reason.strip()):
            raise Problem(422, "entry-rule-not-met",
                          "the ratings do not meet the entry rule: " + "; ".join(verdict.reasons)
                          + ". CQC's recommendation is typically made on that rule, not only on it: the regulator "
                            "confirms a recommendation that does not meet it with its reason (regulator_reason).",
                          reasons=verdict.reasons)
    require_may_tune(user, req.continue_as_new_after_events)
    if req.measures == "finance" and req.basis != Kind.regulator_decision:
        raise Problem(422, "rule-broken", "finance special measures are the regulator's decision: basis "
                                          "regulator_decision, with its reason")
    if req.basis == Kind.regulator_decision and not (req.regulator_reason and req.regulator_reason.strip()):
        raise Problem(422, "reason-required", "a placement by regulator decision needs regulator_reason")


async def place(pool: asyncpg.Pool, client: Any, settings: Settings, user: User, rid: str,
                req: PlacementRequest) -> tuple[int, Any]:
    ods = req.trust.ods_code
    regime_id = regime_id_for(ods, req.entry_date, req.measures)
    # A trust may be in quality and in finance special measures at once, as two regimes (or one combined): a new
    # regime conflicts with a running one only where what they are for overlaps.
    overlapping = {"quality": ["quality", "combined"], "finance": ["finance", "combined"],
                   "combined": ["quality", "finance", "combined"]}[req.measures]
    previous = await pool.fetchrow(
        "SELECT regime_id, phase, measures FROM regimes WHERE ods_code = $1 AND measures = ANY($2::text[]) "
        "ORDER BY created_at DESC LIMIT 1", ods, overlapping)
    # A combined regime out of quality special measures and still in finance holds the finance side only.
    if previous and previous["phase"] in ACTIVE_PHASES and not (
            previous["phase"] == Phase.in_finance_special_measures and req.measures == "quality"):
        raise Problem(409, "already-in-special-measures",
                      f"trust {ods} is already in special measures ({previous['regime_id']})",
                      regime_id=previous["regime_id"])
    entry_id = req.watch_list_entry_id
    if entry_id is None and user.has(Role.regulator):
        # A trust placed from the challenged-providers watch list: its entry ends, linked to the regime (seen only
        # by those who may see the list; the regulator is one).
        entry_id = await pool.fetchval("SELECT entry_id FROM watch_list WHERE ods_code = $1 AND status = 'on_list'",
                                       ods)
    appointed = None
    if entry_id is not None:
        from api.routes.watchlist import check_placement_link

        await check_placement_link(pool, user, entry_id, ods)
        # The improvement director appointed on the list stays: the regime takes the appointment as made.
        appointed = await appointment_before_placement(client, entry_id, actor(user, "regulator", rid))
    try:
        await pool.execute(
            """INSERT INTO regimes (regime_id, workflow_id, ods_code, trust_name, multi_site, entry_date, phase,
                                    previous_regime_id, measures)
               VALUES ($1,$1,$2,$3,$4,$5,'in_special_measures',$6,$7)""",
            regime_id, ods, req.trust.name, req.trust.multi_site, req.entry_date,
            previous["regime_id"] if previous else None, req.measures)
    except asyncpg.UniqueViolationError:
        raise Problem(409, "already-in-special-measures", f"trust {ods} is already in special measures "
                                                          f"or a regime {regime_id} exists") from None
    placement = Placement(
        regime_id=regime_id, trust=req.trust, entry_date=req.entry_date, basis=req.basis,
        entry_ratings=req.ratings, entry_outcome=req.inspection, regulator_reason=req.regulator_reason,
        previous_regime_id=previous["regime_id"] if previous else None, completed_steps=req.completed_steps,
        ladder=[Rung.model_validate(r) for r in settings.ladder],
        placed_by=actor(user, placing_role(user), rid),
        policy=req.policy.applied_to(settings.policy) if req.policy else settings.policy,  # recorded now: a later change of the settings leaves this regime's as it is
        calendar=settings.calendar_rules,  # likewise
        quality_summits=True,
        buddy_appointment=True,
        programme=True,
        funding_usual_max_pence=settings.funding_usual_max_pence,
        measures=req.measures,
        appointment_before_placement=appointed,
    )
    if req.continue_as_new_after_events:
        placement.continue_as_new_after_events = req.continue_as_new_after_events
    try:
        # The bank holidays its first deadlines may move for, from the library now (recorded in the workflow's input,
        # so a later upgrade of the library moves nothing): only when the regime moves deadlines for them.
        holidays = (bank_holidays.for_placement(placement.entry_date, dates.london_date(_now()))
                    if settings.bank_holidays == "next_working_day" else None)
        start = RegimeStart(placement=placement, bank_holidays=holidays)
        check_message_size(start, settings)
        await client.start_workflow(
            RegimeWorkflow.run, start, id=regime_id,
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
    if entry_id is not None:
        from api.routes.watchlist import link_placement

        try:
            await link_placement(pool, client, settings, user, rid, entry_id, ods, regime_id)
        except Problem as e:  # the regime is placed whatever became of the entry meanwhile (ended by another)
            log.warning("watch-list entry %s not linked to %s: %s", entry_id, regime_id, e.detail)
    return 201, {"regime_id": regime_id, "workflow_id": regime_id, "phase": "in_special_measures",
                 "previous_regime_id": placement.previous_regime_id,
                 "policy": placement.policy.model_dump(mode="json")}


def _now():
    from datetime import UTC, datetime

    return datetime.now(UTC)


# ------------------------------------------------------------------ reads
async def list_page(user: User, pool: asyncpg.Pool, settings: Settings, phase: str | None, ods_code: str | None,
                    q: str | None, overdue_only: bool, escalated_only: bool, limit: int,
                    offset: int) -> dict[str, Any]:
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
    if escalated_only:  # past a due date on the ladder, as the pages count it (domain/ladder.py)
        args.append(escalation.first_late_level(settings.ladder))
        clauses.append(f"escalation_level >= ${len(args)}")
    args += [limit, offset]
    rows = await pool.fetch(
        f"SELECT * FROM regimes WHERE {' AND '.join(clauses)} ORDER BY next_due NULLS LAST, regime_id "
        f"LIMIT ${len(args) - 1} OFFSET ${len(args)}", *args)
    return {"items": [_regime_json(r) for r in rows], "limit": limit, "offset": offset}


def _regime_json(r: asyncpg.Record) -> dict[str, Any]:
    d = dict(r)
    for k, v in d.items():
        if hasattr(v, "isoformat"):
            d[k] = v.isoformat()
    return d


async def regime_view(pool: asyncpg.Pool, client: Any, regime_id: str, row: asyncpg.Record) -> dict[str, Any]:
    state = await live_state(client, regime_id, closed=row["closed"], pool=pool)
    s = as_json(state)
    s["regime_id"] = regime_id
    with_deadline_basis(s["steps"])
    s["open_steps"] = [st for st in s["steps"].values() if st["status"] == "open"]
    s["projection"] = _regime_json(row)
    s["policy"] = s["placement"]["policy"]
    s["trust_regimes"] = await trust_regimes(pool, row["ods_code"])
    return s


async def trust_regimes(pool: asyncpg.Pool, ods: str) -> dict[str, Any]:
    """The trust's regimes side by side (quality and finance special measures, issue 16 item 3), and the trust's
    oversight segment: 4 while it is in either, 3 only when it is in neither (seed 002)."""
    rows = await pool.fetch("SELECT regime_id, measures, phase, segment, entry_date, exit_date FROM regimes "
                            "WHERE ods_code = $1 ORDER BY entry_date, regime_id", ods)
    items = [{"regime_id": r["regime_id"], "measures": r["measures"], "phase": r["phase"], "segment": r["segment"],
              "entry_date": r["entry_date"].isoformat(),
              "exit_date": r["exit_date"].isoformat() if r["exit_date"] else None} for r in rows]
    active = [i for i in items if i["phase"] in ACTIVE_PHASES]
    segment = 4 if active else min((i["segment"] for i in items), default=None)
    now_in = {m for i in active for m in (
        ("finance",) if i["phase"] == Phase.in_finance_special_measures
        else ("quality", "finance") if i["measures"] == "combined" else (i["measures"],))}
    return {"segment": segment, "in": sorted(now_in), "regimes": items}


def with_deadline_basis(steps: dict[str, dict[str, Any]]) -> None:
    """Give each step (JSON) its `deadline_basis`, from its kind's catalogue entry and its amendments."""
    for st in steps.values():
        st["deadline_basis"] = deadline_basis(st.get("kind"), st.get("amendments"))


# ------------------------------------------------------------------ decisions
async def decide(pool: asyncpg.Pool, client: Any, settings: Settings, user: User, role: str, rid: str,
                 regime_id: str, step_id: str, wf_id: str, kind: str | None, req: DecisionRequest) -> tuple[int, Any]:
    payload = req.payload
    doc_kind = DOCUMENT_ACTIONS.get((kind or "", req.action)) if wf_id == regime_id else None
    if doc_kind is not None:
        # A document is stored once in PostgreSQL; the workflow (and its history) gets the reference.
        content = CATALOGUE[kind or ""].actions[req.action].model_validate(req.payload).model_dump(mode="json")
        ref = await documents.store(pool, regime_id, step_id, doc_kind, content, user.sub)
        payload = {"document": ref.model_dump(mode="json"), **documents.index_of(doc_kind, content)}
    d = Decision(step_id=step_id, action=req.action, actor=actor(user, role, rid), comment=req.comment,
                 payload=payload)
    handle = client.get_workflow_handle(wf_id)
    update = RegimeWorkflow.decide_step if wf_id == regime_id else "decide_step"
    view = await run_update(handle, update, d, settings)
    return 200, as_json(view) if isinstance(view, BaseModel) else view


async def amend(client: Any, settings: Settings, user: User, rid: str, regime_id: str, step_id: str, wf_id: str,
                req: DeadlineRequest) -> tuple[int, Any]:
    c = DeadlineChange(step_id=step_id, new_due=req.new_due, pause=req.pause, reason=req.reason,
                       actor=actor(user, "regulator", rid))
    update = RegimeWorkflow.amend_deadline if wf_id == regime_id else "amend_deadline"
    view = await run_update(client.get_workflow_handle(wf_id), update, c, settings)
    return 200, as_json(view) if isinstance(view, BaseModel) else view


# ------------------------------------------------------------------ CQC
def check_inspection(row: asyncpg.Record, outcome: InspectionOutcome) -> None:
    if row["multi_site"] != outcome.multi_site:
        raise Problem(422, "rule-broken", f"trust {row['ods_code']} is "
                      f"{'multi-site' if row['multi_site'] else 'single-site'}; the outcome says otherwise")
    if outcome.special_measures_reinspection and outcome.inspection_end < row["entry_date"]:
        raise Problem(422, "rule-broken", f"an inspection that ended on {outcome.inspection_end.isoformat()}, "
                      f"before the trust entered special measures on {row['entry_date'].isoformat()}, cannot be "
                      "its special-measures re-inspection")


async def record_inspection(client: Any, settings: Settings, user: User, rid: str, regime_id: str,
                            outcome: InspectionOutcome) -> tuple[int, Any]:
    sig = InspectionSignal(outcome=InspectionOutcome.model_validate(outcome.model_dump()), actor=actor(user, "cqc", rid))
    check_message_size(sig, settings)
    await client.get_workflow_handle(regime_id).signal(RegimeWorkflow.record_inspection, sig)
    return 202, {"accepted": outcome.reference, "regime_id": regime_id}


async def withdraw(client: Any, settings: Settings, user: User, rid: str, regime_id: str, reference: str,
                   req: WithdrawalRequest) -> tuple[int, Any]:
    w = Withdrawal(reference=reference, reason=req.reason, actor=actor(user, "cqc", rid))
    check_message_size(w, settings)
    await client.get_workflow_handle(regime_id).signal(RegimeWorkflow.withdraw_inspection, w)
    return 202, {"withdrawn": reference}


async def announce(client: Any, settings: Settings, user: User, role: str, rid: str, regime_id: str,
                   req: AnnouncementRequest) -> tuple[int, Any]:
    view = await run_update(client.get_workflow_handle(regime_id), RegimeWorkflow.announce_reinspection,
                            ReinspectionAnnouncement(inspection_date=req.inspection_date,
                                                     actor=actor(user, role, rid)), settings)
    return 200, as_json(view)


async def draft_report(client: Any, settings: Settings, user: User, rid: str, regime_id: str, reference: str,
                       req: DraftReportRequest) -> tuple[int, Any]:
    view = await run_update(client.get_workflow_handle(regime_id), RegimeWorkflow.record_draft_report,
                            DraftReport(reference=reference, sent_on=req.sent_on, actor=actor(user, "cqc", rid)),
                            settings)
    return 200, as_json(view)


async def enforcement(pool: asyncpg.Pool, client: Any, settings: Settings, user: User, rid: str, regime_id: str,
                      req: EnforcementRequest) -> tuple[int, Any]:
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


async def delegate(client: Any, settings: Settings, user: User, role: str, rid: str, regime_id: str,
                   req: DelegationRequest) -> tuple[int, Any]:
    entry = await run_update(client.get_workflow_handle(regime_id), RegimeWorkflow.delegate,
                             Delegation(to_user_id=req.to_user_id, until=req.until, reason=req.reason,
                                        actor=actor(user, role, rid)), settings)
    return 201, entry


async def close(pool: asyncpg.Pool, client: Any, settings: Settings, user: User, rid: str, regime_id: str,
                row: asyncpg.Record, req: ClosureRequest) -> tuple[int, Any]:
    # A regime is closed once: closing a regime already closed by a structural solution answers that
    # first closure (what it was, by whom, when) and records nothing, with or without an Idempotency-Key.
    if req.successor_ods_code == row["ods_code"]:
        raise Problem(422, "rule-broken", f"the successor is another organisation than trust {row['ods_code']}")
    if not row["closed"]:
        try:
            phase = await run_update(client.get_workflow_handle(regime_id), RegimeWorkflow.close_regime,
                                     Closure(solution=req.solution, reason=req.reason,
                                             successor_ods_code=req.successor_ods_code,
                                             successor_name=req.successor_name, cqc_view=req.cqc_view,
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


async def _first_closure(pool: asyncpg.Pool, client: Any, regime_id: str) -> dict[str, Any] | None:
    """The closure that closed the regime, as the answer to a repeated closure; None if it ended otherwise."""
    closed = await pool.fetchval("SELECT closed FROM regimes WHERE regime_id = $1", regime_id)
    state = await live_state(client, regime_id, closed=bool(closed))
    if state.phase != "closed_structural" or not state.closure:
        return None
    return {"phase": state.phase, "closure": state.closure, "already_closed": True}


async def add_buddy(client: Any, settings: Settings, user: User, rid: str, regime_id: str,
                    req: BuddyAddRequest) -> tuple[int, Any]:
    aip = as_json(req.agreement_in_principle) if req.agreement_in_principle is not None else None
    summary = await run_update(client.get_workflow_handle(regime_id), RegimeWorkflow.add_buddy,
                               BuddyRequest(buddy=req.buddy, scope=req.scope, actor=actor(user, "regulator", rid),
                                            agreement_in_principle=aip), settings)
    return 201, as_json(summary)
