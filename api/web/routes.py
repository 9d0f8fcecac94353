"""The operations web view: regimes list, regime page, cohort and evaluation views, and sign-in for local use."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import ChainableUndefined, ChoiceLoader, Environment, FileSystemLoader, PackageLoader
from temporalio.client import Client
from temporalio.service import RPCError

from api.auth import User, authenticate
from api.errors import Problem
from api.web import charts, data, history, labels, timeline
from api.web.session import COOKIE, Forbidden, SignInRequired, optional_user, sees_all, viewer
from domain.models import RegimeState
from domain.policy import describe as describe_policy
from domain.steps import EXTENSION_GUIDANCE_MONTHS, Kind
from settings import Settings

HERE = Path(__file__).resolve().parent
PREFIX = "/web"
REFRESH_SECONDS = 10
HISTORY_PAGE = 100
HISTORY_ALL_AUDIT = 5000  # audit entries read for ?history=all; the API's audit endpoints page through the rest

env = Environment(
    loader=ChoiceLoader([FileSystemLoader(HERE / "templates"), PackageLoader("nhsuk_frontend_jinja")]),
    # The nhsuk-frontend-jinja macros read optional parameters through chains such as params.a.b.
    undefined=ChainableUndefined,
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
)
env.globals.update(labels=labels, PREFIX=PREFIX, REFRESH_SECONDS=REFRESH_SECONDS)
env.filters.update(date=labels.fmt_date, time=labels.fmt_time, role=labels.role_label,
                   phase=labels.phase_label, money=labels.money, month=labels.fmt_month,
                   sentence=labels.sentence,
                   pct=lambda v: "–" if v is None else f"{round(v * 100)}%")
templates = Jinja2Templates(env=env)

router = APIRouter(prefix=PREFIX, include_in_schema=False)
Viewer = Annotated[User, Depends(viewer)]


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _client(request: Request) -> Client | None:
    return request.app.state.temporal


def page(request: Request, name: str, ctx: dict[str, Any], status: int = 200) -> HTMLResponse:
    user = ctx.get("user") or getattr(request.state, "user", None)
    base = {"user": user, "path": request.url.path, "local": _settings(request).environment == "local",
            "assetPath": f"{PREFIX}/static/nhsuk/assets",
            "oidc": bool(_settings(request).auth_jwks_url)}
    return templates.TemplateResponse(request, name, {**base, **ctx}, status_code=status)


# ------------------------------------------------------------------ sign-in
@router.get("", summary="Operations view")
@router.get("/", summary="Operations view")
async def home() -> RedirectResponse:
    return RedirectResponse(f"{PREFIX}/regimes", status_code=303)


def _safe_next(nxt: str | None) -> str:
    if nxt and nxt.startswith(PREFIX + "/") and not nxt.startswith("//") and "\\" not in nxt:
        return nxt
    return f"{PREFIX}/regimes"


@router.get("/sign-in")
async def sign_in_form(request: Request, next: str | None = None, reason: str | None = None):
    return page(request, "sign_in.html", {"next": _safe_next(next), "reason": reason, "error": None,
                                          "user": await optional_user(request)})


def _same_origin(request: Request) -> bool:
    """A form posted from this site: browsers send Origin on every POST, so one without it (or "null",
    from a sandboxed or privacy-stripped context) is refused like one from another site (issue 17,
    finding 11: login and logout CSRF)."""
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return False
    return origin.rstrip("/") == f"{request.url.scheme}://{request.url.netloc}"


def _cross_site(request: Request, what: str) -> HTMLResponse:
    return page(request, "error.html", {"title": f"{what} refused", "detail":
                f"The {what.lower()} form was not sent from this site."}, status=403)


@router.post("/sign-in")
async def sign_in(request: Request):
    if not _same_origin(request):
        return _cross_site(request, "Sign-in")
    settings = _settings(request)
    if settings.auth_jwks_url and settings.environment != "local":
        return page(request, "error.html", {"title": "Page not found", "detail":
                    "Sign in through your organisation's account."}, status=404)
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    token = (form.get("token") or [""])[0].strip()
    nxt = _safe_next((form.get("next") or [""])[0])
    if token.lower().startswith("bearer "):
        token = token[7:].strip()
    try:
        if not token:
            raise Problem(401, "token-missing", "Paste a token")
        user = await authenticate(settings, token)
    except Problem as e:
        error = "Paste the token that `regime token` printed" if e.kind == "token-missing" else (
            "This token has expired. Mint a new one." if e.kind == "token-expired" else
            "This token is not valid for this service.")
        return page(request, "sign_in.html", {"next": nxt, "reason": None, "error": error, "user": None},
                    status=400)
    import jwt

    exp = jwt.decode(token, options={"verify_signature": False}).get("exp")
    resp = RedirectResponse(nxt, status_code=303)
    resp.set_cookie(COOKIE, token, max_age=max(int(exp - time.time()), 60) if exp else None, path=PREFIX,
                    httponly=True, samesite="lax",
                    secure=request.url.scheme == "https" or settings.environment != "local")
    request.state.user = user
    return resp


@router.post("/sign-out")
async def sign_out(request: Request):
    if not _same_origin(request):
        return _cross_site(request, "Sign-out")
    resp = RedirectResponse(f"{PREFIX}/sign-in?reason=signed-out", status_code=303)
    resp.delete_cookie(COOKIE, path=PREFIX)
    return resp


# ------------------------------------------------------------------ regimes list
def _filters(q: str, phase: str, overdue_only: str, escalated_only: str, sort: str, dir: str,
             page_no: str = "") -> data.Filters:
    return data.Filters(q=q.strip()[:100], phase=phase if phase in labels.PHASES else "",
                        overdue_only=overdue_only in ("1", "on", "true"),
                        escalated_only=escalated_only in ("1", "on", "true"),
                        sort=sort if sort in data.SORTS else "next_due", direction="desc" if dir == "desc" else "asc",
                        page=data.page_number(page_no))


def _version(listing: data.RegimePage) -> str:
    keys = ("regime_id", "phase", "next_due", "days_left", "overdue", "escalation_level", "buddy_count", "months")
    raw = f"{listing.page}/{listing.total}|" + "|".join(",".join(str(r[k]) for k in keys) for r in listing.rows)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def _pagination(f: data.Filters, listing: data.RegimePage) -> dict[str, Any] | None:
    """Parameters for the NHS.UK pagination component: previous and next, and the page numbers around this
    one with the first and the last (gaps shown as ellipses)."""
    if listing.pages <= 1:
        return None

    def href(n: int) -> str:
        return f"{PREFIX}/regimes?{f.query(page=n)}"

    shown = {1, listing.pages, *range(max(listing.page - 1, 1), min(listing.page + 1, listing.pages) + 1)}
    shown |= {n + 1 for n in shown if n + 2 in shown}  # an ellipsis never stands for a single page
    items: list[dict[str, Any]] = []
    pages = sorted(shown)
    for before, n in zip([0, *pages], pages, strict=False):
        if n - before > 1:
            items.append({"ellipsis": True})
        items.append({"number": n, "href": href(n), "current": n == listing.page})
    params: dict[str, Any] = {"items": items, "ariaLabel": "Pages of regimes"}
    if listing.page > 1:
        params["previous"] = {"href": href(listing.page - 1)}
    if listing.page < listing.pages:
        params["next"] = {"href": href(listing.page + 1)}
    return params


async def _list_context(request: Request, user: User, f: data.Filters) -> dict[str, Any]:
    listing = await data.regime_rows(request.app.state.pool, _client(request), _settings(request), user, f)
    f = dataclasses.replace(f, page=listing.page)  # a page past the end was shown as the last page
    return {"rows": listing.rows, "listing": listing, "f": f, "version": _version(listing),
            "pagination": _pagination(f, listing), "sees_all": sees_all(user), "updated": datetime.now(UTC),
            "phases": labels.PHASES}


@router.get("/regimes")
async def regimes_page(request: Request, user: Viewer, q: str = Query("", max_length=100), phase: str = "",
                       overdue_only: str = "", escalated_only: str = "", sort: str = "next_due", dir: str = "asc",
                       page_no: str = Query("", alias="page")):
    f = _filters(q, phase, overdue_only, escalated_only, sort, dir, page_no)
    dead = None
    if user.has("operations", "admin", "regulator"):  # a stoppage is theirs to see and act on
        dead = await request.app.state.pool.fetchrow(
            "SELECT count(*) AS n, count(DISTINCT workflow_id) AS w, min(created_at) AS oldest "
            "FROM dead_letters WHERE replayed_at IS NULL")
    return page(request, "regimes.html", {"user": user, "dead_letters": dead if dead and dead["n"] else None,
                                          **await _list_context(request, user, f)})


@router.get("/regimes/rows")
async def regimes_rows(request: Request, user: Viewer, q: str = Query("", max_length=100), phase: str = "",
                       overdue_only: str = "", escalated_only: str = "", sort: str = "next_due", dir: str = "asc",
                       page_no: str = Query("", alias="page"), v: str = ""):
    """The list's table (one page of it) alone, polled by htmx; 204 (nothing to swap) when nothing changed."""
    f = _filters(q, phase, overdue_only, escalated_only, sort, dir, page_no)
    ctx = await _list_context(request, user, f)
    if v and v == ctx["version"]:
        return Response(status_code=204)
    return page(request, "_regime_table.html", {"user": user, **ctx})


# ------------------------------------------------------------------ one regime
@router.get("/regimes/{regime_id}")
async def regime_page(request: Request, user: Viewer, regime_id: str, history_all: str = Query("", alias="history")):
    pool = request.app.state.pool
    settings = _settings(request)
    client = _client(request)
    got = await _regime_state(request, user, regime_id)
    if isinstance(got, Response):
        return got
    row, state, clock = got
    assert client is not None  # _regime_state answered 503 without one
    today = clock.today
    tl = timeline.build(state, today, settings.due_soon_days)
    # Bounded reads (issue 17, finding 8): the newest audit entries only, and at most history.MAX_EVENTS events.
    audit_cap = HISTORY_ALL_AUDIT if history_all else HISTORY_PAGE
    audit_rows = await pool.fetch("SELECT * FROM audit_log WHERE regime_id = $1 ORDER BY id DESC LIMIT $2",
                                  regime_id, audit_cap + 1)
    audit_capped = len(audit_rows) > audit_cap
    audit_rows = audit_rows[:audit_cap]
    try:
        wf_lines, runs, events_capped = await history.from_temporal(client, row["workflow_id"],
                                                                    all_runs=bool(history_all))
        history_error = None
    except RPCError as e:
        wf_lines, runs, events_capped, history_error = [], 0, False, e.message
    lines = history.merge(history.from_audit(audit_rows), wf_lines)
    ns = settings.temporal_namespace
    ctx = {
        "user": user, "row": data.row_view(row, clock, settings), "state": state, "clock": clock,
        "today": today, "timeline": tl, "ladder": labels.ladder_rungs(settings.ladder),
        "open_steps": _open_steps(state, today, settings.due_soon_days),
        "escalations": sorted(state.escalations, key=lambda e: e.at, reverse=True),
        "ratings": _ratings(state), "buddies": await _buddies(client, state, request.app.state.pool),
        "history": lines if history_all else lines[:HISTORY_PAGE], "history_total": len(lines),
        "history_all": bool(history_all), "history_runs": runs, "history_error": history_error,
        "history_capped": bool(history_all) and (audit_capped or events_capped),
        "history_caps": {"audit": HISTORY_ALL_AUDIT, "events": history.MAX_EVENTS},
        "relatives": await data.relatives(pool, user, row),
        "temporal_url": f"{settings.temporal_ui}/namespaces/{quote(ns)}/workflows/{quote(row['workflow_id'])}",
        "decisions": state.decisions,
        "documents": _documents(state),
        "on_recommendation": state.placement.basis == Kind.cqc_recommendation,
        "extensions": extension_rows(state.extensions),
        "policy": describe_policy(state.placement.policy),
        "next_basis": _next_basis(state),
    }
    return page(request, "regime.html", ctx)


async def _regime_state(request: Request, user: User,
                        regime_id: str) -> tuple[Any, RegimeState, data.Clock] | HTMLResponse:
    """A regime's row, live state and clock for its pages, or the page to answer instead: one "not found" for a
    regime that does not exist and for one of a trust the user may not read (issue 17, finding 9), 503 while the
    workflow engine does not answer. The regime page and its sub-pages all read a regime through here."""
    pool = request.app.state.pool
    client = _client(request)
    row = await pool.fetchrow("SELECT * FROM regimes WHERE regime_id = $1", regime_id)
    if row is None or not user.may_read_trust(row["ods_code"]):
        return _no_regime(request, user, regime_id)
    if client is None:
        return page(request, "error.html", {"user": user, "title": "Workflow engine not connected",
                                            "detail": "Try again in a few seconds."}, status=503)
    try:
        clock = await data.clock(client, row["workflow_id"])
        from api.routes.regimes.service import live_state

        # A closed regime is read from its workflow's result (no replay of its whole history).
        state: RegimeState = await live_state(client, row["workflow_id"], closed=row["closed"], pool=pool)
    except RPCError as e:
        return page(request, "error.html", {"user": user, "title": "Regime state unavailable",
                                            "detail": f"The workflow engine did not answer: {e.message}"},
                    status=503)
    return row, state, clock


def _next_basis(state: RegimeState) -> dict[str, str] | None:
    """The deadline basis of the open step that falls due next (the summary's "Next deadline")."""
    nxt = min((s for s in state.steps.values() if s.status == "open" and not s.paused),
              key=lambda s: (s.due, s.id), default=None)
    return labels.step_basis(nxt) if nxt is not None else None


def _no_regime(request: Request, user: User, regime_id: str) -> HTMLResponse:
    """One page for a regime that does not exist and for one of a trust the user may not read (issue 17,
    finding 9): it names neither the trust nor whether the regime exists."""
    return page(request, "error.html", {"user": user, "title": "Regime not found",
                                        "detail": f"There is no regime {regime_id} that you can see."}, status=404)


def _documents(state: RegimeState) -> list[dict[str, Any]]:
    """Every document submitted to the regime (plans, monthly returns), newest first, by reference."""
    out = []
    for st in state.steps.values():
        doc = st.data.get("document")
        if isinstance(doc, dict) and doc.get("sha256"):
            out.append({"step": st, "doc": doc, "at": st.completed_at,
                        "by": next((a.by for a in reversed(st.actions)), st.completed_by),
                        "is_plan": doc.get("kind") == Kind.improvement_plan})
    return sorted(out, key=lambda d: d["at"] or datetime.min.replace(tzinfo=UTC), reverse=True)


@router.get("/regimes/{regime_id}/documents/{sha256}")
async def document_page(request: Request, user: Viewer, regime_id: str, sha256: str):
    """A document as submitted, read from PostgreSQL by its hash: a plan as a table, a return as text."""
    from api import documents

    pool = request.app.state.pool
    row = await pool.fetchrow("SELECT * FROM regimes WHERE regime_id = $1", regime_id)
    if row is None or not user.may_read_trust(row["ods_code"]):
        return _no_regime(request, user, regime_id)
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        return page(request, "error.html", {"user": user, "title": "Document not found",
                                            "detail": "There is no such document."}, status=404)
    doc = await documents.load(pool, regime_id, sha256)
    if doc is None:
        return page(request, "error.html", {"user": user, "title": "Document not found",
                                            "detail": f"No such document was submitted to {regime_id}."}, status=404)
    kind, body = doc
    return page(request, "document.html", {"user": user, "row": row, "kind": kind, "sha256": sha256,
                                           "is_plan": kind == Kind.improvement_plan,
                                           "is_return": kind == Kind.monthly_return,
                                           "content": json.loads(body), "bytes": len(body)})


# ------------------------------------------------------------------ the improvement plan as a programme
@router.get("/regimes/{regime_id}/plan")
async def plan_page(request: Request, user: Viewer, regime_id: str):
    """The agreed plan by theme (issue 15 item 6): a chart per theme of its actions' statuses month by month, the
    actions, and at the top the version, the trajectory and the actions that need attention. Built from the API's
    own read (api.routes.programme.plan_view)."""
    from api.routes.programme import plan_view

    got = await _regime_state(request, user, regime_id)
    if isinstance(got, Response):
        return got
    row, state, clock = got
    plan = await plan_view(request.app.state.pool, state, row["regime_id"])
    themes = [{**t, "chart": charts.plan_theme_chart(t, n) if t["by_month"] else None,
               "table": charts.plan_month_counts(t)} for n, t in enumerate(plan["themes"], 1)]
    return page(request, "plan.html", {
        "user": user, "row": data.row_view(row, clock, _settings(request)), "clock": clock, "today": clock.today,
        "plan": plan, "themes": themes, "attention": plan_attention(plan), "legend": charts.plan_legend(),
        "stack": list(charts.PLAN_STACK), "not_reported": charts.NOT_REPORTED,
        "older_versions": list(reversed(plan["versions"][:-1])), "sources": labels.PLAN_VERSION_SOURCES})


def plan_attention(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """The actions that need attention, in the plan's order, each with why: past its target date (overdue), off
    track months running (flagged: OFF_TRACK_MONTHS_FLAGGED or more), or off track in the latest report."""
    overdue, flagged = set(plan["overdue"]), set(plan["flagged"])
    out = []
    for t in plan["themes"]:
        for a in t["actions"]:
            why = []
            if a["id"] in overdue:
                why.append(f"past its target date ({labels.fmt_date(a['target_date'])})" if a["target_date"]
                           else "past its target date")
            if a["id"] in flagged:
                why.append(f"off track {a['off_track_months']} months in a row")
            elif a["status"] == "off_track":
                why.append("off track in the latest report")
            if why:
                out.append({"action": a, "theme": t["name"], "overdue": a["id"] in overdue,
                            "flagged": a["id"] in flagged, "why": why})
    return out


@router.get("/regimes/{regime_id}/readiness")
async def readiness_page(request: Request, user: Viewer, regime_id: str):
    """Readiness for the re-inspection (issue 15 item 6): the countdown, the evidence file per key question and its
    checks, the self-assessments, the items at risk, and what is scheduled but not open yet. Built from the API's
    own read (api.routes.programme.readiness_view), on the regime's own clock as the other regime pages are."""
    from api.routes.programme import readiness_view

    got = await _regime_state(request, user, regime_id)
    if isinstance(got, Response):
        return got
    row, state, clock = got
    today = clock.today
    view = readiness_view(state, row["regime_id"], today)
    soon = _settings(request).due_soon_days
    items = []
    for i in view["items"]:
        st = state.steps.get(i["step_id"])
        s = labels.step_state(i["status"], date.fromisoformat(i["due"]), today, bool(st and st.late),
                              bool(st and st.paused), soon)
        items.append({**i, "state": s, "label": labels.readiness_title(i["kind"], i["step_id"], i["key_question"]),
                      "days": (date.fromisoformat(i["due"]) - today).days})
    scheduled = sorted(({**x, "label": labels.readiness_title(x["kind"], x.get("step_id"),
                                                              (x.get("subject") or {}).get("key_question"))}
                        for x in view["scheduled"]), key=lambda x: (x["opens"], x["due"], x["label"]))
    ri = view["next_reinspection"]
    return page(request, "readiness.html", {
        "user": user, "row": data.row_view(row, clock, _settings(request)), "clock": clock, "today": today,
        "view": view, "items": items, "scheduled": scheduled,
        "at_risk": [i for i in items if i["at_risk"]],
        "self_assessments": [i for i in items if i["kind"] == Kind.self_assessment],
        "scheduled_self_assessments": [x for x in scheduled if x["kind"] == Kind.self_assessment],
        "files": [{"q": q, "label": labels.key_question_label(q), **f} for q, f in view["key_questions"].items()],
        "files_open": next((x["opens"] for x in scheduled if x["kind"] == Kind.evidence_file), None),
        "target": (ri["announced_date"] or ri["due"]) if ri else None,
        "announced": bool(ri and ri["announced_date"]),
        "reinspection_title": labels.step_title(Kind.reinspection, ri["step_id"]) if ri else None})


def _open_steps(state: RegimeState, today, soon: int) -> list[dict[str, Any]]:
    out = []
    for st in sorted(state.steps.values(), key=lambda s: (s.due, s.id)):
        if st.status != "open":
            continue
        s = labels.step_state(st.status, st.due, today, st.late, st.paused, soon)
        out.append({"step": st, "title": labels.step_title(st.kind, st.id), "full_title": st.title,
                    "state": s, "days": (st.due - today).days, "who": labels.role_label(st.role),
                    "rung": st.next_rung})
    return out


def extension_rows(extensions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each extension for the summary: its length and end, and whether it is longer than the guidance's 6 months
    (seed 000 §1 "up to a further 6 months"; seed 002 "usually 6 months") with the regulator's reason. Extensions
    decided before issue 14 carry no `beyond_guidance` key: their length says it."""
    out = []
    for x in extensions:
        months = int(x.get("months") or 0)
        out.append({"number": x.get("number"), "months": months, "ends": x.get("ends"),
                    "beyond_guidance": bool(x.get("beyond_guidance")) or months > EXTENSION_GUIDANCE_MONTHS,
                    "guidance_months": EXTENSION_GUIDANCE_MONTHS,
                    "beyond_guidance_reason": x.get("beyond_guidance_reason")})
    return out


def _ratings(state: RegimeState) -> dict[str, Any]:
    """Columns for the ratings table: at entry, then each inspection after it, each with its verdict."""
    p = state.placement
    cols = []
    entry_ref = p.entry_outcome.reference if p.entry_outcome else None
    if p.entry_ratings or p.entry_outcome:
        ratings = p.entry_ratings or (p.entry_outcome.ratings if p.entry_outcome else None)
        cols.append({"heading": "At entry", "sub": labels.fmt_date(p.entry_outcome.published) if p.entry_outcome
                     else labels.fmt_date(p.entry_date), "reference": entry_ref,
                     "ratings": ratings.model_dump(mode="json") if ratings else {}, "verdict": None,
                     "status": "current", "core": [c.model_dump(mode="json") for c in p.entry_outcome.core_services]
                     if p.entry_outcome else [], "notes": [], "multi_site": p.trust.multi_site,
                     "trajectory": None})
    n = 0
    for rec in state.inspections:
        if entry_ref and rec.outcome.reference == entry_ref and rec.verdict is None:
            continue
        o = rec.outcome
        n += o.special_measures_reinspection is not False
        cols.append({"heading": labels.inspection_label(o, n) if rec.status != "older_ignored" else "Older report",
                     "sub": labels.fmt_date(o.published), "reference": o.reference,
                     "ratings": o.ratings.model_dump(mode="json"), "verdict": rec.verdict, "status": rec.status,
                     "core": [c.model_dump(mode="json") for c in o.core_services], "notes": rec.notes,
                     "multi_site": o.multi_site, "trajectory": o.trajectory_evidence})
    return {"columns": cols, "questions": labels.KEY_QUESTIONS}


async def _buddies(client: Client, state: RegimeState, pool: Any) -> list[dict[str, Any]]:
    """Each partnership's summary (carried in the regime state) and, from its own workflow, its agreement
    dates and quarterly ledger. A partnership that does not answer still shows its summary."""
    out = []
    for b in state.buddies.values():
        item: dict[str, Any] = {"b": b, "paid_share": (b.paid_pence / b.agreed_level_pence) if b.agreed_level_pence
                                else None, "ledger": None, "detail": None}
        handle = client.get_workflow_handle(b.partnership_id)
        try:
            from domain.ledger import BuddyState, LedgerView

            item["ledger"] = await handle.query("get_ledger", result_type=LedgerView,
                                                rpc_timeout=timedelta(seconds=3))
            item["detail"] = await handle.query("get_state", result_type=BuddyState,
                                                rpc_timeout=timedelta(seconds=3))
            from api.archive import partnership_with_archive

            item["detail"] = await partnership_with_archive(pool, b.partnership_id,
                                                            item["detail"])
        except Exception:  # an older partnership workflow, or one the worker cannot answer for now
            pass
        out.append(item)
    return out


# ------------------------------------------------------------------ cohort
@router.get("/cohort")
async def cohort_page(request: Request, user: Viewer):
    c = await data.cohort(request.app.state.pool, _client(request), _settings(request), user)
    return page(request, "cohort.html", {"user": user, "c": c, "sees_all": sees_all(user),
                                         "chart": charts.months_chart(c["regimes"], c["mean"]),
                                         "programme_average": charts.PROGRAMME_AVERAGE})


# ------------------------------------------------------------------ evaluation (issue 16 item 5)
EVALUATION_NATIONAL = ("The evaluation covers every trust's regimes: it is for operations staff, the regulator, CQC "
                       "and administrators. The cohort page shows the regimes you are assigned to.")


@router.get("/evaluation")
async def evaluation_page(request: Request, user: Viewer):
    from api import evaluation

    if not sees_all(user):
        raise Forbidden(user, EVALUATION_NATIONAL)
    ev = await evaluation.evaluate(request.app.state.pool)
    ended = {i["regime_id"] for i in ev["cost"]["items"] if i["outcome"] in ("exited", "closed")}
    censored = [i["days"] for i in ev["cost"]["items"] if i["regime_id"] not in ended]
    years = [{"label": str(y["year"]), "value": y["median_months"] or 0,
              "text": (f"{y['median_months']} months" if y["median_months"] is not None else "no median yet")
              + f" ({y['regimes']} regimes, {y['exited'] + y['closed']} ended)"} for y in ev["by_entry_year"]]
    gaps = [{"label": f"{e['trust_name']} ({e['exit_date'].year})", "value": round(e["days_to_reentry"] / 30.4375, 1),
             "text": f"{round(e['days_to_reentry'] / 30.4375, 1)} months"}
            for e in ev["reentry"]["items"] if e["days_to_reentry"] is not None]
    paid = sorted((c for c in ev["cost"]["items"] if c["buddy_paid_pence"]), key=lambda c: -c["buddy_paid_pence"])
    costs = [{"label": f"{c['trust_name']} ({c['entry_date'].year})", "value": c["buddy_per_month_pence"] or 0,
              "text": f"{labels.money(c['buddy_per_month_pence'])} a month, {labels.money(c['buddy_paid_pence'])}"}
             for c in paid]
    return page(request, "evaluation.html", {
        "user": user, "ev": ev, "tables": evaluation.TABLES,
        "survival_chart": charts.survival_chart(ev["survival"], ev["median_days"], censored),
        "year_chart": charts.bar_chart("year-chart", "Median months in special measures, by year of entry", years,
                                       "Kaplan-Meier median for the regimes that entered each year"),
        "reentry_chart": charts.bar_chart("reentry-chart", "Months between exit and re-entry", gaps,
                                          "One bar per exit followed by a re-entry") if gaps else None,
        "cost_chart": charts.bar_chart("cost-chart", "Buddy payments per month in special measures, per regime",
                                       costs, "Regimes with buddy payments, the most paid first") if costs else None,
    })


@router.get("/evaluation/{table}.csv")
async def evaluation_csv(request: Request, user: Viewer, table: str):
    from api import evaluation
    from api.routes.evaluation import csv_response

    if not sees_all(user):
        raise Forbidden(user, EVALUATION_NATIONAL)
    if table not in evaluation.TABLES:
        return page(request, "error.html", {"title": "Page not found", "detail": f"No table {table!r}: "
                    + ", ".join(evaluation.TABLES) + "."}, status=404)
    return csv_response(await evaluation.evaluate(request.app.state.pool), table)


# ------------------------------------------------------------------ error pages
def signin_redirect(request: Request, exc: SignInRequired) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.url.path.endswith("/rows"):
        target = f"{PREFIX}/regimes"
    url = f"{PREFIX}/sign-in?next={quote(target)}" + ("&reason=expired" if exc.reason else "")
    if request.headers.get("hx-request"):
        return Response(status_code=401, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


def forbidden_page(request: Request, exc: Forbidden) -> Response:
    return page(request, "error.html", {"user": exc.user, "title": "You do not have access to this page",
                                        "detail": exc.detail, "forbidden": True}, status=403)


import api.web.money  # noqa: E402, F401  the funding and costs page (issue 16 items 1 and 2) adds itself to `router`
import api.web.watchlist  # noqa: E402, F401  the watch-list pages (issue 16 item 4) add themselves to `router`
