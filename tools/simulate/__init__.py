"""`regime simulate SCENARIO...`: rehearse a lifecycle on the real stack, with time skipping.

The simulator places the trust through the HTTP API, then walks virtual time from stop to stop:
a stop is a day on which something happens (a scripted step, routine work falling due, the next
monthly return). At each stop people act through the API with minted tokens; between stops the
regime's clock (and its buddy partnerships' clocks) is fast-forwarded to noon, London time, of the
next stop. Deadlines nobody meets escalate on the way, exactly as in production.

Day 0 is the entry date; the simulation starts today (the API refuses future entry dates), so
printed dates depend on the day the simulation runs and the day numbers do not.

The package: run.py drives a scenario (Simulation, simulate_files), routine.py holds the routine work,
programme.py the improvement plan as a programme (the monthly report per action, a scenario's plan_progress, plan
changes and evidence, the plan month by month on the timeline), funding.py central funding and the cost of the
interventions, watchlist.py the scenario's watch list before placement (and its confidentiality checks), report.py
the timeline, the expectations and the printed tables, session.py what they share (people acting through the API); this module is the command.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import typer

from tools.scenario import ScenarioError, load
from tools.simulate.report import check_expectations, render
from tools.simulate.run import Simulation, simulate_files
from tools.simulate.session import RegimeRun, SimulationError

__all__ = ["RegimeRun", "Simulation", "SimulationError", "check_expectations", "register", "render",
           "simulate_files"]


def register(app: typer.Typer) -> None:
    @app.command()
    def simulate(
        scenario: list[Path] = typer.Argument(..., help="scenario file(s), YAML or JSON (see docs/scenarios.md)"),
        as_json: bool = typer.Option(False, "--json", help="print the timeline as JSON"),
        all_rows: bool = typer.Option(False, "--all", help="list every monthly return in the table"),
        verbose: bool = typer.Option(False, "--verbose", "-v", help="show routine actions as well"),
        ods: str | None = typer.Option(None, help="use this ODS code instead of the scenario's"),
        parallel: int = typer.Option(1, help="scenarios run at once"),
        check_only: bool = typer.Option(False, "--check", help="validate the files, run nothing"),
    ) -> None:
        """Run scenario files against the real stack (embedded unless TEMPORAL_ADDRESS/DATABASE_URL are set)."""
        from rich.console import Console
        from rich.markup import escape

        err = Console(stderr=True, soft_wrap=True)
        try:
            if check_only:
                for p in scenario:
                    load(p)
                    err.print(f"{p}: ok")
                return
            results = asyncio.run(simulate_files(scenario, progress=lambda m: err.print(escape(m), highlight=False),
                                                 verbose=verbose, ods=ods, parallel=parallel))
        except ScenarioError as e:
            for line in e.lines():
                err.print(escape(line), style="red", highlight=False)
            raise typer.Exit(2) from None
        except SimulationError as e:
            err.print(escape(str(e)), style="red", highlight=False)
            raise typer.Exit(2) from None
        if as_json:
            sys.stdout.write(json.dumps(results if len(results) > 1 else results[0], indent=2, default=str) + "\n")
        else:
            render(results, all_rows)
        if not all(r["ok"] for r in results):
            raise typer.Exit(1)
