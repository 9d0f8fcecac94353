"""The compose set-up's database logins (issue 17, finding 14), tried on a real PostgreSQL: the init script
creates one login per component, `regime migrate` runs as the owner, and the service login can read and
append the audit log but neither rewrite it nor switch its triggers off."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import asyncpg
import pytest

ROOT = Path(__file__).resolve().parent.parent


async def test_init_logins_then_migrate_then_the_service_login_cannot_rewrite_the_audit(tmp_path):
    import pgserver

    srv = pgserver.get_server(str(tmp_path / "pg"), cleanup_mode="delete")
    try:
        url = srv.get_uri()  # the cluster's superuser, as the postgres image's entrypoint is
        host = parse_qs(urlparse(url).query)["host"][0]
        superuser = urlparse(url).username or "postgres"
        srv.psql("CREATE DATABASE special_measures;")
        bindir = Path(pgserver.__file__).parent / "pginstall" / "bin"
        env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "PGHOST": host, "POSTGRES_USER": superuser,
               "POSTGRES_DB": "special_measures", "SM_OWNER_PASSWORD": "o" * 32, "SM_SERVICE_PASSWORD": "s" * 32,
               "TEMPORAL_DB_PASSWORD": "t" * 32}
        subprocess.run(["sh", str(ROOT / "ops" / "postgres" / "init-logins.sh")], env=env, check=True,
                       capture_output=True)

        def login(user: str) -> str:
            return f"postgresql://{user}:x@/special_measures?host={host}"

        migrate = subprocess.run(
            [sys.executable, "-m", "regime_cli", "migrate"], cwd=ROOT, capture_output=True, text=True, timeout=120,
            env={**os.environ, "DATABASE_URL": login("special_measures_service"), "DATABASE_SCHEMA": "public",
                 "DATABASE_MIGRATION_URL": login("special_measures_owner"),
                 "DATABASE_SERVICE_ROLE": "special_measures_service"})
        assert migrate.returncode == 0 and "applied" in migrate.stdout, migrate.stdout + migrate.stderr

        svc = await asyncpg.connect(login("special_measures_service"))
        try:
            roles = await svc.fetchrow("SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles "
                                       "WHERE rolname = current_user")
            assert tuple(roles) == (False, False, False)
            assert await svc.fetchval("SELECT count(*) FROM audit_log") == 0  # it reads
            for attack in ("UPDATE audit_log SET reason = 'x'", "DELETE FROM audit_log", "TRUNCATE audit_log",
                           "ALTER TABLE audit_log DISABLE TRIGGER ALL", "DROP TABLE audit_log",
                           "CREATE TABLE sneaky (x int)"):
                with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
                    await svc.execute(attack)
        finally:
            await svc.close()
        # Temporal's login creates its own databases, and cannot even connect to the service's.
        with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
            await asyncpg.connect(login("temporal"))
        temporal = await asyncpg.connect(f"postgresql://temporal:x@/postgres?host={host}")
        try:
            assert await temporal.fetchval("SELECT rolcreatedb AND NOT rolsuper FROM pg_roles "
                                           "WHERE rolname = current_user")
        finally:
            await temporal.close()
    finally:
        srv.cleanup()
