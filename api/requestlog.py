"""Each request's context in the logs (logs.py), and on its access line.

`RequestContext` (pure ASGI middleware, outside every other) gives the request its id, the client's
X-Request-ID (its first 100 characters) or a new one: the id the routes record in the audit log
(`api.deps.request_id` reads it from here), the one the response returns in its X-Request-ID header, and
`request_id` on every line logged while the request is served. Once the route is known `bind_path` (an
app-wide dependency) adds `regime_id`, `partnership_id` and `workflow_id` (the workflow the path addresses:
the partnership's, else the regime's) from the path, and `bind_user` adds `user_id` (the token's subject,
never a person's name) where the user is authenticated.

The access line is uvicorn's (`uvicorn.access`, so `--no-access-log` and `--log-level` keep working): it is
logged as the response starts, from within this middleware's `send`, which binds what routing and
authentication found further in (in other tasks, under Starlette's BaseHTTPMiddleware: they are read from the
scope they share), the route template and `duration_ms` (until the response started) just for that line.
logs.py turns uvicorn's message into fields (method, path without the query string, status, client).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Mapping
from typing import Any

import structlog
from fastapi import Request
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "X-Request-ID"
MAX_LENGTH = 100  # Actor.request_id's bound
# Characters uvicorn refuses in a response header's value: an id holding one is logged but not echoed.
_UNSENDABLE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def request_id_from(headers: Mapping[str, str]) -> str:
    return (headers.get("x-request-id") or str(uuid.uuid4()))[:MAX_LENGTH]


def path_context(params: Mapping[str, Any]) -> dict[str, str]:
    ctx = {k: str(params[k]) for k in ("regime_id", "partnership_id") if params.get(k)}
    if ctx:
        ctx["workflow_id"] = ctx.get("partnership_id") or ctx["regime_id"]
    return ctx


async def bind_path(request: Request) -> None:
    """App-wide dependency: the regime and workflow a request's path names, on its log lines."""
    ctx = path_context(request.path_params)
    if ctx:
        structlog.contextvars.bind_contextvars(**ctx)


def bind_user(user: Any) -> None:
    """`user_id` on the request's log lines: the token's subject (`User.sub`)."""
    structlog.contextvars.bind_contextvars(user_id=user.sub)


class RequestContext:
    """Pure ASGI middleware: the request id, the logging context, the X-Request-ID header.

    The context is cleared when a request starts rather than when it ends: uvicorn serves each request in an
    asyncio task of its own, whose context ends with it, and the lines logged after this middleware returns
    (the 500 handler's traceback, uvicorn's "Exception in ASGI application") keep the request's id."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id_from(Headers(scope=scope))
        scope.setdefault("state", {})["request_id"] = rid
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=rid)
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            if message["type"] != "http.response.start":
                await send(message)
                return
            if not _UNSENDABLE.search(rid):
                MutableHeaders(scope=message)[HEADER] = rid
            _bind_found(scope)
            timing: dict[str, Any] = {"duration_ms": round((time.perf_counter() - started) * 1000, 1)}
            if route := getattr(scope.get("route"), "path", None):
                timing["route"] = route
            with structlog.contextvars.bound_contextvars(**timing):
                await send(message)  # uvicorn logs the access line here

        try:
            await self.app(scope, receive, send_with_id)
        except BaseException:
            _bind_found(scope)  # for the server error handler's traceback and its 500's access line
            raise


def _bind_found(scope: Scope) -> None:
    """What routing and authentication found, for the lines logged from here on in this task."""
    found = path_context(scope.get("path_params") or {})
    if (user := scope["state"].get("user")) is not None:
        found["user_id"] = user.sub
    if found:
        structlog.contextvars.bind_contextvars(**found)
