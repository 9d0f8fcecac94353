"""Prometheus metrics of the API: requests by route and status, latency, problem types, and domain gauges
read from PostgreSQL (issue 18). Served at `GET /metrics` in the Prometheus text format.

Names follow Prometheus conventions: a `sm_` prefix, base units (seconds), `_total` on counters. Labels
are bounded: the route is the path template (`/regimes/{regime_id}`), never the path itself, and `unmatched`
for paths no route serves. The domain gauges hold counts only, never a name or an identifier.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from domain.dates import london_date
from domain.ledger import BuddyKind

REGISTRY = CollectorRegistry()
REQUESTS = Counter("sm_http_requests_total", "HTTP requests answered, by method, route template and status",
                   ["method", "route", "status"], registry=REGISTRY)
LATENCY = Histogram("sm_http_request_duration_seconds", "Time to answer an HTTP request, by method and route",
                    ["method", "route"], registry=REGISTRY,
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
PROBLEMS = Counter("sm_http_problems_total", "problem+json answers, by problem type and status",
                   ["type", "status"], registry=REGISTRY)
OPEN_STEPS = Gauge("sm_open_steps", "Open human steps (tasks), by the role that must act", ["role"],
                   registry=REGISTRY)
OVERDUE_STEPS = Gauge("sm_overdue_steps", "Open steps past their due date, by the highest escalation rung "
                                          "reached", ["rung"], registry=REGISTRY)
REGIMES = Gauge("sm_regimes", "Regimes, by phase", ["phase"], registry=REGISTRY)
DEAD_LETTERS = Gauge("sm_dead_letters_pending", "Batches of effects PostgreSQL refused, not yet replayed",
                     registry=REGISTRY)
AWAITING_AUTHORISATION = Gauge("sm_payments_awaiting_authorisation",
                               "Buddy quarters whose payment waits for the regulator's authorisation",
                               registry=REGISTRY)
GAUGES_AGE = Gauge("sm_domain_gauges_age_seconds", "Seconds since the domain gauges were read from PostgreSQL",
                   registry=REGISTRY)

# The domain gauges are read at most this often, however often Prometheus scrapes (the queries cost).
REFRESH_SECONDS = 15.0


def problem(kind: str, status: int) -> None:
    PROBLEMS.labels(kind, str(status)).inc()


def install(app: FastAPI) -> None:
    app.state.metrics_read_at = 0.0

    @app.middleware("http")
    async def _measure(request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        REQUESTS.labels(request.method, template, str(response.status_code)).inc()
        LATENCY.labels(request.method, template).observe(time.perf_counter() - started)
        return response

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        await refresh_domain_gauges(request.app)
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


async def refresh_domain_gauges(app: FastAPI) -> None:
    now = time.monotonic()
    if now - app.state.metrics_read_at < REFRESH_SECONDS and app.state.metrics_read_at:
        GAUGES_AGE.set(now - app.state.metrics_read_at)
        return
    pool = getattr(app.state, "pool", None)
    if pool is None:
        return
    today = london_date(datetime.now(UTC))
    async with pool.acquire() as conn:
        rows: dict[str, list[Any]] = {
            "open": await conn.fetch("SELECT role, count(*) AS n FROM tasks WHERE state = 'open' GROUP BY role"),
            "overdue": await conn.fetch(
                """
                SELECT coalesce(e.rung, 'none') AS rung, count(*) AS n FROM tasks t
                LEFT JOIN LATERAL (SELECT a.detail->>'rung' AS rung FROM audit_log a
                                   WHERE a.workflow_id = t.workflow_id AND a.step_id = t.step_id
                                     AND a.event = 'escalation' ORDER BY a.id DESC LIMIT 1) e ON true
                WHERE t.state = 'open' AND NOT t.paused AND t.due < $1 GROUP BY 1
                """, today),
            "phase": await conn.fetch("SELECT phase, count(*) AS n FROM regimes GROUP BY phase"),
        }
        dead = await conn.fetchval("SELECT count(*) FROM dead_letters WHERE replayed_at IS NULL")
        awaiting = await conn.fetchval("SELECT count(*) FROM tasks WHERE state = 'open' AND kind = $1",
                                       BuddyKind.buddy_authorise)
    for gauge, key, label in ((OPEN_STEPS, "open", "role"), (OVERDUE_STEPS, "overdue", "rung"),
                              (REGIMES, "phase", "phase")):
        gauge.clear()  # a role, rung or phase with nothing left reads as absent, not as its last count
        for r in rows[key]:
            gauge.labels(r[label]).set(r["n"])
    DEAD_LETTERS.set(dead)
    AWAITING_AUTHORISATION.set(awaiting)
    app.state.metrics_read_at = now
    GAUGES_AGE.set(0)
