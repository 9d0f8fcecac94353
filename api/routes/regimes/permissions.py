"""Who may do what to a regime: which regimes a user may see, in which role a user acts, object-level rules
(the user's trust, the buddy's own partnership) and separation of duties. Every route checks here first,
before Temporal is asked anything."""

from __future__ import annotations

from typing import Any

import asyncpg
from pydantic import ValidationError

from api.auth import User
from api.errors import Problem
from domain.models import Actor


def unknown_regime(regime_id: str) -> Problem:
    """The one answer for a regime that does not exist *and* for one the user may not see (issue 17,
    finding 9): a user of another trust cannot tell the two apart, by status, type or detail."""
    return Problem(404, "unknown-regime", f"no regime '{regime_id}'")


async def regime_row(pool: asyncpg.Pool, regime_id: str, user: User | None = None, *,
                     as_buddy: bool = False) -> asyncpg.Record:
    """The regime's projection row; with `user`, only if the user may see the regime (its trust's
    readers, and with `as_buddy` the buddy of one of its partnerships), else the same 404 as for a regime
    that does not exist. Checked before anything else is read, Temporal included."""
    row = await pool.fetchrow("SELECT * FROM regimes WHERE regime_id = $1", regime_id)
    if row is None:
        raise unknown_regime(regime_id)
    if user is not None and not user.may_read_trust(row["ods_code"]):
        if not (as_buddy and user.may_act_as_buddy(user.org) and await pool.fetchval(
                "SELECT 1 FROM tasks WHERE regime_id = $1 AND subject->>'buddy_ods' = $2 LIMIT 1",
                regime_id, user.org)):
            raise unknown_regime(regime_id)
    return row


def require_read(user: User, row: asyncpg.Record) -> None:
    if not user.may_read_trust(row["ods_code"]):
        raise unknown_regime(row["regime_id"])


def acting_role(user: User, wanted: str | None, fallback: str | None = None) -> str:
    if wanted:
        if wanted not in user.roles:
            raise Problem(403, "role-not-held", f"you do not hold the role '{wanted}'")
        return wanted
    if fallback and fallback in user.roles:
        return fallback
    actors = [r for r in user.roles if r != "operations"]
    if not actors:
        raise Problem(403, "read-only", "operations users read everything and change nothing")
    return actors[0]


def require_act(user: User, role: str, ods: str, subject: dict[str, Any] | None = None) -> None:
    if role == "operations":
        raise Problem(403, "read-only", "operations users read everything and change nothing")
    partner_org = (subject or {}).get("buddy_ods")
    if partner_org and role != "buddy" and user.org == partner_org:
        raise Problem(403, "separation-of-duties",
                      f"a member of the buddy trust {partner_org} cannot act for another party of its partnership")
    if role == "buddy":
        # The buddy role and the buddy's own organisation, both: an org claim alone is not a party.
        if not user.may_act_as_buddy((subject or {}).get("buddy_ods")):
            raise Problem(403, "forbidden-partnership", "a buddy acts only on its own partnership")
        return
    if not user.may_act_for_trust(role, ods):
        raise Problem(403, "forbidden-trust", f"as {role.replace('_', ' ')} you are not assigned to trust {ods}")


def actor(user: User, role: str, rid: str) -> Actor:
    try:
        # The request id comes from a header, which may carry bytes no record should hold: drop them.
        clean_rid = "".join(c for c in rid if c.isprintable())[:100] or None
        return Actor(user_id=user.sub, role=role, request_id=clean_rid, person_id=user.person)  # type: ignore[arg-type]
    except ValidationError:
        raise Problem(401, "unauthenticated", "the token's subject is not a usable user id (control characters)",
                      headers={"WWW-Authenticate": "Bearer"}) from None


def require_may_place(user: User) -> None:
    if not user.has("regulator", "admin"):
        raise Problem(403, "forbidden-role", "only the regulator places a trust in special measures")


def require_may_tune(user: User, continue_as_new_after_events: int | None) -> None:
    """Operational tuning of a placement is an admin's."""
    if continue_as_new_after_events is not None and not user.has("admin"):
        raise Problem(403, "forbidden-role", "continue_as_new_after_events is an admin setting")


def placing_role(user: User) -> str:
    return "regulator" if user.has("regulator") else "admin"


def announcing_role(user: User) -> str:
    """CQC announces its re-inspection; the regulator may record the date for it."""
    return acting_role(user, None, "cqc" if user.has("cqc") else "regulator")


def delegating_role(user: User) -> str:
    """The regulator records cover for the appointed improvement director, or that director does."""
    return "regulator" if user.has("regulator") else "improvement_director"
