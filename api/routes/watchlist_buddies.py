"""Buddying for a trust on the challenged-providers watch list (issue 16 item 4: the same steps, deadlines and
payments as a regime's partnership, workflows/buddy.py, started by the entry).

The partnership is confidential like its entry: no search attribute and no inbox task, so its steps are read and
decided here. Who: the entry's own readers (the regulator, operations, the trust's assigned users: `may_see`), and
the buddy trust's users with the buddy role for their own partnership only (they learn nothing of the entry's
reasons). Anyone else gets the 404 of an unknown entry, whether the entry or the partnership exists or not. Every
read is recorded in the entry's access log. A buddy user finds its partnerships with listed trusts at
`GET /watch-list/partnerships` (the inbox they cannot have).
"""

from __future__ import annotations

from typing import Any

import asyncpg
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from temporalio.service import RPCError, RPCStatusCode

from api.auth import User
from api.contract import PartnershipView, StepDecided, as_is
from api.deps import CurrentUser, DbPool, RequestId, SettingsDep, TemporalClientDep
from api.errors import Problem
from api.idempotency import idempotent
from api.routes.buddies import EndRequest, PartnershipIdPath, buddy_of, partnership_view
from api.routes.regimes import service
from api.routes.regimes.bodies import BuddyAddRequest, DecisionRequest, StepIdPath
from api.routes.regimes.permissions import acting_role, actor, require_act
from api.routes.regimes.service import as_json, run_update
from api.routes.watchlist import (
    EntryIdPath,
    entry_row,
    may_see,
    record_access,
    require_on_list,
    require_regulator,
    unknown_entry,
)
from domain.ledger import BuddyState, PartnershipEnd
from domain.models import BuddySummary, Step
from domain.vocab import Role
from domain.watchlist import ENTRY_ID_MAX, WatchState
from workflows.buddy import BuddyPartnershipWorkflow
from workflows.buddyhost import MAX_PARTNERSHIPS
from workflows.common import BuddyRequest
from workflows.watchlist import WatchListWorkflow

router = APIRouter(prefix="/watch-list", tags=["watch list"])

# How many entries on the list a buddy user's partnership list reads (the list holds tens of trusts).
ENTRIES_READ = 200


class BuddyStepSummary(BaseModel):
    # Bounded as their sources are: the entry id's pattern, a partnership id (PartnershipIdPath), a trust's name
    # (Trust.name), a stage name; the open steps of one partnership (a quarter's few, and its agreements).
    entry_id: str = Field(max_length=ENTRY_ID_MAX)
    partnership_id: str = Field(max_length=300)
    trust_name: str = Field(max_length=200)
    stage: str = Field(max_length=40)
    open_steps: list[Step] = Field(max_length=100)


class BuddyPartnershipsPage(BaseModel):
    items: list[BuddyStepSummary] = Field(max_length=ENTRIES_READ * MAX_PARTNERSHIPS)


async def entry_partnership(pool: asyncpg.Pool, client: Any, user: User, entry_id: str, partnership_id: str,
                            what: str) -> tuple[asyncpg.Record, BuddyState]:
    """The entry's row and the partnership's state, authorised before Temporal is asked; the read is recorded."""
    row = await pool.fetchrow("SELECT * FROM watch_list WHERE entry_id = $1", entry_id)
    buddy = buddy_of(entry_id, partnership_id)
    reader = row is not None and may_see(user, row["ods_code"])
    if row is None or not (reader or user.may_act_as_buddy(buddy)):
        raise unknown_entry(entry_id)
    missing = (Problem(404, "unknown-partnership", f"no partnership '{partnership_id}' of {entry_id}")
               if reader else unknown_entry(entry_id))
    if buddy is None:
        raise missing
    try:
        state: BuddyState = await client.get_workflow_handle(partnership_id).query(BuddyPartnershipWorkflow.get_state)
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            raise missing from None
        raise
    if state.p.regime_id != entry_id or state.p.buddy.ods_code != buddy:
        raise missing
    await record_access(pool, [entry_id], user, what)
    return row, state


@router.get("/partnerships", operation_id="listWatchListPartnerships", response_model=BuddyPartnershipsPage,
            summary="A buddy trust's partnerships with trusts on the watch list and their open steps (buddy users: "
                    "the inbox a confidential partnership does not write)")
async def my_partnerships(user: CurrentUser, pool: DbPool, client: TemporalClientDep):
    if not (user.has(Role.buddy) and user.org):
        raise Problem(403, "forbidden-watch-list", "a buddy trust's users with the buddy role list their partnerships")
    # Entries on the list, and those ended in the last year: a partnership ended with its entry settles its last
    # quarter afterwards (confirmations, the authorisation), and its buddy still has steps to take.
    rows = await pool.fetch("SELECT entry_id, trust_name FROM watch_list WHERE status = 'on_list' OR ended_on >= "
                            "current_date - 366 ORDER BY added_on, entry_id LIMIT $1", ENTRIES_READ)
    items, seen = [], []
    for r in rows:
        state: WatchState = await client.get_workflow_handle(r["entry_id"]).query(WatchListWorkflow.get_state)
        for b in state.buddies.values():
            if not user.may_act_as_buddy(b.buddy_ods):
                continue
            try:
                p: BuddyState = await client.get_workflow_handle(b.partnership_id).query(
                    BuddyPartnershipWorkflow.get_state)
            except RPCError:  # never started (its start refused), or gone from the server's retention
                continue
            if p.stage == "ended" and not any(s.status == "open" for s in p.steps.values()):
                continue
            items.append(BuddyStepSummary(entry_id=r["entry_id"], partnership_id=b.partnership_id,
                                          trust_name=r["trust_name"], stage=p.stage,
                                          open_steps=[s for s in p.steps.values() if s.status == "open"]))
            seen.append(r["entry_id"])
    await record_access(pool, seen, user, "buddy partnerships")
    return as_is({"items": [i.model_dump(mode="json") for i in items]})


@router.post("/{entry_id}/buddies", status_code=201, operation_id="addWatchListBuddy", response_model=BuddySummary,
             summary="Start a buddy partnership for a trust on the watch list (regulator): the regime's steps, "
                     "deadlines and payments, confidential")
async def add_buddy(entry_id: EntryIdPath, req: BuddyAddRequest, request: Request, user: CurrentUser, pool: DbPool,
                    client: TemporalClientDep, settings: SettingsDep, rid: RequestId):
    row = await entry_row(pool, entry_id, user)
    require_regulator(user)
    require_on_list(row)

    async def handler() -> tuple[int, Any]:
        aip = as_json(req.agreement_in_principle) if req.agreement_in_principle is not None else None
        summary = await run_update(client.get_workflow_handle(entry_id), WatchListWorkflow.add_buddy,
                                   BuddyRequest(buddy=req.buddy, scope=req.scope, actor=actor(user, "regulator", rid),
                                                agreement_in_principle=aip), settings)
        return 201, as_json(summary)

    return await idempotent(request, pool, user, as_json(req), handler)


@router.get("/{entry_id}/buddies/{watch_partnership_id}", operation_id="getWatchListPartnership",
            response_model=PartnershipView, summary="A watch-list trust's partnership: stage, steps, plan, quarters")
async def get_partnership(entry_id: EntryIdPath, watch_partnership_id: PartnershipIdPath, user: CurrentUser, pool: DbPool,
                          client: TemporalClientDep) -> JSONResponse:
    pid = watch_partnership_id
    _, s = await entry_partnership(pool, client, user, entry_id, pid, f"partnership {pid}")
    return await partnership_view(pool, s)


@router.post("/{entry_id}/buddies/{watch_partnership_id}/steps/{partnership_step_id}/decisions",
             operation_id="decideWatchListPartnershipStep", response_model=StepDecided,
             summary="Decide a step of a watch-list trust's partnership (its own party: the regulator, the trust, "
                     "the improvement director or the buddy)")
async def decide(entry_id: EntryIdPath, watch_partnership_id: PartnershipIdPath, partnership_step_id: StepIdPath,
                 req: DecisionRequest, request: Request, user: CurrentUser, pool: DbPool, client: TemporalClientDep,
                 settings: SettingsDep, rid: RequestId):
    partnership_id, step_id = watch_partnership_id, partnership_step_id
    row, s = await entry_partnership(pool, client, user, entry_id, partnership_id, f"partnership {partnership_id}")
    step = s.steps.get(step_id)
    subject = {"buddy_ods": s.p.buddy.ods_code, **(step.subject if step else {})}
    role = acting_role(user, req.role, step.role if step else None)
    require_act(user, role, row["ods_code"], subject)
    kind = await service.check_payload(client, entry_id, partnership_id, step_id, step.kind if step else None, req)
    return await idempotent(request, pool, user, {"partnership": partnership_id, "step": step_id, **as_json(req)},
                            lambda: service.decide(pool, client, settings, user, role, rid, entry_id, step_id,
                                                   partnership_id, kind, req))


@router.post("/{entry_id}/buddies/{watch_partnership_id}/end", operation_id="endWatchListPartnership",
             response_model=BuddySummary,
             summary="End a watch-list trust's partnership early with a reason (regulator); its quarter is settled")
async def end_partnership(entry_id: EntryIdPath, watch_partnership_id: PartnershipIdPath, req: EndRequest,
                          request: Request, user: CurrentUser, pool: DbPool, client: TemporalClientDep,
                          settings: SettingsDep, rid: RequestId):
    partnership_id = watch_partnership_id
    row, s = await entry_partnership(pool, client, user, entry_id, partnership_id, f"partnership {partnership_id}")
    require_act(user, "regulator", row["ods_code"], {"buddy_ods": s.p.buddy.ods_code})

    async def handler() -> tuple[int, Any]:
        summary = await run_update(client.get_workflow_handle(partnership_id), BuddyPartnershipWorkflow.end_early,
                                   PartnershipEnd(reason=req.reason, actor=actor(user, "regulator", rid)), settings)
        return 200, as_json(summary)

    return await idempotent(request, pool, user, {"partnership": partnership_id, **as_json(req)}, handler)
