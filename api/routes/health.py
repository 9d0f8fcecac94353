"""Liveness and readiness."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.contract import Liveness, Readiness

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live", operation_id="liveness", response_model=Liveness, summary="The process is up")
async def live():
    return {"status": "ok"}


@router.get("/ready", operation_id="readiness", response_model=Readiness, summary="PostgreSQL and Temporal answer; dead letters make it degraded")
async def ready(request: Request):
    """`ready` (200), `degraded` (200: serving, but some effects could not be written and wait for an
    operator, `regime dead-letters list`), or `unavailable` (503)."""
    checks: dict[str, str] = {}
    degraded = False
    try:
        pending = await asyncio.wait_for(request.app.state.pool.fetchrow(
            "SELECT count(*) AS n, count(DISTINCT workflow_id) AS w, min(created_at) AS oldest "
            "FROM dead_letters WHERE replayed_at IS NULL"), 2)
        checks["postgresql"] = "ok"
        if pending["n"]:
            degraded = True
            checks["dead_letters"] = (f"{pending['n']} batches of effects of {pending['w']} workflows not written "
                                      f"since {pending['oldest'].isoformat()}: `regime dead-letters list`")
        else:
            checks["dead_letters"] = "ok"
    except Exception as e:
        checks["postgresql"] = f"unavailable: {type(e).__name__}"
    client = request.app.state.temporal
    try:
        if client is None:
            raise RuntimeError("not connected")
        await asyncio.wait_for(client.service_client.check_health(), 2)
        checks["temporal"] = "ok"
    except Exception as e:
        checks["temporal"] = f"unavailable: {type(e).__name__}"
    ok = checks["postgresql"] == "ok" and checks["temporal"] == "ok"
    status = ("degraded" if degraded else "ready") if ok else "unavailable"
    return JSONResponse({"status": status, "checks": checks},
                        status_code=200 if ok else 503, headers=None if ok else {"Retry-After": "5"})
