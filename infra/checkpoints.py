"""Signed checkpoints of each audit chain's head, kept outside the database, and chain verification with them.

A keyed chain (infra/audit_chain.py) cannot be rewritten without the key, but it can be cut: deleting the
newest entries leaves a shorter chain that still verifies. A checkpoint records a chain's head {regime_id,
last_id, last_hash, count, at}, signed with the audit key, and is written to AUDIT_CHECKPOINT_DIR (one file per
regime, replaced atomically) and to the notification outbox (which the SMTP relay sends on). Verification then
also checks that the chain still reaches the latest checkpoint's head with the same hash and position.

Verifying a chain is cached per chain head: an unchanged head is not recomputed, and a longer one only from
the head already checked.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import tempfile
from collections import OrderedDict
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from infra.audit_chain import ChainCheck, verify_chain
from settings import Settings

CHECKPOINT_RUNG = "audit_checkpoint"
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_CACHE_MAX = 10_000


def _checkpoint_key(key: bytes) -> bytes:
    # Its own key, derived from the audit key: a signature over a checkpoint is never a valid chain link.
    return hmac.new(key, b"special-measures audit checkpoint v1", hashlib.sha256).digest()


def sign(payload: dict[str, Any], key: bytes) -> str:
    body = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hmac.new(_checkpoint_key(key), body.encode(), hashlib.sha256).hexdigest()


def checkpoint_path(settings: Settings, regime_id: str) -> Path | None:
    if not _SAFE_ID.fullmatch(regime_id):
        return None
    return settings.checkpoint_dir / settings.database_schema / f"{regime_id}.json"


def load_checkpoint(settings: Settings, regime_id: str) -> tuple[dict[str, Any] | None, str | None]:
    """(the latest checkpoint, None), (None, None) when there is none, or (None, why) when it cannot be trusted."""
    path = checkpoint_path(settings, regime_id)
    if path is None or not path.exists():
        return None, None
    try:
        doc = json.loads(path.read_text())
        payload, sig = doc["checkpoint"], doc["signature"]
    except (OSError, ValueError, KeyError, TypeError):
        return None, f"checkpoint file {path.name} is unreadable"
    if not isinstance(payload, dict) or not isinstance(sig, str) or not hmac.compare_digest(sign(payload, settings.audit_key), sig):
        return None, "checkpoint signature is not valid (the file was changed, or signed with another key)"
    if payload.get("regime_id") != regime_id or not isinstance(payload.get("last_id"), int) \
            or not isinstance(payload.get("count"), int) or not isinstance(payload.get("last_hash"), str):
        return None, "checkpoint does not describe this chain"
    return payload, None


def _against_checkpoint(check: ChainCheck, cp: dict[str, Any], mark: tuple[int, str] | None) -> str | None:
    """Why the chain does not reach the checkpoint's head, or None when it does."""
    if mark is None:
        if (check.last_id or 0) < cp["last_id"] or check.entries < cp["count"]:
            return (f"the chain is shorter than its checkpoint of {cp['at']}: {check.entries} entries, the "
                    f"checkpoint recorded {cp['count']} up to entry {cp['last_id']} (entries were removed)")
        return f"entry {cp['last_id']} recorded by the checkpoint of {cp['at']} is no longer in the chain"
    position, h = mark
    if h != cp["last_hash"] or position != cp["count"]:
        return (f"the chain diverges from its checkpoint of {cp['at']}: entry {cp['last_id']} is now at position "
                f"{position} with another hash (the checkpoint recorded {cp['count']})")
    return None


class ChainVerifier:
    """Verifies chains against their checkpoints, remembering each intact head it has checked (per process)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._heads: OrderedDict[tuple[str, str], ChainCheck] = OrderedDict()

    async def verify(self, conn: asyncpg.Connection, regime_id: str, *, use_cache: bool = True) -> dict[str, Any]:
        s = self.settings
        cp, cp_error = load_checkpoint(s, regime_id)
        ck = (s.database_schema, regime_id)
        head = await conn.fetchrow("SELECT id, hash FROM audit_log WHERE regime_id = $1 ORDER BY id DESC LIMIT 1",
                                   regime_id)
        known = self._heads.get(ck) if use_cache else None
        want = (cp["last_id"],) if cp else ()
        cached = False
        if known and head and known.last_id == head["id"] and known.last_hash == head["hash"]:
            check, cached = known, True
        elif known and head and head["id"] > (known.last_id or 0):
            more = await verify_chain(conn, regime_id, s.audit_key, after=known, want=want)
            check = more
        else:
            check = await verify_chain(conn, regime_id, s.audit_key, want=want)
        mark = check.marks.get(cp["last_id"]) if cp else None
        if cp and mark is None and check.intact and cp["last_id"] <= (check.last_id or 0):
            # The checkpoint's entry lies in the part checked earlier: look it up, without re-reading the chain.
            r = await conn.fetchrow("SELECT hash, (SELECT count(*) FROM audit_log WHERE regime_id = $1 AND id <= $2)"
                                    " AS position FROM audit_log WHERE regime_id = $1 AND id = $2", regime_id,
                                    cp["last_id"])
            mark = (r["position"], r["hash"]) if r else None
        if check.intact and known and (check.last_id or 0) < (known.last_id or 0):
            # Shorter than this process saw it intact: the newest entries were cut (checkpoint or not).
            check = ChainCheck(False, check.entries, None, f"the chain ends at entry {check.last_id} with "
                               f"{check.entries} entries, but reached entry {known.last_id} with {known.entries} "
                               "when last verified (entries were removed)", read=check.read)
        if check.intact:
            self._remember(ck, check)
        elif check.first_bad_entry is not None:
            self._heads.pop(ck, None)  # broken within: nothing earlier is vouched for any more
        intact, reason = check.intact, check.reason
        if intact and cp_error:
            intact, reason = False, cp_error
        elif intact and cp:
            why = _against_checkpoint(check, cp, mark)
            if why:
                intact, reason = False, why
        return {"regime_id": regime_id, "intact": intact, "entries": check.entries,
                "first_bad_entry": check.first_bad_entry, "reason": reason,
                "checkpoint": {k: cp[k] for k in ("last_id", "count", "at")} if cp else None,
                "cached": cached, "entries_read": 0 if cached else check.read}

    def _remember(self, key: tuple[str, str], check: ChainCheck) -> None:
        self._heads[key] = ChainCheck(**{**asdict(check), "marks": {}, "read": 0})
        self._heads.move_to_end(key)
        while len(self._heads) > _CACHE_MAX:
            self._heads.popitem(last=False)


async def write_checkpoints(pool: asyncpg.Pool, settings: Settings,
                            regime_ids: list[str] | None = None) -> list[dict[str, Any]]:
    """Verify each chain in full and, when intact (and still reaching its last checkpoint), sign its head.

    A broken chain is not signed (that would bless the damage): it is reported, and its old checkpoint stays.
    """
    verifier = ChainVerifier(settings)
    out: list[dict[str, Any]] = []
    async with pool.acquire() as conn:
        ids = regime_ids or [r["regime_id"] for r in await conn.fetch(
            "SELECT DISTINCT regime_id FROM audit_log ORDER BY 1")]
        for rid in ids:
            result = await verifier.verify(conn, rid, use_cache=False)
            head = verifier._heads.get((settings.database_schema, rid))
            if not result["intact"] or head is None or head.last_id is None:
                out.append({"regime_id": rid, "intact": False, "reason": result["reason"] or "no entries"})
                continue
            payload = {"regime_id": rid, "schema": settings.database_schema, "last_id": head.last_id,
                       "last_hash": head.last_hash, "count": head.entries,
                       "at": datetime.now(UTC).isoformat(timespec="seconds")}
            doc = {"checkpoint": payload, "signature": sign(payload, settings.audit_key)}
            path = checkpoint_path(settings, rid)
            if path is not None:
                _write_atomically(path, json.dumps(doc, indent=1, sort_keys=True))
            workflow_id = await conn.fetchval("SELECT workflow_id FROM audit_log WHERE id = $1", head.last_id)
            await conn.execute(
                """
                INSERT INTO notifications (workflow_id, seq, regime_id, step_id, rung, recipients, subject, body)
                VALUES ($1,$2,$3,NULL,$4,$5,$6,$7) ON CONFLICT (workflow_id, seq) DO NOTHING
                """,
                f"audit-checkpoint:{workflow_id}", head.last_id, rid, CHECKPOINT_RUNG, ["operations"],
                f"[audit checkpoint] {rid}: {head.entries} entries up to {head.last_id}",
                json.dumps(doc, sort_keys=True))
            out.append({"regime_id": rid, "intact": True, **{k: payload[k] for k in ("last_id", "count", "at")},
                        "file": str(path) if path else None})
    return out


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
