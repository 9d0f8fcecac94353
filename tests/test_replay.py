"""The replay gate: every golden history replays on the code in the working tree, and the gate bites.

The golden histories in tests/histories/ come from real runs of the scenarios (`regime record`).
A history that no longer replays means a change would break regimes that are already running:
make it through `workflow.patched` (docs/versioning.md) instead.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError
from typer.testing import CliRunner

from domain.models import RegimeStart, RegimeState
from regime_cli import app
from tools.polling import eventually
from tools.replay import HISTORIES, SCENARIOS, history_files, load_history, replay
from workflows.buddy import BuddyPartnershipWorkflow
from workflows.common import APPLY_EFFECTS, EffectBatch
from workflows.regime import RegimeWorkflow

GOLDEN = history_files([HISTORIES])


def golden(prefix: str) -> Path:
    hits = [f for f in GOLDEN if f.name.startswith(prefix)]
    assert hits, f"no golden history {prefix}*: run `regime record`"
    return hits[0]


def test_every_scenario_has_golden_histories():
    manifest = json.loads((HISTORIES / "manifest.json").read_text())["histories"]
    stems = {p.stem for p in SCENARIOS.iterdir() if p.suffix in (".yaml", ".yml", ".json")}
    recorded = {name.split(".")[0] for name in manifest}
    assert stems <= recorded, f"scenarios without golden histories: {sorted(stems - recorded)}; run `regime record`"
    assert {f.name for f in GOLDEN} == set(manifest), "manifest and files disagree: run `regime record`"
    # A continue-as-new chain is recorded run by run.
    assert sum(1 for n in manifest if n.startswith("continue_as_new.regime.run")) >= 3


async def test_all_golden_histories_replay():
    results = await replay([(f.name, load_history(f)) for f in GOLDEN])
    failed = [f"{r.label}: {r.error}" for r in results if not r.ok]
    assert not failed, "\n".join(failed)
    assert len(results) == len(GOLDEN) >= 8


# ---------------------------------------------------------------------------- the gate bites
# Unsandboxed: the sandbox would re-import this test module and its tooling; determinism checks are the same.
@workflow.defn(name="RegimeWorkflow", sandboxed=False)
class RegimeWorkflowWithExtraActivity(RegimeWorkflow):
    """A careless change: one more activity call before the regime's first effects are written."""

    @workflow.run
    async def run(self, start: RegimeStart) -> RegimeState:
        return await super().run(start)

    async def _flush(self) -> None:
        if not getattr(self, "_announced", False):
            self._announced = True
            await workflow.execute_activity(
                APPLY_EFFECTS, EffectBatch(workflow_id=workflow.info().workflow_id, regime_id="x", ods_code="RXX",
                                           effects=[]), start_to_close_timeout=timedelta(seconds=30))
        await super()._flush()


@workflow.defn(name="RegimeWorkflow", sandboxed=False)
class RegimeWorkflowWithGracePeriod(RegimeWorkflow):
    """Another: a grace timer slipped in before the first escalation check."""

    @workflow.run
    async def run(self, start: RegimeStart) -> RegimeState:
        await workflow.sleep(timedelta(hours=1))
        return await super().run(start)


@pytest.mark.parametrize("broken", [RegimeWorkflowWithExtraActivity, RegimeWorkflowWithGracePeriod])
async def test_incompatible_copy_of_the_workflow_fails_replay(broken):
    history = load_history(golden("exit_on_time.regime.run1"))
    replayer = Replayer(workflows=[broken, BuddyPartnershipWorkflow], data_converter=pydantic_data_converter)
    with pytest.raises(NondeterminismError):
        await replayer.replay_workflow(history)
    # ... and the command-line gate reports it and fails.
    results = await replay([("broken", history)], workflows=[broken, BuddyPartnershipWorkflow])
    assert not results[0].ok and "Nondeterminism" in results[0].error


def test_cli_replays_the_golden_glob():
    """`regime replay tests/histories/*.json`, as CI and the issue run it (the glob includes the manifest)."""
    r = CliRunner().invoke(app, ["replay", *map(str, sorted(HISTORIES.glob("*.json")))])
    assert r.exit_code == 0, r.output
    assert r.output.count("ok ") == len(GOLDEN)


def test_cli_replays_files_and_fails_on_a_bad_one(tmp_path):
    good = golden("late_plan_escalations.regime.run1")
    r = CliRunner().invoke(app, ["replay", str(good)])
    assert r.exit_code == 0, r.output
    assert r.output.startswith("ok ")
    data = json.loads(good.read_text())
    data["events"][0]["workflowExecutionStartedEventAttributes"]["workflowType"]["name"] = "RenamedWorkflow"
    bad = tmp_path / "renamed.json"
    bad.write_text(json.dumps(data))
    r = CliRunner().invoke(app, ["replay", str(good), str(bad), "--json"])
    assert r.exit_code == 1, r.output
    lines = [json.loads(x) for x in r.output.splitlines() if x.startswith("{")]
    assert [x["ok"] for x in lines] == [True, False]
    assert "RenamedWorkflow" in lines[1]["error"]
    (tmp_path / "junk.json").write_text("[1, 2]")
    r = CliRunner().invoke(app, ["replay", str(tmp_path / "junk.json")])
    assert r.exit_code == 2


def test_reads_temporal_cli_exports():
    """`temporal workflow show --output json` writes the same shape (checked against CLI 1.9.1): events only."""
    data = json.loads(golden("late_plan_escalations.regime.run1").read_text())
    h = WorkflowHistory.from_json("exported", json.dumps(data, indent=2))
    assert h.events[0].workflow_execution_started_event_attributes.workflow_type.name == "RegimeWorkflow"


async def test_replay_from_server_gate(temporal_address, database_url, monkeypatch):
    """Fetch live histories by a visibility query and replay them, as a deploy gate would."""
    from tools.simulate import simulate_files
    from tools.stack import run_stack

    async with run_stack(temporal_address, database_url) as stack:
        [res] = await simulate_files([SCENARIOS / "late_plan_escalations.yaml"], stack=stack, ods="RPLY1")
        assert res["ok"]
        # Visibility is updated asynchronously: the gate's query must see the regime before it runs.
        await _visible(stack.client, "TrustOdsCode='RPLY1'")
    monkeypatch.setenv("TEMPORAL_ADDRESS", temporal_address)
    from settings import get_settings

    get_settings.cache_clear()
    try:
        # The command runs its own event loop: keep it off this test's loop.
        r = await asyncio.to_thread(CliRunner().invoke, app,
                                    ["replay", "--from-server", "--query", "TrustOdsCode='RPLY1'"])
    finally:
        get_settings.cache_clear()
    assert r.exit_code == 0, r.output
    assert "regime-RPLY1-" in r.output and r.output.startswith("ok ")


async def _visible(client, query: str, timeout: float = 15.0) -> None:
    async def matched() -> list:
        return [w async for w in client.list_workflows(query)]

    await eventually(matched, what=f"something to match {query} in visibility", timeout=timeout)
