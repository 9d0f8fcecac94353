"""Issue 17, findings 2 and 8, performed against the real stack.

2. The audit chain against its own database login: the service role cannot disable the append-only triggers
   or change rows; the owner who rewrites rows and recomputes a plain SHA-256 chain is caught by the HMAC; the
   owner who cuts the chain's tail is caught by the signed checkpoint kept outside the database. A chain begun
   before the key keeps verifying.
8. Unbounded reads: the trust export is paged, an unchanged chain is not recomputed, the regime page's whole
   history is capped and says so, and a user over the rate limit gets 429 with Retry-After.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from infra.audit_chain import GENESIS, audit_hash
from infra.checkpoints import write_checkpoints
from infra.db import MIGRATIONS, create_pool, migrate
from tests.driver import Regime
from tests.harness import run_stack
from tests.helpers import PLAN

ROOT = Path(__file__).resolve().parent.parent


async def _regime_with_history(stack, ods: str) -> Regime:
    reg = await Regime.place(stack, ods)
    await reg.act("improvement_plan", "submit", PLAN)
    await reg.act("plan_review", "agree", comment="agreed at the oversight group")
    await stack.settle(reg.id)
    return reg


async def _rows(stack, regime_id: str) -> list[asyncpg.Record]:
    return await stack.pool.fetch("SELECT * FROM audit_log WHERE regime_id = $1 ORDER BY id", regime_id)


async def _verify(stack, regime_id: str) -> dict:
    r = await stack.http.get(f"/regimes/{regime_id}/audit/verify", headers=stack.auth("ops-1", "operations"))
    assert r.status_code == 200, r.text
    return r.json()


# ---------------------------------------------------------------- finding 2: the service's own login

async def test_the_service_login_cannot_rewrite_the_audit_log(stack):
    """The attack as the service: switch the guard off, change or remove entries. Each is refused."""
    reg = await _regime_with_history(stack, "RAU1")
    rows = await _rows(stack, reg.id)
    # The pool exactly as the API and the worker open it (infra/db.py create_pool, DATABASE_SERVICE_ROLE).
    pool = await create_pool(stack.settings.database_url, stack.schema, role=stack.settings.database_service_role)
    try:
        async with pool.acquire() as conn:
            who = await conn.fetchrow("SELECT current_user AS u, (SELECT rolsuper FROM pg_roles WHERE rolname = "
                                      "current_user) AS su, (SELECT tableowner FROM pg_tables WHERE tablename = "
                                      "'audit_log' AND schemaname = $1) AS owner", stack.schema)
            assert who["u"] == stack.settings.database_service_role and not who["su"] and who["owner"] != who["u"]
            attacks = [
                "ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update",
                "ALTER TABLE audit_log DISABLE TRIGGER ALL",
                "DROP TRIGGER audit_log_no_update ON audit_log",
                "SET session_replication_role = replica",  # would skip every trigger
                f"UPDATE audit_log SET reason = 'nothing to see' WHERE id = {rows[1]['id']}",
                f"DELETE FROM audit_log WHERE id = {rows[-1]['id']}",
                "TRUNCATE audit_log",
                "UPDATE audit_legacy SET last_sha256_id = 9223372036854775807",
                "ALTER TABLE audit_log OWNER TO CURRENT_USER",
            ]
            for sql in attacks:
                with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
                    async with conn.transaction():
                        await conn.execute(sql)
            # What the service needs still works: reading and appending.
            assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE regime_id = $1", reg.id) == len(rows)
    finally:
        await pool.close()
    assert await _rows(stack, reg.id) == rows
    assert (await _verify(stack, reg.id))["intact"]


async def test_the_owner_rewriting_rows_and_recomputing_plain_sha256_is_caught(stack):
    """The attack as the owner: triggers off, an entry changed, the chain after it recomputed with SHA-256 as
    before the fix (with the row's algorithm kept, and claiming the old algorithm). The HMAC catches both."""
    reg = await _regime_with_history(stack, "RAU2")
    rows = await _rows(stack, reg.id)
    assert {r["hash_alg"] for r in rows} == {"hmac-sha256"}
    target = next(r for r in rows if r["event"] == "plan_review.agree")
    assert (await _verify(stack, reg.id))["intact"]

    for claim_alg in (None, "sha256"):
        async with stack.pool.acquire() as conn, conn.transaction():
            await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update")
            prev = GENESIS
            for r in rows:
                row = dict(r)
                if r["id"] == target["id"]:
                    row["reason"] = f"nothing to see ({claim_alg})"
                row["at"] = r["at"].isoformat()
                h = audit_hash(prev, row)  # no key: the owner does not have it
                await conn.execute("UPDATE audit_log SET reason = $2, prev_hash = $3, hash = $4, "
                                   "hash_alg = coalesce($5, hash_alg) WHERE id = $1",
                                   r["id"], row["reason"], prev, h, claim_alg)
                prev = h
            await conn.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_update")
        v = await _verify(stack, reg.id)
        assert not v["intact"], v
        assert v["first_bad_entry"] == str(rows[0]["id"]), v  # the first recomputed link is already wrong
        assert v["reason"]


async def test_the_owner_cutting_the_tail_is_caught_by_the_checkpoint(temporal_address, database_url, tmp_path):
    """The attack as the owner: the newest entries deleted, leaving a shorter chain whose links all hold.
    The signed checkpoint of the head, kept outside the database, shows the cut (API and `regime verify-audit`);
    a checkpoint file changed to match is refused by its signature."""
    async with run_stack(temporal_address, database_url, audit_checkpoint_dir=tmp_path) as stack:
        reg = await _regime_with_history(stack, "RAU3")
        rows = await _rows(stack, reg.id)
        written = await write_checkpoints(stack.pool, stack.settings)
        assert [(c["regime_id"], c["intact"], c["count"], c["last_id"]) for c in written] == [
            (reg.id, True, len(rows), rows[-1]["id"])]
        cp_file = tmp_path / stack.schema / f"{reg.id}.json"
        doc = json.loads(cp_file.read_text())
        assert doc["checkpoint"]["last_hash"] == rows[-1]["hash"] and doc["signature"]
        # Exported to the outbox as well.
        sent = await stack.pool.fetchrow("SELECT * FROM notifications WHERE rung = 'audit_checkpoint'")
        assert json.loads(sent["body"]) == doc and sent["recipients"] == ["operations"]
        v = await _verify(stack, reg.id)
        assert v["intact"] and v["checkpoint"]["count"] == len(rows), v

        async with stack.pool.acquire() as conn, conn.transaction():
            await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update")
            await conn.execute("DELETE FROM audit_log WHERE id >= $1", rows[-2]["id"])
            await conn.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_update")

        env = {**os.environ, "DATABASE_URL": database_url, "DATABASE_SCHEMA": stack.schema,
               "AUDIT_CHECKPOINT_DIR": str(tmp_path), "ENVIRONMENT": "local"}
        cli = subprocess.run([sys.executable, "-m", "regime_cli", "verify-audit", reg.id], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=120)
        assert cli.returncode == 1, cli.stdout + cli.stderr
        out = json.loads(cli.stdout.strip().splitlines()[-1])
        assert not out["intact"] and "shorter than its checkpoint" in out["reason"], out
        assert out["entries"] == len(rows) - 2

        v = await _verify(stack, reg.id)
        assert not v["intact"] and "removed" in v["reason"], v

        # Forging the checkpoint to match the cut chain needs the key.
        doc["checkpoint"].update(count=len(rows) - 2, last_id=rows[-3]["id"], last_hash=rows[-3]["hash"])
        cp_file.write_text(json.dumps(doc))
        cli = subprocess.run([sys.executable, "-m", "regime_cli", "verify-audit", reg.id], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=120)
        assert cli.returncode == 1
        assert "signature is not valid" in json.loads(cli.stdout.strip().splitlines()[-1])["reason"]


async def test_a_chain_begun_before_the_key_still_verifies(database_url):
    """Rows chained with plain SHA-256 before migration 008 stay verifiable, and keyed rows follow them; a
    plain row written after the switch is refused."""
    from activities.effects import append_audit
    from infra.checkpoints import ChainVerifier
    from settings import Settings

    schema = "s_" + uuid.uuid4().hex[:12]
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"; SET search_path TO "{schema}"')
        await conn.execute("CREATE TABLE schema_migrations (version text PRIMARY KEY, "
                           "applied_at timestamptz NOT NULL DEFAULT now())")
        for path in sorted(MIGRATIONS.glob("*.sql")):
            if path.stem >= "008":
                break
            await conn.execute(path.read_text())
            await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", path.stem)
        prev = GENESIS
        for seq in (1, 2):
            row = {"regime_id": "regime-RA4-x", "workflow_id": "regime-RA4-x", "seq": seq, "event": "old.event",
                   "actor": "system", "role": "system", "step_id": None, "step_kind": None, "reason": "before",
                   "detail": {}, "request_id": None, "at": datetime(2026, 1, seq, tzinfo=UTC).isoformat()}
            h = audit_hash(prev, row)  # the algorithm before the fix
            await conn.execute("INSERT INTO audit_log (regime_id, workflow_id, seq, event, actor, role, reason, "
                               "detail, at, prev_hash, hash) VALUES ($1,$2,$3,$4,$5,$6,$7,'{}',$8,$9,$10)",
                               row["regime_id"], row["workflow_id"], seq, row["event"], row["actor"], row["role"],
                               row["reason"], datetime.fromisoformat(row["at"]), prev, h)
            prev = h
    finally:
        await conn.close()
    await migrate(database_url, schema)
    settings = Settings(_env_file=None, database_url=database_url, database_schema=schema)
    pool = await create_pool(database_url, schema, role=settings.database_service_role)
    try:
        async with pool.acquire() as conn, conn.transaction():
            await append_audit(conn, "regime-RA4-x", "regime-RA4-x", {
                "seq": 3, "event": "new.event", "actor": "system", "role": "system", "reason": "after",
                "at": datetime(2026, 2, 1, tzinfo=UTC).isoformat()}, settings.audit_key)
        async with pool.acquire() as conn:
            algs = [r["hash_alg"] for r in await conn.fetch("SELECT hash_alg FROM audit_log ORDER BY id")]
            assert algs == ["sha256", "sha256", "hmac-sha256"]
            v = await ChainVerifier(settings).verify(conn, "regime-RA4-x")
            assert v["intact"] and v["entries"] == 3, v
            # An entry appended without the key, claiming the old algorithm (the service role may INSERT).
            last = await conn.fetchrow("SELECT * FROM audit_log ORDER BY id DESC LIMIT 1")
            row = {**dict(last), "seq": 4, "event": "forged", "at": last["at"].isoformat()}
            await conn.execute("INSERT INTO audit_log (regime_id, workflow_id, seq, event, actor, role, detail, "
                               "at, prev_hash, hash, hash_alg) VALUES ($1,$1,4,'forged','system','system','{}',$2,"
                               "$3,$4,'sha256')", "regime-RA4-x", last["at"], last["hash"],
                               audit_hash(last["hash"], row))
            v = await ChainVerifier(settings).verify(conn, "regime-RA4-x")
            assert not v["intact"] and "unkeyed" in v["reason"], v
    finally:
        await pool.close()


# ---------------------------------------------------------------- finding 8: unbounded reads

async def test_verifying_an_unchanged_chain_does_not_recompute_it(stack):
    reg = await _regime_with_history(stack, "RA5")
    n = len(await _rows(stack, reg.id))
    first = await _verify(stack, reg.id)
    assert first["intact"] and not first["cached"] and first["entries_read"] == n, first
    again = await _verify(stack, reg.id)
    assert again["intact"] and again["cached"] and again["entries_read"] == 0 and again["entries"] == n, again
    # A longer chain is checked from the head already checked: only the new entries are read.
    await reg.act("plan_signoff_regulator", "sign_off")
    await stack.settle(reg.id)
    longer = len(await _rows(stack, reg.id))
    assert longer > n
    third = await _verify(stack, reg.id)
    assert third["intact"] and not third["cached"] and third["entries_read"] == longer - n, third
    assert third["entries"] == longer
    # A full check recomputes everything (it is how a rewrite behind an unchanged head is found): for
    # operations, the regulator and admin only.
    ops = stack.auth("ops-1", "operations")
    r = await stack.http.get(f"/regimes/{reg.id}/audit/verify", params={"full": "true"}, headers=ops)
    assert r.json()["entries_read"] == longer and not r.json()["cached"]
    r = await stack.http.get(f"/regimes/{reg.id}/audit/verify", params={"full": "true"},
                             headers=reg.users["trust"])
    assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json"


async def test_the_trust_export_is_paged(stack):
    reg = await _regime_with_history(stack, "RA6")
    ids = [r["id"] for r in await _rows(stack, reg.id)]
    assert len(ids) >= 3
    ops = stack.auth("ops-1", "operations")
    seen, after, pages = [], 0, 0
    while True:
        r = await stack.http.get("/trusts/RA6/audit", params={"limit": 2, "after": after}, headers=ops)
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["items"]) <= 2
        seen += [it["id"] for it in body["items"]]
        pages += 1
        if body["next"] is None:
            break
        after = body["next"]
    assert seen == ids and pages == -(-len(ids) // 2)
    r = await stack.http.get("/trusts/RA6/audit", params={"format": "csv", "limit": 2}, headers=ops)
    assert r.status_code == 200 and r.headers["x-next-cursor"] == str(ids[1])
    assert 'rel="next"' in r.headers["link"] and f"after={ids[1]}" in r.headers["link"]
    assert [int(row["id"]) for row in csv.DictReader(io.StringIO(r.text))] == ids[:2]
    for bad in ({"limit": 0}, {"limit": 10**6}, {"after": -1}, {"after": "x"}, {"after": 2**70}):
        r = await stack.http.get("/trusts/RA6/audit", params=bad, headers=ops)
        assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json", (bad, r.text)


async def test_the_regime_page_caps_the_whole_history_and_says_so(stack, monkeypatch):
    from api.web import routes

    reg = await _regime_with_history(stack, "RA7")
    n = len(await _rows(stack, reg.id))
    monkeypatch.setattr(routes, "HISTORY_ALL_AUDIT", n - 1)
    ops = stack.auth("ops-1", "operations")
    r = await stack.http.get(f"/web/regimes/{reg.id}", params={"history": "all"}, headers=ops)
    assert r.status_code == 200, r.text
    assert f"reads at most the latest {n - 1} audit entries" in r.text
    monkeypatch.setattr(routes, "HISTORY_ALL_AUDIT", n)
    r = await stack.http.get(f"/web/regimes/{reg.id}", params={"history": "all"}, headers=ops)
    assert r.status_code == 200 and "reads at most the latest" not in r.text


async def test_a_burst_over_the_rate_limit_gets_429_with_retry_after(temporal_address, database_url):
    # Per hour, so that no slow machine lets the window pass during the test.
    async with run_stack(temporal_address, database_url, rate_limit="5/hour") as stack:
        ops, other = stack.auth("ops-1", "operations"), stack.auth("ops-2", "operations")
        codes = [(await stack.http.get("/regimes", headers=ops)).status_code for _ in range(5)]
        assert codes == [200] * 5
        r = await stack.http.get("/regimes", headers=ops)
        assert r.status_code == 429 and r.headers["content-type"] == "application/problem+json"
        assert 1 <= int(r.headers["retry-after"]) <= 3600
        assert r.json()["type"].endswith("/rate-limited") and r.json()["status"] == 429
        # Per user: another user is not held back by the first one's burst, and the web pages count too.
        assert (await stack.http.get("/regimes", headers=other)).status_code == 200
        r = await stack.http.get("/web/regimes", headers=ops)
        assert r.status_code == 429 and r.headers["retry-after"]
        # Requests without a valid token are counted by address.
        codes = [(await stack.http.get("/regimes", headers={"Authorization": "Bearer nonsense"})).status_code
                 for _ in range(6)]
        assert codes == [401] * 5 + [429]
