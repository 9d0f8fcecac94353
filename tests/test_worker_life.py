"""The worker as an operator runs it (issue 18, worker life): `python -m worker` serves the Temporal SDK's
metrics (its liveness signal) and stops through the SDK's explicit shutdown on SIGTERM, exiting 0."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

from tests.harness import free_port

ROOT = Path(__file__).resolve().parent.parent


def test_worker_serves_sdk_metrics_and_shuts_down_cleanly_on_sigterm(temporal_address, database_url):
    port = free_port()
    env = {**os.environ, "TEMPORAL_ADDRESS": temporal_address, "DATABASE_URL": database_url,
           "DATABASE_SCHEMA": "w_" + uuid.uuid4().hex[:10], "TEMPORAL_TASK_QUEUE": "tq-" + uuid.uuid4().hex[:10],
           "WORKER_METRICS_ADDRESS": f"127.0.0.1:{port}", "WORKER_GRACEFUL_SHUTDOWN_SECONDS": "5"}
    proc = subprocess.Popen([sys.executable, "-m", "worker"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        body, deadline = "", time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
                if "temporal_" in body:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        assert "temporal_" in body, "the worker never served the SDK's metrics"
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "worker shutting down (signal)" in out and "worker stopped" in out, out
