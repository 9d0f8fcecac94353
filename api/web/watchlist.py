"""The challenged-providers watch list in the operations web view (issue 16 item 4): the list of entries and one
entry's page, built from the API's own reads (api.routes.watchlist) and under its confidentiality rule.

The list is for the regulator and operations only (anyone else gets the refused page, 403). An entry's page is
for them and the trust's own assigned users (its trust and improvement director users); anyone else gets the
same "not found" page as for an entry that does not exist. Every read of an entry, on either page, is recorded
in `watch_list_access` as the API's reads are; who looked is shown to the regulator and operations.

The pages are added to the web view's router (api.web.routes imports this module at its end).
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
from fastapi import Request
from fastapi.responses import HTMLResponse
from temporalio.client import Client, WorkflowQueryFailedError
from temporalio.service import RPCError

from api.auth import User
from api.errors import Problem
from api.routes.watchlist import _view, entry_row, may_see, record_access, unknown_entry
from api.web import data, labels
from api.web.routes import Viewer, page, router
from api.web.session import Forbidden
from domain.steps import CATALOGUE
from domain.vocab import Role
from domain.watchlist import ENTRY_ID_MAX, ENTRY_ID_PATTERN, WATCH_STEPS, WatchState
from workflows.watchlist import WatchListWorkflow

LIST_ROLES = (Role.regulator, Role.operations)  # who reads the list and who looked at an entry
LIST_LIMIT = 1000  # as the API's list
ACCESS_SHOWN = 200  # the newest reads shown on an entry's page; GET /watch-list/{id}/access has them all
ENTRY_ID = re.compile(ENTRY_ID_PATTERN)  # the API's EntryIdPath
LIST_REFUSED = ("The challenged-providers watch list is not in the public domain: it is seen by the regulator and "
                "operations staff. A trust's own users see their trust's entry.")
STATUSES = {"on_list": ("On the list", "blue"), "removed": ("Removed", "grey"),
            "placed": ("Placed in special measures", "red")}
QUERY_TIMEOUT = timedelta(seconds=3)


def status_label(status: str) -> tuple[str, str]:
    return STATUSES.get(status, (labels.humanise(status), "grey"))


def step_title(kind: str | None, step_id: str | None) -> str:
    """A regime kind's title as the regime pages give it; the watch list's own kinds by their catalogue entry."""
    spec = WATCH_STEPS.get(kind) if kind else None
    if kind in CATALOGUE or spec is None:
        return labels.step_title(kind, step_id)
    return spec.label


def _client(request: Request) -> Client | None:
    return request.app.state.temporal


def _unavailable(request: Request, user: User, detail: str) -> HTMLResponse:
    return page(request, "error.html", {"user": user, "title": "Watch list unavailable", "detail": detail},
                status=503)


def _not_found(request: Request, user: User, problem: Problem) -> HTMLResponse:
    """One page for an entry that does not exist and for one the user may not see: the API's own 404 (its
    detail names only the id that was asked for)."""
    return page(request, "error.html", {"user": user, "title": "Watch-list entry not found",
                                        "detail": problem.detail[:1].upper() + problem.detail[1:] + "."}, status=404)


# ------------------------------------------------------------------ the list
async def _open_steps(client: Client | None, entry_id: str, sem: asyncio.Semaphore) -> list[dict[str, Any]] | None:
    """An entry's open steps (JSON), soonest due first; None when its workflow does not answer."""
    if client is None:
        return None
    async with sem:
        try:
            state: WatchState = await client.get_workflow_handle(entry_id).query(
                WatchListWorkflow.get_state, rpc_timeout=QUERY_TIMEOUT)
        except Exception:  # not answering for now (the worker busy or restarting): the row says so
            return None
    steps = sorted((s for s in state.steps.values() if s.status == "open"), key=lambda s: (s.due, s.id))
    return [s.model_dump(mode="json") for s in steps]


def list_row(r: asyncpg.Record, steps: list[dict[str, Any]] | None, today: date, soon: int) -> dict[str, Any]:
    label, colour = status_label(r["status"])
    nxt = steps[0] if steps else None
    out: dict[str, Any] = {"entry_id": r["entry_id"], "ods_code": r["ods_code"], "trust_name": r["trust_name"],
                           "added_on": r["added_on"], "added_by": r["added_by"], "status": r["status"],
                           "status_label": label, "status_colour": colour, "ended_on": r["ended_on"],
                           "regime_id": r["regime_id"], "open": len(steps) if steps is not None else None,
                           "next": None}
    if nxt is not None:
        due = date.fromisoformat(nxt["due"])
        state = labels.step_state("open", due, today, bool(nxt.get("late")), bool(nxt.get("paused")), soon)
        out["next"] = {"title": step_title(nxt["kind"], nxt["id"]), "due": due, "days": (due - today).days,
                       "state": state}
    return out


@router.get("/watch-list")
async def watch_list_page(request: Request, user: Viewer):
    if not user.has(*LIST_ROLES):
        raise Forbidden(user, LIST_REFUSED)
    pool = request.app.state.pool
    rows = await pool.fetch("SELECT * FROM watch_list ORDER BY added_on DESC, entry_id LIMIT $1", LIST_LIMIT)
    rows = [r for r in rows if may_see(user, r["ods_code"])]
    await record_access(pool, [r["entry_id"] for r in rows], user, "web list")
    client = _client(request)
    settings = request.app.state.settings
    sem = asyncio.Semaphore(8)
    on_list = [r["entry_id"] for r in rows if r["status"] == "on_list"]
    got = await asyncio.gather(*(_open_steps(client, e, sem) for e in on_list))
    steps = dict(zip(on_list, got, strict=True))
    # Each entry's own day (the development server's time skipping runs a workflow ahead of the wall clock).
    clocks = await data.clocks(client, settings, on_list)
    today = labels.london_today(datetime.now(UTC))
    items = [list_row(r, steps.get(r["entry_id"]) if r["status"] == "on_list" else [],
                      clocks[r["entry_id"]].today if r["entry_id"] in clocks else today, settings.due_soon_days)
             for r in rows]
    return page(request, "watch_list.html", {
        "user": user, "items": items, "today": today, "capped": len(rows) >= LIST_LIMIT,
        "counts": {s: sum(1 for i in items if i["status"] == s) for s in STATUSES},
        "unanswered": sum(1 for i in items if i["status"] == "on_list" and i["open"] is None)})


# ------------------------------------------------------------------ one entry
def _steps(view: dict[str, Any], today: date, soon: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The entry's open steps (soonest due first) and the others (done or cancelled, latest first)."""
    open_, done = [], []
    for st in view["steps"]:
        due = date.fromisoformat(st["due"])
        state = labels.step_state(st["status"], due, today, bool(st.get("late")), bool(st.get("paused")), soon)
        item = {"step": st, "title": step_title(st["kind"], st["id"]), "full_title": st["title"], "due": due,
                "days": (due - today).days, "state": state, "who": labels.role_label(st["role"]),
                "basis": labels.step_basis(st),
                "completed_at": datetime.fromisoformat(st["completed_at"]) if st.get("completed_at") else None,
                "by": next((a.get("by") for a in reversed(st.get("actions") or []) if a.get("by")),
                           st.get("completed_by"))}
        (open_ if st["status"] == "open" else done).append(item)
    open_.sort(key=lambda i: (i["due"], i["step"]["id"]))
    done.sort(key=lambda i: (i["step"].get("completed_at") or "", i["step"]["id"]), reverse=True)
    return open_, done


@router.get("/watch-list/{entry_id}")
async def watch_entry_page(request: Request, user: Viewer, entry_id: str):
    pool = request.app.state.pool
    if len(entry_id) > ENTRY_ID_MAX or not ENTRY_ID.fullmatch(entry_id):
        return _not_found(request, user, unknown_entry(entry_id))
    try:
        row = await entry_row(pool, entry_id, user)
    except Problem as e:
        if e.status != 404:
            raise
        return _not_found(request, user, e)
    await record_access(pool, [entry_id], user, "web entry")
    client = _client(request)
    if client is None:
        return _unavailable(request, user, "The workflow engine is not connected. Try again in a few seconds.")
    try:
        view = await _view(client, row)
    except (RPCError, WorkflowQueryFailedError) as e:
        return _unavailable(request, user, f"The workflow engine did not answer: {e}")
    clock = await data.clock(client, entry_id)
    today = clock.today
    open_steps, done_steps = _steps(view, today, request.app.state.settings.due_soon_days)
    sees_log = user.has(*LIST_ROLES)
    access, access_total = [], 0
    if sees_log:
        access_total = await pool.fetchval("SELECT count(*) FROM watch_list_access WHERE entry_id = $1", entry_id)
        access = await pool.fetch("SELECT user_id, roles, what, at FROM watch_list_access WHERE entry_id = $1 "
                                  "ORDER BY at DESC, id DESC LIMIT $2", entry_id, ACCESS_SHOWN)
    label, colour = status_label(view["status"])
    return page(request, "watch_entry.html", {
        "user": user, "e": view, "today": today, "clock": clock, "status_label": label, "status_colour": colour,
        "open_steps": open_steps, "done_steps": done_steps,
        "assignees": [{"role": labels.role_label(r), "user_id": u} for r, u in sorted(view["assignees"].items())],
        "funding": view.get("funding"), "buddies": view.get("buddies") or [],
        "regime_link": bool(view.get("regime_id")) and user.may_read_trust(view["ods_code"]),
        "sees_list": user.has(*LIST_ROLES), "sees_log": sees_log, "access": access, "access_total": access_total,
        "access_shown": ACCESS_SHOWN})
