"""The improvement plan and readiness pages (issue 15 item 6) in real headless Chromium, as tests/test_browser.py
runs the other pages: signed in through the form, checked with axe-core (WCAG 2.2 A and AA), screenshots in
test-artifacts/. Their content is checked over plain HTTP in tests/test_web_programme.py, which makes the data."""

from __future__ import annotations

from tests.test_browser import NEEDS_CHROMIUM
from tests.test_web_programme import programme_regime

pytestmark = NEEDS_CHROMIUM



async def test_plan_and_readiness_pages_with_an_agreed_plan_and_a_monthly_report(stack, driver):
    base = stack.base_url
    reg = (await programme_regime(stack, "RBP1", announce=True))["reg"]
    await driver.sign_in(base, stack.token("ops-1", "operations"))

    # From the regime page to the plan.
    await driver.get(f"{base}/web/regimes/{reg.id}")
    await driver.js("document.querySelector(arguments[0]).click()", f"a[href='/web/regimes/{reg.id}/plan']")
    await driver.wait_for(f"return location.pathname === '/web/regimes/{reg.id}/plan' "
                          "&& document.readyState === 'complete'")
    charts = await driver.js("return [...document.querySelectorAll('svg.sm-plan-chart')].map(s => "
                             "[s.getAttribute('role'), document.getElementById(s.getAttribute('aria-labelledby')"
                             ".split(' ')[0]).textContent, s.querySelectorAll('g.sm-plan-bar').length, "
                             "s.getBoundingClientRect().height])")
    assert [c[0] for c in charts] == ["img", "img"]
    assert charts[0][1].startswith("Sepsis") and charts[1][1].startswith("Mortality")
    assert all(c[2] == 1 and c[3] > 100 for c in charts), charts  # one bar each, drawn at its size
    # Every bar segment is painted: patterns resolve (a broken url(#id) leaves it without fill).
    fills = await driver.js("return [...document.querySelectorAll('rect.sm-plan-seg')].map(r => "
                            "[r.dataset.status, getComputedStyle(r).fill])")
    assert fills and all(f != "none" for _, f in fills), fills
    attention = await driver.js("return [...document.querySelectorAll('#attention ~ div table tr[data-action]')]"
                                ".map(r => r.dataset.action)")
    assert attention == ["S1"]
    assert "Off trajectory" in await driver.js("return document.getElementById('trajectory').innerText")
    violations = await driver.axe()
    assert violations == [], violations
    await driver.screenshot("plan-page.png")

    # The plan page links to readiness.
    await driver.js("document.querySelector(arguments[0]).click()", f"a[href='/web/regimes/{reg.id}/readiness']")
    await driver.wait_for(f"return location.pathname === '/web/regimes/{reg.id}/readiness' "
                          "&& document.readyState === 'complete'")
    countdown = await driver.js("return document.getElementById('countdown').innerText")
    assert "days to the re-inspection on" in countdown
    risky = await driver.js("return [...document.querySelectorAll('tr.sm-at-risk[data-at-risk=yes]')]"
                            ".map(r => r.dataset.step)")
    assert "self_assessment-1" in risky
    assert "at risk" in await driver.js("return document.getElementById('at-risk').innerText")
    violations = await driver.axe()
    assert violations == [], violations
    await driver.screenshot("readiness-page.png")
