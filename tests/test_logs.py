"""Structured logs (logs.py, api/requestlog.py): the API and the worker as their own processes, started as
the image starts them (uvicorn's logging flags at their defaults), against the session's dev server and
PostgreSQL. Every line they write is one JSON object; a request's lines, the access line included, carry its
request id (the one its X-Request-ID response header returns), the regime and workflow its path names and the
token's subject, never the person's name; the worker lifts a workflow's id out of the Temporal SDK's details.
LOG_FORMAT=console writes lines for people instead."""

from __future__ import annotations

import contextlib
import json
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt

from bench.common import Proc, Project, today
from infra.clients import connect_temporal
from tests.helpers import placement
from tools.polling import eventually

PERSON = "Dr Florence Lognamed"  # a display name a token may carry; no log line may hold it


class Served(Project):
    def start_api(self) -> Proc:
        # The Dockerfile's command: no --log-level, no --no-access-log, no --log-config.
        self.api = Proc("api", [sys.executable, "-m", "uvicorn", "api.app:app_factory", "--factory", "--host",
                                "127.0.0.1", "--port", str(self.port)], self.env(),
                        self.tmp / f"api-{self.task_queue}.log").start()
        return self.api


@contextlib.asynccontextmanager
async def served(temporal_address: str, database_url: str, tmp: Path, worker: bool,
                 **env: str) -> AsyncIterator[Served]:
    p = Served(temporal_address, database_url, tmp, extra_env=env)
    try:
        p.start_api()  # it migrates the schema before it is ready; the worker then finds it ready
        await p.wait_ready()
        if worker:
            p.start_worker()
        yield p
    finally:
        p.stop()


def lines(proc: Proc) -> list[str]:
    return [ln for ln in proc.log.read_text(errors="replace").splitlines() if ln.strip()]


def records(proc: Proc) -> list[dict[str, Any]]:
    out = []
    for ln in lines(proc):
        try:
            rec = json.loads(ln)
        except ValueError:
            raise AssertionError(f"{proc.name} wrote a line that is not JSON: {ln!r}") from None
        assert isinstance(rec, dict), ln
        assert {"timestamp", "level", "logger", "event"} <= set(rec), rec
        assert rec["timestamp"].endswith("Z"), rec  # ISO 8601, UTC
        out.append(rec)
    return out


def named_token(p: Project, sub: str, *roles: str) -> str:
    """A token as an identity provider issues them: with the person's display name besides the subject."""
    s, now = p.settings, int(time.time())
    return jwt.encode({"sub": sub, "roles": list(roles), "trusts": [], "iss": s.auth_issuer, "aud": s.auth_audience,
                       "iat": now, "exp": now + 600, "name": PERSON, "given_name": PERSON.split()[1]},
                      s.auth_jwt_secret.get_secret_value(), algorithm="HS256")


async def wait_for(proc: Proc, found, timeout: float = 60.0) -> dict[str, Any]:
    """The first log record of `proc` that `found` accepts, once it has been written (the process must stay up)."""
    def first() -> dict[str, Any] | None:
        assert proc.alive(), "\n".join(lines(proc)[-30:])
        return next((rec for rec in records(proc) if found(rec)), None)

    return await eventually(first, what=f"a matching line from {proc.name}", timeout=timeout, interval=0.2,
                            error=lambda msg: AssertionError(msg + "\n" + "\n".join(lines(proc)[-30:])))


async def test_api_and_worker_write_json_lines_with_each_requests_context(temporal_address, database_url,
                                                                           tmp_path):
    async with served(temporal_address, database_url, tmp_path, worker=True) as p:
        assert p.api and p.worker
        async with httpx.AsyncClient(base_url=p.base_url, timeout=60) as http:
            r = await http.post("/regimes", json=placement("LG1", today()),
                                headers={**p.auth("reg-lg1", "regulator"), "X-Request-ID": "lg1-place"})
            assert r.status_code == 201, r.text
            assert r.headers["x-request-id"] == "lg1-place"
            regime = r.json()["regime_id"]
            named = {"Authorization": f"Bearer {named_token(p, 'ops-lg1', 'operations')}"}
            r = await http.get(f"/regimes/{regime}", headers={**named, "X-Request-ID": "lg1-read"})
            assert r.status_code == 200, r.text
            assert r.headers["x-request-id"] == "lg1-read"
            # A refused token: the API logs why (api/auth.py), on the request's line.
            r = await http.get(f"/regimes/{regime}", headers={"Authorization": "Bearer not-a-token",
                                                              "X-Request-ID": "lg1-refused"})
            assert r.status_code == 401
            # No X-Request-ID: the API makes one, and the log and the header agree on it.
            r = await http.get("/health/live")
            generated = r.headers["x-request-id"]
            assert len(generated) == 36

        access = {}
        for rid in ("lg1-place", "lg1-read", "lg1-refused", generated):
            access[rid] = await wait_for(p.api, lambda rec, rid=rid: rec["logger"] == "uvicorn.access"
                                         and rec.get("request_id") == rid)
        read = access["lg1-read"]
        assert read["method"] == "GET" and read["path"] == f"/regimes/{regime}" and read["status"] == 200, read
        assert read["regime_id"] == regime and read["workflow_id"] == regime and read["user_id"] == "ops-lg1", read
        assert read["route"] == "/regimes/{regime_id}" and read["duration_ms"] >= 0, read
        assert read["event"] == f"GET /regimes/{regime} 200", read
        place = access["lg1-place"]
        assert place["status"] == 201 and place["user_id"] == "reg-lg1" and "regime_id" not in place, place
        refused = access["lg1-refused"]
        assert refused["status"] == 401 and refused["regime_id"] == regime and "user_id" not in refused, refused
        assert access[generated]["path"] == "/health/live"
        # An application line of a request: the refusal, with the request's id and the regime from its path.
        why = await wait_for(p.api, lambda rec: rec["logger"] == "api.auth")
        assert why["level"] == "warning" and why["event"].startswith("bearer token refused"), why
        assert why["request_id"] == "lg1-refused" and why["regime_id"] == regime, why
        # uvicorn's own lines go through the same renderer.
        assert any(rec["logger"] == "uvicorn.error" and "Application startup complete" in rec["event"]
                   for rec in records(p.api))

        # The worker: JSON too, and a workflow's id lifted out of the SDK's details. A workflow task that fails
        # (an input the regime workflow cannot decode) is logged by the SDK with them.
        await wait_for(p.worker, lambda rec: rec["event"].startswith("worker polling task queue"))
        client = await connect_temporal(temporal_address, attempts=50)
        wid = f"logs-undecodable-{uuid.uuid4().hex[:8]}"
        handle = await client.start_workflow("RegimeWorkflow", "not a placement", id=wid, task_queue=p.task_queue)
        try:
            failed = await wait_for(p.worker, lambda rec: rec.get("workflow_id") == wid)
        finally:
            await handle.terminate("test_logs: done")
        assert failed["level"] == "warning" and failed["temporal_workflow"]["workflow_type"] == "RegimeWorkflow", failed
        assert "exception" in failed and "\n" not in json.dumps(failed), failed

    api, worker = records(p.api), records(p.worker)
    for rec in api + worker:  # the tokens' subjects, never the person
        assert PERSON not in json.dumps(rec) and PERSON.split()[1] not in json.dumps(rec), rec
    assert [r for r in api if r.get("user_id") == "ops-lg1"], "the named user's request was logged"


async def test_console_format_is_for_people(temporal_address, database_url, tmp_path):
    async with served(temporal_address, database_url, tmp_path, worker=False, LOG_FORMAT="console") as p:
        assert p.api
        async with httpx.AsyncClient(base_url=p.base_url, timeout=60) as http:
            r = await http.get("/health/live", headers={"X-Request-ID": "lg-console"})
            assert r.status_code == 200 and r.headers["x-request-id"] == "lg-console"
        await eventually(lambda: [ln for ln in lines(p.api) if "request_id=lg-console" in ln],
                         what="the access line of the request", timeout=30, interval=0.2)
    text = lines(p.api)
    access = [ln for ln in text if "request_id=lg-console" in ln]
    assert access and "GET /health/live 200" in access[0] and "[uvicorn.access]" in access[0], text
    assert "\x1b[" not in "\n".join(text), "no colours when the output is not a terminal"
    for ln in text:
        with contextlib.suppress(ValueError):
            assert not isinstance(json.loads(ln), dict), f"a JSON line in console format: {ln}"
