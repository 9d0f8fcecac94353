"""Bearer JWTs: a shared secret (HS256) for local use, an OIDC issuer's JWKS in production.

Claims used: `sub` (a user id, never a name), `roles` (list), `trusts` (ODS codes the user is assigned
to, for trust, improvement director and commissioner users), `org` (the user's own organisation ODS
code: for a buddy user, the buddy trust). `exp`, `iat` and `sub` are required, a token may live at most
AUTH_MAX_TOKEN_LIFETIME_SECONDS, clocks may differ by AUTH_CLOCK_LEEWAY_SECONDS, and the service's own
identity (`system`, domain.models.SYSTEM) is never a token's subject or role. A refused token gets one
generic 401; the reason is logged (docs/security.md).
"""

from __future__ import annotations

import logging
import time
import uuid
from functools import lru_cache
from typing import Any

import anyio
import jwt
from pydantic import BaseModel

from api.errors import Problem
from domain.models import ROLES, SYSTEM
from domain.vocab import Role
from settings import Settings

log = logging.getLogger(__name__)

# Roles that act only for the trusts in the token's `trusts` claim, and roles that act for every trust.
SCOPED_ROLES: tuple[Role, ...] = (Role.trust, Role.improvement_director, Role.commissioner)
NATIONAL_ROLES: tuple[Role, ...] = (Role.regulator, Role.cqc, Role.admin)
# The service writes its own audit entries as SYSTEM: no person may carry that identity or role.
RESERVED_PREFIX = SYSTEM.user_id
MAX_SUB_LENGTH = 200  # Actor.user_id's bound
# JWKS lookups run in threads (they may fetch from the identity provider); a few suffice, since
# PyJWKClient serialises them under one lock, and a slow provider must not take FastAPI's threadpool.
_JWKS_THREADS = anyio.CapacityLimiter(4)
_JWKS_TIMEOUT_SECONDS = 10


class User(BaseModel):
    sub: str
    roles: list[Role]
    trusts: list[str] = []
    org: str | None = None
    person: str | None = None  # the AUTH_PERSON_CLAIM claim: one person may hold several accounts

    def has(self, *roles: Role | str) -> bool:
        return any(r in self.roles for r in roles)

    def may_act_for_trust(self, role: Role | str, ods: str) -> bool:
        if role not in self.roles:
            return False
        if role in NATIONAL_ROLES:
            return True
        if role in SCOPED_ROLES:
            return ods in self.trusts
        return False

    def may_act_as_buddy(self, buddy_ods: str | None) -> bool:
        """A buddy acts only with the buddy role, and only for its own organisation's partnership."""
        return Role.buddy in self.roles and bool(buddy_ods) and self.org == buddy_ods

    def may_read_trust(self, ods: str) -> bool:
        """The one visibility rule for a trust's regimes, for reads and lists alike (`readable_trusts`)."""
        trusts = self.readable_trusts()
        return trusts is None or ods in trusts

    def readable_trusts(self) -> list[str] | None:
        """The trusts whose regimes this user may read: None for every trust (operations and the national
        roles), else the `trusts` claim, but only with a trust-scoped role: a buddy-only token carrying
        `trusts` reads nothing by it (its partnerships are read through `may_act_as_buddy`)."""
        if self.has(Role.operations, *NATIONAL_ROLES):
            return None
        return list(self.trusts) if self.has(*SCOPED_ROLES) else []


def mint_token(settings: Settings, sub: str, roles: list[str], trusts: list[str] | None = None,
               org: str | None = None, ttl_seconds: int = 8 * 3600) -> str:
    """A local HS256 token; never longer-lived than the service accepts (AUTH_MAX_TOKEN_LIFETIME_SECONDS)."""
    for r in roles:
        if r not in ROLES:
            raise ValueError(f"unknown role {r!r}; roles are {', '.join(ROLES)}")
    if reserved(sub):
        raise ValueError(f"{sub!r} is the service's own identity")
    now = int(time.time())
    claims = {"sub": sub, "roles": roles, "trusts": trusts or [], "iss": settings.auth_issuer,
              "aud": settings.auth_audience, "iat": now,
              "exp": now + min(ttl_seconds, settings.auth_max_token_lifetime_seconds), "jti": str(uuid.uuid4())}
    if org:
        claims["org"] = org
    return jwt.encode(claims, settings.auth_jwt_secret.get_secret_value(), algorithm="HS256")


def reserved(sub: str) -> bool:
    return sub.strip().casefold().startswith(RESERVED_PREFIX)


@lru_cache(maxsize=8)
def _jwks_client(url: str, lifespan: float, cooldown: float) -> jwt.PyJWKClient:
    # The key set is cached for `lifespan` seconds, so a key the identity provider has withdrawn stops
    # being trusted within that time; a token with an unknown key id refetches it at most once per
    # `cooldown` seconds (PyJWKClient's own rate limit), so forged key ids cannot hammer the provider.
    # No per-key cache (cache_keys): it never expires.
    return jwt.PyJWKClient(url, cache_keys=False, cache_jwk_set=True, lifespan=lifespan,
                           cooldown_duration=cooldown, timeout=_JWKS_TIMEOUT_SECONDS)


class _Refused(Exception):
    """A token that fails a check: the reason is for the log, never for the caller."""


def _invalid(reason: str) -> Problem:
    log.warning("bearer token refused: %s", reason)
    return Problem(401, "token-invalid", "the bearer token is not valid",
                   headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


def _claims(settings: Settings, token: str) -> dict[str, Any]:
    common: dict[str, Any] = {
        "audience": settings.auth_audience, "issuer": settings.auth_issuer,
        "leeway": settings.auth_clock_leeway_seconds,
        "options": {"require": ["exp", "iat", "sub"]},
    }
    if settings.auth_jwks_url:
        client = _jwks_client(settings.auth_jwks_url, settings.auth_jwks_cache_seconds,
                              settings.auth_jwks_refresh_cooldown_seconds)
        key = client.get_signing_key_from_jwt(token).key
        return jwt.decode(token, key, algorithms=["RS256", "ES256"], **common)
    return jwt.decode(token, settings.auth_jwt_secret.get_secret_value(), algorithms=["HS256"], **common)


def _user(settings: Settings, claims: dict[str, Any]) -> User:
    sub, roles, trusts, org = claims.get("sub"), claims.get("roles"), claims.get("trusts") or [], claims.get("org")
    iat, exp = claims.get("iat"), claims.get("exp")
    if not isinstance(sub, str) or not sub.strip() or len(sub) > MAX_SUB_LENGTH:
        raise _Refused("sub is not a non-empty string of at most 200 characters")
    if reserved(sub):
        raise _Refused(f"sub {sub!r} is the service's own identity")
    for name, v in (("iat", iat), ("exp", exp)):
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise _Refused(f"{name} is not a number")
    if exp - iat > settings.auth_max_token_lifetime_seconds:
        raise _Refused(f"lifetime {exp - iat:.0f} s exceeds {settings.auth_max_token_lifetime_seconds} s")
    if not isinstance(roles, list) or not all(isinstance(r, str) and r in ROLES for r in roles):
        raise _Refused("roles is missing or names an unknown role")
    if not isinstance(trusts, list) or not all(isinstance(t, str) for t in trusts):
        raise _Refused("trusts is not a list of strings")
    if org is not None and not isinstance(org, str):
        raise _Refused("org is not a string")
    person = claims.get(settings.auth_person_claim) if settings.auth_person_claim else None
    if person is not None and (not isinstance(person, str) or not person.strip() or len(person) > MAX_SUB_LENGTH):
        raise _Refused(f"{settings.auth_person_claim} is not a non-empty string of at most 200 characters")
    return User(sub=sub, roles=roles, trusts=trusts, org=org, person=person)


def verify(settings: Settings, token: str) -> User:
    """The token's user, or a 401 Problem. May fetch the identity provider's keys: call `authenticate`
    from async code."""
    try:
        return _user(settings, _claims(settings, token))
    except jwt.ExpiredSignatureError:
        raise Problem(401, "token-expired", "the bearer token has expired",
                      headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}) from None
    except jwt.PyJWKClientConnectionError as e:
        log.warning("identity provider keys unavailable: %s", e)
        raise Problem(503, "identity-provider-unavailable",
                      "the identity provider's keys cannot be fetched; try again shortly",
                      headers={"Retry-After": "10"}) from None
    except (jwt.PyJWTError, _Refused) as e:
        raise _invalid(f"{type(e).__name__}: {e}") from None


async def authenticate(settings: Settings, token: str) -> User:
    """`verify` without blocking the event loop: with a JWKS URL the key lookup may wait on the network,
    so it runs in a worker thread; HS256 verification is CPU-only and quick."""
    if settings.auth_jwks_url:
        return await anyio.to_thread.run_sync(verify, settings, token, limiter=_JWKS_THREADS)
    return verify(settings, token)
