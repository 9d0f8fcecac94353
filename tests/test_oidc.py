"""Tokens from an identity provider, verified against its JWKS (RS256), on the real stack."""

from __future__ import annotations

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from api.auth import mint_token
from tests.harness import run_stack
from tests.test_security import ISSUER, IdentityProvider


async def test_tokens_from_the_identity_provider_are_verified_by_jwks(temporal_address, database_url):
    idp = IdentityProvider()
    idp.add_key("idp-key-1")
    try:
        async with run_stack(temporal_address, database_url, environment="production", audit_hmac_key="k" * 32,
                             auth_jwks_url=idp.url, auth_issuer=ISSUER, auth_jwt_secret="x" * 40) as stack:
            good = idp.token("idp-key-1")
            r = await stack.http.get("/regimes", headers={"Authorization": f"Bearer {good}"})
            assert r.status_code == 200, r.text
            # A locally minted HS256 token is worthless once the service trusts the identity provider.
            local = mint_token(stack.settings, "a1b2c3", ["admin"])
            r = await stack.http.get("/regimes", headers={"Authorization": f"Bearer {local}"})
            assert r.status_code == 401
            other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            forged = idp.token("idp-key-1", key=other)
            r = await stack.http.get("/regimes", headers={"Authorization": f"Bearer {forged}"})
            assert r.status_code == 401
            wrong_iss = idp.token("idp-key-1", iss="https://elsewhere")
            r = await stack.http.get("/regimes", headers={"Authorization": f"Bearer {wrong_iss}"})
            assert r.status_code == 401
            assert jwt.get_unverified_header(good)["kid"] == "idp-key-1"
    finally:
        idp.close()
