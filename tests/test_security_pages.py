"""Attacks from the outside review (issue 17), findings 9, 10, 11 and 13, through the real app over HTTP.

9. Existence oracle: another trust's regime must answer exactly like a made-up one.
10. One visibility rule: every list shows only what the same user may open.
11. Pages: Origin checks on sign-in and sign-out, security headers, Swagger UI without a CDN (and in real
    chromium: the pages and /docs work under their Content-Security-Policy).
13. Idempotency keys expire; enforcement, closure and placement happen once by their own business keys.

docs/security.md says what each fix guarantees.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from domain.dates import london_date
from tests.helpers import placement

MADE_UP = "regime-QQ9-2020-01-01"
REGULATOR = ("reg-1", "regulator")


def today():
    return london_date(datetime.now(UTC))


async def place(stack, ods: str, name: str = "Example Hospitals NHS Trust") -> str:
    r = await stack.http.post("/regimes", json=placement(ods, today(), name=name), headers=stack.auth(*REGULATOR))
    assert r.status_code == 201, r.text
    rid = r.json()["regime_id"]
    await stack.settle(rid)
    return rid


def shape(r: httpx.Response, rid: str) -> tuple[int, str, str, str]:
    """What a caller can tell from an answer, with the id it asked about taken out."""
    body = r.json() if r.headers.get("content-type", "").startswith("application/") else {}
    return (r.status_code, r.headers.get("content-type", ""), str(body.get("type")),
            str(body.get("detail")).replace(rid, "<id>"))


# ---------------------------------------------------------------------------- 9: existence oracle
async def test_another_trusts_regime_answers_exactly_like_a_made_up_one(stack):
    rid = await place(stack, "RSQ1", "Quarry Bank NHS Trust")
    buddy = await stack.http.post(f"/regimes/{rid}/buddies", headers=stack.auth(*REGULATOR),
                                  json={"buddy": {"ods_code": "BQ1", "name": "Buddy Hospitals FT"}})
    assert buddy.status_code == 201, buddy.text
    pid = f"{rid}-buddy-BQ1"
    outsiders = {
        "trust user of another trust": stack.auth("trust-x", "trust", trusts=["RSQ9"]),
        "improvement director of another trust": stack.auth("id-x", "improvement_director", trusts=["RSQ9"]),
        "commissioner of another trust": stack.auth("ccg-x", "commissioner", trusts=["RSQ9"]),
        "buddy of another partnership": stack.auth("buddy-x", "buddy", org="BQ9"),
        "buddy-only token carrying the trust": stack.auth("buddy-y", "buddy", trusts=["RSQ1"], org="BQ9"),
    }

    def requests(r: str, p: str) -> list[tuple[str, str, Any]]:
        return [
            ("GET", f"/regimes/{r}", None),
            ("GET", f"/regimes/{r}/buddies", None),
            ("GET", f"/regimes/{r}/audit", None),
            ("GET", f"/regimes/{r}/buddies/{p}", None),
            ("GET", f"/regimes/{r}/buddies/{p}/ledger", None),
            ("GET", f"/regimes/{r}/buddies/{r}-buddy-ZZZ", None),  # a partnership that does not exist
            ("POST", f"/regimes/{r}/steps/improvement_plan/decisions", {"action": "submit", "payload": {}}),
            ("POST", f"/regimes/{r}/enforcement", {"action": "conditions", "detail": "d"}),
            ("POST", f"/regimes/{r}/closure", {"solution": "merger", "reason": "r", "successor_ods_code": "RSU4"}),
            ("POST", f"/regimes/{r}/reinspection", {"inspection_date": str(today() + timedelta(days=9))}),
            ("POST", f"/regimes/{r}/buddies/{p}/end", {"reason": "r"}),
            ("POST", f"/regimes/{r}/buddies/{p}/plan-changes", {"plan": {"workstreams": []}, "reason": "r"}),
        ]

    checked = 0
    for who, headers in outsiders.items():
        real = requests(rid, pid)
        fake = requests(MADE_UP, f"{MADE_UP}-buddy-BQ1")
        for (method, path, body), (_, fake_path, _) in zip(real, fake, strict=True):
            a = await stack.http.request(method, path, json=body, headers=headers)
            b = await stack.http.request(method, fake_path, json=body, headers=headers)
            if a.status_code == 422:  # the body is refused before anything is looked up: the same for both
                assert shape(b, MADE_UP) == shape(a, rid), (who, path)
                continue
            assert a.status_code == 404, (who, method, path, a.status_code, a.text)
            assert shape(a, rid) == shape(b, MADE_UP), (who, method, path, a.text, b.text)
            assert "Quarry Bank" not in a.text and "RSQ1 " not in a.text and "trust RSQ1" not in a.text
            checked += 1
    assert checked >= 50
    # National roles still see that it exists (404 only when it does not), and the trust's own people read it.
    for headers in (stack.auth(*REGULATOR), stack.auth("ops-1", "operations"),
                    stack.auth("id-1", "improvement_director", trusts=["RSQ1"])):
        assert (await stack.http.get(f"/regimes/{rid}", headers=headers)).status_code == 200
        assert (await stack.http.get(f"/regimes/{MADE_UP}", headers=headers)).status_code == 404
    # A trust user of the regime's own trust is still told 403 when it acts outside its role.
    r = await stack.http.post(f"/regimes/{rid}/closure", json={"solution": "merger", "reason": "r", "successor_ods_code": "RSU4"},
                              headers=stack.auth("trust-1", "trust", trusts=["RSQ1"]))
    assert r.status_code == 403
    # The buddy of the partnership still reads it.
    r = await stack.http.get(f"/regimes/{rid}/buddies/{pid}", headers=stack.auth("buddy-1", "buddy", org="BQ1"))
    assert r.status_code == 200, r.text


async def test_web_pages_do_not_tell_another_trusts_regime_from_a_made_up_one(stack):
    rid = await place(stack, "RSQ2", "Rosewood General NHS Trust")
    cookie = {"Cookie": "sm_session=" + stack.token("trust-x", "trust", trusts=["RSQ8"])}
    for path in ("/web/regimes/{}", "/web/regimes/{}/documents/" + "0" * 64):
        real = await stack.http.get(path.format(rid), headers=cookie)
        fake = await stack.http.get(path.format(MADE_UP), headers=cookie)
        assert real.status_code == fake.status_code == 404, (path, real.status_code)
        assert "Rosewood" not in real.text and "not assigned" not in real.text
        assert visible_text(real, rid) == visible_text(fake, MADE_UP)


def visible_text(r: httpx.Response, asked: str) -> str:
    return re.sub(r"<[^>]+>|\s+", " ", r.text.replace(asked, "<id>"))


# ---------------------------------------------------------------------------- 10: one visibility rule
async def test_every_list_shows_only_regimes_the_same_user_may_open(stack):
    rid = await place(stack, "RSQ3", "Stourbridge NHS Trust")
    # The regulator appoints an improvement director by user id; later that person's token no longer
    # carries the trust (moved to other work), and a buddy-only token carries it in `trusts`.
    r = await stack.http.post(f"/regimes/{rid}/steps/appoint_improvement_director/decisions",
                              headers=stack.auth(*REGULATOR),
                              json={"action": "record", "payload": {"appointed_on": today().isoformat(),
                                                                    "improvement_director_user_id": "id-moved"}})
    assert r.status_code == 200, r.text
    await stack.settle(rid)
    users = {
        "buddy-only with trusts": stack.auth("buddy-y", "buddy", trusts=["RSQ3"], org="BQ9"),
        "appointed director moved off the trust": stack.auth("id-moved", "improvement_director", trusts=["RSQ7"]),
        "trust user": stack.auth("trust-3", "trust", trusts=["RSQ3"]),
        "operations": stack.auth("ops-1", "operations"),
    }
    for who, headers in users.items():
        opens = (await stack.http.get(f"/regimes/{rid}", headers=headers)).status_code == 200
        listed = [i["regime_id"] for i in (await stack.http.get("/regimes", headers=headers)).json()["items"]]
        tasks = (await stack.http.get("/tasks", headers=headers)).json()["items"]
        assert (rid in listed) == opens, (who, listed, opens)
        assert all(t["regime_id"] != rid for t in tasks) or opens, (who, tasks)
    assert (await stack.http.get(f"/regimes/{rid}", headers=users["buddy-only with trusts"])).status_code == 404
    assert (await stack.http.get(f"/regimes/{rid}", headers=users["trust user"])).status_code == 200
    # The web list and cohort use the same rule (the buddy role has no web view at all).
    for who, token in (("director moved", stack.token("id-moved", "improvement_director", trusts=["RSQ7"])),
                       ("trust user", stack.token("trust-3", "trust", trusts=["RSQ3"]))):
        cookie = {"Cookie": f"sm_session={token}"}
        opens = (await stack.http.get(f"/web/regimes/{rid}", headers=cookie)).status_code == 200
        for page in ("/web/regimes", "/web/cohort"):
            html = (await stack.http.get(page, headers=cookie)).text
            assert ("Stourbridge" in html) == opens, (who, page, opens)


# ---------------------------------------------------------------------------- 11: pages
async def test_sign_in_and_sign_out_need_this_sites_origin(stack):
    base = stack.base_url
    token = stack.token("ops-1", "operations")
    cookie = {"Cookie": f"sm_session={token}"}
    # Logout CSRF: another site (or a request with no Origin) cannot sign a person out.
    for origin in ({"Origin": "https://evil.example"}, {}, {"Origin": "null"}):
        r = await stack.http.post("/web/sign-out", headers={**cookie, **origin}, follow_redirects=False)
        assert r.status_code == 403 and "set-cookie" not in r.headers, (origin, r.status_code)
        r = await stack.http.post("/web/sign-in", data={"token": token}, headers=origin, follow_redirects=False)
        assert r.status_code == 403 and "set-cookie" not in r.headers, (origin, r.status_code)
    r = await stack.http.post("/web/sign-out", headers={**cookie, "Origin": base}, follow_redirects=False)
    assert r.status_code == 303 and 'sm_session=""' in r.headers["set-cookie"]
    r = await stack.http.post("/web/sign-in", data={"token": token}, headers={"Origin": base}, follow_redirects=False)
    assert r.status_code == 303 and "sm_session=" in r.headers["set-cookie"]


async def test_every_response_carries_the_security_headers(stack):
    token = stack.token("ops-1", "operations")
    for path, headers in (("/web/regimes", {"Cookie": f"sm_session={token}"}), ("/web/sign-in", {}),
                          ("/regimes", {"Authorization": f"Bearer {token}"}), ("/regimes", {}),
                          (f"/regimes/{MADE_UP}", {"Authorization": f"Bearer {token}"}), ("/docs", {}),
                          ("/openapi.json", {}), ("/web/static/web.css", {}), ("/health/live", {})):
        r = await stack.http.get(path, headers=headers)
        csp = r.headers.get("content-security-policy", "")
        assert "frame-ancestors 'none'" in csp and "default-src 'self'" in csp, (path, csp)
        assert "unsafe-eval" not in csp and "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0]
        assert r.headers.get("x-frame-options") == "DENY", path
        assert r.headers.get("x-content-type-options") == "nosniff", path
        assert r.headers.get("referrer-policy") == "same-origin", path
    page = await stack.http.get("/web/sign-in")
    assert "style-src 'self';" in page.headers["content-security-policy"]  # no inline styles on the pages


async def test_api_docs_load_swagger_ui_from_this_service_only(stack):
    docs = await stack.http.get("/docs")
    assert docs.status_code == 200
    refs = re.findall(r'(?:src|href)="([^"]+)"', docs.text)
    assert refs and all(ref.startswith("/") and not ref.startswith("//") for ref in refs), refs
    assert "cdn" not in docs.text.lower() and "<script>" not in docs.text  # no inline script either
    for ref in refs:
        r = await stack.http.get(ref)
        assert r.status_code == 200 and len(r.content) > 0, ref
    assert "SwaggerUIBundle" in (await stack.http.get("/web/static/vendor/swagger-ui/swagger-ui-bundle.js")).text
    assert (await stack.http.get("/redoc")).status_code == 404  # ReDoc came from a CDN too


CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture
def logging_driver():
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (apt-get install -y chromium chromium-driver)")
    from tests.test_browser import chromium

    with chromium(browser_logs=True) as browser:
        yield browser


async def csp_violations(driver) -> list[str]:
    logs = await driver.call(driver.d.get_log, "browser")
    return [e["message"] for e in logs if "Content Security Policy" in e["message"]]


async def test_pages_and_docs_work_under_their_policy_in_chromium(stack, logging_driver):
    driver, base = logging_driver, stack.base_url
    rid = await place(stack, "RSQ4", "Tamworth Valley NHS Trust")
    await stack.http.post(f"/regimes/{rid}/buddies", headers=stack.auth(*REGULATOR),
                          json={"buddy": {"ods_code": "BQ4", "name": "Upton Buddy FT"}})
    await stack.settle(rid)
    await driver.sign_in(base, stack.token("ops-1", "operations"))  # the form posts with this site's Origin
    for path in ("/web/regimes", f"/web/regimes/{rid}", "/web/cohort"):
        await driver.get(base + path)
        await driver.wait_for("return document.readyState === 'complete'")
        # NHS.UK frontend's inline line ran (its hash is allowed) and its module script from a file too.
        assert await driver.js("return document.body.classList.contains('js-enabled')"), path
        assert await driver.js("return document.body.classList.contains('nhsuk-frontend-supported')"), path
    # The list still refreshes itself through htmx under the policy.
    await driver.get(base + "/web/regimes")
    await driver.js("window.__notReloaded = true")
    await place(stack, "RSQ5", "Wolverton NHS Trust")
    await driver.wait_for("return document.body.innerText.includes('Wolverton NHS Trust')", timeout=20)
    assert await driver.js("return window.__notReloaded === true")
    await driver.get(base + "/docs")
    await driver.wait_for("return !!document.querySelector('.swagger-ui .info .title')", timeout=20)
    title = await driver.js("return document.querySelector('.swagger-ui .info .title').textContent")
    assert "Special measures regime orchestrator" in title
    assert await driver.js("return document.querySelectorAll('.opblock').length") > 10
    assert await csp_violations(driver) == []
    # The policy is enforced: an inline script injected into a page is refused.
    await driver.get(base + "/web/regimes")
    await driver.js("const s = document.createElement('script'); s.textContent = 'window.__injected = 1';"
                    "document.body.appendChild(s);")
    await asyncio.sleep(0.2)
    assert await driver.js("return window.__injected === undefined")
    assert await csp_violations(driver) != []


# ---------------------------------------------------------------------------- 13: once is once
async def test_idempotency_keys_expire_after_the_stated_period(stack):
    rid = await place(stack, "RSQ6")
    cqc = stack.auth("cqc-1", "cqc")
    # Another user's key long expired: swept at this API's first claim.
    await stack.pool.execute("INSERT INTO idempotency_keys (user_id, key, method, path, body_hash, created_at) "
                             "VALUES ('someone', 'old', 'POST', '/x', 'h', now() - interval '30 days')")
    key = {"Idempotency-Key": "enf-1"}
    r = await stack.http.post(f"/regimes/{rid}/enforcement", headers={**cqc, **key},
                              json={"action": "conditions", "detail": "first"})
    assert r.status_code == 200 and r.json()["enforcement_actions"] == 1, r.text
    assert await stack.pool.fetchval("SELECT count(*) FROM idempotency_keys WHERE user_id = 'someone'") == 0
    # Within the period the key answers with the first response, even for another body it is refused.
    r = await stack.http.post(f"/regimes/{rid}/enforcement", headers={**cqc, **key},
                              json={"action": "conditions", "detail": "second"})
    assert r.status_code == 422 and "idempotency-mismatch" in r.json()["type"]
    # Past IDEMPOTENCY_KEY_TTL_HOURS (24 by default) the key is forgotten and may be used again.
    hours = stack.settings.idempotency_key_ttl_hours
    await stack.pool.execute("UPDATE idempotency_keys SET created_at = now() - make_interval(secs => $1) "
                             "WHERE key = 'enf-1'", hours * 3600 + 60)
    r = await stack.http.post(f"/regimes/{rid}/enforcement", headers={**cqc, **key},
                              json={"action": "conditions", "detail": "second"})
    assert r.status_code == 200 and r.json()["enforcement_actions"] == 2, r.text
    assert "idempotent-replayed" not in r.headers


async def test_an_enforcement_action_sent_again_is_not_recorded_twice(stack):
    rid = await place(stack, "RSQ7")
    cqc = stack.auth("cqc-1", "cqc")
    body = {"action": "warning_notice", "detail": "Warning notice: staffing in the emergency department"}
    answers = [await stack.http.post(f"/regimes/{rid}/enforcement", headers=cqc, json=body) for _ in range(5)]
    assert [a.status_code for a in answers] == [200] * 5, [a.text for a in answers]
    assert {a.json()["enforcement_actions"] for a in answers} == {1}
    assert all(a.json().get("already_recorded") for a in answers[1:])
    # Sent together, still once.
    together = await asyncio.gather(*(stack.http.post(f"/regimes/{rid}/enforcement", headers=cqc,
                                                      json={**body, "detail": "conditions on maternity"})
                                      for _ in range(4)))
    assert {a.status_code for a in together} == {200} and {a.json()["enforcement_actions"] for a in together} == {2}
    # A different action, or another inspector's, is a record of its own.
    r = await stack.http.post(f"/regimes/{rid}/enforcement", headers=cqc, json={**body, "action": "conditions"})
    assert r.json()["enforcement_actions"] == 3
    r = await stack.http.post(f"/regimes/{rid}/enforcement", headers=stack.auth("cqc-2", "cqc"), json=body)
    assert r.json()["enforcement_actions"] == 4
    await stack.settle(rid)
    state = (await stack.http.get(f"/regimes/{rid}", headers=cqc)).json()
    assert len(state["enforcement"]) == 4
    n = await stack.pool.fetchval("SELECT count(*) FROM audit_log WHERE regime_id = $1 "
                                  "AND event = 'enforcement_recorded'", rid)
    assert n == 4


async def test_closing_a_closed_regime_answers_the_first_closure(stack):
    rid = await place(stack, "RSQ8")
    reg = stack.auth(*REGULATOR)
    first = await stack.http.post(f"/regimes/{rid}/closure", headers=reg,
                                  json={"solution": "merger", "reason": "merging with the neighbouring trust",
                                        "successor_ods_code": "RSU4"})
    assert first.status_code == 200 and first.json()["phase"] == "closed_structural", first.text
    for body in ({"solution": "merger", "reason": "merging with the neighbouring trust", "successor_ods_code": "RSU4"},
                 {"solution": "acquisition", "reason": "a second closure", "successor_ods_code": "RSU5"}):
        again = await stack.http.post(f"/regimes/{rid}/closure", headers=reg, json=body)
        assert again.status_code == 200, again.text
        assert again.json()["already_closed"] is True and again.json()["phase"] == "closed_structural"
        assert again.json()["closure"]["solution"] == "merger"
        assert again.json()["closure"]["reason"] == "merging with the neighbouring trust"
    await stack.settle(rid)
    closed = await stack.pool.fetchval("SELECT count(*) FROM audit_log WHERE regime_id = $1 AND event = "
                                       "'regime_closed'", rid)
    assert closed == 1
    assert await stack.pool.fetchval("SELECT count(*) FROM regimes WHERE ods_code = 'RSQ8'") == 1


async def test_a_placement_sent_again_names_the_first_regime(stack):
    body = placement("RSQ9", today())
    first = await stack.http.post("/regimes", json=body, headers=stack.auth(*REGULATOR))
    assert first.status_code == 201
    again = await stack.http.post("/regimes", json=body, headers=stack.auth(*REGULATOR))
    assert again.status_code == 409 and again.json()["regime_id"] == first.json()["regime_id"]
    assert await stack.pool.fetchval("SELECT count(*) FROM regimes WHERE ods_code = 'RSQ9'") == 1
