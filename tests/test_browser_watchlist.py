"""The challenged-providers watch-list pages (issue 16 item 4) in real headless Chromium, as
tests/test_browser_evaluation.py runs the evaluation page: signed in through the form, reached from the header
link, checked with axe-core (WCAG 2.2 A and AA), screenshots in test-artifacts/. Who sees what is checked over
plain HTTP in tests/test_web_watchlist.py."""

from __future__ import annotations

from api.web import labels
from domain.steps import Kind
from tests.test_browser import NEEDS_CHROMIUM
from tests.test_web_watchlist import add

pytestmark = NEEDS_CHROMIUM

REASONS = ["Referral-to-treatment waits the longest in the region", "two never events in surgery this year"]



async def test_watch_list_and_entry_from_the_navigation(stack, driver):
    base = stack.base_url
    entry = await add(stack, "RWH1", "Heathfield Hospitals NHS Trust", REASONS)
    eid = entry["entry_id"]
    r = await stack.http.post(f"/watch-list/{eid}/steps/{Kind.funding_agreement}/decisions",
                              headers=stack.auth("reg-1", "regulator"),
                              json={"action": "record", "payload": {"ceiling_pence": 20_000_000,
                                                                    "areas": ["elective recovery"]}})
    assert r.status_code == 200, r.text
    entry = (await stack.http.get(f"/watch-list/{eid}", headers=stack.auth("ops-1", "operations"))).json()
    await driver.sign_in(base, stack.token("reg-1", "regulator"))

    await driver.get(f"{base}/web/regimes")
    await driver.js("document.querySelector(\"header a[href='/web/watch-list']\").click()")
    await driver.wait_for("return location.pathname === '/web/watch-list' && document.readyState === 'complete'")
    assert await driver.js("return document.querySelector('h1').textContent") == "Challenged providers watch list"
    row = await driver.js(f"return document.querySelector('tr[data-entry=\"{eid}\"]').innerText")
    assert "Heathfield Hospitals NHS Trust" in row and "RWH1" in row and "On the list" in row
    assert labels.fmt_date(entry["added_on"]) in row
    current = await driver.js("return document.querySelector('header [aria-current]').textContent.trim()")
    assert current == "Watch list"
    violations = await driver.axe()
    assert violations == [], violations
    await driver.screenshot("watch-list.png")

    await driver.js(f"document.querySelector(\"a[href='/web/watch-list/{eid}']\").click()")
    await driver.wait_for(f"return location.pathname === '/web/watch-list/{eid}' "
                          "&& document.readyState === 'complete'")
    assert await driver.js("return document.querySelector('h1').textContent") == "Heathfield Hospitals NHS Trust"
    reasons = await driver.js("return [...document.querySelectorAll('#reasons-list li')].map(li => li.textContent)")
    assert reasons == REASONS
    steps = await driver.js("return [...document.querySelectorAll('#open-steps-table tr[data-step]')]"
                            ".map(tr => tr.dataset.kind)")
    assert sorted(steps) == sorted(s["kind"] for s in entry["steps"] if s["status"] == "open")
    page = await driver.js("return document.body.innerText")
    assert "Central funding" in page and labels.money(20_000_000) in page
    looked = await driver.js("return [...document.querySelectorAll('#access-table tr[data-what]')]"
                             ".map(tr => [tr.dataset.user, tr.dataset.what])")
    assert ["reg-1", "web entry"] in looked and ["reg-1", "web list"] in looked
    violations = await driver.axe()
    assert violations == [], violations
    await driver.screenshot("watch-entry.png")


async def test_the_trusts_own_user_sees_its_entry_and_others_are_told_nothing(stack, driver):
    base = stack.base_url
    eid = (await add(stack, "RWH2", "Larchmere NHS Trust", REASONS))["entry_id"]
    await driver.sign_in(base, stack.token("trust-H2", "trust", trusts=["RWH2"]))
    await driver.get(f"{base}/web/regimes")
    assert not await driver.js("return !!document.querySelector(\"a[href='/web/watch-list']\")")
    await driver.get(f"{base}/web/watch-list/{eid}")
    assert await driver.js("return document.querySelector('h1').textContent") == "Larchmere NHS Trust"
    assert await driver.js("return !document.querySelector('#access') && "
                           "!document.querySelector(\"a[href='/web/watch-list']\")")
    await driver.get(f"{base}/web/watch-list")
    assert "You do not have access to this page" in await driver.js("return document.body.innerText")

    await driver.sign_in(base, stack.token("trust-H9", "trust", trusts=["RWH9"]))
    await driver.get(f"{base}/web/watch-list/{eid}")
    page = await driver.js("return document.body.innerText")
    assert "Watch-list entry not found" in page and "Larchmere" not in page
