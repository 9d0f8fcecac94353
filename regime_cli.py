"""The `regime` command-line tool: tokens, audit checks, replay, simulation, demo data."""

from __future__ import annotations

import asyncio
import importlib
import json

import typer

from domain.models import ROLES
from settings import get_settings

app = typer.Typer(help="Special measures regime orchestrator: operator and developer commands.",
                  no_args_is_help=True)


@app.command()
def token(sub: str = typer.Argument(..., help="user id (not a name or e-mail)"),
          role: list[str] = typer.Option(..., "--role", "-r",
                                         help=f"role ({', '.join(ROLES)}); repeat for several"),
          trust: list[str] = typer.Option([], "--trust", "-t", help="ODS code of an assigned trust; repeatable"),
          org: str | None = typer.Option(None, help="the user's own organisation ODS code (buddy users)"),
          hours: int = typer.Option(8, help="lifetime in hours")) -> None:
    """Mint a local development token (signed with AUTH_JWT_SECRET)."""
    from api.auth import mint_token

    try:
        minted = mint_token(get_settings(), sub, role, trust, org, ttl_seconds=hours * 3600)
    except ValueError as e:  # an unknown role, or the service's own identity
        raise typer.BadParameter(str(e)) from None
    typer.echo(minted)


@app.command()
def migrate() -> None:
    """Apply the database migrations as the owner login (DATABASE_MIGRATION_URL, else DATABASE_URL), then
    exit: a deployment runs this once, so the API and the worker can connect with the service login only."""
    from infra.db import database_url, migration_url
    from infra.db import migrate as run_migrations

    s = get_settings()
    applied = asyncio.run(run_migrations(migration_url(s, database_url(s)), s.database_schema,
                                         s.database_service_role))
    typer.echo(f"applied {len(applied)} migrations" + (f": {', '.join(applied)}" if applied else " (up to date)"))


@app.command("verify-audit")
def verify_audit(regime_id: str | None = typer.Argument(None, help="one regime; all when omitted")) -> None:
    """Recompute the audit log's keyed hash chains in full and compare each with its latest signed checkpoint
    (AUDIT_CHECKPOINT_DIR); exit code 1 if any chain is broken or falls short of its checkpoint."""
    from infra.checkpoints import ChainVerifier
    from infra.db import service_pool

    async def run() -> bool:
        s = get_settings()
        verifier = ChainVerifier(s)
        async with service_pool(s) as pool:
            ids = [regime_id] if regime_id else [r["regime_id"] for r in
                                                  await pool.fetch("SELECT DISTINCT regime_id FROM audit_log")]
            ok_all = True
            async with pool.acquire() as conn:
                for rid in ids:
                    result = await verifier.verify(conn, rid, use_cache=False)
                    ok_all &= result["intact"]
                    typer.echo(json.dumps({k: v for k, v in result.items() if k not in ("cached",)}))
            return ok_all

    if not asyncio.run(run()):
        raise typer.Exit(1)


@app.command("audit-checkpoint")
def audit_checkpoint(regime_id: str | None = typer.Argument(None, help="one regime; all when omitted")) -> None:
    """Verify each audit chain and sign its head into AUDIT_CHECKPOINT_DIR and the notification outbox, so that
    removing its newest entries is detected later; exit code 1 if a chain is broken (it is not signed)."""
    from infra.checkpoints import write_checkpoints
    from infra.db import service_pool

    async def run() -> bool:
        s = get_settings()
        async with service_pool(s) as pool:
            results = await write_checkpoints(pool, s, [regime_id] if regime_id else None)
            for r in results:
                typer.echo(json.dumps(r))
            return all(r["intact"] for r in results)

    if not asyncio.run(run()):
        raise typer.Exit(1)


for _name in ("replay", "simulate", "demo", "dead_letters"):
    try:
        importlib.import_module(f"tools.{_name}").register(app)
    except ModuleNotFoundError as e:
        if e.name != f"tools.{_name}":
            raise

if __name__ == "__main__":
    app()
