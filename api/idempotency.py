"""Idempotency-Key support for every POST that changes something.

The first request with a key claims it (a row in PostgreSQL); its response is stored. A repeat with
the same key and body gets the stored response and has no second effect; concurrent repeats wait for
the first to finish. The same key with a different body is refused (422).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from fastapi import Request
from fastapi.responses import JSONResponse

from api.auth import User
from api.errors import Problem

Handler = Callable[[], Awaitable[tuple[int, Any]]]


async def idempotent(request: Request, pool: asyncpg.Pool, user: User, body: Any, handler: Handler) -> JSONResponse:
    key = request.headers.get("idempotency-key")
    if not key:
        status, payload = await _run(handler)
        return JSONResponse(payload, status_code=status)
    if len(key) > 200:
        raise Problem(400, "idempotency-key", "Idempotency-Key is longer than 200 characters")
    body_hash = hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()
    claimed = await pool.fetchval(
        """INSERT INTO idempotency_keys (user_id, key, method, path, body_hash) VALUES ($1,$2,$3,$4,$5)
           ON CONFLICT DO NOTHING RETURNING 1""",
        user.sub, key, request.method, request.url.path, body_hash,
    )
    if not claimed:
        return await _replay(pool, user, key, request, body_hash)
    try:
        status, payload = await _run(handler)
    except Problem as p:
        if p.status >= 500 or p.status == 429:
            await pool.execute("DELETE FROM idempotency_keys WHERE user_id=$1 AND key=$2", user.sub, key)
        else:
            await _store(pool, user, key, p.status, {"problem": _problem_body(request, p)})
        raise
    except BaseException:
        # Nothing was decided (or we cannot know): free the key so the client can retry.
        await pool.execute("DELETE FROM idempotency_keys WHERE user_id=$1 AND key=$2", user.sub, key)
        raise
    await _store(pool, user, key, status, payload)
    return JSONResponse(payload, status_code=status)


async def _run(handler: Handler) -> tuple[int, Any]:
    return await handler()


async def _store(pool: asyncpg.Pool, user: User, key: str, status: int, payload: Any) -> None:
    await pool.execute("UPDATE idempotency_keys SET status_code=$3, response=$4 WHERE user_id=$1 AND key=$2",
                       user.sub, key, status, payload)


def _problem_body(request: Request, p: Problem) -> dict[str, Any]:
    from api.errors import TYPE_BASE

    return {"type": TYPE_BASE + p.kind, "title": p.title, "status": p.status, "detail": p.detail,
            "instance": request.url.path, **p.extra}


async def _replay(pool: asyncpg.Pool, user: User, key: str, request: Request, body_hash: str) -> JSONResponse:
    for _ in range(300):
        row = await pool.fetchrow("SELECT * FROM idempotency_keys WHERE user_id=$1 AND key=$2", user.sub, key)
        if row is None:
            raise Problem(409, "idempotency-retry", "the first request with this key failed; retry it",
                          headers={"Retry-After": "1"})
        if row["body_hash"] != body_hash or row["path"] != request.url.path:
            raise Problem(422, "idempotency-mismatch",
                          "this Idempotency-Key was used with a different request body or path")
        if row["status_code"] is not None:
            resp = row["response"]
            headers = {"Idempotent-Replayed": "true"}
            if isinstance(resp, dict) and "problem" in resp:
                return JSONResponse(resp["problem"], status_code=row["status_code"],
                                    media_type="application/problem+json", headers=headers)
            return JSONResponse(resp, status_code=row["status_code"], headers=headers)
        await asyncio.sleep(0.05)
    raise Problem(409, "idempotency-in-progress", "a request with this key is still in progress",
                  headers={"Retry-After": "1"})
