"""Idempotency-Key support for every POST that changes something.

The first request with a key claims it (a row in PostgreSQL); its response is stored. A repeat with
the same key and body gets the stored response and has no second effect; concurrent repeats wait for
the first to finish. The same key with a different body is refused (422).

A claim whose request died before storing its response (API process killed, PostgreSQL lost after the
workflow took the update) is taken over by a retry once it is older than the lease, and the request
runs again. Every workflow update sent under a key carries an update id derived from (user, key), so
Temporal answers the re-run with the outcome of the first delivery instead of applying it twice.

A key is remembered for IDEMPOTENCY_KEY_TTL_HOURS (default 24) after its first use. An expired key is
deleted when it is used again (the request then runs as new), and every API process sweeps all expired
keys at its first claim and then at most every SWEEP_SECONDS. Operations that must happen once whatever
the key (placement, closure, an enforcement action) are made so by their own business keys, in the
routes (docs/security.md).
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from fastapi import Request
from fastapi.responses import JSONResponse

from api.auth import User
from api.errors import Problem

Handler = Callable[[], Awaitable[tuple[int, Any]]]

# Longer than any request takes to deliver its change; after it, a retry may take a dead claim over.
LEASE_SECONDS = 60.0
# How often one API process deletes every expired key (each claim deletes its own key when expired).
SWEEP_SECONDS = 600.0
# The Temporal update id for the request being handled (None without an Idempotency-Key).
update_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("update_id", default=None)


def _update_id(user: User, key: str, claimed: Any) -> str:
    # The claim's creation time too: a key used again after it expired is a new request, and Temporal would
    # otherwise answer its update with the outcome of the expired one (update ids are kept per run).
    return "idem-" + hashlib.sha256(f"{user.sub}\x00{key}\x00{claimed.isoformat()}".encode()).hexdigest()[:32]


async def idempotent(request: Request, pool: asyncpg.Pool, user: User, body: Any, handler: Handler) -> JSONResponse:
    key = request.headers.get("idempotency-key")
    if not key:
        status, payload = await _run(handler)
        return JSONResponse(payload, status_code=status)
    if len(key) > 200:
        raise Problem(400, "idempotency-key", "Idempotency-Key is longer than 200 characters")
    body_hash = hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()
    ttl_hours = request.app.state.settings.idempotency_key_ttl_hours
    await _expire(request, pool, user, key, ttl_hours)
    while True:
        claimed = await pool.fetchval(
            """INSERT INTO idempotency_keys (user_id, key, method, path, body_hash) VALUES ($1,$2,$3,$4,$5)
               ON CONFLICT DO NOTHING RETURNING created_at""",
            user.sub, key, request.method, request.url.path, body_hash,
        ) or await _take_over(pool, user, key, request, body_hash)
        if claimed:
            break
        replayed = await _replay(pool, user, key, request, body_hash)
        if replayed is not None:
            return replayed
    token = update_id.set(_update_id(user, key, claimed))
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
    finally:
        update_id.reset(token)
    await _store(pool, user, key, status, payload)
    return JSONResponse(payload, status_code=status)


async def _expire(request: Request, pool: asyncpg.Pool, user: User, key: str, ttl_hours: float) -> None:
    """Forget this key if it has expired, and now and then every expired key (their answers with them)."""
    ttl = "make_interval(secs => $3)"
    await pool.execute(f"DELETE FROM idempotency_keys WHERE user_id=$1 AND key=$2 AND created_at < now() - {ttl}",
                       user.sub, key, ttl_hours * 3600)
    state = request.app.state
    now = time.monotonic()
    last = getattr(state, "idempotency_swept_at", None)
    if last is None or now - last >= SWEEP_SECONDS:
        state.idempotency_swept_at = now
        await pool.execute("DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1)",
                           ttl_hours * 3600)


async def _take_over(pool: asyncpg.Pool, user: User, key: str, request: Request, body_hash: str) -> Any:
    """Claim a key whose first request died without an answer (same body and path, older than the lease);
    its creation time (the same update id as the dead request's), or None."""
    return (await pool.fetchval(
        """UPDATE idempotency_keys SET claimed_at = now()
           WHERE user_id=$1 AND key=$2 AND status_code IS NULL AND body_hash=$3 AND path=$4
             AND claimed_at < now() - make_interval(secs => $5) RETURNING created_at""",
        user.sub, key, body_hash, request.url.path, LEASE_SECONDS))


async def _run(handler: Handler) -> tuple[int, Any]:
    return await handler()


async def _store(pool: asyncpg.Pool, user: User, key: str, status: int, payload: Any) -> None:
    await pool.execute("UPDATE idempotency_keys SET status_code=$3, response=$4 WHERE user_id=$1 AND key=$2",
                       user.sub, key, status, payload)


def _problem_body(request: Request, p: Problem) -> dict[str, Any]:
    from api.errors import TYPE_BASE

    return {"type": TYPE_BASE + p.kind, "title": p.title, "status": p.status, "detail": p.detail,
            "instance": request.url.path, **p.extra}


async def _replay(pool: asyncpg.Pool, user: User, key: str, request: Request,
                  body_hash: str) -> JSONResponse | None:
    """The stored answer, waiting for one in progress; None when the key is free or its claim is stale."""
    for _ in range(300):
        row = await pool.fetchrow(
            """SELECT *, claimed_at < now() - make_interval(secs => $3) AS stale
               FROM idempotency_keys WHERE user_id=$1 AND key=$2""", user.sub, key, LEASE_SECONDS)
        if row is None:
            return None  # the first request failed and freed the key: this one runs
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
        if row["stale"]:
            return None
        await asyncio.sleep(0.05)
    raise Problem(409, "idempotency-in-progress", "a request with this key is still in progress",
                  headers={"Retry-After": "1"})
