"""The FastAPI application: lifespan owns the asyncpg pool and the Temporal client."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from temporalio.client import Client

import logs
from api import errors, headers, metrics, requestlog, web
from api.routes import (
    audit,
    buddies,
    catalogue,
    costs,
    documents,
    evaluation,
    funding,
    health,
    programme,
    regimes,
    tasks,
    watchlist,
    watchlist_buddies,
)
from infra import tracing
from infra.clients import connect_temporal
from infra.db import create_pool, database_url, migrate, migration_url
from settings import Settings, get_settings

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, database: str | None = None,
               temporal_client: Client | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        url = database or database_url(settings)
        await migrate(migration_url(settings, url), settings.database_schema, settings.database_service_role)
        app.state.pool = await create_pool(url, settings.database_schema, role=settings.database_service_role,
                                           max_size=20)
        app.state.temporal = temporal_client or await connect_temporal(
            settings.temporal_target, settings.temporal_namespace, attempts=50)
        try:
            yield
        finally:
            await app.state.pool.close()

    app = FastAPI(
        title="Special measures regime orchestrator",
        version="0.1.0",
        description="Runs the NHS special measures for quality regime: placements, human steps, deadlines, "
                    "escalations, CQC outcomes, buddy partnerships and the audit log.",
        lifespan=lifespan,
        docs_url=None,  # served by api.headers from vendored files, not a CDN
        redoc_url=None,
        dependencies=[Depends(requestlog.bind_path)],  # regime_id and workflow_id on a request's log lines
    )
    app.state.settings = settings
    app.state.temporal = None
    # Added first, so it sits inside errors.install's middleware: nothing there reads the body, and an
    # over-long body raised from here reaches the exception handlers directly (not through a task group).
    app.add_middleware(errors.BodyLimit, max_bytes=settings.max_body_bytes)
    errors.install(app)
    metrics.install(app)
    tracing.instrument_app(app)
    app.add_middleware(headers.SecurityHeaders)  # outermost: every response, error pages included
    app.add_middleware(requestlog.RequestContext)  # the request id, before anything inside can log
    app.include_router(headers.docs_router)
    for r in (health.router, regimes.router, buddies.router, tasks.router, audit.router, documents.router,
              catalogue.router, programme.router, evaluation.router, costs.router,
              funding.router, watchlist_buddies.router, watchlist.router):  # /watch-list/partnerships first
        app.include_router(r)
    web.install(app)
    errors.install_openapi(app)
    return app


def app_factory() -> FastAPI:
    logs.configure()  # uvicorn has applied its own logging configuration by now: ours replaces it
    tracing.setup("special-measures-api")  # on only with OTEL_EXPORTER_OTLP_ENDPOINT
    return create_app()
