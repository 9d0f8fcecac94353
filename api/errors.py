"""One error shape for every failure: application/problem+json (RFC 9457)."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.service import RPCError, RPCStatusCode

log = logging.getLogger(__name__)
TYPE_BASE = "https://special-measures.example/problems/"

TITLES = {
    400: "Bad request", 401: "Not authenticated", 403: "Forbidden", 404: "Not found", 405: "Method not allowed",
    409: "Conflict", 413: "Payload too large", 415: "Unsupported media type", 422: "Unprocessable content",
    429: "Too many requests", 503: "Service unavailable", 500: "Internal error",
}


class Problem(Exception):
    def __init__(self, status: int, kind: str, detail: str, *, title: str | None = None,
                 headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.kind, self.detail = status, kind, detail
        self.title = title or TITLES.get(status, "Error")
        self.headers = headers or {}
        self.extra = extra


def problem_response(status: int, kind: str, title: str, detail: str, instance: str | None = None,
                     headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    body = {"type": TYPE_BASE + kind, "title": title, "status": status, "detail": detail}
    if instance:
        body["instance"] = instance
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type="application/problem+json", headers=headers)


UNAVAILABLE = (
    asyncpg.exceptions.PostgresConnectionError, asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.InterfaceError, ConnectionError, OSError, TimeoutError,
)


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc.status, exc.kind, exc.title, exc.detail, request.url.path, exc.headers,
                                **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": ".".join(str(x) for x in e.get("loc", ())), "message": e.get("msg", ""),
                   "type": e.get("type", "")} for e in exc.errors()]
        malformed = any(e["type"] == "json_invalid" for e in errors)
        if malformed:
            return problem_response(400, "malformed-json", "Malformed JSON", "the request body is not valid JSON",
                                    request.url.path, errors=errors)
        return problem_response(422, "validation", "Invalid request",
                                "; ".join(f"{e['field']}: {e['message']}" for e in errors)[:2000],
                                request.url.path, errors=errors)

    @app.exception_handler(asyncpg.exceptions.DataError)
    async def _bad_value(request: Request, exc: asyncpg.exceptions.DataError) -> JSONResponse:
        # A value PostgreSQL cannot take (e.g. a NUL character in a path or query parameter) is the caller's error.
        return problem_response(422, "invalid-value", "Unprocessable content",
                                "a value in the request cannot be stored or searched for (e.g. it contains a NUL "
                                "character)", request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not-found", 405: "method-not-allowed", 401: "unauthenticated"}.get(exc.status_code, "http")
        return problem_response(exc.status_code, kind, TITLES.get(exc.status_code, "Error"), str(exc.detail),
                                request.url.path, dict(exc.headers or {}))

    @app.exception_handler(RPCError)
    async def _rpc(request: Request, exc: RPCError) -> JSONResponse:
        if exc.status == RPCStatusCode.RESOURCE_EXHAUSTED:
            return problem_response(429, "busy", "Too many requests", "the regime is busy; retry shortly",
                                    request.url.path, {"Retry-After": "1"})
        if exc.status == RPCStatusCode.NOT_FOUND:
            return problem_response(404, "not-found", "Not found", "no such regime in Temporal", request.url.path)
        log.warning("temporal unavailable: %s", exc)
        return problem_response(503, "temporal-unavailable", "Service unavailable",
                                "the workflow engine cannot be reached; nothing was changed",
                                request.url.path, {"Retry-After": "5"})

    @app.middleware("http")
    async def _dependencies_down(request: Request, call_next):
        # Answered here rather than by an Exception handler, which Starlette re-raises into the server log.
        try:
            return await call_next(request)
        except Exception as exc:
            if _unavailable(exc):
                log.warning("dependency unavailable: %r", exc)
                return problem_response(503, "database-unavailable", "Service unavailable",
                                        "the database cannot be reached; nothing was changed", request.url.path,
                                        {"Retry-After": "5"})
            raise

    @app.exception_handler(Exception)
    async def _other(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return problem_response(500, "internal", "Internal error", "an unexpected error occurred", request.url.path)


PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 problem details: every error this API returns has this shape.",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "description": "a URI naming the kind of problem"},
        "title": {"type": "string"},
        "status": {"type": "integer", "description": "the HTTP status code"},
        "detail": {"type": "string", "description": "what went wrong, for a person"},
        "instance": {"type": "string", "description": "the request path"},
        "errors": {"type": "array", "description": "one entry per invalid field (400, 422)", "items": {
            "type": "object", "properties": {"field": {"type": "string"}, "message": {"type": "string"},
                                             "type": {"type": "string"}}}},
    },
    "additionalProperties": True,
}

# What each status means for a caller; every operation may answer 503 (a dependency is down).
PROBLEM_STATUSES = {
    "400": "Malformed request (for example a body that is not JSON, or a bad Idempotency-Key)",
    "401": "No valid bearer token",
    "403": "The caller's role or organisation may not do this",
    "404": "No such regime, step, partnership or task",
    "409": "Conflicts with the current state (a step not open, an Idempotency-Key reused with another body)",
    "422": "Invalid field values, or a business rule refused the request",
    "429": "The regime is busy; retry after the Retry-After header",
    "503": "PostgreSQL or Temporal cannot be reached; nothing was changed",
}


def install_openapi(app: FastAPI) -> None:
    """Declare the problem+json error responses in /openapi.json, replacing FastAPI's default 422 body
    (which this API never sends), so clients and schema checkers know the error shape."""
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        schemas["Problem"] = PROBLEM_SCHEMA
        ref = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
        for path, ops in doc.get("paths", {}).items():
            for op in ops.values():
                responses = op.setdefault("responses", {})
                codes = ["503"] if path.startswith("/health") else list(PROBLEM_STATUSES)
                for code in codes:
                    responses[code] = {"description": PROBLEM_STATUSES[code], "content": ref}
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]


def _unavailable(exc: BaseException) -> bool:
    return isinstance(exc, UNAVAILABLE) or isinstance(exc, asyncpg.exceptions.PostgresError) and \
        exc.sqlstate in ("57P01", "57P02", "57P03", "08006", "08001", "08003")
