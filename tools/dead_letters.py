"""`regime dead-letters`: effects the worker could not write, and the operator's replay once fixed."""

from __future__ import annotations

import asyncio
import getpass
import json
import os
from typing import TYPE_CHECKING, Any

import typer

from settings import get_settings

if TYPE_CHECKING:
    import asyncpg

    from infra.notify import Notifier

cli = typer.Typer(help="Effects parked because PostgreSQL could never write them (docs/operations.md).",
                  no_args_is_help=True)


@cli.command("list")
def list_(all_: bool = typer.Option(False, "--all", help="replayed ones too")) -> None:
    """One JSON line per dead letter: which workflow, which effects, why; pending ones unless --all."""

    async def run() -> None:
        from infra.db import service_pool

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
    from infra.notify import OutboxNotifier

    async def run() -> bool:
        from infra.db import service_pool

        async with service_pool(get_settings()) as pool:
            who = by or os.environ.get("SUDO_USER") or getpass.getuser()
            results = await replay_dead_letters(pool, OutboxNotifier(), who, get_settings().audit_key, workflow_id)
            for r in results:
                typer.echo(json.dumps(r))
            return all(r["written"] for r in results)

    if not asyncio.run(run()):
        raise typer.Exit(1)


async def replay_dead_letters(pool: asyncpg.Pool, notifier: Notifier, by: str, audit_key: bytes,
                              workflow_id: str | None = None) -> list[dict[str, Any]]:
    """Write parked batches in their original order, per workflow, stopping at a workflow's first failure.

    Each batch is written in its own transaction with the same code as the activity, so a batch written
    before it was parked (an activity retried after a lost answer) writes nothing twice.
    """
    from activities.effects import TRANSIENT, lock_workflow, write_batch
    from workflows.common import EffectBatch

    out: list[dict[str, Any]] = []
    wids = [r["workflow_id"] for r in await pool.fetch(
        "SELECT DISTINCT workflow_id FROM dead_letters WHERE replayed_at IS NULL AND ($1::text IS NULL OR "
        "workflow_id = $1) ORDER BY 1", workflow_id)]
    for wid in wids:
        async with pool.acquire() as conn:
            ids = [r["id"] for r in await conn.fetch(
                "SELECT id FROM dead_letters WHERE workflow_id = $1 AND replayed_at IS NULL ORDER BY id", wid)]
            for dl in ids:
                row = await conn.fetchrow("SELECT batch FROM dead_letters WHERE id = $1", dl)
                batch = EffectBatch.model_validate_json(bytes(row["batch"]))
                try:
                    async with conn.transaction():
                        await lock_workflow(conn, wid)
                        n = await write_batch(conn, batch, notifier, audit_key)
                        await conn.execute("UPDATE dead_letters SET replayed_at = now(), replayed_by = $2, "
                                           "replay_error = NULL WHERE id = $1", dl, by)
                except TRANSIENT:
                    raise
                except Exception as e:  # noqa: BLE001 - still unwritable: keep it, and what follows, parked
                    err = f"{type(e).__name__}: {e}".replace("\x00", "\\u0000")[:4000]
                    await conn.execute("UPDATE dead_letters SET replay_error = $2 WHERE id = $1", dl, err)
                    out.append({"id": dl, "workflow_id": wid, "written": False, "error": err})
                    break
                out.append({"id": dl, "workflow_id": wid, "written": True, "rows": n})
    return out


def register(app: typer.Typer) -> None:
    app.add_typer(cli, name="dead-letters")
