"""The challenged-providers watch list (issue 16 item 4; seed 004): trusts at risk of entering special measures,
not in the public domain.

Only the regulator, operations and the trust's own assigned users (its trust and improvement director users)
see an entry; anyone else is told it does not exist (404, as for an unknown one) and the list refuses them (403).
An entry appears in no regimes list, page, task inbox, search attribute or audit export; every read of it is
recorded in `watch_list_access` (GET /watch-list/{id}/access shows who looked).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from temporalio.common import WorkflowIDReusePolicy

from api.auth import User
from api.contract import StepWithBasis, deadline_basis
from api.deps import CurrentUser, DbPool, RequestId, SettingsDep, TemporalClientDep
from api.errors import Problem
from api.idempotency import idempotent
from api.routes.funding import DrawdownBody
from api.routes.regimes.bodies import StepIdPath
from api.routes.regimes.permissions import acting_role, actor, require_act
from api.routes.regimes.service import as_json, run_update
from domain.dates import london_date
from domain.models import BuddySummary, Decision, DrawdownMessage, Rung, Step, Trust
from domain.text import json_error, text
from domain.vocab import ACTIVE_PHASES, Role
from domain.watchlist import ENTRY_ID_MAX, ENTRY_ID_PATTERN, WatchEnd, WatchInput, WatchStart, WatchState
from workflows.watchlist import WatchListWorkflow

router = APIRouter(prefix="/watch-list", tags=["watch list"])
EntryIdPath = Annotated[str, Path(pattern=ENTRY_ID_PATTERN, max_length=ENTRY_ID_MAX)]
TRUST_ROLES = (Role.trust, Role.improvement_director)


class WatchAddRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    trust: Trust
    reasons: list[text(2000, min_length=1)] = Field(min_length=1, max_length=20,
                                                    description="why the trust is at risk of special measures")


class WatchRemovalRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: text(2000, min_length=1)


class WatchDecisionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: text(64, min_length=1)
    comment: text(4000) | None = None
    payload: dict[str, Any] = Field(default_factory=dict)
    role: text(40) | None = Field(None, description="the role to act in, when the user holds several")


class WatchEntry(BaseModel):
    entry_id: str
    ods_code: str
    trust_name: str
    added_on: date
    added_by: str
    status: str
    ended_on: date | None = None
    end_reason: str | None = None
    regime_id: str | None = Field(None, description="the regime the trust was placed in from the list")
    reasons: list[str] = Field(default_factory=list)
    steps: list[StepWithBasis] = Field(default_factory=list)
    assignees: dict[str, str] = Field(default_factory=dict)
    funding: dict[str, Any] | None = Field(None, description="the central funding agreement, drawdowns and their "
                                                             "payments, as a regime's")
    buddies: list[BuddySummary] = Field(default_factory=list, description="buddy partnerships (confidential, "
                                                                          "routes in watchlist_buddies)")


class WatchPage(BaseModel):
    items: list[WatchEntry]


class WatchAccess(BaseModel):
    entry_id: str
    items: list[dict[str, Any]] = Field(description="who looked, when, at what: {user_id, roles, what, at}")


def may_see(user: User, ods: str) -> bool:
    """The regulator, operations, and the trust's own assigned users."""
    if user.has(Role.regulator, Role.operations):
        return True
    return user.has(*TRUST_ROLES) and ods in user.trusts


def unknown_entry(entry_id: str) -> Problem:
    return Problem(404, "unknown-watch-list-entry", f"no watch-list entry '{entry_id}'")


async def record_access(pool: asyncpg.Pool, entry_ids: list[str], user: User, what: str) -> None:
    if entry_ids:
        await pool.executemany("INSERT INTO watch_list_access (entry_id, user_id, roles, what) VALUES ($1,$2,$3,$4)",
                               [(e, user.sub, [str(r) for r in user.roles], what) for e in entry_ids])


async def entry_row(pool: asyncpg.Pool, entry_id: str, user: User) -> asyncpg.Record:
    row = await pool.fetchrow("SELECT * FROM watch_list WHERE entry_id = $1", entry_id)
    if row is None or not may_see(user, row["ods_code"]):
        raise unknown_entry(entry_id)
    return row


def require_regulator(user: User) -> None:
    if not user.has(Role.regulator):
        raise Problem(403, "wrong-role", "the regulator keeps the watch list")


def require_on_list(row: asyncpg.Record) -> None:
    if row["status"] != "on_list":
        raise Problem(409, "watch-list-entry-ended", f"{row['entry_id']} has ended ({row['status']})")


async def _view(client: Any, row: asyncpg.Record) -> dict[str, Any]:
    state: WatchState = await client.get_workflow_handle(row["entry_id"]).query(WatchListWorkflow.get_state)
    view = WatchEntry(**{k: row[k] for k in ("entry_id", "ods_code", "trust_name", "added_on", "added_by", "status",
                                             "ended_on", "end_reason", "regime_id")},
                      reasons=state.start.reasons, steps=[with_basis(st) for st in state.steps.values()],
                      assignees=state.assignees,
                      funding=state.funding.figures() if state.funding else None,
                      buddies=list(state.buddies.values()))
    return view.model_dump(mode="json")


def with_basis(st: Step) -> dict[str, Any]:
    """The step with where its due date comes from, as a regime's steps say it."""
    out = st.model_dump(mode="json")
    out["deadline_basis"] = deadline_basis(out["kind"], out.get("amendments"))
    return out


async def sync(pool: asyncpg.Pool, client: Any, entry_id: str) -> None:
    """The table follows the entry's workflow once it has ended (removed, or placed in special measures)."""
    state: WatchState = await client.get_workflow_handle(entry_id).query(WatchListWorkflow.get_state)
    if state.ended is not None:
        await pool.execute("UPDATE watch_list SET status = $2, ended_on = $3, end_reason = $4, "
                           "regime_id = coalesce($5, regime_id) WHERE entry_id = $1", entry_id, state.status,
                           date.fromisoformat(state.ended["on"]), state.ended["reason"], state.ended.get("regime_id"))


@router.post("", status_code=201, operation_id="addToWatchList", response_model=WatchEntry,
             summary="Put a trust on the challenged-providers watch list with the reasons (regulator)")
async def add(req: WatchAddRequest, request: Request, user: CurrentUser, pool: DbPool, client: TemporalClientDep,
              settings: SettingsDep, rid: RequestId):
    require_regulator(user)
    ods = req.trust.ods_code

    async def handler() -> tuple[int, Any]:
        if await pool.fetchval("SELECT 1 FROM regimes WHERE ods_code = $1 AND phase = ANY($2::text[])", ods,
                               [str(p) for p in ACTIVE_PHASES]):
            raise Problem(409, "already-in-special-measures", f"trust {ods} is in special measures, not at risk of it")
        today = london_date(datetime.now(UTC))
        # One id per time on the list: a trust taken off and put back on the same day gets a numbered id.
        before = await pool.fetchval("SELECT count(*) FROM watch_list WHERE ods_code = $1 AND added_on = $2", ods,
                                     today)
        entry_id = f"watch-{ods}-{today.isoformat()}" + (f"-{before + 1}" if before else "")
        try:
            await pool.execute("INSERT INTO watch_list (entry_id, ods_code, trust_name, added_on, added_by) "
                               "VALUES ($1,$2,$3,$4,$5)", entry_id, ods, req.trust.name, today, user.sub)
        except asyncpg.UniqueViolationError:
            raise Problem(409, "already-on-watch-list", f"trust {ods} is on the watch list already") from None
        start = WatchStart(entry_id=entry_id, trust=req.trust, added_on=today, reasons=req.reasons,
                           ladder=[Rung.model_validate(r) for r in settings.ladder],
                           actor=actor(user, "regulator", rid),
                           funding_usual_max_pence=settings.funding_usual_max_pence)
        try:
            # No search attribute: the entry must not be findable by the regimes' attributes.
            await client.start_workflow(WatchListWorkflow.run, WatchInput(start=start), id=entry_id,
                                        task_queue=settings.temporal_task_queue,
                                        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE)
        except Exception:
            await pool.execute("DELETE FROM watch_list WHERE entry_id = $1", entry_id)
            raise
        row = await pool.fetchrow("SELECT * FROM watch_list WHERE entry_id = $1", entry_id)
        return 201, await _view(client, row)

    return await idempotent(request, pool, user, as_json(req), handler)


@router.get("", operation_id="listWatchList", response_model=WatchPage,
            summary="The watch list (regulator and operations: every entry; a trust's own users: theirs)")
async def list_entries(user: CurrentUser, pool: DbPool):
    if user.has(Role.regulator, Role.operations):
        rows = await pool.fetch("SELECT * FROM watch_list ORDER BY added_on DESC, entry_id LIMIT 1000")
    elif user.has(*TRUST_ROLES):
        rows = await pool.fetch("SELECT * FROM watch_list WHERE ods_code = ANY($1::text[]) "
                                "ORDER BY added_on DESC, entry_id LIMIT 1000", list(user.trusts))
    else:
        raise Problem(403, "forbidden-watch-list", "the watch list is seen by the regulator, operations and each "
                                                   "trust's own users only")
    await record_access(pool, [r["entry_id"] for r in rows], user, "list")
    items = [WatchEntry(**{k: r[k] for k in ("entry_id", "ods_code", "trust_name", "added_on", "added_by", "status",
                                             "ended_on", "end_reason", "regime_id")}).model_dump(mode="json")
             for r in rows]
    return JSONResponse({"items": items})


@router.get("/{entry_id}", operation_id="getWatchListEntry", response_model=WatchEntry,
            summary="A watch-list entry: its reasons, steps (the improvement director, reviews), how it ended")
async def get_entry(entry_id: EntryIdPath, user: CurrentUser, pool: DbPool, client: TemporalClientDep):
    row = await entry_row(pool, entry_id, user)
    await record_access(pool, [entry_id], user, "entry")
    return JSONResponse(await _view(client, row))


@router.get("/{entry_id}/access", operation_id="listWatchListAccess", response_model=WatchAccess,
            summary="Who looked at a watch-list entry, and when (regulator, operations)")
async def access(entry_id: EntryIdPath, user: CurrentUser, pool: DbPool):
    await entry_row(pool, entry_id, user)
    if not user.has(Role.regulator, Role.operations):
        raise Problem(403, "forbidden-watch-list", "the regulator and operations read who looked")
    rows = await pool.fetch("SELECT user_id, roles, what, at FROM watch_list_access WHERE entry_id = $1 "
                            "ORDER BY at, id LIMIT 5000", entry_id)
    return JSONResponse({"entry_id": entry_id, "items": [{**dict(r), "at": r["at"].isoformat()} for r in rows]})


@router.post("/{entry_id}/steps/{watch_step_id}/decisions", operation_id="decideWatchListStep", response_model=Step,
             summary="Decide an entry's step: the improvement director's appointment, a review (keep or remove), "
                     "the funding agreement and its parties, a drawdown's approval and authorisation")
async def decide(entry_id: EntryIdPath, watch_step_id: StepIdPath, req: WatchDecisionRequest, request: Request,
                 user: CurrentUser, pool: DbPool, client: TemporalClientDep, settings: SettingsDep, rid: RequestId):
    row = await entry_row(pool, entry_id, user)
    require_on_list(row)
    state: WatchState = await client.get_workflow_handle(entry_id).query(WatchListWorkflow.get_state)
    step = state.steps.get(watch_step_id)
    # The step's own party acts (the regulator, or for the funding steps the trust and its improvement director).
    role = acting_role(user, req.role, step.role if step else Role.regulator)
    require_act(user, role, row["ods_code"])
    found = json_error(req.payload)  # bounded in shape, no control character, as a regime step's payload
    if found is not None:
        path, err = found
        raise RequestValidationError([{"loc": ("body", "payload", *path), "msg": err.message(), "type": err.type}])

    async def handler() -> tuple[int, Any]:
        d = Decision(step_id=watch_step_id, action=req.action, actor=actor(user, role, rid), comment=req.comment,
                     payload=req.payload)
        st = await run_update(client.get_workflow_handle(entry_id), WatchListWorkflow.decide_step, d, settings)
        await sync(pool, client, entry_id)
        return 200, as_json(st)

    return await idempotent(request, pool, user, {"step": watch_step_id, **as_json(req)}, handler)


@router.post("/{entry_id}/funding/drawdowns", status_code=201, operation_id="requestWatchListDrawdown",
             response_model=Step, summary="Request central funding for a trust on the watch list (its trust users), "
                                          "under the agreed ceiling, against the agreement's areas")
async def request_drawdown(entry_id: EntryIdPath, req: DrawdownBody, request: Request, user: CurrentUser,
                           pool: DbPool, client: TemporalClientDep, settings: SettingsDep, rid: RequestId):
    row = await entry_row(pool, entry_id, user)
    require_on_list(row)
    require_act(user, Role.trust, row["ods_code"])

    async def handler() -> tuple[int, Any]:
        m = DrawdownMessage(amount_pence=req.amount_pence, against=req.against, purpose=req.purpose,
                            actor=actor(user, "trust", rid))
        st = await run_update(client.get_workflow_handle(entry_id), WatchListWorkflow.request_drawdown, m, settings)
        return 201, as_json(st)

    return await idempotent(request, pool, user, as_json(req), handler)


@router.post("/{entry_id}/removal", operation_id="removeFromWatchList", response_model=WatchEntry,
             summary="Take the trust off the watch list with the reason (regulator)")
async def remove(entry_id: EntryIdPath, req: WatchRemovalRequest, request: Request, user: CurrentUser, pool: DbPool,
                 client: TemporalClientDep, settings: SettingsDep, rid: RequestId):
    row = await entry_row(pool, entry_id, user)
    require_regulator(user)
    require_on_list(row)

    async def handler() -> tuple[int, Any]:
        await run_update(client.get_workflow_handle(entry_id), WatchListWorkflow.end_entry,
                         WatchEnd(how="removed", reason=req.reason, actor=actor(user, "regulator", rid)), settings)
        await sync(pool, client, entry_id)
        return 200, await _view(client, await pool.fetchrow("SELECT * FROM watch_list WHERE entry_id = $1",
                                                           entry_id))

    return await idempotent(request, pool, user, as_json(req), handler)


async def link_placement(pool: asyncpg.Pool, client: Any, settings: Any, user: User, rid: str, entry_id: str,
                         ods: str, regime_id: str) -> None:
    """The trust on the list was placed in special measures: the entry ends, linked to the regime."""
    await run_update(client.get_workflow_handle(entry_id), WatchListWorkflow.end_entry,
                     WatchEnd(how="placed", reason=f"placed in special measures: {regime_id}", regime_id=regime_id,
                              actor=actor(user, "regulator", rid)), settings)
    await sync(pool, client, entry_id)


async def check_placement_link(pool: asyncpg.Pool, user: User, entry_id: str, ods: str) -> None:
    row = await pool.fetchrow("SELECT ods_code, status FROM watch_list WHERE entry_id = $1", entry_id)
    if row is None or not may_see(user, row["ods_code"]) or row["ods_code"] != ods or row["status"] != "on_list":
        raise Problem(422, "invalid-watch-list-entry", f"{entry_id} is not a current watch-list entry of trust {ods}")


async def regime_link(pool: asyncpg.Pool, user: User, regime_id: str, ods: str) -> dict[str, Any] | None:
    """The regime's time on the watch list, for those who may see the list (the read is recorded); None for
    anyone else, who learns nothing of it."""
    if not may_see(user, ods):
        return None
    row = await pool.fetchrow("SELECT entry_id, added_on, ended_on FROM watch_list WHERE regime_id = $1", regime_id)
    if row is None:
        return None
    await record_access(pool, [row["entry_id"]], user, f"regime {regime_id}")
    return {"entry_id": row["entry_id"], "added_on": row["added_on"].isoformat(),
            "placed_on": row["ended_on"].isoformat() if row["ended_on"] else None}
