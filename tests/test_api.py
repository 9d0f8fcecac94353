"""The approval API through real HTTP: who may do what, errors, idempotency, audit, inbox."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, date, datetime, timedelta

import asyncpg
import jwt
import pytest

from tests.driver import Regime
from tests.helpers import IMPROVED, PLAN, placement

ALL = ("trust", "improvement_director", "regulator", "commissioner", "buddy", "cqc", "operations", "admin")


def today() -> date:
    from domain.dates import london_date

    return london_date(datetime.now(UTC))


def problem(r) -> dict:
    assert r.headers["content-type"].startswith("application/problem+json"), (r.status_code, r.text)
    body = r.json()
    assert {"type", "title", "status", "detail"} <= body.keys() and body["status"] == r.status_code
    return body


async def audit_count(stack, rid: str) -> int:
    await asyncio.sleep(0.2)
    return await stack.pool.fetchval("SELECT count(*) FROM audit_log WHERE regime_id=$1", rid)


def user(stack, role: str, ods: str = "RP1", other: bool = False):
    trusts = ["ZZ9"] if other else [ods]
    return stack.auth(f"{role}-{'other' if other else 'own'}", role, trusts=trusts,
                      org="RBB" if role == "buddy" else None)


async def test_role_matrix_refusals_change_nothing(stack):
    reg = await Regime.place(stack, "RP1")
    rid = reg.id
    await stack.settle(rid)
    before = await audit_count(stack, rid)
    steps = f"/regimes/{rid}/steps/improvement_plan"
    out = outcome_body()
    mutating = {
        ("POST", "/regimes", lambda: placement("RP9", today())): {"regulator", "admin"},
        ("POST", f"{steps}/decisions", lambda: {"action": "submit", "payload": PLAN}): {"trust"},
        ("POST", f"{steps}/deadline", lambda: {"new_due": str(today() + timedelta(days=60)), "reason": "r"}):
            {"regulator"},
        ("POST", f"/regimes/{rid}/inspections", lambda: out): {"cqc"},
        ("POST", f"/regimes/{rid}/inspections/INS-1/withdrawal", lambda: {"reason": "r"}): {"cqc"},
        ("POST", f"/regimes/{rid}/inspections/INS-2/draft", lambda: {"sent_on": str(today())}): {"cqc"},
        ("POST", f"/regimes/{rid}/reinspection", lambda: {"inspection_date": str(today() + timedelta(days=9))}):
            {"cqc", "regulator"},
        ("POST", f"/regimes/{rid}/enforcement", lambda: {"action": "conditions", "detail": "d"}): {"cqc"},
        ("POST", f"/regimes/{rid}/closure", lambda: {"solution": "merger", "reason": "r", "successor_ods_code": "RSU1"}): {"regulator"},
        ("POST", f"/regimes/{rid}/buddies", lambda: {"buddy": {"ods_code": "RBB", "name": "Buddy FT"}}):
            {"regulator"},
        ("POST", f"/regimes/{rid}/plan/changes", lambda: {"plan": PLAN, "reason": "r"}): {"trust"},
        ("POST", f"/regimes/{rid}/director-time", lambda: {"month": f"{today():%Y-%m}", "days": 1}):
            {"improvement_director", "regulator"},
        ("POST", "/watch-list", lambda: {"trust": {"ods_code": "RWP1", "name": "W"}, "reasons": ["r"]}): {"regulator"},
        ("POST", f"/regimes/{rid}/funding/drawdowns", lambda: {"amount_pence": 100, "against": ["A1"],
                                                               "purpose": "p"}): {"trust"},
        ("POST", f"/regimes/{rid}/evidence", lambda: {"title": "t", "dated": str(today()), "shows": "s",
                                                     "url": "https://example.org/e"}): {"trust"},
    }
    checked = 0
    for (method, path, body), allowed in mutating.items():
        for role in ALL:
            if role in allowed or (role == "admin" and path != "/regimes" and "decisions" not in path):
                continue
            r = await stack.http.request(method, path, json=body(), headers=user(stack, role))
            # A buddy of no partnership of this regime may not see it: 404 as for one that does not exist
            # (issue 17, findings 9 and 10), whatever its token's `trusts` say.
            hidden = role == "buddy" and path not in ("/regimes", "/watch-list")
            assert r.status_code == (404 if hidden else 403), (role, path, r.status_code, r.text)
            problem(r)
            checked += 1
        # Another trust's improvement director, trust user or commissioner is refused too: a regime they may
        # not see answers 404 like one that does not exist (issue 17, finding 9).
        for role in ("improvement_director", "trust", "commissioner"):
            r = await stack.http.request(method, path, json=body(), headers=user(stack, role, other=True))
            assert r.status_code == (403 if path in ("/regimes", "/watch-list") else 404), (role, path, r.text)
            checked += 1
    reads = [f"/regimes/{rid}", f"/regimes/{rid}/audit", f"/regimes/{rid}/audit/verify", "/trusts/RP1/audit"]
    for path in reads:
        for role in ALL:
            r = await stack.http.get(path, headers=user(stack, role))
            ok = role != "buddy"
            assert (r.status_code == 200) == ok, (role, path, r.status_code, r.text)
        r = await stack.http.get(path, headers=user(stack, "improvement_director", other=True))
        assert r.status_code == (403 if path.startswith("/trusts/") else 404)
        checked += len(ALL) + 1
    for path in ("/regimes", "/tasks"):
        for role in ALL:
            assert (await stack.http.get(path, headers=user(stack, role))).status_code == 200
    assert checked > 80
    assert await audit_count(stack, rid) == before
    st = await reg.state()
    assert st["steps"]["improvement_plan"]["status"] == "open" and st["phase"] == "in_special_measures"
    assert st["buddies"] == {} and st["enforcement"] == [] and st["inspections"] == []


def outcome_body(ref: str = "INS-1") -> dict:
    d = today() - timedelta(days=2)
    return {"reference": ref, "inspection_start": str(d), "inspection_end": str(d), "published": str(d),
            "ratings": IMPROVED, "inspection_type": "comprehensive", "well_led_assessed": True,
            "special_measures_reinspection": True}


async def test_no_token_expired_forged_and_unknown_roles(stack):
    assert (await stack.http.get("/health/live")).status_code == 200
    r = await stack.http.get("/regimes")
    assert r.status_code == 401 and problem(r)["type"].endswith("unauthenticated")
    s = stack.settings
    now = int(time.time())
    expired = jwt.encode({"sub": "u", "roles": ["operations"], "iss": s.auth_issuer, "aud": s.auth_audience,
                          "iat": now - 7200, "exp": now - 3600}, s.auth_jwt_secret.get_secret_value(), algorithm="HS256")
    r = await stack.http.get("/regimes", headers={"Authorization": f"Bearer {expired}"})
    assert r.status_code == 401 and problem(r)["type"].endswith("token-expired")
    forged = jwt.encode({"sub": "u", "roles": ["admin"], "iss": s.auth_issuer, "aud": s.auth_audience,
                         "iat": now, "exp": now + 600}, "not-the-secret", algorithm="HS256")
    r = await stack.http.get("/regimes", headers={"Authorization": f"Bearer {forged}"})
    assert r.status_code == 401 and problem(r)["type"].endswith("token-invalid")
    odd = jwt.encode({"sub": "u", "roles": ["superuser"], "iss": s.auth_issuer, "aud": s.auth_audience,
                      "iat": now, "exp": now + 600}, s.auth_jwt_secret.get_secret_value(), algorithm="HS256")
    assert (await stack.http.get("/regimes", headers={"Authorization": f"Bearer {odd}"})).status_code == 401
    r = await stack.http.get("/regimes", headers={"Authorization": "Bearer not.a.jwt"})
    assert r.status_code == 401


async def test_problem_bodies_for_bad_input(stack):
    reg_h = stack.auth("reg-1", "regulator")
    r = await stack.http.post("/regimes", content=b'{"trust": ', headers={**reg_h, "content-type": "application/json"})
    assert r.status_code == 400 and problem(r)["type"].endswith("malformed-json")
    bad = placement("RP2", today())
    bad["ratings"]["safe"] = "terrible"
    r = await stack.http.post("/regimes", json=bad, headers=reg_h)
    body = problem(r)
    assert r.status_code == 422 and any(e["field"].endswith("ratings.safe") for e in body["errors"])
    not_met = placement("RP2", today(), ratings={**IMPROVED})
    r = await stack.http.post("/regimes", json=not_met, headers=reg_h)
    assert r.status_code == 422 and "entry rule" in problem(r)["detail"] and "regulator_reason" in problem(r)["detail"]
    # Issue 14 item 4: the rule is the normal trigger, not a gate. The regulator confirms CQC's recommendation
    # with its reason, and the regime records it as what it is: on CQC's recommendation, rule not met.
    confirmed = placement("RP7", today(), ratings={**IMPROVED},
                          regulator_reason="CQC's recommendation on sustained safeguarding failures")
    r = await stack.http.post("/regimes", json=confirmed, headers=reg_h)
    assert r.status_code == 201, r.text
    rid4 = r.json()["regime_id"]
    await stack.settle(rid4)
    entered = await stack.pool.fetchval("SELECT reason FROM audit_log WHERE regime_id = $1 AND event = "
                                        "'regime_entered'", rid4)
    assert entered.startswith("CQC recommendation, confirmed by the regulator although the entry rule is not met")
    assert entered.endswith(": CQC's recommendation on sustained safeguarding failures")
    page = (await stack.http.get(f"/web/regimes/{rid4}", headers=stack.auth("ops", "operations"))).text
    assert "entry rule not met; confirmed by the regulator" in page
    keogh = placement("RP2", today(), ratings={**IMPROVED}, basis="regulator_decision")
    r = await stack.http.post("/regimes", json=keogh, headers=reg_h)
    assert r.status_code == 422 and "regulator_reason" in problem(r)["detail"]
    keogh["regulator_reason"] = "Keogh review: mortality outlier; regulator's own evidence"
    r = await stack.http.post("/regimes", json=keogh, headers=reg_h)
    assert r.status_code == 201, r.text
    future = placement("RP3", today() + timedelta(days=3))
    assert (await stack.http.post("/regimes", json=future, headers=reg_h)).status_code == 422
    r = await stack.http.get("/regimes/regime-NOPE-2020-01-01", headers=stack.auth("ops", "operations"))
    assert r.status_code == 404 and problem(r)["type"].endswith("unknown-regime")
    rid = r2 = (await stack.http.get("/regimes?ods_code=RP2", headers=reg_h)).json()["items"][0]["regime_id"]
    del r2
    trust = stack.auth("t-1", "trust", trusts=["RP2"])
    r = await stack.http.post(f"/regimes/{rid}/steps/improvement_plan/decisions", headers=trust,
                              json={"action": "submit", "payload": {"actions": []}})
    assert r.status_code == 422 and "actions" in problem(r)["detail"]
    r = await stack.http.post(f"/regimes/{rid}/steps/improvement_plan/decisions", headers=trust,
                              json={"action": "approve", "payload": PLAN})
    assert r.status_code == 422 and "allowed: submit" in problem(r)["detail"]
    r = await stack.http.post(f"/regimes/{rid}/steps/nonexistent/decisions", headers=trust,
                              json={"action": "submit"})
    assert r.status_code == 404
    assert (await stack.http.post(f"/regimes/{rid}/steps/improvement_plan/decisions", headers=trust,
                                  json={"action": "submit", "payload": PLAN})).status_code == 200
    r = await stack.http.post(f"/regimes/{rid}/steps/improvement_plan/decisions", headers=trust,
                              json={"action": "submit", "payload": PLAN})
    assert r.status_code == 409 and problem(r)["type"].endswith("step-not-open")
    r = await stack.http.post(f"/regimes/{rid}/inspections", headers=stack.auth("cqc-1", "cqc"),
                              json={**outcome_body(), "inspection_end": "2001-01-01"})
    assert r.status_code == 422
    r = await stack.http.get("/tasks?cursor=garbage", headers=trust)
    assert r.status_code == 400 and problem(r)["type"].endswith("bad-cursor")
    # A wrong phase: a closed regime takes no buddy.
    assert (await stack.http.post(f"/regimes/{rid}/closure", headers=reg_h,
                                  json={"solution": "merger", "reason": "merged", "successor_ods_code": "RSU1"})).status_code == 200
    r = await stack.http.post(f"/regimes/{rid}/buddies", headers=reg_h, json={"buddy": {"ods_code": "RBB",
                                                                                           "name": "B"}})
    assert r.status_code == 409 and problem(r)


async def test_openapi_declares_the_problem_json_errors(stack):
    """A client generated from /openapi.json knows every error's shape, and real errors fit it."""
    import jsonschema_rs

    doc = (await stack.http.get("/openapi.json")).json()
    schema = doc["components"]["schemas"]["Problem"]
    ops = [(path, method, op) for path, item in doc["paths"].items() for method, op in item.items()]
    assert len(ops) >= 15
    for path, method, op in ops:
        expected = {"503"} if path.startswith("/health") else {"400", "401", "403", "404", "409", "422", "503"}
        for code in expected:
            content = op["responses"][code]["content"]
            assert list(content) == ["application/problem+json"], (method, path, code)
            assert content["application/problem+json"]["schema"] == {"$ref": "#/components/schemas/Problem"}
    assert "HTTPValidationError" not in json.dumps(doc)  # FastAPI's default 422 body is never sent
    reg_h = stack.auth("reg-1", "regulator")
    answers = [
        await stack.http.post("/regimes", content=b"{", headers={**reg_h, "content-type": "application/json"}),
        await stack.http.post("/regimes", json={"trust": 1}, headers=reg_h),
        await stack.http.get("/regimes"),
        await stack.http.get("/regimes/regime-NOPE-2020-01-01", headers=reg_h),
        await stack.http.get("/tasks?cursor=garbage", headers=reg_h),
    ]
    assert [r.status_code for r in answers] == [400, 422, 401, 404, 400]
    for r in answers:
        jsonschema_rs.validate(schema, problem(r))


async def test_idempotency_keys(stack):
    reg = await Regime.place(stack, "RP4")
    trust = {**reg.users["trust"], "Idempotency-Key": "plan-submit-1"}
    url = f"/regimes/{reg.id}/steps/improvement_plan/decisions"
    first = await stack.http.post(url, headers=trust, json={"action": "submit", "payload": PLAN})
    assert first.status_code == 200
    again = await stack.http.post(url, headers=trust, json={"action": "submit", "payload": PLAN})
    assert again.status_code == 200 and again.json() == first.json()
    assert again.headers.get("idempotent-replayed") == "true"
    other = await stack.http.post(url, headers=trust, json={"action": "submit", "payload": PLAN, "comment": "x"})
    assert other.status_code == 422 and problem(other)["type"].endswith("idempotency-mismatch")
    # 50 concurrent identical decisions with one key: one effect.
    idh = {**reg.users["improvement_director"], "Idempotency-Key": "agree-1"}
    rs = await asyncio.gather(*[stack.http.post(f"/regimes/{reg.id}/steps/plan_review/decisions", headers=idh,
                                                json={"action": "agree", "comment": "fine"}) for _ in range(50)])
    assert {r.status_code for r in rs} == {200}, {r.status_code for r in rs}
    assert len({json.dumps(r.json(), sort_keys=True) for r in rs}) == 1
    await stack.settle(reg.id)
    n = await stack.pool.fetchval("SELECT count(*) FROM audit_log WHERE regime_id=$1 AND event LIKE 'plan_review.%'",
                                  reg.id)
    assert n == 1
    n = await stack.pool.fetchval("SELECT count(*) FROM audit_log WHERE regime_id=$1 "
                                  "AND event='improvement_plan.submit'", reg.id)
    assert n == 1


async def test_a_retry_takes_over_a_key_whose_answer_was_never_stored(stack):
    """The decision reached the workflow, then the API lost its answer (process killed, or PostgreSQL gone
    before the store). A retry with the same key must get the first delivery's outcome: not a key stuck
    "in progress" forever, and not a second decision."""
    reg = await Regime.place(stack, "RP9")
    trust = {**reg.users["trust"], "Idempotency-Key": "plan-submit-lost"}
    url = f"/regimes/{reg.id}/steps/improvement_plan/decisions"
    first = await stack.http.post(url, headers=trust, json={"action": "submit", "payload": PLAN})
    assert first.status_code == 200
    # What a request that died after the update leaves behind: a claim with no answer.
    await stack.pool.execute("UPDATE idempotency_keys SET status_code = NULL, response = NULL "
                             "WHERE key = 'plan-submit-lost'")
    # Within the lease the claim may still be live: the retry waits, then says so.
    fresh = await stack.http.post(url, headers=trust, json={"action": "submit", "payload": PLAN})
    assert fresh.status_code == 409 and problem(fresh)["type"].endswith("idempotency-in-progress")
    # Past the lease the retry takes the claim over and runs again; Temporal recognises the update id.
    await stack.pool.execute("UPDATE idempotency_keys SET claimed_at = now() - interval '2 minutes' "
                             "WHERE key = 'plan-submit-lost'")
    retry = await stack.http.post(url, headers=trust, json={"action": "submit", "payload": PLAN})
    assert retry.status_code == 200, retry.text
    assert retry.json()["step"]["status"] == first.json()["step"]["status"]
    assert retry.json()["step"]["actions"] == first.json()["step"]["actions"]
    st = await stack.settle(reg.id)
    assert [a["action"] for a in st["steps"]["improvement_plan"]["actions"]] == ["submit"]
    n = await stack.pool.fetchval("SELECT count(*) FROM audit_log WHERE regime_id=$1 "
                                  "AND event='improvement_plan.submit'", reg.id)
    assert n == 1
    stored = await stack.pool.fetchval("SELECT status_code FROM idempotency_keys WHERE key = 'plan-submit-lost'")
    assert stored == 200
    # Without a key nothing is deduplicated: the same decision again is refused by the workflow.
    again = await stack.http.post(url, headers=reg.users["trust"], json={"action": "submit", "payload": PLAN})
    assert again.status_code == 409


async def test_audit_log_is_append_only_and_tamper_evident(stack):
    reg = await Regime.place(stack, "RP5")
    await reg.act("improvement_plan", "submit", PLAN)
    await reg.act("plan_review", "agree", comment="agreed at the oversight group")
    await stack.settle(reg.id)
    rows = await stack.pool.fetch("SELECT * FROM audit_log WHERE regime_id=$1 ORDER BY id", reg.id)
    by_event = {r["event"]: r for r in rows}
    sub = by_event["improvement_plan.submit"]
    assert sub["actor"] == "trust-RP5" and sub["role"] == "trust" and sub["request_id"]
    assert by_event["plan_review.agree"]["reason"] == "agreed at the oversight group"
    with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
        await stack.pool.execute("UPDATE audit_log SET actor='someone-else' WHERE id=$1", sub["id"])
    with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
        await stack.pool.execute("DELETE FROM audit_log WHERE id=$1", sub["id"])
    ops = stack.auth("ops", "operations")
    v = (await stack.http.get(f"/regimes/{reg.id}/audit/verify", headers=ops)).json()
    assert v["intact"] and v["entries"] == len(rows)
    # A superuser who switches the guard off to rewrite history is caught by the hash chain.
    async with stack.pool.acquire() as conn, conn.transaction():
        await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update")
        await conn.execute("UPDATE audit_log SET reason='nothing to see' WHERE id=$1", sub["id"])
        await conn.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_update")
    # The head is unchanged, so the remembered answer stands until a full check (docs/security.md).
    v = (await stack.http.get(f"/regimes/{reg.id}/audit/verify", params={"full": "true"}, headers=ops)).json()
    assert not v["intact"] and v["first_bad_entry"] == str(sub["id"])
    r = await stack.http.get(f"/regimes/{reg.id}/audit?actor=trust-RP5", headers=ops)
    assert [i["event"] for i in r.json()["items"]] == ["improvement_plan.submit"]
    r = await stack.http.get("/trusts/RP5/audit?format=csv", headers=ops)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "improvement_plan.submit" in r.text and r.text.splitlines()[0].startswith("id,regime_id")


async def test_separation_of_duties_monthly_return(stack):
    reg = await Regime.place(stack, "RP6")
    await reg.advance(40, diligent=False)
    st = await reg.state()
    month = [s for s in st["open_steps"] if s["kind"] == "monthly_return"][0]["id"]
    both = stack.auth("dual-1", "trust", "improvement_director", trusts=["RP6"])
    r = await stack.http.post(f"/regimes/{reg.id}/steps/{month}/decisions", headers=both,
                              json={"action": "submit", "role": "trust", "payload": {"summary": "ok"}})
    assert r.status_code == 200, r.text
    cos = month.replace("monthly_return", "monthly_return_cosign")
    r = await stack.http.post(f"/regimes/{reg.id}/steps/{cos}/decisions", headers=both,
                              json={"action": "cosign", "role": "improvement_director"})
    assert r.status_code == 403 and "separation-of-duties" in problem(r)["type"]
    r = await stack.http.post(f"/regimes/{reg.id}/steps/{cos}/decisions", headers=reg.users["improvement_director"],
                              json={"action": "cosign"})
    assert r.status_code == 200


async def test_inbox_by_role_with_status_filters_and_stable_paging(stack):
    regs = [await Regime.place(stack, ods) for ods in ("RQ1", "RQ2", "RQ3")]
    await regs[0].advance(30, diligent=False)  # its plan is now overdue
    trust = stack.auth("t-multi", "trust", trusts=["RQ1", "RQ2"])
    r = await stack.http.get("/tasks", headers=trust)
    items = r.json()["items"]
    assert {i["trust"]["ods_code"] for i in items} == {"RQ1", "RQ2"}
    assert all(i["role"] == "trust" for i in items)
    plan = [i for i in items if i["step_id"] == "improvement_plan"]
    assert {p["status"] for p in plan} == {"green"}  # the API counts days by the real clock
    assert plan[0]["days_left"] == 28 and plan[0]["trust"]["name"]
    r = await stack.http.get("/tasks?trust=RQ2&kind=improvement_plan", headers=trust)
    assert [(i["trust"]["ods_code"], i["kind"]) for i in r.json()["items"]] == [("RQ2", "improvement_plan")]
    reg_h = stack.auth("reg-1", "regulator")
    seen, cursor = [], None
    while True:
        r = await stack.http.get("/tasks", params={"limit": 2, **({"cursor": cursor} if cursor else {})},
                                 headers=reg_h)
        page = r.json()
        seen += [(i["workflow_id"], i["step_id"]) for i in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    everything = (await stack.http.get("/tasks?limit=500", headers=reg_h)).json()["items"]
    assert seen == [(i["workflow_id"], i["step_id"]) for i in everything] and len(seen) >= 6
    assert len(set(seen)) == len(seen)
    assert all(i["role"] == "regulator" for i in everything)
    dues = [i["due"] for i in everything]
    assert dues == sorted(dues)
    r = await stack.http.get("/tasks?status=red", headers=reg_h)
    assert r.status_code == 200
    # Once the regulator records the improvement director's appointment, their tasks are assigned to them.
    await regs[1].act("appoint_improvement_director", "record",
                      {"appointed_on": str(today()), "improvement_director_user_id": "id-77"})
    await regs[1].act("improvement_plan", "submit", PLAN)
    await stack.settle(regs[1].id)
    r = await stack.http.get("/tasks", headers=stack.auth("id-77", "improvement_director", trusts=[regs[1].ods]))
    assert [(i["step_id"], i["assignee"]) for i in r.json()["items"]] == [("plan_review", "id-77")]
    # Without the trust in its token the same person may not open the regime, so the list does not show its
    # tasks either: one visibility rule for lists and reads (issue 17, finding 10).
    r = await stack.http.get("/tasks", headers=stack.auth("id-77", "improvement_director"))
    assert r.json()["items"] == []


async def test_readiness(stack):
    r = await stack.http.get("/health/ready")
    assert r.status_code == 200 and r.json() == {"status": "ready", "checks": {
        "postgresql": "ok", "temporal": "ok", "dead_letters": "ok"}}
