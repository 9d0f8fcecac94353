"""Buddy partnerships of a regime: their state, their ledgers and payments, early end, plan changes.

Starting a partnership is `POST /regimes/{id}/buddies` (regimes router); its steps are decided through
`POST /regimes/{id}/steps/{step_id}/decisions` like every other step.
"""

from __future__ import annotations

from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from activities.payments import payments_for
from api.auth import User
from api.contract import LedgerWithPayments, PartnershipPage, PartnershipView, as_is
from api.deps import CurrentUser, DbPool, RequestId, SettingsDep, TemporalClientDep
from api.errors import Problem
from api.idempotency import idempotent
from api.routes.regimes.bodies import RegimeIdPath
from api.routes.regimes.permissions import actor, regime_row, require_act, unknown_regime
from api.routes.regimes.service import live_state, run_update, with_deadline_basis
from domain.ledger import BuddyState, PartnershipEnd, PlanChange, PlanChangeRecord, SupportPlan
from domain.models import BuddySummary
from domain.text import text
from workflows.buddy import BuddyPartnershipWorkflow

router = APIRouter(prefix="/regimes", tags=["buddies"])


PartnershipIdPath = Annotated[text(300, min_length=1), Path()]


class EndRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: text(4000, min_length=1)


class PlanChangeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    plan: SupportPlan
    reason: text(4000, min_length=1)


def buddy_of(regime_id: str, partnership_id: str) -> str | None:
    """The buddy trust's ODS code, read from the partnership id (`<regime id>-buddy-<ODS>[-<scope>]`,
    workflows/regime.py); None when the id is not one of this regime's."""
    prefix = f"{regime_id}-buddy-"
    if not partnership_id.startswith(prefix):
        return None
    return partnership_id[len(prefix):].split("-", 1)[0] or None


async def partnership(pool: asyncpg.Pool, client: Client, user: User, regime_id: str,
                      partnership_id: str) -> tuple[asyncpg.Record, BuddyState]:
    """The regime's row and the partnership's state, authorised *before* Temporal is asked (issue 17,
    finding 9): the trust's readers, or the buddy named by the partnership id. Anyone else gets the same
    404 as for a regime that does not exist, whether the regime or the partnership exists or not; a reader
    of the trust learns that a partnership does not exist."""
    row = await pool.fetchrow("SELECT * FROM regimes WHERE regime_id = $1", regime_id)
    buddy = buddy_of(regime_id, partnership_id)
    reader = row is not None and user.may_read_trust(row["ods_code"])
    if row is None or not (reader or user.may_act_as_buddy(buddy)):
        raise unknown_regime(regime_id)
    missing = (Problem(404, "unknown-partnership", f"no partnership '{partnership_id}' of {regime_id}")
               if reader else unknown_regime(regime_id))
    if buddy is None:
        raise missing
    try:
        state = await client.get_workflow_handle(partnership_id).query(BuddyPartnershipWorkflow.get_state)
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            raise missing from None
        raise
    if state.p.regime_id != regime_id or state.p.buddy.ods_code != buddy:
        raise missing
    return row, state


def _json(m: BaseModel) -> Any:
    return m.model_dump(mode="json")


@router.get("/{regime_id}/buddies", operation_id="listPartnerships", response_model=PartnershipPage,
            summary="A regime's buddy partnerships: stage, quarter, shares of the level authorised and paid")
async def list_partnerships(regime_id: RegimeIdPath, user: CurrentUser, pool: DbPool, client: TemporalClientDep):
    row = await regime_row(pool, regime_id, user)
    state = await live_state(client, regime_id, closed=row["closed"], pool=pool)
    items = []
    for b in state.buddies.values():
        item = _json(b)
        item["paid_share"] = round(b.paid_pence / b.agreed_level_pence, 4) if b.agreed_level_pence else 0.0
        item["share_used"] = item["paid_share"]  # deprecated name of the same figure
        items.append(item)
    return as_is({"regime_id": regime_id, "items": items})


@router.get("/{regime_id}/buddies/{partnership_id}", operation_id="getPartnership", response_model=PartnershipView,
            summary="A partnership's live state: stage, steps, plan, quarters")
async def get_partnership(regime_id: RegimeIdPath, partnership_id: PartnershipIdPath, user: CurrentUser, pool: DbPool,
                          client: TemporalClientDep):
    row, s = await partnership(pool, client, user, regime_id, partnership_id)
    return await partnership_view(pool, s)


async def partnership_view(pool: asyncpg.Pool, s: BuddyState) -> JSONResponse:
    """A partnership's state with its archived records, open steps, deadline bases and ledger totals; read only
    once the caller is authorised (a regime's partnership, or a watch-list entry's)."""
    from api.archive import partnership_with_archive

    s = await partnership_with_archive(pool, s.p.partnership_id, s)
    out = _json(s)
    with_deadline_basis(out["steps"])
    out["open_steps"] = [st for st in out["steps"].values() if st["status"] == "open"]
    out["ledger_totals"] = _json(s.ledger.totals()) if s.ledger else None
    return JSONResponse(out)


@router.get("/{regime_id}/buddies/{partnership_id}/ledger", operation_id="getLedger",
            response_model=LedgerWithPayments,
            summary="A partnership's ledger: forecast, confirmed, authorised, paid, remaining; recorded payments")
async def get_ledger(regime_id: RegimeIdPath, partnership_id: PartnershipIdPath, user: CurrentUser, pool: DbPool, client: TemporalClientDep):
    row, s = await partnership(pool, client, user, regime_id, partnership_id)
    view = await client.get_workflow_handle(partnership_id).query(BuddyPartnershipWorkflow.get_ledger)
    payments = await payments_for(pool, partnership_id)
    out = _json(view)
    out["payments"] = payments
    out["recorded_paid_pence"] = sum(p["amount_pence"] for p in payments)
    return JSONResponse(out)


@router.post("/{regime_id}/buddies/{partnership_id}/end", operation_id="endPartnership",
             response_model=BuddySummary,
             summary="End a partnership early with a reason (regulator); its current quarter is settled")
async def end_partnership(regime_id: RegimeIdPath, partnership_id: PartnershipIdPath, req: EndRequest, request: Request, user: CurrentUser,
                          pool: DbPool, client: TemporalClientDep, settings: SettingsDep, rid: RequestId):
    row, s = await partnership(pool, client, user, regime_id, partnership_id)
    require_act(user, "regulator", row["ods_code"], {"buddy_ods": s.p.buddy.ods_code})

    async def handler() -> tuple[int, Any]:
        summary = await run_update(client.get_workflow_handle(partnership_id), BuddyPartnershipWorkflow.end_early,
                                   PartnershipEnd(reason=req.reason, actor=actor(user, "regulator", rid)), settings)
        return 200, _json(summary)

    return await idempotent(request, pool, user, {"partnership": partnership_id, **_json(req)}, handler)


@router.post("/{regime_id}/buddies/{partnership_id}/plan-changes", status_code=201,
             operation_id="proposePlanChange", response_model=PlanChangeRecord,
             summary="Propose a significant change to the support plan (buddy); the ID and the trust approve it")
async def propose_plan_change(regime_id: RegimeIdPath, partnership_id: PartnershipIdPath, req: PlanChangeRequest, request: Request,
                              user: CurrentUser, pool: DbPool, client: TemporalClientDep, settings: SettingsDep,
                              rid: RequestId):
    row, s = await partnership(pool, client, user, regime_id, partnership_id)
    # The buddy role itself, not only the buddy trust's `org`: an operations (read-only) or trust user of
    # the buddy trust must not propose a change audited as the buddy's.
    if not user.may_act_as_buddy(s.p.buddy.ods_code):
        raise Problem(403, "forbidden-partnership",
                      "only a user with the buddy role, of this partnership's buddy trust, proposes plan changes")
    require_act(user, "buddy", row["ods_code"], {"buddy_ods": s.p.buddy.ods_code})

    async def handler() -> tuple[int, Any]:
        rec = await run_update(client.get_workflow_handle(partnership_id),
                               BuddyPartnershipWorkflow.propose_plan_change,
                               PlanChange(plan=req.plan, reason=req.reason, actor=actor(user, "buddy", rid)), settings)
        return 201, _json(rec)

    return await idempotent(request, pool, user, {"partnership": partnership_id, **_json(req)}, handler)
