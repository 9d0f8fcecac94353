"""The task inbox: each person's open steps, by role and by assignment, with due-date status."""

from __future__ import annotations

import base64
import json
from datetime import UTC, date, datetime
from typing import Any, Literal

from fastapi import APIRouter, Query

from api.auth import NATIONAL_ROLES, SCOPED_ROLES
from api.contract import TaskPage, as_is, deadline_basis
from api.deps import CurrentUser, DbPool, SettingsDep
from api.errors import Problem
from domain import dates
from domain.vocab import AuditEvent

router = APIRouter(prefix="/tasks", tags=["tasks"])


def rag(days_left: int, soon: int) -> str:
    return "red" if days_left < 0 else "amber" if days_left <= soon else "green"


def _cursor(due: date, wf: str, step: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([due.isoformat(), wf, step]).encode()).decode()


def _uncursor(c: str) -> tuple[date, str, str]:
    try:
        due, wf, step = json.loads(base64.urlsafe_b64decode(c.encode()))
        return date.fromisoformat(due), str(wf), str(step)
    except Exception:
        raise Problem(400, "bad-cursor", "the paging cursor is not one this API gave out") from None


async def _amendments(pool: Any, rows: list[Any]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """The deadline amendments of the listed steps, oldest first, as the step's `amendments` hold them, read
    from the audit log (the task rows do not carry them)."""
    if not rows:
        return {}
    found = await pool.fetch(
        "SELECT workflow_id, step_id, actor, reason, at, detail FROM audit_log WHERE workflow_id = ANY($1) "
        "AND step_id = ANY($2) AND event = $3 ORDER BY id",
        list({r["workflow_id"] for r in rows}), list({r["step_id"] for r in rows}), AuditEvent.deadline_amended)
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for a in found:
        detail = a["detail"] if isinstance(a["detail"], dict) else json.loads(a["detail"] or "{}")
        out.setdefault((a["workflow_id"], a["step_id"]), []).append(
            {"at": a["at"].isoformat(), "by": a["actor"], "reason": a["reason"], "old": detail.get("old"),
             "new": detail.get("new")})
    return out


@router.get("", operation_id="listTasks", response_model=TaskPage, summary="My open tasks (by my roles and assignments), soonest due first")
async def inbox(user: CurrentUser, pool: DbPool, settings: SettingsDep,
                trust: str | None = Query(None, max_length=10, description="ODS code"),
                kind: str | None = Query(None, max_length=64, description="step type"),
                status: Literal["red", "amber", "green"] | None = None,
                role: str | None = Query(None, max_length=40),
                limit: int = Query(50, ge=1, le=500), cursor: str | None = Query(None, max_length=500)):
    today = dates.london_date(datetime.now(UTC))
    args: list[Any] = [user.sub]
    mine = ["t.assignee = $1"]
    for r in user.roles:
        if role and r != role:
            continue
        if r in ("admin", "operations"):
            mine.append("TRUE")  # they see every open task; operations still cannot decide any
        elif r in NATIONAL_ROLES:
            args.append(r)
            mine.append(f"t.role = ${len(args)}")
        elif r in SCOPED_ROLES:
            args += [r, user.trusts]
            mine.append(f"(t.role = ${len(args) - 1} AND t.ods_code = ANY(${len(args)}))")
        elif r == "buddy" and user.org:
            args.append(user.org)
            mine.append(f"(t.role = 'buddy' AND t.subject->>'buddy_ods' = ${len(args)})")
    clauses = ["t.state = 'open'", "(" + " OR ".join(mine) + ")"]
    # Whatever made a task "mine" (an assignment included), it is listed only if the user may read it: the
    # regime's trust (User.may_read_trust, the rule of every read), or the buddy's own partnership.
    readable = user.readable_trusts()
    if readable is not None:
        args.append(readable)
        visible = [f"t.ods_code = ANY(${len(args)})"]
        if user.may_act_as_buddy(user.org):
            args.append(user.org)
            visible.append(f"(t.role = 'buddy' AND t.subject->>'buddy_ods' = ${len(args)})")
        clauses.append("(" + " OR ".join(visible) + ")")
    if trust:
        args.append(trust)
        clauses.append(f"t.ods_code = ${len(args)}")
    if kind:
        args.append(kind)
        clauses.append(f"t.kind = ${len(args)}")
    soon = settings.due_soon_days
    if status == "red":
        args.append(today)
        clauses.append(f"t.due < ${len(args)}")
    elif status == "amber":
        args += [today, date.fromordinal(today.toordinal() + soon)]
        clauses.append(f"t.due >= ${len(args) - 1} AND t.due <= ${len(args)}")
    elif status == "green":
        args.append(date.fromordinal(today.toordinal() + soon))
        clauses.append(f"t.due > ${len(args)}")
    if cursor:
        due, wf, step = _uncursor(cursor)
        args += [due, wf, step]
        clauses.append(f"(t.due, t.workflow_id, t.step_id) > (${len(args) - 2}, ${len(args) - 1}, ${len(args)})")
    args.append(limit + 1)
    rows = await pool.fetch(
        f"""SELECT t.*, r.trust_name FROM tasks t JOIN regimes r USING (regime_id)
            WHERE {' AND '.join(clauses)} ORDER BY t.due, t.workflow_id, t.step_id LIMIT ${len(args)}""", *args)
    moved = await _amendments(pool, rows[:limit])
    items = []
    for r in rows[:limit]:
        left = (r["due"] - today).days
        items.append({
            "regime_id": r["regime_id"], "workflow_id": r["workflow_id"], "step_id": r["step_id"],
            "kind": r["kind"], "title": r["title"], "role": r["role"], "assignee": r["assignee"],
            "trust": {"ods_code": r["ods_code"], "name": r["trust_name"]}, "subject": r["subject"],
            "due": r["due"].isoformat(), "days_left": left, "overdue_days": max(0, -left),
            "paused": r["paused"], "status": rag(left, soon),
            "deadline_basis": deadline_basis(r["kind"], moved.get((r["workflow_id"], r["step_id"]))),
        })
    nxt = _cursor(rows[limit - 1]["due"], rows[limit - 1]["workflow_id"], rows[limit - 1]["step_id"]) \
        if len(rows) > limit else None
    return as_is({"items": items, "next_cursor": nxt, "today": today.isoformat()})
