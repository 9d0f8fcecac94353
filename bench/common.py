"""What every benchmark and fault test shares: a real dev server and PostgreSQL, the project's worker and API as
separate processes (as in production), the raw baseline worker, process sampling, percentiles and the
results file (machine, versions, command, figures, ratios).

Everything here starts real components; nothing is mocked.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError
from temporalio.testing import TimeSkipper, TimeSkippingConfig

from api.auth import mint_token
from infra.clients import connect_temporal
from settings import Settings
from tools import devserver
from tools.devserver import DevServer, free_port, temporal_binary
from tools.polling import eventually

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
LOAD_AT_START = [round(x, 2) for x in os.getloadavg()]


# ---------------------------------------------------------------------------- arguments and results
def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="a small run for CI (seconds), not for figures")
    p.add_argument("--out", type=Path, help="results file (default bench/results/<name>.json, "
                                             "or bench/results/quick/<name>.json with --quick)")
    p.add_argument("--temporal-address", help="use this dev server for the project phase instead of starting one")
    p.add_argument("--database-url", help="use this PostgreSQL instead of starting an embedded one")
    return p


def results_path(name: str, args: argparse.Namespace) -> Path:
    if args.out:
        return args.out
    return RESULTS / "quick" / f"{name}.json" if args.quick else RESULTS / f"{name}.json"


def _version(mod: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(mod)
    except PackageNotFoundError:
        return None


def machine() -> dict[str, Any]:
    vm = psutil.virtual_memory()
    try:
        model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                      if ln.startswith("model name")), platform.processor())
    except OSError:
        model = platform.processor()
    return {"cpus": os.cpu_count(), "cpu_model": model, "memory_gib": round(vm.total / 2**30, 1),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()], "platform": platform.platform(),
            "python": platform.python_version(),
            "note": "shared machine: other engineers' tests run at the same time; compare ratios, not absolutes"}


def versions() -> dict[str, Any]:
    try:
        cli = subprocess.run([temporal_binary(), "--version"], capture_output=True, text=True, timeout=20).stdout
    except Exception as e:  # noqa: BLE001 - recorded, not fatal
        cli = f"unknown ({e})"
    return {"temporalio": _version("temporalio"), "temporal_cli": cli.strip(), "fastapi": _version("fastapi"),
            "uvicorn": _version("uvicorn"), "asyncpg": _version("asyncpg"), "pydantic": _version("pydantic"),
            "pgserver": _version("pgserver"), "postgresql": "16 (pgserver)"}


def write_results(name: str, args: argparse.Namespace, parameters: dict[str, Any], figures: dict[str, Any],
                  ratios: dict[str, Any], notes: list[str] | None = None, started: float | None = None) -> Path:
    path = results_path(name, args)
    path.parent.mkdir(parents=True, exist_ok=True)
    m = machine()
    m["load_average_at_end"] = m.pop("load_average_at_start")
    m["load_average_at_start"] = LOAD_AT_START
    doc = {
        "benchmark": name, "mode": "quick" if args.quick else "full",
        "command": "python -m bench." + name + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else ""),
        "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "wall_seconds": round(time.monotonic() - started, 1) if started else None,
        "machine": m, "versions": versions(), "parameters": parameters, "figures": figures, "ratios": ratios,
        "notes": notes or [],
    }
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    print(f"results: {path}")
    return path


# ---------------------------------------------------------------------------- statistics
def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(q / 100 * len(s)) - 1))
    return s[k]


def summary_ms(seconds: list[float]) -> dict[str, float]:
    ms = [x * 1000 for x in seconds]
    return {"n": len(ms), "p50_ms": round(pct(ms, 50), 2), "p95_ms": round(pct(ms, 95), 2),
            "p99_ms": round(pct(ms, 99), 2), "mean_ms": round(sum(ms) / len(ms), 2) if ms else None,
            "max_ms": round(max(ms), 2) if ms else None}


def ratio(a: float | None, b: float | None) -> float | None:
    if not a or not b:
        return None
    return round(a / b, 2)


# ---------------------------------------------------------------------------- process sampling
class Sampler:
    """Samples CPU time and resident memory of named processes (and their children) in a thread."""

    def __init__(self, every: float = 0.25) -> None:
        self.every = every
        self.procs: dict[str, psutil.Process] = {}
        self.peak: dict[str, int] = {}
        self.cpu0: dict[str, float] = {}
        self.cpu_last: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.t0 = 0.0

    def watch(self, name: str, pid: int) -> None:
        p = psutil.Process(pid)
        self.procs[name] = p
        self.peak[name] = 0
        self.cpu0[name] = self._cpu(p)
        self.cpu_last[name] = self.cpu0[name]

    @staticmethod
    def _family(p: psutil.Process) -> list[psutil.Process]:
        try:
            return [p, *p.children(recursive=True)]
        except psutil.Error:
            return [p]

    def _cpu(self, p: psutil.Process) -> float:
        total = 0.0
        for q in self._family(p):
            with contextlib.suppress(psutil.Error):
                t = q.cpu_times()
                total += t.user + t.system
        return total

    def _rss(self, p: psutil.Process) -> int:
        total = 0
        for q in self._family(p):
            with contextlib.suppress(psutil.Error):
                total += q.memory_info().rss
        return total

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.every)

    def sample(self) -> None:
        for name, p in self.procs.items():
            self.peak[name] = max(self.peak[name], self._rss(p))
            cpu = self._cpu(p)
            if cpu > 0:
                self.cpu_last[name] = cpu

    def __enter__(self) -> Sampler:
        self.t0 = time.monotonic()
        for name, p in self.procs.items():
            self.cpu0[name] = self._cpu(p)
            self.peak[name] = self._rss(p)
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        self.sample()
        self.elapsed = time.monotonic() - self.t0

    def report(self) -> dict[str, dict[str, float]]:
        out = {}
        for name in self.procs:
            cpu = self.cpu_last[name] - self.cpu0[name]
            out[name] = {"cpu_seconds": round(cpu, 2),
                         "cpu_percent_of_one_core": round(100 * cpu / self.elapsed, 1) if self.elapsed else None,
                         "peak_rss_mib": round(self.peak[name] / 2**20, 1)}
        return out


def wait_quiet(pids: list[int], below: float = 10.0, for_seconds: float = 3.0, timeout: float = 900.0) -> float:
    """Block until the processes together use under `below` % of one core for `for_seconds` in a row (the
    backlog has drained); returns the seconds waited."""
    procs = [psutil.Process(p) for p in pids]
    s = Sampler()
    t0 = time.monotonic()
    quiet_since = None
    last = sum(s._cpu(p) for p in procs)
    while time.monotonic() - t0 < timeout:
        time.sleep(1.0)
        now = sum(s._cpu(p) for p in procs)
        if (now - last) * 100 < below:
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= for_seconds:
                break
        else:
            quiet_since = None
        last = now
    return round(time.monotonic() - t0, 1)


def listening_pid(address: str) -> int:
    """PID of the process listening on host:port (a dev server we may not have started)."""
    port = int(address.rsplit(":", 1)[1])
    for c in psutil.net_connections("tcp"):
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid:
            return c.pid
    raise RuntimeError(f"no process listens on {address}")


def rss_mib(pid: int) -> float:
    p = psutil.Process(pid)
    return round(Sampler()._rss(p) / 2**20, 1)


# ---------------------------------------------------------------------------- services
def dev_server(tmp: Path, db_file: bool = True) -> contextlib.AbstractContextManager[DevServer]:
    """A dev server logging to tmp/temporal.log, on a fresh SQLite file in tmp (or in memory)."""
    return devserver.dev_server(db_file=str(tmp / f"temporal-{uuid.uuid4().hex[:6]}.db") if db_file else None,
                                log=tmp / "temporal.log")


@contextlib.contextmanager
def postgres(tmp: Path) -> Iterator[Any]:
    import warnings

    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    import pgserver

    srv = pgserver.get_server(str(tmp / "pg"), cleanup_mode="stop")
    try:
        yield srv
    finally:
        with contextlib.suppress(Exception):
            srv.cleanup()


@contextlib.contextmanager
def scratch(prefix: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=prefix) as d:
        yield Path(d)


async def temporal_client(address: str, plain: bool = False) -> Client:
    if plain:
        for i in range(60):
            try:
                return await Client.connect(address)
            except Exception:
                await asyncio.sleep(min(0.2 * (i + 1), 2))
        raise RuntimeError(f"no Temporal at {address}")
    return await connect_temporal(address, attempts=60)


def skipper_for(client: Client) -> TimeSkipper:
    return TimeSkipper(client, config=TimeSkippingConfig(enabled=False, disable_propagation=True,
                                                         max_session_skip_count=1_000_000))


# ---------------------------------------------------------------------------- project processes
@dataclass
class Proc:
    name: str
    args: list[str]
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen | None = None

    def start(self) -> Proc:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.args, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.alive():
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


@dataclass
class Project:
    """The service as deployed: `python -m worker` and uvicorn `api.app:app_factory`, each its own process."""

    temporal_address: str
    database_url: str
    tmp: Path
    worker_module: str = "worker"
    extra_env: dict[str, str] = field(default_factory=dict)
    # uvicorn's logging options: quiet by default (benchmarks measure the service, not its access log).
    api_log_args: tuple[str, ...] = ("--log-level", "warning", "--no-access-log")
    schema: str = field(default_factory=lambda: "b_" + uuid.uuid4().hex[:10])
    task_queue: str = field(default_factory=lambda: "tq-" + uuid.uuid4().hex[:10])
    port: int = field(default_factory=free_port)
    worker: Proc | None = None
    api: Proc | None = None

    @property
    def settings(self) -> Settings:
        extra = {k.lower(): v for k, v in self.extra_env.items()
                 if k in ("ENVIRONMENT", "AUTH_JWT_SECRET", "AUDIT_HMAC_KEY")}
        return Settings(temporal_address=self.temporal_address, database_url=self.database_url,
                        database_schema=self.schema, temporal_task_queue=self.task_queue, api_port=self.port,
                        data_dir=self.tmp, **extra)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {**os.environ, "TEMPORAL_ADDRESS": self.temporal_address, "DATABASE_URL": self.database_url,
                "DATABASE_SCHEMA": self.schema, "TEMPORAL_TASK_QUEUE": self.task_queue, "API_PORT": str(self.port),
                "DATA_DIR": str(self.tmp), "ENVIRONMENT": "local", "PYTHONUNBUFFERED": "1", **self.extra_env}

    def start_worker(self) -> Proc:
        self.worker = Proc("worker", [sys.executable, "-m", self.worker_module], self.env(),
                           self.tmp / f"worker-{self.task_queue}.log").start()
        return self.worker

    def start_api(self) -> Proc:
        self.api = Proc("api", [sys.executable, "-m", "uvicorn", "api.app:app_factory", "--factory", "--host",
                                "127.0.0.1", "--port", str(self.port), *self.api_log_args], self.env(),
                        self.tmp / f"api-{self.task_queue}.log").start()
        return self.api

    async def wait_ready(self, timeout: float = 90) -> None:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=5) as http:

            async def ready() -> bool:
                if self.api and not self.api.alive():
                    raise RuntimeError("API exited:\n" + self.api.tail())
                if self.worker and not self.worker.alive():
                    raise RuntimeError("worker exited:\n" + self.worker.tail())
                return (await http.get("/health/ready")).status_code == 200

            await eventually(ready, what="the API to become ready", timeout=timeout, interval=0.2,
                             ignore=httpx.HTTPError,
                             error=lambda m: TimeoutError(f"{m}\n" + (self.api.tail() if self.api else "")))

    def stop(self) -> None:
        for p in (self.api, self.worker):
            if p:
                p.stop()

    def token(self, sub: str, *roles: str, trusts: list[str] | None = None, org: str | None = None) -> str:
        return mint_token(self.settings, sub, list(roles), trusts or [], org, ttl_seconds=24 * 3600)

    def auth(self, sub: str, *roles: str, trusts: list[str] | None = None, org: str | None = None) -> dict:
        return {"Authorization": f"Bearer {self.token(sub, *roles, trusts=trusts, org=org)}"}


@contextlib.asynccontextmanager
async def project(temporal_address: str, database_url: str, tmp: Path, worker: bool = True,
                  **kw: Any) -> AsyncIterator[Project]:
    p = Project(temporal_address, database_url, tmp, **kw)
    try:
        # The API migrates the schema before it answers; the worker then finds it ready.
        p.start_api()
        if worker:
            await p.wait_ready()
            p.start_worker()
        await p.wait_ready()
        yield p
    finally:
        p.stop()


@contextlib.contextmanager
def raw_worker(address: str, tmp: Path) -> Iterator[tuple[Proc, str]]:
    tq = "raw-" + uuid.uuid4().hex[:10]
    proc = Proc("raw_worker", [sys.executable, "-m", "bench.raw_worker", address, tq], dict(os.environ),
                tmp / f"raw-worker-{tq}.log").start()
    try:
        yield proc, tq
    finally:
        proc.stop()


# ---------------------------------------------------------------------------- histories
async def history_counts(client: Client, workflow_id: str) -> dict[str, int]:
    """Event counts over every run of a workflow (a continue-as-new chain), by the figures we report."""
    from temporalio.api.enums.v1 import EventType

    counts: dict[str, int] = {"runs": 0, "events": 0, "largest_run_events": 0}
    names = {
        EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED: "workflow_tasks",
        EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED: "activities",
        EventType.EVENT_TYPE_TIMER_STARTED: "timers_started",
        EventType.EVENT_TYPE_TIMER_FIRED: "timers_fired",
        EventType.EVENT_TYPE_TIMER_CANCELED: "timers_cancelled",
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED: "updates",
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED: "signals_received",
        EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED: "signals_sent",
        EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES: "search_attribute_upserts",
        EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED: "children_started",
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW: "continued_as_new",
    }
    for n in names.values():
        counts[n] = 0
    async for wf in client.list_workflows(f"WorkflowId = '{workflow_id}'"):
        counts["runs"] += 1
        h = await client.get_workflow_handle(workflow_id, run_id=wf.run_id).fetch_history()
        counts["events"] += len(h.events)
        counts["largest_run_events"] = max(counts["largest_run_events"], len(h.events))
        for e in h.events:
            if e.event_type in names:
                counts[names[e.event_type]] += 1
    return counts


def task_latencies(events: list[Any]) -> dict[str, list[float]]:
    """Real-time gaps inside one history: how long workflow and activity tasks waited and ran (gaps over 5 s
    are skipped time, not work, and are left out)."""
    from temporalio.api.enums.v1 import EventType as E

    at = {e.event_id: e.event_time.ToDatetime() for e in events}
    out: dict[str, list[float]] = {"workflow_task_queue": [], "workflow_task_run": [], "activity_queue": [],
                                   "activity_run": []}

    def gap(a: int, b: int, key: str) -> None:
        d = (at[b] - at[a]).total_seconds()
        if 0 <= d < 5:
            out[key].append(d)

    for e in events:
        if e.event_type == E.EVENT_TYPE_WORKFLOW_TASK_STARTED:
            gap(e.workflow_task_started_event_attributes.scheduled_event_id, e.event_id, "workflow_task_queue")
        elif e.event_type == E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            gap(e.workflow_task_completed_event_attributes.started_event_id, e.event_id, "workflow_task_run")
        elif e.event_type == E.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            gap(e.activity_task_started_event_attributes.scheduled_event_id, e.event_id, "activity_queue")
        elif e.event_type == E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            gap(e.activity_task_completed_event_attributes.started_event_id, e.event_id, "activity_run")
    return out


async def latency_summary(client: Client, workflow_ids: list[str]) -> dict[str, dict[str, float]]:
    """Mean and total real time per kind of task over every run of the given workflows."""
    acc: dict[str, list[float]] = {}
    for wid in workflow_ids:
        async for wf in client.list_workflows(f"WorkflowId = '{wid}'"):
            h = await client.get_workflow_handle(wid, run_id=wf.run_id).fetch_history()
            for k, v in task_latencies(list(h.events)).items():
                acc.setdefault(k, []).extend(v)
    return {k: {"n": len(v), "mean_ms": round(1000 * sum(v) / len(v), 1) if v else None,
                "p95_ms": round(1000 * pct(v, 95), 1) if v else None, "total_s": round(sum(v), 2)}
            for k, v in acc.items()}


def add_counts(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    out = {k: a.get(k, 0) + b.get(k, 0) for k in set(a) | set(b)}
    out["largest_run_events"] = max(a.get("largest_run_events", 0), b.get("largest_run_events", 0))
    return out


async def history_length(handle: WorkflowHandle) -> int:
    desc = await handle.describe()
    return desc.raw_description.workflow_execution_info.history_length


async def fast_forward(skipper: TimeSkipper, handle: WorkflowHandle, days: float) -> bool:
    try:
        return await skipper.fast_forward(handle, timedelta(days=days))
    except RPCError as e:
        if "already completed" in e.message or "not running" in e.message:
            return False
        raise


def today():
    from domain.dates import london_date

    return london_date(datetime.now(UTC))
