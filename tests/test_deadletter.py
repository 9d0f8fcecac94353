"""Effects PostgreSQL can never write are parked as dead letters; the regime's clocks never stop for them.

Before: the effects activity retried such a batch for ever, the run loop waited inside the flush, and from
then on nothing was written and no deadline escalated (issue 12). Now the batch is parked with its error,
operations are told, readiness says `degraded`, the regime goes on deciding and escalating, and once the
cause is fixed `regime dead-letters replay` writes everything, in order, into an intact audit chain.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from temporalio.testing import ActivityEnvironment

from activities.effects import EffectActivities
from infra.notify import OutboxNotifier
from tests.driver import Regime
from tests.helpers import PLAN
from tools.polling import eventually
from workflows.common import EffectBatch

ROOT = Path(__file__).resolve().parent.parent

POISON = """
CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.reason LIKE '%POISON%' THEN
        RAISE EXCEPTION 'audit entry refused: %', NEW.reason;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER refuse_poison BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION refuse_poison();
"""


def operator(stack, *args: str) -> subprocess.CompletedProcess:
    """The operator's command, as documented, against the test's database and schema."""
    env = {**os.environ, "DATABASE_URL": stack.settings.database_url or "", "DATABASE_SCHEMA": stack.schema}
    return subprocess.run([sys.executable, "-m", "regime_cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


async def test_unwritable_effects_are_parked_and_the_regime_keeps_its_clocks(stack):
    reg = await Regime.place(stack, "RDL1")
    await stack.settle(reg.id)
    # A rule in the database now refuses one particular audit entry: data that can never be written.
    await stack.pool.execute(POISON)
    await reg.act("improvement_plan", "submit", PLAN, comment="POISON pill")
    parked = await eventually(lambda: stack.pool.fetch("SELECT * FROM dead_letters WHERE workflow_id = $1", reg.id),
                              what="the dead letter", timeout=20)
    assert "audit entry refused" in parked[0]["error"] and parked[0]["parked_behind"] is None
    ready = (await stack.http.get("/health/ready")).json()
    assert ready["status"] == "degraded" and "regime dead-letters" in ready["checks"]["dead_letters"]
    page = (await stack.http.get("/web/regimes", headers=reg.users["operations"])).text
    assert 'id="dead-letters"' in page and "regime dead-letters replay" in page
    told = await stack.pool.fetchrow("SELECT recipients, subject FROM notifications WHERE workflow_id = $1 "
                                     "AND rung = 'dead_letter'", reg.id)
    assert told["recipients"] == ["operations"] and "dead letter" in told["subject"]

    # The regime decides and escalates as usual; what it writes waits behind the dead letter, in order.
    await reg.act("plan_review", "agree", comment="a credible plan")
    await reg.advance(30, diligent=False)
    st = await reg.state()
    assert st["steps"]["plan_review"]["status"] == "done"
    signoff_rungs = {e["rung"] for e in st["escalations"] if e["step_id"] == "plan_signoff_regulator"}
    assert {"reminder", "breach"} <= signoff_rungs, st["escalations"]
    assert await stack.pool.fetchval("SELECT count(*) FROM audit_log WHERE regime_id = $1 AND event = "
                                     "'plan_review.agree'", reg.id) == 0
    behind = await stack.pool.fetchval("SELECT count(*) FROM dead_letters WHERE workflow_id = $1 "
                                       "AND parked_behind IS NOT NULL", reg.id)
    assert behind >= 1

    # Replaying before the cause is fixed writes nothing and says so.
    r = await asyncio.to_thread(operator, stack, "dead-letters", "replay", "--by", "ops-on-call")
    assert r.returncode == 1 and "audit entry refused" in r.stdout, r.stdout + r.stderr
    # The operator fixes the cause and replays.
    await stack.pool.execute("DROP TRIGGER refuse_poison ON audit_log")
    r = await asyncio.to_thread(operator, stack, "dead-letters", "replay", "--by", "ops-on-call")
    assert r.returncode == 0, r.stdout + r.stderr
    assert await stack.pool.fetchval("SELECT count(*) FROM dead_letters WHERE replayed_at IS NULL") == 0
    assert await stack.pool.fetchval("SELECT count(DISTINCT replayed_by) FROM dead_letters") == 1
    await stack.settle(reg.id)
    assert (await stack.http.get("/health/ready")).json()["status"] == "ready"
    assert 'id="dead-letters"' not in (await stack.http.get("/web/regimes", headers=reg.users["operations"])).text

    # Everything the regime did is in the audit log, each entry once, in the order it happened.
    rows = await stack.pool.fetch("SELECT seq, event, reason FROM audit_log WHERE regime_id = $1 ORDER BY id",
                                  reg.id)
    seqs = [r["seq"] for r in rows]
    assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))
    events = [(r["event"], r["reason"]) for r in rows]
    assert ("improvement_plan.submit", "POISON pill") in events and ("plan_review.agree", "a credible plan") in events
    assert sum(1 for e, _ in events if e == "escalation") == len((await reg.state())["escalations"])
    v = (await stack.http.get(f"/regimes/{reg.id}/audit/verify", headers=reg.users["operations"])).json()
    assert v["intact"] is True and v["entries"] == len(rows)
    # And new effects are written straight away again.
    await reg.act("plan_signoff_regulator", "sign_off")
    await stack.settle(reg.id)
    assert await stack.pool.fetchval("SELECT count(*) FROM audit_log WHERE regime_id = $1 AND event = "
                                     "'plan_signoff_regulator.sign_off'", reg.id) == 1


async def test_a_nul_character_reaching_the_activity_is_parked_not_retried(stack):
    """The activity's own guarantee, whatever the API let through: text PostgreSQL cannot hold (U+0000)."""
    acts = EffectActivities(stack.pool, OutboxNotifier(), stack.settings.audit_key)
    batch = EffectBatch(workflow_id="regime-RDL2-x", regime_id="regime-RDL2-x", ods_code="RDL2", effects=[
        {"type": "audit", "seq": 1, "event": "improvement_plan.submit", "actor": "trust-1", "role": "trust",
         "request_id": None, "step_id": "improvement_plan", "step_kind": "improvement_plan", "reason": "fine\x00",
         "detail": {}, "at": "2026-12-01T12:00:00+00:00"}])
    env = ActivityEnvironment()
    assert await env.run(acts.apply_effects, batch) == 0
    # A retry of the same batch (a lost answer) parks nothing twice, and a later batch waits behind it.
    assert await env.run(acts.apply_effects, batch) == 0
    later = batch.model_copy(update={"effects": [batch.effects[0].model_copy(update={"seq": 2, "reason": "fine"})]})
    assert await env.run(acts.apply_effects, later) == 0
    rows = await stack.pool.fetch("SELECT first_seq, parked_behind, error, batch FROM dead_letters "
                                  "WHERE workflow_id = 'regime-RDL2-x' ORDER BY id")
    assert [(r["first_seq"], r["parked_behind"] is None) for r in rows] == [(1, True), (2, False)]
    assert "\x00" not in rows[0]["error"] and EffectBatch.model_validate_json(bytes(rows[0]["batch"])) == batch
    assert await stack.pool.fetchval("SELECT count(*) FROM audit_log WHERE workflow_id = 'regime-RDL2-x'") == 0


async def test_an_effect_of_unknown_kind_is_refused_loudly_and_parked_whole(stack):
    """A batch from a newer worker (or a parked one edited by hand) with an effect this code cannot write: the
    activity writes none of it (not the audit entry beside it either), parks it with an error that names the
    kind, and operations are told; it never retries it for ever."""
    acts = EffectActivities(stack.pool, OutboxNotifier(), stack.settings.audit_key)
    batch = EffectBatch.model_validate({"workflow_id": "regime-RDL3-x", "regime_id": "regime-RDL3-x",
                                        "ods_code": "RDL3", "effects": [
        {"type": "audit", "seq": 1, "event": "improvement_plan.submit", "actor": "trust-1", "role": "trust",
         "request_id": None, "step_id": "improvement_plan", "step_kind": "improvement_plan", "reason": "fine",
         "detail": {}, "at": "2026-12-01T12:00:00+00:00"},
        {"type": "funding_drawdown", "seq": 2, "amount_pence": 100}]})
    assert type(batch.effects[1]).__name__ == "UnknownEffect" and batch.effects[1].type == "funding_drawdown"
    assert await ActivityEnvironment().run(acts.apply_effects, batch) == 0
    row = await stack.pool.fetchrow("SELECT first_seq, last_seq, error, batch FROM dead_letters "
                                    "WHERE workflow_id = 'regime-RDL3-x'")
    assert (row["first_seq"], row["last_seq"]) == (1, 2)
    assert "UnknownEffectKind" in row["error"] and "funding_drawdown" in row["error"]
    # Parked as it came, unknown fields included, so a worker that knows the kind can replay it.
    assert EffectBatch.model_validate_json(bytes(row["batch"])).effects[1].model_dump()["amount_pence"] == 100
    assert await stack.pool.fetchval("SELECT count(*) FROM audit_log WHERE workflow_id = 'regime-RDL3-x'") == 0
    assert await stack.pool.fetchval("SELECT count(*) FROM notifications WHERE workflow_id = 'regime-RDL3-x' "
                                     "AND rung = 'dead_letter'") == 1
