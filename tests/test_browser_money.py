"""A regime's money and a trust's two regimes (issue 16 items 1 to 3) in real headless Chromium, as
tests/test_browser_evaluation.py runs the evaluation page: signed in through the form, reached by the regime page's
link, checked with axe-core (WCAG 2.2 A and AA), screenshots in test-artifacts/. The page's figures against the
API are checked over plain HTTP in tests/test_web_money.py, which makes the regime."""

from __future__ import annotations

from api.web import labels
from api.web.money import quarter_label
from domain.steps import Kind
from tests.driver import Regime
from tests.helpers import placement
from tests.test_browser import NEEDS_CHROMIUM
from tests.test_web_money import CEILING, DRAWN, costs_of, funding_of, money_regime

pytestmark = NEEDS_CHROMIUM



async def test_funding_and_costs_from_the_regime_page(stack, driver):
    base = stack.base_url
    w, reg = await money_regime(stack, "RMB1", "BMB1")
    f = await funding_of(stack, w.rid)
    c = await costs_of(stack, w.rid)
    await driver.sign_in(base, stack.token("trust-RMB1", "trust", trusts=["RMB1"]))

    await driver.get(f"{base}/web/regimes/{w.rid}")
    await driver.js(f"document.querySelector(\"nav.sm-subpages a[href='/web/regimes/{w.rid}/money']\").click()")
    await driver.wait_for(f"return location.pathname === '/web/regimes/{w.rid}/money' "
                          "&& document.readyState === 'complete'")
    assert await driver.js("return document.querySelector('h1').textContent") == "Funding and costs"
    figures = await driver.js("return Object.fromEntries([...document.querySelectorAll('[data-figure]')]"
                              ".map(e => [e.dataset.figure, e.textContent.trim()]))")
    assert figures["ceiling"] == labels.money(CEILING)
    assert figures["paid"] == labels.money(DRAWN)
    assert figures["remaining"] == labels.money(f["remaining_pence"])
    assert figures["total-cost"] == labels.money(c["total_pence"])
    drawdown = await driver.js("return document.querySelector('#drawdowns-table tr[data-drawdown=\"1\"]').innerText")
    [d] = f["drawdowns"]
    for shown in ("Paid", labels.money(DRAWN), d["purpose"], d["approved_by"], d["authorised_by"]):
        assert shown in drawdown, (shown, drawdown)
    quarters = await driver.js("return [...document.querySelectorAll('#costs-table tbody tr')]"
                               ".map(tr => [tr.dataset.quarter, tr.querySelector('th').textContent.trim(), "
                               "tr.lastElementChild.textContent.trim()])")
    assert quarters == [[q["quarter"], quarter_label(q["quarter"]), labels.money(q["total_pence"])]
                        for q in c["quarters"]]
    back = await driver.js("return document.querySelector('.nhsuk-back-link a, a.nhsuk-back-link').getAttribute('href')")
    assert back == f"/web/regimes/{w.rid}"
    violations = await driver.axe()
    assert violations == [], violations
    await driver.screenshot("money.png")


async def test_a_trusts_quality_and_finance_regimes_side_by_side(stack, driver):
    base = stack.base_url
    name = "Wrexford Valley Hospitals NHS Trust"
    quality = await Regime.place(stack, "RMB2", name=name)
    body = placement("RMB2", quality.today, name=name) | {
        "measures": "finance", "basis": Kind.regulator_decision.value,
        "regulator_reason": "the trust's deficit plan failed"}
    body.pop("ratings", None)
    r = await stack.http.post("/regimes", json=body, headers=stack.auth("reg-1", "regulator"))
    assert r.status_code == 201, r.text
    finance_id = r.json()["regime_id"]
    await stack.settle(quality.id)
    await stack.settle(finance_id)
    trust = (await stack.http.get(f"/regimes/{quality.id}", headers=quality.users["trust"])).json()["trust_regimes"]
    assert trust["segment"] == 4 and {x["regime_id"] for x in trust["regimes"]} == {quality.id, finance_id}

    await driver.sign_in(base, stack.token("trust-RMB2", "trust", trusts=["RMB2"]))
    await driver.get(f"{base}/web/regimes/{quality.id}")
    assert await driver.js("return document.querySelector('h1').textContent") == name
    segment = await driver.js("return document.getElementById('trust-segment').innerText")
    assert f"segment {trust['segment']}" in segment and "quality and finance special measures" in segment
    assert "2 regimes running side by side" in segment
    items = await driver.js("return [...document.querySelectorAll('ul.sm-relatives li')].map(li => li.innerText)")
    assert len(items) == 2
    [this] = [i for i in items if quality.id in i]
    [other] = [i for i in items if finance_id in i]
    assert "(this regime)" in this and "quality special measures" in this
    assert "finance special measures" in other and labels.fmt_date(quality.today) in other
    summary = await driver.js("return document.querySelector('#summary ~ dl, #summary + dl').innerText")
    assert f"segment {trust['segment']}" in summary
    # The summary's values are HTML, not its source shown as text (the next deadline's basis, the policy link).
    assert "<span" not in summary and "<a " not in summary, summary
    assert await driver.js("return !!document.querySelector(\"#summary ~ dl a[href='#policy']\")")
    violations = await driver.axe()
    assert violations == [], violations
    await driver.screenshot("trust-regimes.png")

    # ... and the finance regime's page lists the quality regime beside it.
    await driver.js(f"document.querySelector(\"ul.sm-relatives a[href='/web/regimes/{finance_id}']\").click()")
    await driver.wait_for(f"return location.pathname === '/web/regimes/{finance_id}' "
                          "&& document.readyState === 'complete'")
    items = await driver.js("return [...document.querySelectorAll('ul.sm-relatives li')].map(li => li.innerText)")
    assert any(quality.id in i and "quality special measures" in i for i in items), items
    assert any(finance_id in i and "(this regime)" in i for i in items), items
