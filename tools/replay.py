"""`regime replay` and `regime record`: prove that the workflow code in the working tree can carry on
every regime already running.

- `regime replay PATH...` replays history files (ours, or `temporal workflow show --output json`
  exports) with the project's workflows and data converter; per workflow it prints ok or the first
  mismatch, and exits 1 if any fails.
- `regime replay --from-server --query "TrustOdsCode='RXX'"` fetches the histories of matching
  executions from a running cluster (settings: TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE) and replays
  them: a deploy gate before new worker code rolls out.
- `regime record` re-runs the scenarios in scenarios/ on the embedded stack and writes the golden
  histories in tests/histories/ (every run of a continue-as-new chain, and each buddy partnership).
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.worker import Replayer

ROOT = Path(__file__).resolve().parent.parent
HISTORIES = ROOT / "tests" / "histories"
SCENARIOS = ROOT / "scenarios"
MANIFEST = "manifest.json"


@dataclass
class Replayed:
    label: str
    workflow_id: str
    run_id: str
    workflow_type: str
    events: int
    error: str | None
    exception: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def first_line_of(e: BaseException) -> str:
    msg = str(e).strip() or type(e).__name__
    # Core wraps the mismatch in a debug dump of the failure; keep the sentence that names the event.
    inner = re.search(r'message: "(.*?)", source:', msg)
    text = inner.group(1) if inner else " ".join(ln.strip() for ln in msg.splitlines() if ln.strip())
    return f"{type(e).__name__}: {text[:600]}"


def workflow_type_of(h: WorkflowHistory) -> str:
    first = h.events[0] if h.events else None
    if first is None or not first.HasField("workflow_execution_started_event_attributes"):
        return "?"
    return first.workflow_execution_started_event_attributes.workflow_type.name


@functools.cache
def _quiet_runtime() -> Runtime:
    """Core logs each mismatch as a WARN on stdout; we report it ourselves (and keep --json clean)."""
    return Runtime(telemetry=TelemetryConfig(logging=LoggingConfig(
        filter=TelemetryFilter(core_level="ERROR", other_level="ERROR"))))


async def replay(histories: Sequence[tuple[str, WorkflowHistory]], workflows: Sequence[type] | None = None
                 ) -> list[Replayed]:
    """Replay each history; never raises for a mismatch, reports it."""
    from workflows import WORKFLOWS

    replayer = Replayer(workflows=list(workflows or WORKFLOWS), data_converter=pydantic_data_converter,
                        runtime=_quiet_runtime())

    async def gen() -> AsyncIterator[WorkflowHistory]:
        for _, h in histories:
            yield h

    out: list[Replayed] = []
    labels = iter(histories)
    async with replayer.workflow_replay_iterator(gen()) as results:
        async for r in results:
            label, h = next(labels)
            err = r.replay_failure
            out.append(Replayed(label, h.workflow_id, h.run_id, workflow_type_of(h), len(h.events),
                                first_line_of(err) if err else None, err))
    return out


# ---------------------------------------------------------------------------- files
def history_files(paths: Sequence[Path]) -> list[Path]:
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files += sorted(f for f in p.glob("*.json") if f.name != MANIFEST)
        elif not (p.name == MANIFEST and _is_manifest(p)):
            files.append(p)  # `tests/histories/*.json` names our manifest too: it is not a history
    return files


def _is_manifest(p: Path) -> bool:
    try:
        return "histories" in json.loads(p.read_text())
    except (OSError, ValueError):
        return False


def load_history(path: Path) -> WorkflowHistory:
    """Our files and `temporal workflow show --output json` exports share one shape: {"events": [...]}."""
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or not isinstance(data.get("events"), list):
        raise ValueError("not a workflow history (expected a JSON object with an 'events' list)")
    wid = _manifest_of(path.parent).get(path.name, {}).get("workflow_id") or path.stem
    return WorkflowHistory.from_json(wid, data)


def _manifest_of(folder: Path) -> dict[str, Any]:
    m = folder / MANIFEST
    try:
        return json.loads(m.read_text()).get("histories", {}) if m.exists() else {}
    except (OSError, ValueError):
        return {}


async def fetch_from_server(client: Client, query: str, limit: int) -> list[tuple[str, WorkflowHistory]]:
    out: list[tuple[str, WorkflowHistory]] = []
    async for wf in client.list_workflows(query, limit=limit):
        h = await client.get_workflow_handle(wf.id, run_id=wf.run_id).fetch_history()
        out.append((f"{wf.id} ({wf.status.name.lower() if wf.status else '?'})", h))
    return out


# ---------------------------------------------------------------------------- recording
def _label(partnership_or_regime: str, regime_ids: list[str]) -> str:
    if partnership_or_regime in regime_ids:
        i = regime_ids.index(partnership_or_regime)
        return "regime" if i == 0 else f"regime{i + 1}"
    for rid in regime_ids:
        if partnership_or_regime.startswith(rid + "-"):
            return partnership_or_regime[len(rid) + 1:]
    return partnership_or_regime


async def export_histories(client: Client, stem: str, workflow_ids: list[str], regime_ids: list[str],
                           out: Path) -> dict[str, dict[str, Any]]:
    """Every run of every workflow, oldest first: `<stem>.<label>.run<k>.json`."""
    written: dict[str, dict[str, Any]] = {}
    for wid in workflow_ids:
        runs = [wf async for wf in client.list_workflows(f"WorkflowId = '{wid}'")]
        runs.sort(key=lambda w: w.start_time)
        for k, wf in enumerate(runs, 1):
            h = await client.get_workflow_handle(wid, run_id=wf.run_id).fetch_history()
            name = f"{stem}.{_label(wid, regime_ids)}.run{k}.json"
            # Compact: the files are regenerated, never edited, and indentation doubles their size.
            (out / name).write_text(json.dumps(json.loads(h.to_json()), separators=(",", ":")) + "\n")
            written[name] = {"workflow_id": wid, "run_id": wf.run_id, "workflow_type": wf.workflow_type,
                             "run": k, "of_runs": len(runs), "events": len(h.events),
                             "status": wf.status.name.lower() if wf.status else None}
    return written


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip() or None
    except (OSError, subprocess.CalledProcessError):
        return None


async def record(scenarios: Sequence[Path], out: Path, prefix: str = "", parallel: int = 3,
                 progress: Any = None) -> dict[str, dict[str, Any]]:
    from tools.simulate import Simulation, simulate_files

    out.mkdir(parents=True, exist_ok=True)
    recorded: dict[str, dict[str, Any]] = {}
    stems = {str(p): prefix + Path(p).stem for p in scenarios}

    async def on_done(sim: Simulation, result: dict[str, Any]) -> None:
        stem = stems[sim.sc.file]
        for old in out.glob(f"{stem}.*.json"):
            old.unlink()
        regime_ids = [r["regime_id"] for r in result["regimes"]]
        ids = list(regime_ids) + [p["partnership"] for r in result["regimes"] for p in r["payments"]]
        written = await export_histories(sim.stack.client, stem, ids, regime_ids, out)
        for v in written.values():
            v["scenario"] = sim.sc.file
            v["ok"] = result["ok"]
        recorded.update(written)

    results = await simulate_files(list(scenarios), progress=progress or (lambda _: None), parallel=parallel,
                                   on_done=on_done)
    bad = [r["scenario"] for r in results if not r["ok"]]
    if bad:
        raise RuntimeError("scenario expectations failed, nothing worth keeping: " + ", ".join(bad))
    mpath = out / MANIFEST
    manifest = json.loads(mpath.read_text()) if mpath.exists() else {"histories": {}}
    histories = {k: v for k, v in manifest.get("histories", {}).items() if (out / k).exists()}
    histories.update(recorded)
    manifest = {
        "about": "Golden histories replayed by tests/test_replay.py. Regenerate with `regime record` "
                 "(see docs/versioning.md); files named pre_patch_* are kept until their patch is removed.",
        "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"), "commit": _git_commit(),
        "histories": dict(sorted(histories.items())),
    }
    mpath.write_text(json.dumps(manifest, indent=2) + "\n")
    return recorded


# ---------------------------------------------------------------------------- CLI
def register(app: typer.Typer) -> None:
    @app.command("replay")
    def replay_cmd(
        paths: list[Path] = typer.Argument(None, help="history files or folders (default: tests/histories)"),
        from_server: bool = typer.Option(False, "--from-server", help="fetch histories from the cluster instead"),
        query: str = typer.Option("", "--query", help="visibility query, e.g. \"TrustOdsCode='RXX'\""),
        limit: int = typer.Option(1000, help="at most this many executions from the server"),
        as_json: bool = typer.Option(False, "--json", help="one JSON object per workflow"),
    ) -> None:
        """Replay histories against the workflow code in this working tree; exit 1 on any mismatch."""

        async def run() -> list[Replayed]:
            if from_server:
                from infra.clients import connect_temporal
                from settings import get_settings

                s = get_settings()
                client = await connect_temporal(s.temporal_target, s.temporal_namespace)
                items = await fetch_from_server(client, query, limit)
            else:
                items = []
                for f in history_files(paths or [HISTORIES]):
                    try:
                        items.append((str(f), load_history(f)))
                    except (OSError, ValueError) as e:
                        typer.echo(f"FAIL {f}: cannot read: {e}", err=True)
                        raise typer.Exit(2) from None
            if not items:
                typer.echo("no histories to replay", err=True)
                raise typer.Exit(2)
            return await replay(items)

        results = asyncio.run(run())
        for r in results:
            if as_json:
                typer.echo(json.dumps({"history": r.label, "workflow_id": r.workflow_id, "run_id": r.run_id,
                                       "workflow_type": r.workflow_type, "events": r.events, "ok": r.ok,
                                       "error": r.error}))
            elif r.ok:
                typer.echo(f"ok   {r.label}  {r.workflow_type} {r.workflow_id}  {r.events} events")
            else:
                typer.echo(f"FAIL {r.label}  {r.workflow_type} {r.workflow_id}  {r.events} events\n     {r.error}")
        failed = sum(not r.ok for r in results)
        if not as_json:
            typer.echo(f"{len(results) - failed} of {len(results)} replayed", err=True)
        if failed:
            raise typer.Exit(1)

    @app.command("record")
    def record_cmd(
        scenarios: list[Path] = typer.Argument(None, help="scenario files (default: every file in scenarios/)"),
        out: Path = typer.Option(HISTORIES, help="where the histories go"),
        prefix: str = typer.Option("", help="file name prefix, e.g. pre_patch_ before a workflow.patched change"),
        parallel: int = typer.Option(3, help="scenarios run at once"),
    ) -> None:
        """Regenerate the golden histories from real runs of the scenarios (embedded stack)."""
        from rich.console import Console
        from rich.markup import escape

        err = Console(stderr=True, soft_wrap=True)
        files = scenarios or sorted([*SCENARIOS.glob("*.yaml"), *SCENARIOS.glob("*.yml"), *SCENARIOS.glob("*.json")])
        try:
            written = asyncio.run(record(files, out, prefix, parallel,
                                         progress=lambda m: err.print(escape(m), highlight=False)))
        except Exception as e:  # report, do not leave half a manifest unexplained
            err.print(escape(f"record failed: {e}"), style="red")
            raise typer.Exit(1) from None
        for name, v in sorted(written.items()):
            typer.echo(f"{out / name}  {v['workflow_type']} run {v['run']}/{v['of_runs']}  {v['events']} events  "
                       f"{v['status']}")
        typer.echo(f"{len(written)} histories written to {out}", err=True)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use the `regime` command")
