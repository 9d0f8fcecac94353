"""PostgreSQL: the embedded server, the pool, and the migration runner (numbered plain SQL files)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg

from settings import Settings

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).resolve().parent.parent / "db" / "migrations"


def embedded_database_url(data_dir: Path) -> str:
    """Start (or reuse) the embedded PostgreSQL 16 under `data_dir/pg` and return its URL."""
    import pgserver

    data_dir.mkdir(parents=True, exist_ok=True)
    srv = pgserver.get_server(str((data_dir / "pg").resolve()), cleanup_mode="stop")
    return srv.get_uri()


SERVICE_ROLE = "special_measures_service"


def database_url(settings: Settings) -> str:
    return settings.database_url or embedded_database_url(settings.data_dir)


def migration_url(settings: Settings, url: str | None = None) -> str:
    """The owner login that runs migrations: DATABASE_MIGRATION_URL, else the service's own URL."""
    return settings.database_migration_url or url or database_url(settings)


async def create_pool(url: str, schema: str = "public", *, role: str | None = SERVICE_ROLE, **kw) -> asyncpg.Pool:
    """A pool whose connections act as `role` (the service role: read and append the audit log, no more).

    With a login of its own (production) `SET ROLE` to itself is a no-op; with one login for everything (the
    embedded set-up) it drops the owner's rights for the life of the connection (`RESET ALL`, which the pool
    runs on release, leaves the role alone). `role=None` keeps the login's own rights: tests and migrations.
    """
    async def init(conn: asyncpg.Connection) -> None:
        await conn.set_type_codec("jsonb", encoder=_json_dumps, decoder=_json_loads, schema="pg_catalog")
        if role:
            await conn.execute(f'SET ROLE "{role}"')

    return await asyncpg.create_pool(
        url, min_size=kw.pop("min_size", 1), max_size=kw.pop("max_size", 10), init=init,
        server_settings={"search_path": schema, "application_name": "special-measures"}, **kw,
    )


async def _up_to_date(conn: asyncpg.Connection, schema: str) -> bool:
    table = await conn.fetchval("SELECT to_regclass($1)", f'"{schema}".schema_migrations')
    if table is None:
        return False
    done = {r["version"] for r in await conn.fetch(f'SELECT version FROM "{schema}".schema_migrations')}
    return {p.stem for p in MIGRATIONS.glob("*.sql")} <= done


def _json_dumps(v: object) -> str:
    import json

    return json.dumps(v, separators=(",", ":"), sort_keys=True, default=str)


def _json_loads(v: str) -> object:
    import json

    return json.loads(v)


async def migrate(url: str, schema: str = "public", service_role: str = SERVICE_ROLE) -> list[str]:
    """Apply every numbered migration not yet applied, each in its own transaction.

    Run as the owner of the schema. A service that connects with the service role's own login finds nothing
    to apply and needs no more than to read `schema_migrations`; one that finds work to do needs the owner's
    login (DATABASE_MIGRATION_URL).
    """
    conn = await asyncpg.connect(url)
    applied_now: list[str] = []
    try:
        if await _up_to_date(conn, schema):
            return applied_now
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await conn.execute(f'SET search_path TO "{schema}"')
        # Read by the migrations that grant the service role its rights (008 onwards).
        await conn.execute("SELECT set_config('special_measures.service_role', $1, false)", service_role)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version text PRIMARY KEY, "
            "applied_at timestamptz NOT NULL DEFAULT now())"
        )
        # One migrator at a time (the API and the worker may start together).
        await conn.execute("SELECT pg_advisory_lock(hashtext($1))", f"migrate:{schema}")
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for path in sorted(MIGRATIONS.glob("*.sql")):
            version = path.stem
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(path.read_text())
                await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
            applied_now.append(version)
            log.info("applied migration %s", version)
    finally:
        await conn.close()
    return applied_now


@contextlib.asynccontextmanager
async def service_pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    """A pool acting as the service role on the configured database, closed on exit: for the `regime` tool."""
    pool = await create_pool(database_url(settings), settings.database_schema, role=settings.database_service_role)
    try:
        yield pool
    finally:
        await pool.close()
