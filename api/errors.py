"""One error shape for every failure: application/problem+json (RFC 9457)."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
import pydantic
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.service import RPCError, RPCStatusCode

from api import metrics
from domain.vocab import RejectionKind, kebab_case

log = logging.getLogger(__name__)
TYPE_BASE = "https://special-measures.example/problems/"

TITLES = {
    400: "Bad request", 401: "Not authenticated", 403: "Forbidden", 404: "Not found", 405: "Method not allowed",
    409: "Conflict", 413: "Payload too large", 415: "Unsupported media type", 422: "Unprocessable content",
    429: "Too many requests", 503: "Service unavailable", 500: "Internal error",
}


# The HTTP status of each kind of refusal a workflow answers a message with (RejectionKind; the problem type
# is the kind in kebab case, RejectionKind.problem_type). PaymentConflict never reaches a caller.
REJECTION_STATUS: dict[RejectionKind, int] = {
    RejectionKind.wrong_role: 403, RejectionKind.separation_of_duties: 403, RejectionKind.not_assignee: 403,
    RejectionKind.step_not_open: 409, RejectionKind.conflict: 409, RejectionKind.duplicate: 409,
    RejectionKind.unknown_step: 404,
    RejectionKind.unknown_action: 422, RejectionKind.reason_required: 422, RejectionKind.invalid_payload: 422,
    RejectionKind.rule_broken: 422,
}


class Problem(Exception):
    def __init__(self, status: int, kind: str, detail: str, *, title: str | None = None,
                 headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.kind, self.detail = status, kind, detail
        self.title = title or TITLES.get(status, "Error")
        self.headers = headers or {}
        self.extra = extra


def rejection_problem(kind: str | None, message: str, **extra: Any) -> Problem:
    """The answer to a workflow's refusal (an ApplicationError of type `kind`): the status REJECTION_STATUS
    gives it (422 for a kind it does not know), the kind in kebab case as the problem type."""
    return Problem(REJECTION_STATUS.get(kind or "", 422), kebab_case(kind or "rejected"), message, **extra)


def problem_response(status: int, kind: str, title: str, detail: str, instance: str | None = None,
                     headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    body = {"type": TYPE_BASE + kind, "title": title, "status": status, "detail": detail}
    metrics.problem(kind, status)
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

    @app.exception_handler(pydantic.ValidationError)
    async def _message_invalid(request: Request, exc: pydantic.ValidationError) -> JSONResponse:
        # A message built from the request (a Decision, a Placement...) that its model refuses: the caller's
        # input, never a 500, and nothing was sent.
        errors = [{"field": ".".join(str(x) for x in e.get("loc", ())), "message": e.get("msg", ""),
                   "type": e.get("type", "")} for e in exc.errors(include_url=False)]
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
        p = temporal_problem(exc)
        return problem_response(p.status, p.kind, p.title, p.detail, request.url.path, p.headers, **p.extra)

    @app.exception_handler(BodyTooLarge)
    async def _too_large(request: Request, exc: BodyTooLarge) -> JSONResponse:
        return body_too_large(exc.limit, request.url.path)

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


# ------------------------------------------------------------------ Temporal's answers, told truthfully
def temporal_problem(exc: RPCError) -> Problem:
    """What a refusal by Temporal means for the caller. A message too large is the caller's input (413) and
    retrying it cannot help; a workflow whose task keeps failing cannot take anything until an operator
    acts (503 without Retry-After); only a genuine rate limit or an unreachable server is worth retrying."""
    message = exc.message or ""
    if too_large_for_temporal(exc):
        return Problem(413, "too-large-for-workflow-engine",
                       f"the request is too large for the workflow engine (Temporal: {message}); nothing was "
                       "changed, and sending it again will not help: send less (docs/limits.md)")
    if workflow_task_failing(exc):
        return stuck_problem(message)
    if exc.status == RPCStatusCode.RESOURCE_EXHAUSTED:
        return Problem(429, "busy", f"Temporal is limiting requests to this regime ({message}); nothing was "
                                    "changed; retry after the Retry-After header", headers={"Retry-After": "1"})
    if exc.status == RPCStatusCode.NOT_FOUND:
        return Problem(404, "not-found", "no such regime in Temporal")
    log.warning("temporal unavailable: %s", exc)
    return Problem(503, "temporal-unavailable", "the workflow engine cannot be reached; nothing was changed",
                   headers={"Retry-After": "5"})


def too_large_for_temporal(exc: RPCError) -> bool:
    m = (exc.message or "").lower()
    if exc.status == RPCStatusCode.RESOURCE_EXHAUSTED:
        # gRPC's own cap (4 MiB by default): "grpc: received message (after decompression) larger than max".
        return "larger than max" in m or "message too large" in m
    # The server's blob size limit ("Blob data size exceeds limit."), or a payload limit (TMPRL1103).
    return exc.status == RPCStatusCode.INVALID_ARGUMENT and (
        "size exceeds" in m or "tmprl1103" in m or "payloads with size" in m or "too large" in m)


def workflow_task_failing(exc: RPCError) -> bool:
    # "Unable to perform workflow execution update due to Workflow Task in failed state."
    return exc.status == RPCStatusCode.FAILED_PRECONDITION and "failed state" in (exc.message or "").lower()


def stuck_problem(what: str) -> Problem:
    return Problem(503, "workflow-task-failing",
                   f"the regime's workflow cannot take requests: its workflow task is failing ({what}). Nothing "
                   "was changed. Retrying will not help until operations repair the workflow; the failure shows "
                   "in the Temporal UI under the workflow's pending task", title="Workflow stuck")


# ------------------------------------------------------------------ body size limit
class BodyTooLarge(HTTPException):
    """Raised from `receive` when a body without a usable Content-Length passes the limit. FastAPI's own
    HTTPException, which its body parsing re-raises instead of answering 400."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes")
        self.limit = limit


def body_too_large(limit: int, path: str) -> JSONResponse:
    return problem_response(413, "body-too-large", TITLES[413],
                            f"the request body is larger than {limit:,} bytes (MAX_BODY_BYTES); nothing was read "
                            "beyond the limit and nothing was changed", path, limit_bytes=limit)


class BodyLimit:
    """ASGI middleware: refuses a request body over `max_bytes` before reading it (by Content-Length), and
    stops reading a chunked or unannounced one as soon as the bytes counted pass the limit."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.strip().isdigit() and int(value) > limit:
                await body_too_large(limit, scope.get("path", ""))(scope, receive, send)
                return
        seen = 0

        async def counted() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, counted, send)


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
    "413": "The body is larger than MAX_BODY_BYTES, or the message too large for the workflow engine",
    "422": "Invalid field values, or a business rule refused the request",
    "429": "Temporal is rate-limiting the regime; retry after the Retry-After header",
    "503": "PostgreSQL or Temporal cannot be reached (with Retry-After), or the regime's workflow cannot take "
           "requests until operations repair it (without); nothing was changed",
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
        from api.contract import publish_step_payloads

        publish_step_payloads(doc)
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]


def _unavailable(exc: BaseException) -> bool:
    return isinstance(exc, UNAVAILABLE) or isinstance(exc, asyncpg.exceptions.PostgresError) and \
        exc.sqlstate in ("57P01", "57P02", "57P03", "08006", "08001", "08003")
