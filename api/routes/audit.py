"""The audit log: per regime (filter by time and actor), per trust as CSV or JSON, and chain checks."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, Response

from api.contract import AuditPage, ChainVerdict, NotificationPage, TrustAuditPage, as_is
from api.deps import CurrentUser, DbPool
from api.errors import Problem
from api.routes.regimes.permissions import regime_row, require_read
from domain.models import ODS_PATTERN
from domain.vocab import Role
from infra.checkpoints import ChainVerifier

router = APIRouter(tags=["audit"])
# A spreadsheet runs a cell that starts with one of these as a formula (OWASP "CSV injection").
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
EXPORT_PAGE = 1000  # entries per page of the trust export unless asked
EXPORT_MAX = 10_000
COLUMNS = ("id", "regime_id", "workflow_id", "seq", "at", "actor", "role", "event", "step_id", "step_kind",
           "reason", "detail", "request_id", "prev_hash", "hash", "hash_alg")


def _row(r: Any) -> dict[str, Any]:
    d = {k: r[k] for k in COLUMNS}
    d["at"] = r["at"].isoformat()
    return d


@router.get("/regimes/{regime_id}/audit", operation_id="getRegimeAudit", response_model=AuditPage,
            summary="A regime's audit log (filter by time and actor)")
async def regime_audit(regime_id: str, user: CurrentUser, pool: DbPool,
                       since: datetime | None = None, until: datetime | None = None,
                       actor: str | None = Query(None, max_length=200), limit: int = Query(500, ge=1, le=5000)):
    row = await regime_row(pool, regime_id)
    require_read(user, row)
    args: list[Any] = [regime_id]
    clauses = ["regime_id = $1"]
    for col, op, val in (("at", ">=", since), ("at", "<", until), ("actor", "=", actor)):
        if val is not None:
            args.append(val)
            clauses.append(f"{col} {op} ${len(args)}")
    args.append(limit)
    rows = await pool.fetch(f"SELECT * FROM audit_log WHERE {' AND '.join(clauses)} ORDER BY id LIMIT ${len(args)}",
                            *args)
    return as_is({"items": [_row(r) for r in rows]})


@router.get("/regimes/{regime_id}/audit/verify", operation_id="verifyRegimeAudit", response_model=ChainVerdict,
            summary="Check the regime's audit chain and its latest checkpoint")
async def verify(request: Request, regime_id: str, user: CurrentUser, pool: DbPool,
                 full: bool = Query(False, description="recompute every entry, not only those after the head "
                                    "already checked (operations, regulator, admin)")):
    """Recompute the keyed hash chain and compare it with the latest signed checkpoint of its head.

    The answer for an unchanged head is remembered (`cached`: true, `entries_read`: 0), and a longer chain is
    checked only from the head already checked, so a rewrite of an earlier entry is found by a full check
    (`full=true`, `regime verify-audit`, the checkpoint run): docs/security.md.
    """
    row = await regime_row(pool, regime_id)
    require_read(user, row)
    if full and not user.has(Role.operations, Role.regulator, Role.admin):
        raise Problem(403, "forbidden-role", "a full recomputation is for operations, the regulator and admin")
    async with pool.acquire() as conn:
        return as_is(await _verifier(request).verify(conn, regime_id, use_cache=not full))


def _verifier(request: Request) -> ChainVerifier:
    state = request.app.state
    if getattr(state, "chain_verifier", None) is None:
        state.chain_verifier = ChainVerifier(state.settings)
    return state.chain_verifier


@router.get("/trusts/{ods_code}/audit", operation_id="exportTrustAudit", response_model=TrustAuditPage,
            responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}}, summary="Export a trust's audit log (all its regimes) as JSON or CSV, "
            "a page at a time")
async def trust_audit(user: CurrentUser, pool: DbPool,
                      # Only an ODS code: the code goes into the CSV's Content-Disposition header.
                      ods_code: str = Path(pattern=ODS_PATTERN, examples=["RXX"]),
                      format: Literal["json", "csv"] = "json",
                      limit: int = Query(EXPORT_PAGE, ge=1, le=EXPORT_MAX, description="entries in this page"),
                      after: int = Query(0, ge=0, le=2**63 - 1, description="cursor: the `next` of the page "
                                         "before (entries after this audit id)")):
    """Entries in audit id order (the order they were written), at most `limit` per page. The JSON page carries
    `next` (null on the last page); the CSV page a `Link: <...>; rel="next"` header and `X-Next-Cursor`."""
    if not user.may_read_trust(ods_code):
        raise Problem(403, "forbidden-trust", f"you are not assigned to trust {ods_code}")
    rows = await pool.fetch(
        """SELECT a.* FROM audit_log a JOIN regimes r USING (regime_id) WHERE r.ods_code = $1 AND a.id > $2
           ORDER BY a.id LIMIT $3""", ods_code, after, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    nxt = rows[-1]["id"] if more else None
    items = [_row(r) for r in rows]
    if format == "json":
        return JSONResponse({"ods_code": ods_code, "items": items, "next": nxt})
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS)
    w.writeheader()
    for it in items:
        it["detail"] = _dumps(it["detail"])
        w.writerow({k: _cell(v) for k, v in it.items()})
    headers = {"Content-Disposition": f'attachment; filename="audit-{ods_code}.csv"'}
    if nxt is not None:
        headers["X-Next-Cursor"] = str(nxt)
        headers["Link"] = f'</trusts/{ods_code}/audit?format=csv&limit={limit}&after={nxt}>; rel="next"'
    return Response(buf.getvalue(), media_type="text/csv", headers=headers)


def _cell(v: Any) -> Any:
    """A text cell a spreadsheet shows as text: a leading formula character gets a single quote before it."""
    return f"'{v}" if isinstance(v, str) and v.startswith(FORMULA_START) else v


def _dumps(v: Any) -> str:
    import json

    return json.dumps(v, sort_keys=True)


@router.get("/notifications", operation_id="listNotifications", response_model=NotificationPage,
            summary="The notification outbox (escalation notices), newest first")
async def notifications(user: CurrentUser, pool: DbPool, regime_id: str | None = Query(None, max_length=200),
                        unsent_only: bool = False, limit: int = Query(100, ge=1, le=1000)):
    if not user.has(Role.operations, Role.regulator, Role.admin):
        raise Problem(403, "forbidden-role", "the outbox is for operations and the regulator")
    args: list[Any] = []
    clauses = ["TRUE"]
    if regime_id:
        args.append(regime_id)
        clauses.append(f"regime_id = ${len(args)}")
    if unsent_only:
        clauses.append("sent_at IS NULL")
    args.append(limit)
    rows = await pool.fetch(f"SELECT * FROM notifications WHERE {' AND '.join(clauses)} ORDER BY id DESC "
                            f"LIMIT ${len(args)}", *args)
    return as_is({"items": [{**dict(r), "created_at": r["created_at"].isoformat(),
                             "sent_at": r["sent_at"].isoformat() if r["sent_at"] else None} for r in rows]})
