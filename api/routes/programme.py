"""The improvement plan as a programme (issue 15): the plan by theme with each action's progress over time, the
trust's proposed changes, evidence, the draft of a revised plan after an extension, and readiness for the
re-inspection.

The plan's versions and monthly reports are documents (api/documents.py) that the steps and audit entries
reference by hash; the workflow keeps a summary (domain/programme.py). Reads put the two together here; every
change goes through the regime's workflow, so it is validated there and written to the audit chain.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import UTC, date, datetime
from typing import Any, Literal

import asyncpg
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, model_validator

from api import documents
from api.deps import CurrentUser, DbPool, RequestId, SettingsDep, TemporalClientDep
from api.errors import Problem
from api.idempotency import idempotent
from api.routes.regimes.bodies import RegimeIdPath
from api.routes.regimes.permissions import actor, regime_row, require_act
from api.routes.regimes.service import as_json, live_state, run_update
from domain.dates import london_date
from domain.models import EvidenceRecord, PlanChange, RegimeState, Step, StepView
from domain.programme import (
    ACTION_ID,
    DEFAULT_THEME,
    KEY_QUESTIONS,
    OFF_TRACK_MONTHS_FLAGGED,
    STATUSES,
    KeyQuestion,
    action_id,
    plan_index,
)
from domain.steps import ImprovementPlanPayload, Kind
from domain.text import text
from workflows.regime import RegimeWorkflow

router = APIRouter(prefix="/regimes", tags=["programme"])

EVIDENCE_MAX_BYTES = 512 * 1024  # an attached document, decoded


# ------------------------------------------------------------------ request bodies
class ImprovementPlanChangeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    plan: ImprovementPlanPayload
    reason: text(2000, min_length=1)


class EvidenceAttachment(BaseModel):
    model_config = ConfigDict(extra="forbid")
    filename: text(200, min_length=1)
    media_type: str = Field(pattern=r"^[a-z]+/[a-z0-9.+-]{1,100}$", max_length=120)
    content_base64: str = Field(max_length=EVIDENCE_MAX_BYTES * 4 // 3 + 4)


class EvidenceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: text(200, min_length=1)
    dated: date
    shows: text(2000, min_length=1) = Field(description="what the evidence shows")
    actions: list[str] = Field(default_factory=list, max_length=50,
                               description="the plan actions it supports (their ids)")
    key_questions: list[KeyQuestion] = Field(default_factory=list, max_length=5)
    url: HttpUrl | None = Field(None, description="where the document lives, when it is not attached")
    document: EvidenceAttachment | None = Field(None, description="the document itself, stored in PostgreSQL")

    @model_validator(mode="after")
    def _where_it_is(self) -> EvidenceRequest:
        if (self.url is None) == (self.document is None):
            raise ValueError("give the document itself (document) or where it lives (url), one of them")
        for a in self.actions:
            if not re.fullmatch(ACTION_ID, a):
                raise ValueError(f"actions: '{a[:20]}' is not an action id")
        return self


# ------------------------------------------------------------------ responses
class ActionMonth(BaseModel):
    month: str
    status: str
    metric_value: str | None = None
    evidence: list[str] = Field(default_factory=list)


class ActionView(BaseModel):
    id: str
    category: Literal["must_do", "should_do"]
    description: str
    owner: str
    metric: str
    measured_by: str | None = None
    finding: str | None = None
    target_date: date | None = None
    horizon: int | None = None
    status: str
    overdue: bool
    off_track_months: int
    flagged: bool
    challenged: bool
    challenge_reason: str | None = None
    history: list[ActionMonth]


class ThemeView(BaseModel):
    name: str
    actions: list[ActionView]
    counts: dict[str, int]
    by_month: list[dict[str, Any]] = Field(description="per reported month: {month, counts by status}")


class PlanView(BaseModel):
    regime_id: str
    agreed: bool
    version: dict[str, Any] | None = None
    versions: list[dict[str, Any]] = Field(default_factory=list)
    proposed: dict[str, Any] | None = None
    themes: list[ThemeView] = Field(default_factory=list)
    months: list[str] = Field(default_factory=list)
    overdue: list[str] = Field(default_factory=list)
    flagged: list[str] = Field(default_factory=list)
    on_trajectory: bool | None = None
    trajectory_reason: str | None = None
    evidence_items: int = 0


class RevisionDraft(BaseModel):
    actions: list[dict[str, Any]] = Field(description="the agreed plan's outstanding actions (with their ids), "
                                                      "then a must-do action per concern in CQC's latest report")
    dropped: list[dict[str, Any]] = Field(default_factory=list)


class EvidenceView(BaseModel):
    number: int
    title: str
    dated: date
    shows: str
    actions: list[str]
    key_questions: list[str]
    sha256: str | None = None
    url: str | None = None
    recorded_by: str
    recorded_at: datetime


class EvidencePage(BaseModel):
    regime_id: str
    items: list[EvidenceView]


class ReadinessItem(BaseModel):
    step_id: str
    kind: str
    title: str
    key_question: str | None = None
    role: str
    due: date
    status: str
    outcome: str | None = None
    at_risk: bool


class ReadinessView(BaseModel):
    regime_id: str
    next_reinspection: dict[str, Any] | None = Field(description="the open re-inspection: its step, due date and announced date")
    days_to_go: int | None = Field(description="days from today to the announced re-inspection date, or to its "
                                               "due date when not announced")
    items: list[ReadinessItem]
    scheduled: list[dict[str, Any]]
    key_questions: dict[str, dict[str, Any]] = Field(description="key question -> the evidence file's state: "
                                                                 "complete, checked by the ID, buddy review")
    ready: bool
    at_risk: int


# ------------------------------------------------------------------ reads
def _today() -> date:
    return london_date(datetime.now(UTC))


async def _state(pool: asyncpg.Pool, client: Any, regime_id: str, row: asyncpg.Record) -> RegimeState:
    return await live_state(client, regime_id, closed=row["closed"], pool=pool)


async def _bodies(pool: asyncpg.Pool, regime_id: str, shas: list[str]) -> dict[str, dict[str, Any]]:
    if not shas:
        return {}
    rows = await pool.fetch("SELECT d.sha256, d.body FROM documents d JOIN document_uses u USING (sha256) "
                            "WHERE u.regime_id = $1 AND d.sha256 = ANY($2::text[])", regime_id, shas)
    return {r["sha256"]: json.loads(bytes(r["body"])) for r in rows}


def _reports(state: RegimeState) -> list[tuple[str, str, Step]]:
    """(month, document sha256, step) of each month's accepted report that carried progress per action; a month
    sent back and submitted again counts its last submission."""
    by_month: dict[str, tuple[str, str, Step]] = {}
    for st in state.steps.values():
        if st.kind != Kind.monthly_return or st.status != "done" or not st.data.get("progress"):
            continue
        sha = (st.data.get("document") or {}).get("sha256")
        month = st.subject.get("month")
        if sha and month and (month not in by_month or by_month[month][2].completed_at <= st.completed_at):
            by_month[month] = (month, sha, st)
    return sorted(by_month.values(), key=lambda x: x[0])


def _challenges(state: RegimeState) -> dict[str, str]:
    """The latest co-signed return's challenge reason per action."""
    cosigns = sorted((st for st in state.steps.values() if st.kind == Kind.monthly_return_cosign
                      and st.status == "done" and st.outcome == "cosign"),
                     key=lambda st: st.subject.get("month") or "")
    if not cosigns:
        return {}
    return {c["action_id"]: c["reason"] for c in cosigns[-1].data.get("challenges") or []}


def overdue_actions(state: RegimeState) -> list[str]:
    """Actions past their target date and not done, as the workflow's clock has it: their step is open and late
    (the escalation ladder has passed the due date)."""
    return sorted({st.subject["action"] for st in state.steps.values() if st.kind == Kind.plan_action
                   and st.status == "open" and st.late and st.subject.get("action")})


async def plan_view(pool: asyncpg.Pool, state: RegimeState, regime_id: str) -> dict[str, Any]:
    prog = state.programme
    if prog is None or not prog.versions:
        return PlanView(regime_id=regime_id, agreed=False).model_dump(mode="json")
    current = prog.versions[-1]
    reports = _reports(state)
    bodies = await _bodies(pool, regime_id, [current.sha256] + [sha for _, sha, _ in reports])
    plan = bodies.get(current.sha256) or {"actions": []}
    months = [m for m, _, _ in reports]
    per_action: dict[str, list[ActionMonth]] = {}
    for month, sha, _ in reports:
        for a in (bodies.get(sha) or {}).get("actions") or []:
            per_action.setdefault(a["action_id"], []).append(ActionMonth(
                month=month, status=a["status"], metric_value=a.get("metric_value"), evidence=a.get("evidence") or []))
    today = _today()
    overdue = set(overdue_actions(state))
    challenged = _challenges(state)
    themes: dict[str, list[ActionView]] = {}
    for n, a in enumerate(plan.get("actions") or [], 1):
        aid = a.get("id") or action_id(n)
        summary = prog.actions.get(aid)
        status = summary.status if summary else "not_started"
        themes.setdefault(a.get("theme") or DEFAULT_THEME, []).append(ActionView(
            id=aid, category=a["category"], description=a["description"], owner=a["owner"], metric=a["metric"],
            measured_by=a.get("measured_by"), finding=a.get("finding"), target_date=a.get("target_date"),
            horizon=a.get("horizon"), status=status, overdue=aid in overdue,
            off_track_months=summary.off if summary else 0, flagged=aid in prog.flagged,
            challenged=bool(summary and summary.challenged), challenge_reason=challenged.get(aid),
            history=per_action.get(aid, [])))
    theme_views = []
    for name, actions in themes.items():
        ids = {a.id for a in actions}
        by_month = []
        for month, sha, _ in reports:
            counts = dict.fromkeys(STATUSES, 0)
            for a in (bodies.get(sha) or {}).get("actions") or []:
                if a["action_id"] in ids:
                    counts[a["status"]] += 1
            by_month.append({"month": month, "counts": counts})
        theme_views.append(ThemeView(name=name, actions=actions, by_month=by_month,
                                     counts={s: sum(1 for a in actions if a.status == s) for s in STATUSES}))
    on, why = prog.on_trajectory(today, sorted(overdue))
    proposed = None
    if prog.proposed is not None:
        proposed = {"step_id": prog.proposed.step_id, "sha256": prog.proposed.sha256,
                    "proposed_by": prog.proposed.proposed_by, "reason": prog.proposed.reason,
                    "actions": len(prog.proposed.index.actions)}
    return PlanView(
        regime_id=regime_id, agreed=True, version=current.model_dump(mode="json"),
        versions=[v.model_dump(mode="json") for v in prog.versions], proposed=proposed, themes=theme_views,
        months=months, overdue=sorted(overdue), flagged=list(prog.flagged), on_trajectory=on, trajectory_reason=why,
        evidence_items=prog.evidence,
    ).model_dump(mode="json")


@router.get("/{regime_id}/plan", operation_id="getPlan", response_model=PlanView,
            summary="The improvement plan as a programme: themes, actions, each action's status month by month, "
                    "overdue and off-track actions, versions")
async def get_plan(regime_id: RegimeIdPath, user: CurrentUser, pool: DbPool, client: TemporalClientDep):
    row = await regime_row(pool, regime_id, user)
    state = await _state(pool, client, regime_id, row)
    return JSONResponse(await plan_view(pool, state, regime_id))


def revision_draft(state: RegimeState, plan: dict[str, Any]) -> dict[str, Any]:
    """A revised action plan's starting point (issue 15 item 5): the agreed plan's outstanding actions, and a
    must-do action for each concern in CQC's latest report (a key question or core service rated below good)."""
    prog = state.programme
    outstanding = []
    for n, a in enumerate(plan.get("actions") or [], 1):
        aid = a.get("id") or action_id(n)
        if prog is not None and prog.actions.get(aid) is not None and prog.actions[aid].status == "done":
            continue
        outstanding.append({**a, "id": aid})
    current = [r for r in state.inspections if r.status == "current"]
    concerns: list[dict[str, Any]] = []
    if current:
        o = current[-1].outcome
        for q in KEY_QUESTIONS:
            rating = getattr(o.ratings, q)
            if rating.rank < 2:
                concerns.append({"category": "must_do", "id": f"CQC-{q}"[:16], "theme": "CQC's latest report",
                                 "finding": f"{q.replace('_', '-')} rated {rating.value.replace('_', ' ')} "
                                            f"({o.reference})",
                                 "description": f"Improve {q.replace('_', '-')} to good",
                                 "owner": "to be agreed", "metric": "to be agreed"})
    taken = {a["id"] for a in outstanding}
    return {"actions": outstanding + [c for c in concerns if c["id"] not in taken], "dropped": []}


@router.get("/{regime_id}/plan/revision-draft", operation_id="getPlanRevisionDraft", response_model=RevisionDraft,
            summary="The starting point of a revised action plan: the outstanding actions and the concerns in "
                    "CQC's latest report")
async def get_revision_draft(regime_id: RegimeIdPath, user: CurrentUser, pool: DbPool, client: TemporalClientDep):
    row = await regime_row(pool, regime_id, user)
    state = await _state(pool, client, regime_id, row)
    prog = state.programme
    if prog is None or not prog.versions:
        raise Problem(409, "no-agreed-plan", "there is no agreed plan to revise yet")
    plan = (await _bodies(pool, regime_id, [prog.versions[-1].sha256])).get(prog.versions[-1].sha256) or {}
    return JSONResponse(revision_draft(state, plan))


# ------------------------------------------------------------------ changes
@router.post("/{regime_id}/plan/changes", status_code=201, operation_id="proposeImprovementPlanChange",
             response_model=StepView,
             summary="Propose a new version of the agreed plan (trust); the improvement director agrees or returns it")
async def propose_change(regime_id: RegimeIdPath, req: ImprovementPlanChangeRequest, request: Request, user: CurrentUser,
                         pool: DbPool, client: TemporalClientDep, settings: SettingsDep, rid: RequestId):
    row = await regime_row(pool, regime_id, user)
    require_act(user, "trust", row["ods_code"])

    async def handler() -> tuple[int, Any]:
        content = req.plan.model_dump(mode="json")
        ref = await documents.store(pool, regime_id, "plan-change", Kind.improvement_plan, content, user.sub)
        change = PlanChange(sha256=ref.sha256, plan=plan_index(content), reason=req.reason,
                            actor=actor(user, "trust", rid))
        view = await run_update(client.get_workflow_handle(regime_id), RegimeWorkflow.propose_plan_change, change,
                                settings)
        return 201, as_json(view)

    return await idempotent(request, pool, user, as_json(req), handler)


@router.post("/{regime_id}/evidence", status_code=201, operation_id="recordEvidence", response_model=EvidenceView,
             summary="Record an evidence item against plan actions and key questions (trust)")
async def record_evidence(regime_id: RegimeIdPath, req: EvidenceRequest, request: Request, user: CurrentUser,
                          pool: DbPool, client: TemporalClientDep, settings: SettingsDep, rid: RequestId):
    row = await regime_row(pool, regime_id, user)
    require_act(user, "trust", row["ods_code"])
    if req.document is not None:
        try:
            raw = base64.b64decode(req.document.content_base64, validate=True)
        except (binascii.Error, ValueError):
            raise Problem(422, "invalid-document", "document.content_base64 is not base64") from None
        if len(raw) > EVIDENCE_MAX_BYTES:
            raise Problem(413, "document-too-large", f"an attached document is at most {EVIDENCE_MAX_BYTES:,} bytes")

    async def handler() -> tuple[int, Any]:
        sha = None
        if req.document is not None:
            ref = await documents.store(pool, regime_id, "evidence", "evidence", req.document.model_dump(mode="json"),
                                        user.sub)
            sha = ref.sha256
        rec = EvidenceRecord(title=req.title, dated=req.dated, shows=req.shows, actions=req.actions,
                             key_questions=list(req.key_questions), sha256=sha,
                             url=str(req.url) if req.url else None, actor=actor(user, "trust", rid))
        number = await run_update(client.get_workflow_handle(regime_id), RegimeWorkflow.record_evidence, rec,
                                  settings)
        return 201, EvidenceView(number=number, title=rec.title, dated=rec.dated, shows=rec.shows,
                                 actions=rec.actions, key_questions=rec.key_questions, sha256=sha, url=rec.url,
                                 recorded_by=user.sub, recorded_at=datetime.now(UTC)).model_dump(mode="json")

    return await idempotent(request, pool, user, as_json(req), handler)


async def evidence_items(pool: asyncpg.Pool, regime_id: str) -> list[dict[str, Any]]:
    """The regime's evidence items, from its audit chain (the record of who recorded what, and when)."""
    rows = await pool.fetch("SELECT actor, reason, detail, at FROM audit_log WHERE regime_id = $1 AND event = $2 "
                            "ORDER BY seq", regime_id, "evidence_recorded")
    out = []
    for r in rows:
        d = r["detail"] if isinstance(r["detail"], dict) else json.loads(r["detail"] or "{}")
        out.append(EvidenceView(number=d.get("number", 0), title=r["reason"] or "", dated=d.get("dated"),
                                shows=d.get("shows") or "", actions=d.get("actions") or [],
                                key_questions=d.get("key_questions") or [], sha256=d.get("sha256"),
                                url=d.get("url"), recorded_by=r["actor"], recorded_at=r["at"]).model_dump(mode="json"))
    return out


@router.get("/{regime_id}/evidence", operation_id="listEvidence", response_model=EvidencePage,
            summary="A regime's evidence items (an attached document is read at /regimes/{id}/documents/{sha256})")
async def list_evidence(regime_id: RegimeIdPath, user: CurrentUser, pool: DbPool):
    await regime_row(pool, regime_id, user)
    return JSONResponse({"regime_id": regime_id, "items": await evidence_items(pool, regime_id)})


# ------------------------------------------------------------------ readiness
READINESS = (Kind.self_assessment, Kind.evidence_file, Kind.evidence_file_check, Kind.evidence_file_buddy_review)


def readiness_view(state: RegimeState, regime_id: str, today: date) -> dict[str, Any]:
    ri = [st for st in state.steps.values() if st.kind == Kind.reinspection]
    open_ri = next((st for st in ri if st.status == "open"), None)
    target = None
    reinspection = None
    if open_ri is not None:
        announced = open_ri.data.get("announced_date")
        target = date.fromisoformat(announced) if announced else open_ri.due
        reinspection = {"step_id": open_ri.id, "due": open_ri.due.isoformat(), "announced_date": announced}
    announced = bool(reinspection and reinspection["announced_date"])
    items = []
    for st in state.steps.values():
        if st.kind not in READINESS:
            continue
        at_risk = st.status == "open" and (announced or bool(st.data.get("at_risk")))
        items.append(ReadinessItem(step_id=st.id, kind=st.kind, title=st.title,
                                   key_question=st.subject.get("key_question"), role=st.role, due=st.due,
                                   status=st.status, outcome=st.outcome, at_risk=at_risk))
    items.sort(key=lambda i: (i.due, i.step_id))
    kq: dict[str, dict[str, Any]] = {}
    for q in KEY_QUESTIONS:
        files = [i for i in items if i.key_question == q and i.kind == Kind.evidence_file]
        checks = [i for i in items if i.key_question == q and i.kind == Kind.evidence_file_check]
        buddy = [i for i in items if i.key_question == q and i.kind == Kind.evidence_file_buddy_review]
        if not files:
            continue
        kq[q] = {"file": files[-1].status, "complete": files[-1].status == "done",
                 "checked": bool(checks) and checks[-1].status == "done" and checks[-1].outcome == "checked",
                 "buddy_reviewed": None if not buddy else buddy[-1].status == "done" and buddy[-1].outcome == "reviewed"}
    still_open = [i for i in items if i.status == "open"]
    return ReadinessView(
        regime_id=regime_id, next_reinspection=reinspection, days_to_go=(target - today).days if target else None,
        items=items, scheduled=[x.model_dump(mode="json") for x in state.scheduled], key_questions=kq,
        ready=bool(kq) and not still_open and not any(x.kind in READINESS for x in state.scheduled),
        at_risk=sum(1 for i in items if i.at_risk)).model_dump(mode="json")


@router.get("/{regime_id}/readiness", operation_id="getReadiness", response_model=ReadinessView,
            summary="Readiness for the re-inspection: self-assessments, evidence files by key question and their "
                    "checks, the countdown; items still open once the re-inspection is announced are at risk")
async def get_readiness(regime_id: RegimeIdPath, user: CurrentUser, pool: DbPool, client: TemporalClientDep):
    row = await regime_row(pool, regime_id, user)
    state = await _state(pool, client, regime_id, row)
    return JSONResponse(readiness_view(state, regime_id, _today()))


__all__ = ["router", "plan_view", "readiness_view", "evidence_items", "OFF_TRACK_MONTHS_FLAGGED"]
