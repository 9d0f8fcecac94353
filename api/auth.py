"""Bearer JWTs: a shared secret (HS256) for local use, an OIDC issuer's JWKS in production.

Claims used: `sub` (a user id, never a name), `roles` (list), `trusts` (ODS codes the user is assigned
to, for trust, improvement director and commissioner users), `org` (the user's own organisation ODS
code: for a buddy user, the buddy trust).
"""

from __future__ import annotations

import time
import uuid
from functools import lru_cache

import jwt
from pydantic import BaseModel

from api.errors import Problem
from domain.models import ROLES
from settings import Settings

SCOPED_ROLES = ("trust", "improvement_director", "commissioner")
NATIONAL_ROLES = ("regulator", "cqc", "admin")


class User(BaseModel):
    sub: str
    roles: list[str]
    trusts: list[str] = []
    org: str | None = None

    def has(self, *roles: str) -> bool:
        return any(r in self.roles for r in roles)

    def may_act_for_trust(self, role: str, ods: str) -> bool:
        if role not in self.roles:
            return False
        if role in NATIONAL_ROLES:
            return True
        if role in SCOPED_ROLES:
            return ods in self.trusts
        return False

    def may_act_as_buddy(self, buddy_ods: str | None) -> bool:
        """A buddy acts only with the buddy role, and only for its own organisation's partnership."""
        return "buddy" in self.roles and bool(buddy_ods) and self.org == buddy_ods

    def may_read_trust(self, ods: str) -> bool:
        if self.has("operations", *NATIONAL_ROLES):
            return True
        return any(r in self.roles for r in SCOPED_ROLES) and ods in self.trusts


def mint_token(settings: Settings, sub: str, roles: list[str], trusts: list[str] | None = None,
               org: str | None = None, ttl_seconds: int = 8 * 3600) -> str:
    for r in roles:
        if r not in ROLES:
            raise ValueError(f"unknown role {r!r}; roles are {', '.join(ROLES)}")
    now = int(time.time())
    claims = {"sub": sub, "roles": roles, "trusts": trusts or [], "iss": settings.auth_issuer,
              "aud": settings.auth_audience, "iat": now, "exp": now + ttl_seconds, "jti": str(uuid.uuid4())}
    if org:
        claims["org"] = org
    return jwt.encode(claims, settings.auth_jwt_secret, algorithm="HS256")


@lru_cache(maxsize=4)
def _jwks_client(url: str) -> jwt.PyJWKClient:
    return jwt.PyJWKClient(url, cache_keys=True)


def verify(settings: Settings, token: str) -> User:
    try:
        if settings.auth_jwks_url:
            key = _jwks_client(settings.auth_jwks_url).get_signing_key_from_jwt(token).key
            claims = jwt.decode(token, key, algorithms=["RS256", "ES256"], audience=settings.auth_audience,
                                issuer=settings.auth_issuer)
        else:
            claims = jwt.decode(token, settings.auth_jwt_secret, algorithms=["HS256"],
                                audience=settings.auth_audience, issuer=settings.auth_issuer)
    except jwt.ExpiredSignatureError:
        raise Problem(401, "token-expired", "the bearer token has expired",
                      headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}) from None
    except jwt.PyJWTError as e:
        raise Problem(401, "token-invalid", f"the bearer token is not valid: {e}",
                      headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}) from None
    roles = claims.get("roles")
    if not isinstance(roles, list) or not all(isinstance(r, str) and r in ROLES for r in roles):
        raise Problem(401, "token-invalid", "the token's roles claim is missing or unknown")
    trusts = claims.get("trusts") or []
    if not isinstance(trusts, list):
        raise Problem(401, "token-invalid", "the token's trusts claim must be a list")
    return User(sub=str(claims["sub"]), roles=roles, trusts=[str(t) for t in trusts], org=claims.get("org"))
