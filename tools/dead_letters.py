"""`regime dead-letters`: effects the worker could not write, and the operator's replay once fixed."""

from __future__ import annotations

import asyncio
import getpass
import json
import os

import typer

from settings import get_settings

cli = typer.Typer(help="Effects parked because PostgreSQL could never write them (docs/operations.md).",
                  no_args_is_help=True)


@cli.command("list")
def list_(all_: bool = typer.Option(False, "--all", help="replayed ones too")) -> None:
    """One JSON line per dead letter: which workflow, which effects, why; pending ones unless --all."""

    async def run() -> None:
        from activities.db import service_pool

        async with service_pool(get_settings()) as pool:
            rows = await pool.fetch(
                "SELECT id, workflow_id, regime_id, first_seq, last_seq, error, parked_behind, created_at, "
                "replayed_at, replayed_by, replay_error FROM dead_letters WHERE $1 OR replayed_at IS NULL "
                "ORDER BY id", all_)
            for r in rows:
                typer.echo(json.dumps(dict(r), default=str))

    asyncio.run(run())


@cli.command()
def replay(workflow_id: str | None = typer.Option(None, "--workflow-id", help="one workflow; all when omitted"),
           by: str = typer.Option(None, "--by", help="who replays (recorded); defaults to the OS user")) -> None:
    """Write the parked effects in their original order, once the cause is fixed; exit 1 if any still fail."""
    from activities.effects import replay_dead_letters
    from activities.notify import OutboxNotifier

    async def run() -> bool:
        from activities.db import service_pool

        async with service_pool(get_settings()) as pool:
            who = by or os.environ.get("SUDO_USER") or getpass.getuser()
            results = await replay_dead_letters(pool, OutboxNotifier(), who, get_settings().audit_key, workflow_id)
            for r in results:
                typer.echo(json.dumps(r))
            return all(r["written"] for r in results)

    if not asyncio.run(run()):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(cli, name="dead-letters")
