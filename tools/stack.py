"""A whole running stack for tools (simulate, record) and tests: dev server, PostgreSQL, worker, API.

`embedded_services()` starts what is not configured: a Temporal dev server (tools/devserver.py, in memory)
unless TEMPORAL_ADDRESS is set, and PostgreSQL (pgserver, in a temporary directory) unless DATABASE_URL is
set. `run_stack()` then runs a worker and the real HTTP API on a free port against them, in a fresh schema
and on a fresh task queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import uvicorn
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError
from temporalio.testing import TimeSkipper, TimeSkippingConfig
from temporalio.worker import Worker

from api.app import create_app
from api.auth import mint_token
from domain.models import RegimeState
from infra.clients import connect_temporal
from infra.db import create_pool, migrate
from settings import Settings
from tools.devserver import dev_server, free_port
from tools.polling import eventually


@contextlib.contextmanager
def embedded_postgres() -> Iterator[str]:
    import warnings

    # platformdirs warns that XDG_RUNTIME_DIR is unset (containers, CI); pgserver then uses /tmp, which is fine.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    import pgserver

    with tempfile.TemporaryDirectory(prefix="sm-sim-pg-") as d:
        srv = pgserver.get_server(Path(d) / "pg", cleanup_mode="delete")
        try:
            yield srv.get_uri()
        finally:
            srv.cleanup()


@contextlib.contextmanager
def embedded_services(settings: Settings | None = None, temporal_args: Sequence[str] = ()) -> Iterator[
        tuple[str, str]]:
    """(temporal address, database url): configured ones as they are, the others started here."""
    s = settings or Settings()
    with contextlib.ExitStack() as stack:
        address = s.temporal_address or stack.enter_context(dev_server(extra_args=temporal_args)).address
        url = s.database_url or stack.enter_context(embedded_postgres())
        yield address, url


@dataclass
class ServiceStack:
    """What run_stack() runs and hands out: the worker and the API, and handles on them (the Temporal client and
    its time skipper, a database pool, an HTTP client) with tokens for any user."""

    settings: Settings
    client: Client
    skipper: TimeSkipper
    pool: asyncpg.Pool
    http: httpx.AsyncClient
    base_url: str
    schema: str
    task_queue: str
    worker: Worker | None

    def token(self, sub: str, *roles: str, trusts: list[str] | None = None, org: str | None = None) -> str:
        return mint_token(self.settings, sub, list(roles), trusts or [], org)

    def auth(self, sub: str, *roles: str, trusts: list[str] | None = None, org: str | None = None) -> dict:
        return {"Authorization": f"Bearer {self.token(sub, *roles, trusts=trusts, org=org)}"}

    def handle(self, workflow_id: str, run_id: str | None = None) -> WorkflowHandle:
        return self.skipper.client.get_workflow_handle(workflow_id, run_id=run_id)

    async def virtual_now(self, workflow_id: str) -> datetime:
        return await self.skipper.get_current_time(self.handle(workflow_id))

    async def fast_forward(self, workflow_id: str, by: timedelta) -> bool:
        """Advance a workflow's virtual clock (across continue-as-new); False once it has completed."""
        try:
            return await self.skipper.fast_forward(self.handle(workflow_id), by)
        except RPCError as e:
            if "already completed" in e.message or "not running" in e.message:
                return False
            raise

    async def settled(self, regime_id: str) -> RegimeState | None:
        """The regime's state if its effects (tasks, audit, projection) have all reached PostgreSQL, else None."""
        from workflows.regime import RegimeWorkflow

        st = await self.handle(regime_id).query(RegimeWorkflow.get_state)
        seq = await self.pool.fetchval("SELECT last_seq FROM regimes WHERE regime_id = $1", regime_id)
        return st if seq is not None and seq >= st.seq else None

    async def settle(self, regime_id: str, timeout: float = 10.0) -> None:
        """Wait until the regime's effects (tasks, audit, projection) have reached PostgreSQL."""
        await eventually(lambda: self.settled(regime_id), what=f"the effects of {regime_id} to reach PostgreSQL",
                         timeout=timeout, interval=0.05, error=TimeoutError)


def make_worker(client: Client, pool: asyncpg.Pool, task_queue: str, workflows: Sequence[type] | None = None,
                audit_key: bytes | None = None, **kw: Any) -> Worker:
    """The production worker, optionally with other workflow classes (old or broken versions in tests)."""
    from worker import activities_for
    from workflows import WORKFLOWS

    return Worker(client, task_queue=task_queue, workflows=list(workflows or WORKFLOWS),
                  activities=activities_for(pool, audit_key), **kw)


@contextlib.asynccontextmanager
async def run_stack(temporal_address: str, database_url: str, *, workflows: Sequence[type] | None = None,
                    start_worker: bool = True, worker_options: dict[str, Any] | None = None,
                    **overrides: Any) -> AsyncIterator[ServiceStack]:
    """Worker + API on a free port, in a fresh schema and task queue. `stack.worker` is the running worker
    (None with start_worker=False: the caller runs its own, e.g. an old and then a new version)."""
    schema = "s_" + uuid.uuid4().hex[:12]
    task_queue = "tq-" + uuid.uuid4().hex[:12]
    port = free_port()
    settings = Settings(temporal_address=temporal_address, database_url=database_url, database_schema=schema,
                        temporal_task_queue=task_queue, api_port=port, **overrides)
    await migrate(database_url, schema, settings.database_service_role)
    # The tests' own handle on the schema keeps the owner's rights (to inspect, break and tamper with things);
    # the worker and the API act as the service role, as in production.
    pool = await create_pool(database_url, schema, role=None)
    service_pool = await create_pool(database_url, schema, role=settings.database_service_role)
    client = await connect_temporal(temporal_address, attempts=50)
    # Each workflow's clock is moved explicitly (children too): with propagation a child inherits the
    # parent's skipping without its bound and races to its end.
    skipper = TimeSkipper(client, config=TimeSkippingConfig(enabled=False, disable_propagation=True,
                                                            max_session_skip_count=1_000_000))
    worker = (make_worker(client, service_pool, task_queue, workflows, audit_key=settings.audit_key,
                          **(worker_options or {})) if start_worker else None)
    app = create_app(settings, database=database_url, temporal_client=skipper.client)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    serve = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if serve.done():
                serve.result()
            await asyncio.sleep(0.02)
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=60) as http:
            stack = ServiceStack(settings, client, skipper, pool, http, base, schema, task_queue, worker)
            if worker is not None:
                async with worker:
                    yield stack
            else:
                yield stack
    finally:
        server.should_exit = True
        await serve
        await pool.close()
        await service_pool.close()
