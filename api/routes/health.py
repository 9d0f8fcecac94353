"""Liveness and readiness."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live", summary="The process is up")
async def live():
    return {"status": "ok"}


@router.get("/ready", summary="PostgreSQL and Temporal answer")
async def ready(request: Request):
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(request.app.state.pool.fetchval("SELECT 1"), 2)
        checks["postgresql"] = "ok"
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
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ready" if ok else "unavailable", "checks": checks},
                        status_code=200 if ok else 503, headers=None if ok else {"Retry-After": "5"})
