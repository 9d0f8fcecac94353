"""The audit log's hash chain: how an entry is linked to the one before it, and how a chain is checked.

The effects activity (activities/effects.py) appends entries; the API, the checkpoints and the tools check them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any

import asyncpg

GENESIS = "0" * 64
HMAC = "hmac-sha256"  # rows written since migration 008: keyed with AUDIT_HMAC_KEY, which the database never holds
LEGACY = "sha256"  # rows written before it: plain SHA-256, anyone who can write the table can recompute them


def audit_hash(prev_hash: str, row: dict[str, Any], key: bytes | None = None) -> str:
    """An entry's link in its regime's chain: over its content and the previous entry's hash.

    With `key`, HMAC-SHA256 (who lacks the key cannot recompute a chain); without, the plain SHA-256 of the rows
    written before the chain was keyed (still checked, never written).
    """
    content = json.dumps(
        {k: row.get(k) for k in ("regime_id", "workflow_id", "seq", "event", "actor", "role", "step_id",
                                 "step_kind", "reason", "detail", "request_id", "at")},
        sort_keys=True, separators=(",", ":"), default=str,
    )
    msg = (prev_hash + content).encode()
    if key is None:
        return hashlib.sha256(msg).hexdigest()
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


@dataclass
class ChainCheck:
    """What a recomputation of one regime's chain found."""

    intact: bool
    entries: int  # entries in the chain (up to the first bad one when broken)
    first_bad_entry: str | None = None
    reason: str | None = None
    last_id: int | None = None  # the head checked (when intact)
    last_hash: str | None = None
    read: int = 0  # rows read and recomputed by this check
    marks: dict[int, tuple[int, str]] = field(default_factory=dict)  # id -> (position, hash), for `want` ids


async def verify_chain(conn: asyncpg.Connection, regime_id: str, key: bytes, *, after: ChainCheck | None = None,
                       want: tuple[int, ...] = ()) -> ChainCheck:
    """Recompute a regime's chain, from the start or from a head already checked (`after`).

    A row is checked with the algorithm it records: plain SHA-256 only up to the last row written before the
    chain was keyed (audit_legacy), HMAC-SHA256 with `key` after; a keyed row followed by a plain one, or a plain
    one written later, is a break. Rows whose id is in `want` have their position and hash noted (`marks`), so a
    checkpoint can be compared in the same pass.
    """
    legacy_max = await conn.fetchval("SELECT last_sha256_id FROM audit_legacy") or 0
    prev, n, start = (after.last_hash, after.entries, after.last_id) if after and after.intact else (GENESIS, 0, 0)
    read = 0
    marks: dict[int, tuple[int, str]] = {}
    last_id = start or None
    async for r in _iter_audit(conn, regime_id, start or 0):
        n += 1
        read += 1
        row = dict(r)
        row["at"] = r["at"].isoformat()
        alg = r["hash_alg"]
        if alg == LEGACY and r["id"] > legacy_max:
            return ChainCheck(False, n, str(r["id"]), "entry claims the unkeyed algorithm but was written after "
                              "the chain was keyed", read=read, marks=marks)
        if r["prev_hash"] != prev:
            return ChainCheck(False, n, str(r["id"]), "entry does not follow the one before it", read=read,
                              marks=marks)
        if audit_hash(prev, row, key if alg == HMAC else None) != r["hash"]:
            return ChainCheck(False, n, str(r["id"]), "entry's content does not match its hash (changed, or "
                              "hashed without the key)" if alg == HMAC else "entry's content does not match its "
                              "hash", read=read, marks=marks)
        if r["id"] in want:
            marks[r["id"]] = (n, r["hash"])
        prev, last_id = r["hash"], r["id"]
    return ChainCheck(True, n, None, None, last_id, prev if n else None, read, marks)


async def _iter_audit(conn: asyncpg.Connection, regime_id: str, after_id: int = 0):
    async with conn.transaction():
        async for r in conn.cursor("SELECT * FROM audit_log WHERE regime_id = $1 AND id > $2 ORDER BY id",
                                   regime_id, after_id):
            yield r
