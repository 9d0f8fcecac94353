"""The effects activity: writes tasks, audit entries, notifications and the regime projection.

One batch is one transaction. Every write is keyed by (workflow id, seq), a counter kept in workflow
state, so a retried activity or a replayed workflow writes nothing twice. The chain's rules (how an entry
is hashed, how a chain is checked) are in infra/audit_chain.py; the operator's replay of parked batches in
tools/dead_letters.py.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import asyncpg
from temporalio import activity

from infra.audit_chain import GENESIS, HMAC, audit_hash
from infra.notify import Notifier
from workflows.common import (
    APPLY_EFFECTS,
    AuditEffect,
    EffectBatch,
    EndBuddy,
    Notify,
    RegimeProjection,
    StartBuddy,
    TaskClose,
    TaskOpen,
    UnknownEffect,
)


class EffectActivities:
    def __init__(self, pool: asyncpg.Pool, notifier: Notifier, audit_key: bytes) -> None:
        self.pool = pool
        self.notifier = notifier
        self.audit_key = audit_key

    @activity.defn(name=APPLY_EFFECTS)
    async def apply_effects(self, batch: EffectBatch) -> int:
        """Write the batch in one transaction; a batch PostgreSQL can never take is parked as a dead letter.

        Returns the number of rows written (0 when parked). Only infrastructure failures raise (and are
        retried by the workflow's bounded policy); anything else would fail on every attempt, so it is
        parked with its error, operations are told, and the workflow carries on. Later batches of the same
        workflow are parked behind it until `regime dead-letters replay` has written them in order.
        """
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                await lock_workflow(conn, batch.workflow_id)
                behind = await conn.fetchval("SELECT min(id) FROM dead_letters WHERE workflow_id = $1 "
                                             "AND replayed_at IS NULL", batch.workflow_id)
                if behind is None:
                    return await write_batch(conn, batch, self.notifier, self.audit_key)
        except TRANSIENT:
            raise
        except Exception as e:  # noqa: BLE001 - anything else fails on every attempt: park it, never loop
            return await self._park(batch, f"{type(e).__name__}: {e}", None)
        return await self._park(batch, f"parked behind dead letter {behind}", behind)

    async def _park(self, batch: EffectBatch, error: str, behind: int | None) -> int:
        error = error.replace("\x00", "\\u0000")[:4000]
        first = min(e.seq for e in batch.effects) if batch.effects else 0
        last = max(e.seq for e in batch.effects) if batch.effects else 0
        async with self.pool.acquire() as conn, conn.transaction():
            await lock_workflow(conn, batch.workflow_id)
            dl = await conn.fetchval(
                """
                INSERT INTO dead_letters (workflow_id, regime_id, ods_code, first_seq, last_seq, batch, error,
                                          parked_behind)
                VALUES ($1,$2,$3,$4,$5,$6,$7,$8) ON CONFLICT (workflow_id, first_seq) DO NOTHING RETURNING id
                """,
                batch.workflow_id, batch.regime_id, batch.ods_code, first, last,
                batch.model_dump_json().encode(), error, behind)
            if dl is not None and behind is None:
                # Tell operations once per stoppage, not once per batch parked behind it. The outbox key
                # (workflow, seq) takes the dead letter's id negated: effect seqs are positive.
                await conn.execute(
                    """
                    INSERT INTO notifications (workflow_id, seq, regime_id, step_id, rung, recipients, subject, body)
                    VALUES ($1,$2,$3,NULL,'dead_letter',$4,$5,$6) ON CONFLICT (workflow_id, seq) DO NOTHING
                    """,
                    batch.workflow_id, -dl, batch.regime_id, ["operations"],
                    f"[dead letter] {batch.ods_code}: effects of {batch.workflow_id} could not be written",
                    f"Dead letter {dl} (effects {first}-{last}): {error}. The regime carries on; its later "
                    "effects wait behind this one. Fix the cause, then run `regime dead-letters replay`.")
        activity.logger.error("effects %s-%s of %s parked as a dead letter: %s", first, last, batch.workflow_id,
                              error)
        return 0


# Failures worth retrying: the database or the network, not the data. Anything else is parked.
TRANSIENT = (OSError, TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
             asyncpg.exceptions.TransactionRollbackError, asyncpg.exceptions.OperatorInterventionError,
             asyncpg.exceptions.InsufficientResourcesError, asyncpg.exceptions.CannotConnectNowError,
             asyncpg.exceptions.TooManyConnectionsError)


async def lock_workflow(conn: asyncpg.Connection, workflow_id: str) -> None:
    """Serialise the writers of one workflow's effects: the activity and the dead-letter replay."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"effects:{workflow_id}")


class UnknownEffectKind(ValueError):
    """A batch holds an effect of a kind this code cannot write: the whole batch is parked, never half written."""


async def write_batch(conn: asyncpg.Connection, batch: EffectBatch, notifier: Notifier, audit_key: bytes) -> int:
    unknown = sorted({e.type for e in batch.effects if isinstance(e, UnknownEffect)})
    if unknown:
        raise UnknownEffectKind(f"effects of unknown kind {', '.join(unknown)} (known: audit, task_open, "
                                f"task_close, notify, start_buddy, end_buddy): written by a newer worker?")
    written = 0
    if batch.projection:
        await _upsert_regime(conn, batch)
    for eff in batch.effects:
        match eff:
            case AuditEffect():
                written += await append_audit(conn, batch.regime_id, batch.workflow_id, eff.model_dump(), audit_key)
            case TaskOpen():
                written += await _task_open(conn, batch, eff)
            case TaskClose():
                written += await _task_close(conn, batch, eff)
            case Notify():
                written += await notifier.enqueue(conn, batch, eff.model_dump())
            case StartBuddy() | EndBuddy():
                pass  # done by the regime workflow itself before it sent the batch
    return written


# The projection's columns, in the order of RegimeProjection; the statement is built from the model's fields, so
# a field added there is a column written here (and the migration adding it is the only other change).
_PROJECTION = list(RegimeProjection.model_fields)
_UPDATED_ON_CONFLICT = [c for c in _PROJECTION if c not in ("regime_id", "ods_code", "trust_name", "multi_site",
                                                            "entry_date", "previous_regime_id")]
_UPSERT_REGIME = f"""
    INSERT INTO regimes ({", ".join(_PROJECTION)}, workflow_id, last_seq, updated_at)
    VALUES ({", ".join(f"${i}" for i in range(1, len(_PROJECTION) + 3))}, now())
    ON CONFLICT (regime_id) DO UPDATE SET
        {", ".join(f"{c} = EXCLUDED.{c}" for c in _UPDATED_ON_CONFLICT)}, last_seq = EXCLUDED.last_seq,
        updated_at = now()
    WHERE regimes.last_seq <= EXCLUDED.last_seq
"""


async def _upsert_regime(conn: asyncpg.Connection, b: EffectBatch) -> None:
    assert b.projection is not None
    p = b.projection
    last_seq = max((e.seq for e in b.effects), default=0)
    await conn.execute(_UPSERT_REGIME, *(getattr(p, c) for c in _PROJECTION), b.workflow_id, last_seq)


async def _task_open(conn: asyncpg.Connection, b: EffectBatch, eff: TaskOpen) -> int:
    t = eff.step
    r = await conn.execute(
        """
        INSERT INTO tasks (workflow_id, step_id, regime_id, ods_code, kind, title, role, assignee, subject, due,
                           paused, state, last_seq)
        VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,'open',$12)
        ON CONFLICT (workflow_id, step_id) DO UPDATE SET due = EXCLUDED.due, paused = EXCLUDED.paused,
            assignee = EXCLUDED.assignee, last_seq = EXCLUDED.last_seq
        WHERE tasks.last_seq < EXCLUDED.last_seq
        """,
        b.workflow_id, t.step_id, b.regime_id, b.ods_code, t.kind, t.title, t.role, t.assignee, t.subject, t.due,
        t.paused, eff.seq,
    )
    return int(r.split()[-1])


async def _task_close(conn: asyncpg.Connection, b: EffectBatch, eff: TaskClose) -> int:
    r = await conn.execute(
        """
        UPDATE tasks SET state = $3, outcome = $4, closed_by = $5, closed_at = coalesce($7, now()), last_seq = $6
        WHERE workflow_id = $1 AND step_id = $2 AND last_seq < $6
        """,
        b.workflow_id, eff.step_id, eff.state, eff.outcome, eff.closed_by, eff.seq,
        datetime.fromisoformat(eff.at) if eff.at else None,
    )
    return int(r.split()[-1])


async def append_audit(conn: asyncpg.Connection, regime_id: str, workflow_id: str, eff: dict[str, Any],
                       key: bytes) -> int:
    # Serialise writers of one regime's chain; the unique key makes a retried write a no-op.
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"audit:{regime_id}")
    exists = await conn.fetchval("SELECT 1 FROM audit_log WHERE workflow_id = $1 AND seq = $2",
                                 workflow_id, eff["seq"])
    if exists:
        return 0
    prev = await conn.fetchval("SELECT hash FROM audit_log WHERE regime_id = $1 ORDER BY id DESC LIMIT 1",
                               regime_id) or GENESIS
    row = {**eff, "regime_id": regime_id, "workflow_id": workflow_id}
    row["detail"] = json.loads(json.dumps(eff.get("detail") or {}, default=str))
    h = audit_hash(prev, row, key)
    await conn.execute(
        """
        INSERT INTO audit_log (regime_id, workflow_id, seq, event, actor, role, step_id, step_kind, reason, detail,
                               request_id, at, prev_hash, hash, hash_alg)
        VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15)
        """,
        regime_id, workflow_id, eff["seq"], eff["event"], eff["actor"], eff["role"], eff.get("step_id"),
        eff.get("step_kind"), eff.get("reason"), row["detail"], eff.get("request_id"),
        datetime.fromisoformat(eff["at"]), prev, h, HMAC,
    )
    return 1
