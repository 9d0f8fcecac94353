"""Every benchmark in bench/ runs in quick mode (seconds, tiny sizes) and writes its results file: CI keeps the
scripts working. No timings are asserted here; the figures are docs/performance.md's, from full runs.

Quick runs use the session's dev server and PostgreSQL where the script allows it (scale starts its own
servers per phase, replay its own for the raw histories)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = {
    "approval_latency": True,
    "lifecycle_cost": True,
    "scale": False,
    "reads": True,
    "replay_throughput": False,
    "fault_flood": True,
    "closed_read": True,
    "telemetry_cost": True,
}


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_bench_quick_writes_results(name, temporal_address, database_url, tmp_path):
    out = tmp_path / f"{name}.json"
    args = [sys.executable, "-m", f"bench.{name}", "--quick", "--out", str(out)]
    if SCRIPTS[name]:
        args += ["--temporal-address", temporal_address, "--database-url", database_url]
    run = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    print(run.stdout[-3000:])
    assert run.returncode == 0, f"bench.{name} --quick failed:\n{run.stdout[-3000:]}\n{run.stderr[-5000:]}"
    doc = json.loads(out.read_text())
    assert doc["benchmark"] == name and doc["mode"] == "quick"
    assert doc["figures"] and doc["ratios"] and doc["versions"]["temporalio"] and doc["machine"]["cpus"]
    assert doc["command"].startswith(f"python -m bench.{name} --quick")
