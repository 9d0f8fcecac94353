"""Production sign-in: tokens from an OIDC identity provider, verified against its JWKS."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from api.auth import mint_token
from tests.harness import run_stack

ISSUER = "https://login.example.nhs.uk/realms/special-measures"


def idp(public_jwk: dict) -> tuple[ThreadingHTTPServer, str]:
    body = json.dumps({"keys": [public_jwk]}).encode()

    class JWKS(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), JWKS)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}/protocol/openid-connect/certs"


async def test_tokens_from_the_identity_provider_are_verified_by_jwks(temporal_address, database_url):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": "idp-key-1", "use": "sig", "alg": "RS256"})
    srv, url = idp(jwk)
    try:
        async with run_stack(temporal_address, database_url, environment="production", audit_hmac_key="k" * 32,
                             auth_jwks_url=url,
                             auth_issuer=ISSUER, auth_jwt_secret="x" * 40) as stack:
            now = int(time.time())
            claims = {"sub": "a1b2c3", "roles": ["operations"], "iss": ISSUER, "aud": "special-measures",
                      "iat": now, "exp": now + 300}
            good = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "idp-key-1"})
            r = await stack.http.get("/regimes", headers={"Authorization": f"Bearer {good}"})
            assert r.status_code == 200, r.text
            # A locally minted HS256 token is worthless once the service trusts the identity provider.
            local = mint_token(stack.settings, "a1b2c3", ["admin"])
            r = await stack.http.get("/regimes", headers={"Authorization": f"Bearer {local}"})
            assert r.status_code == 401
            other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            forged = jwt.encode(claims, other, algorithm="RS256", headers={"kid": "idp-key-1"})
            r = await stack.http.get("/regimes", headers={"Authorization": f"Bearer {forged}"})
            assert r.status_code == 401
            wrong_iss = jwt.encode({**claims, "iss": "https://elsewhere"}, key, algorithm="RS256",
                                   headers={"kid": "idp-key-1"})
            r = await stack.http.get("/regimes", headers={"Authorization": f"Bearer {wrong_iss}"})
            assert r.status_code == 401
    finally:
        srv.shutdown()
