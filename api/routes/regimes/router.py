"""The regimes routes: placement, state, decisions on steps, deadlines, CQC outcomes, closure, buddies.

Each route checks who may do it (permissions.py), then hands the work to service.py, under an Idempotency-Key
when it changes something."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

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
from api.idempotency import idempotent
from api.routes.regimes import service
from api.routes.regimes.bodies import (
    AnnouncementRequest,
    BuddyAddRequest,
    ClosureRequest,
    DeadlineRequest,
    DecisionRequest,
    DelegationRequest,
    DraftReportRequest,
    EnforcementRequest,
    InspectionReport,
    PlacementRequest,
    ReferencePath,
    RegimeIdPath,
    StepIdPath,
    WithdrawalRequest,
)
from api.routes.regimes.permissions import (
    acting_role,
    announcing_role,
    delegating_role,
    regime_row,
    require_act,
)
from api.routes.regimes.service import as_json
from api.routes.regimes.watch_link import with_appointment
from domain.models import BuddySummary, StepView

router = APIRouter(prefix="/regimes", tags=["regimes"])


# ------------------------------------------------------------------ placement
@router.post("", status_code=201, operation_id="placeRegime", response_model=Placed, summary="Place a trust in special measures (starts its regime)")
async def place(req: PlacementRequest, request: Request, user: CurrentUser, pool: DbPool,
                client: TemporalClientDep, settings: SettingsDep, rid: RequestId):
    service.check_placement(user, req)
    return await idempotent(request, pool, user, as_json(req),
                            lambda: service.place(pool, client, settings, user, rid, req))


# ------------------------------------------------------------------ reads
@router.get("", operation_id="listRegimes", response_model=RegimePage, summary="List regimes (filter by phase, trust, overdue, escalated)")
async def list_regimes(user: CurrentUser, pool: DbPool, settings: SettingsDep,
                       phase: str | None = None, ods_code: str | None = Query(None, max_length=10),
                       q: str | None = Query(None, max_length=100), overdue_only: bool = False,
                       escalated_only: bool = Query(False, description="only regimes with an open step past its "
                                                    "due date on the escalation ladder (at or beyond its first "
                                                    "rung after the due date; reminders do not count)"),
                       limit: int = Query(100, ge=1, le=1000),
                       offset: int = Query(0, ge=0, le=1_000_000)):
    return JSONResponse(await service.list_page(user, pool, settings, phase, ods_code, q, overdue_only,
                                                escalated_only, limit, offset))


@router.get("/{regime_id}", operation_id="getRegime", response_model=RegimeView, summary="A regime's live state: phase, steps, escalations, inspections, buddies")
async def get_regime(regime_id: RegimeIdPath, user: CurrentUser, pool: DbPool, client: TemporalClientDep):
    row = await regime_row(pool, regime_id, user)
    # Already JSON-mode: skip FastAPI's jsonable_encoder walk over the whole state (bench/ lifecycle_cost).
    view = await service.regime_view(pool, client, regime_id, row)
    # The trust's time on the challenged-providers watch list: only for those who may see the list (recorded).
    from api.routes.watchlist import regime_link

    link = await regime_link(pool, user, regime_id, row["ods_code"])
    if link is not None:
        view["watch_list"] = with_appointment(link, view)
    return JSONResponse(view)


# ------------------------------------------------------------------ decisions
@router.post("/{regime_id}/steps/{step_id}/decisions", operation_id="decideStep", response_model=StepDecided,
             summary="Decide an open step (submit, agree, return...)")
async def decide(regime_id: RegimeIdPath, step_id: StepIdPath, req: DecisionRequest, request: Request, user: CurrentUser,
                 pool: DbPool, client: TemporalClientDep, settings: SettingsDep, rid: RequestId):
    row = await regime_row(pool, regime_id, user, as_buddy=True)
    wf_id, task_role, subject, kind = await service.step_target(pool, regime_id, step_id)
    role = acting_role(user, req.role, task_role)
    require_act(user, role, row["ods_code"], subject)
    kind = await service.check_payload(client, regime_id, wf_id, step_id, kind, req)
    return await idempotent(request, pool, user, {"step": step_id, **as_json(req)},
                            lambda: service.decide(pool, client, settings, user, role, rid, regime_id, step_id,
                                                   wf_id, kind, req))


@router.post("/{regime_id}/steps/{step_id}/deadline", operation_id="amendDeadline", response_model=StepDecided,
             summary="Move a due date or pause a clock (regulator)")
async def amend(regime_id: RegimeIdPath, step_id: StepIdPath, req: DeadlineRequest, request: Request, user: CurrentUser,
                pool: DbPool, client: TemporalClientDep, settings: SettingsDep, rid: RequestId):
    row = await regime_row(pool, regime_id, user)
    require_act(user, "regulator", row["ods_code"])
    wf_id, _, _, _ = await service.step_target(pool, regime_id, step_id)
    return await idempotent(request, pool, user, {"step": step_id, **as_json(req)},
                            lambda: service.amend(client, settings, user, rid, regime_id, step_id, wf_id, req))


# ------------------------------------------------------------------ CQC
@router.post("/{regime_id}/inspections", status_code=202, operation_id="recordInspection",
             response_model=InspectionAccepted, summary="Record a published CQC inspection outcome")
async def record_inspection(regime_id: RegimeIdPath, outcome: InspectionReport, request: Request, user: CurrentUser,
                            pool: DbPool, client: TemporalClientDep, settings: SettingsDep, rid: RequestId):
    row = await regime_row(pool, regime_id, user)
    require_act(user, "cqc", row["ods_code"])
    service.check_inspection(row, outcome)
    return await idempotent(request, pool, user, as_json(outcome),
                            lambda: service.record_inspection(client, settings, user, rid, regime_id, outcome))


@router.post("/{regime_id}/inspections/{reference}/withdrawal", status_code=202, operation_id="withdrawInspection",
             response_model=InspectionWithdrawn,
             summary="Withdraw a published CQC outcome")
async def withdraw(regime_id: RegimeIdPath, reference: ReferencePath, req: WithdrawalRequest, request: Request, user: CurrentUser,
                   pool: DbPool, client: TemporalClientDep, settings: SettingsDep, rid: RequestId):
    row = await regime_row(pool, regime_id, user)
    require_act(user, "cqc", row["ods_code"])
    return await idempotent(request, pool, user, {"ref": reference, **as_json(req)},
                            lambda: service.withdraw(client, settings, user, rid, regime_id, reference, req))


@router.post("/{regime_id}/inspections/{reference}/draft", operation_id="recordDraftReport", response_model=StepView,
             summary="Record that CQC sent the trust its draft report for factual accuracy")
async def draft_report(regime_id: RegimeIdPath, reference: ReferencePath, req: DraftReportRequest, request: Request,
                       user: CurrentUser, pool: DbPool, client: TemporalClientDep, settings: SettingsDep,
                       rid: RequestId):
    row = await regime_row(pool, regime_id, user)
    require_act(user, "cqc", row["ods_code"])
    return await idempotent(request, pool, user, {"ref": reference, **as_json(req)},
                            lambda: service.draft_report(client, settings, user, rid, regime_id, reference, req))


@router.post("/{regime_id}/reinspection", operation_id="announceReinspection", response_model=StepView,
             summary="Announce the date of the CQC re-inspection")
async def announce(regime_id: RegimeIdPath, req: AnnouncementRequest, request: Request, user: CurrentUser,
                   pool: DbPool, client: TemporalClientDep, settings: SettingsDep, rid: RequestId):
    row = await regime_row(pool, regime_id, user)
    role = announcing_role(user)
    require_act(user, role, row["ods_code"])
    return await idempotent(request, pool, user, as_json(req),
                            lambda: service.announce(client, settings, user, role, rid, regime_id, req))


@router.post("/{regime_id}/enforcement", operation_id="recordEnforcement", response_model=EnforcementRecorded,
             summary="Record a CQC enforcement action")
async def enforcement(regime_id: RegimeIdPath, req: EnforcementRequest, request: Request, user: CurrentUser,
                      pool: DbPool, client: TemporalClientDep, settings: SettingsDep, rid: RequestId):
    row = await regime_row(pool, regime_id, user)
    require_act(user, "cqc", row["ods_code"])
    return await idempotent(request, pool, user, as_json(req),
                            lambda: service.enforcement(pool, client, settings, user, rid, regime_id, req))


@router.post("/{regime_id}/delegations", status_code=201, operation_id="recordDelegation",
             response_model=DelegationRecorded,
             summary="Record cover for the appointed improvement director (the regulator, or that director)")
async def delegate(regime_id: RegimeIdPath, req: DelegationRequest, request: Request, user: CurrentUser, pool: DbPool,
                   client: TemporalClientDep, settings: SettingsDep, rid: RequestId):
    row = await regime_row(pool, regime_id, user)
    role = delegating_role(user)
    require_act(user, role, row["ods_code"])
    return await idempotent(request, pool, user, as_json(req),
                            lambda: service.delegate(client, settings, user, role, rid, regime_id, req))


@router.post("/{regime_id}/closure", operation_id="closeRegime", response_model=Closed, summary="Close the regime by a structural solution (regulator)")
async def close(regime_id: RegimeIdPath, req: ClosureRequest, request: Request, user: CurrentUser, pool: DbPool,
                client: TemporalClientDep, settings: SettingsDep, rid: RequestId):
    row = await regime_row(pool, regime_id, user)
    require_act(user, "regulator", row["ods_code"])
    return await idempotent(request, pool, user, as_json(req),
                            lambda: service.close(pool, client, settings, user, rid, regime_id, row, req))


@router.post("/{regime_id}/buddies", status_code=201, operation_id="addBuddy", response_model=BuddySummary,
             summary="Start a buddy partnership (regulator)")
async def add_buddy(regime_id: RegimeIdPath, req: BuddyAddRequest, request: Request, user: CurrentUser,
                    pool: DbPool, client: TemporalClientDep, settings: SettingsDep, rid: RequestId):
    row = await regime_row(pool, regime_id, user)
    require_act(user, "regulator", row["ods_code"])
    return await idempotent(request, pool, user, as_json(req),
                            lambda: service.add_buddy(client, settings, user, rid, regime_id, req))
