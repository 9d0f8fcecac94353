"""One person, two accounts; and the appointed improvement director (issue 17, finding 12).

Before: separation of duties and assignment keyed on the token's `sub` only. A second account of the
person who submitted a plan could agree it as the improvement director, and any improvement director
user assigned to the trust could act, although the regulator had appointed one.
"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import jwt

from tests.driver import Regime
from tests.harness import run_stack
from tests.helpers import PLAN


def token(stack, sub: str, role: str, ods: str, **claims) -> dict[str, str]:
    s = stack.settings
    now = int(time.time())
    body = {"sub": sub, "roles": [role], "trusts": [ods], "iss": s.auth_issuer, "aud": s.auth_audience,
            "iat": now, "exp": now + 3600, "jti": str(uuid.uuid4()), **claims}
    return {"Authorization": "Bearer " + jwt.encode(body, s.auth_jwt_secret.get_secret_value(), algorithm="HS256")}


async def test_only_the_appointed_director_or_their_cover_acts_on_director_steps(stack):
    reg = await Regime.place(stack, "RAS1")
    await reg.act("appoint_improvement_director", "record",
                  {"appointed_on": reg.today.isoformat(), "improvement_director_user_id": "id-RAS1"})
    await reg.act("improvement_plan", "submit", PLAN)
    other = stack.auth("id-other", "improvement_director", trusts=["RAS1"])
    url = f"/regimes/{reg.id}/steps/plan_review/decisions"
    r = await stack.http.post(url, headers=other, json={"action": "agree", "comment": "fine"})
    assert r.status_code == 403 and r.json()["type"].endswith("/not-assignee"), r.text
    assert (await reg.state())["steps"]["plan_review"]["status"] == "open"

    # Cover is recorded by the regulator (or the appointed director), with an end date and a reason.
    d = f"/regimes/{reg.id}/delegations"
    body = {"to_user_id": "id-other", "until": (reg.today + timedelta(days=7)).isoformat(), "reason": "annual leave"}
    assert (await stack.http.post(d, headers=other, json=body)).status_code == 403  # not theirs to grant
    r = await stack.http.post(d, headers=reg.users["regulator"], json=body)
    assert r.status_code == 201, r.text
    assert r.json()["from_user_id"] == "id-RAS1" and r.json()["to_user_id"] == "id-other"
    r = await stack.http.post(url, headers=other, json={"action": "agree", "comment": "covering"})
    assert r.status_code == 200, r.text
    await stack.settle(reg.id)
    audited = await stack.pool.fetchval("SELECT count(*) FROM audit_log WHERE regime_id = $1 AND "
                                        "event = 'delegation_recorded' AND actor = 'reg-1'", reg.id)
    assert audited == 1

    # When the cover has ended, the next director's step is the appointed director's again.
    await reg.advance(10, diligent=False)
    await reg.act("monthly_return-" + next(s["subject"]["month"] for s in (await reg.state())["open_steps"]
                                           if s["kind"] == "monthly_return"), "submit", {"summary": "progress"})
    [cosign] = [s for s in (await reg.state())["open_steps"] if s["kind"] == "monthly_return_cosign"]
    r = await stack.http.post(f"/regimes/{reg.id}/steps/{cosign['id']}/decisions", headers=other,
                              json={"action": "cosign"})
    assert r.status_code == 403 and r.json()["type"].endswith("/not-assignee"), r.text
    await reg.act(cosign["id"], "cosign")


async def test_two_accounts_of_one_person_cannot_act_for_two_parties(temporal_address, database_url):
    async with run_stack(temporal_address, database_url, auth_person_claim="person_id") as stack:
        reg = await Regime.place(stack, "RAS2")
        trust = token(stack, "acct-trust", "trust", "RAS2", person_id="P-123")
        director = token(stack, "acct-director", "improvement_director", "RAS2", person_id="P-123")
        r = await stack.http.post(f"/regimes/{reg.id}/steps/improvement_plan/decisions", headers=trust,
                                  json={"action": "submit", "payload": PLAN})
        assert r.status_code == 200, r.text
        r = await stack.http.post(f"/regimes/{reg.id}/steps/plan_review/decisions", headers=director,
                                  json={"action": "agree", "comment": "mine"})
        assert r.status_code == 403 and "separation" in r.json()["type"], r.text
        # Another person's account may.
        someone = token(stack, "acct-director-2", "improvement_director", "RAS2", person_id="P-456")
        r = await stack.http.post(f"/regimes/{reg.id}/steps/plan_review/decisions", headers=someone,
                                  json={"action": "agree", "comment": "credible"})
        assert r.status_code == 200, r.text
        bad = token(stack, "acct-x", "trust", "RAS2", person_id=["not", "a", "string"])
        assert (await stack.http.get(f"/regimes/{reg.id}", headers=bad)).status_code == 401
