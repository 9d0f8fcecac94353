"""Documents in PostgreSQL (migration 007, domain/documents.py): stored once by the API, read by reference."""

from __future__ import annotations

from typing import Any

import asyncpg

from domain.documents import DocumentRef, reference
from domain.programme import plan_index, progress_index
from domain.steps import Kind


async def store(pool: asyncpg.Pool, regime_id: str, step_id: str, kind: str, payload: dict[str, Any],
                created_by: str) -> DocumentRef:
    """Store a validated document (idempotent: the same content is the same row) and note its use by the
    regime's step; the workflow then receives only the returned reference."""
    ref, body = reference(kind, payload)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("INSERT INTO documents (sha256, kind, body, bytes, created_by) VALUES ($1,$2,$3,$4,$5) "
                           "ON CONFLICT (sha256) DO NOTHING", ref.sha256, kind, body, ref.bytes, created_by)
        await conn.execute("INSERT INTO document_uses (regime_id, step_id, sha256) VALUES ($1,$2,$3) "
                           "ON CONFLICT DO NOTHING", regime_id, step_id, ref.sha256)
    return ref


async def load(pool: asyncpg.Pool, regime_id: str, sha256: str) -> tuple[str, bytes] | None:
    """(kind, canonical JSON) of a document submitted to this regime, or None."""
    row = await pool.fetchrow("SELECT d.kind, d.body FROM documents d JOIN document_uses u USING (sha256) "
                              "WHERE u.regime_id = $1 AND d.sha256 = $2 LIMIT 1", regime_id, sha256)
    return (row["kind"], bytes(row["body"])) if row else None


def index_of(kind: str, content: dict[str, Any]) -> dict[str, Any]:
    """What the workflow keeps of a document besides its reference (domain/programme.py): a plan's summary, or a
    monthly report's statuses per action."""
    if kind == Kind.improvement_plan:
        return {"plan": plan_index(content).model_dump(mode="json")}
    if kind == Kind.monthly_return and content.get("actions"):
        return {"progress": progress_index(content["actions"]).model_dump(mode="json")}
    return {}
