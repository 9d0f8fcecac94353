"""PostgreSQL: the embedded server, the pool, and the migration runner (numbered plain SQL files)."""

from __future__ import annotations

import logging
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


def database_url(settings: Settings) -> str:
    return settings.database_url or embedded_database_url(settings.data_dir)


async def create_pool(url: str, schema: str = "public", **kw) -> asyncpg.Pool:
    async def init(conn: asyncpg.Connection) -> None:
        await conn.set_type_codec("jsonb", encoder=_json_dumps, decoder=_json_loads, schema="pg_catalog")

    return await asyncpg.create_pool(
        url, min_size=kw.pop("min_size", 1), max_size=kw.pop("max_size", 10), init=init,
        server_settings={"search_path": schema, "application_name": "special-measures"}, **kw,
    )


def _json_dumps(v: object) -> str:
    import json

    return json.dumps(v, separators=(",", ":"), sort_keys=True, default=str)


def _json_loads(v: str) -> object:
    import json

    return json.loads(v)


async def migrate(url: str, schema: str = "public") -> list[str]:
    """Apply every numbered migration not yet applied, each in its own transaction."""
    conn = await asyncpg.connect(url)
    applied_now: list[str] = []
    try:
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await conn.execute(f'SET search_path TO "{schema}"')
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
