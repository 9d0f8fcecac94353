"""The evaluation page (issue 16 item 5) in real headless Chromium, as tests/test_browser.py runs the other pages:
signed in through the form, reached from the navigation, checked with axe-core (WCAG 2.2 A and AA), a screenshot
in test-artifacts/. Its figures are checked over plain HTTP in tests/test_evaluation.py, which makes the cohort."""

from __future__ import annotations

from tests.test_browser import NEEDS_CHROMIUM
from tests.test_evaluation import synthetic_cohort

pytestmark = NEEDS_CHROMIUM



async def test_evaluation_page_from_the_navigation(stack, driver):
    base = stack.base_url
    c = await synthetic_cohort(stack.pool)
    await c.regime(365, "exited", ago=10, paid=[2_500_000, 1_250_000])
    await c.regime(500, "exited", ago=40, paid=[900_000])
    ev = (await stack.http.get("/evaluation", headers=stack.auth("ops-1", "operations"))).json()
    await driver.sign_in(base, stack.token("ops-1", "operations"))

    await driver.get(f"{base}/web/cohort")
    await driver.js("document.querySelector(\"header a[href='/web/evaluation']\").click()")
    await driver.wait_for("return location.pathname === '/web/evaluation' && document.readyState === 'complete'")
    median = await driver.js("return document.querySelector('[data-figure=median]').textContent")
    assert median == str(ev["median_months"])
    chart = await driver.js("""
        const s = document.querySelector('svg.sm-survival-chart');
        const title = document.getElementById(s.getAttribute('aria-labelledby').split(' ')[0]).textContent;
        const line = s.querySelector('path.sm-survival-line').getBBox();
        return [s.getAttribute('role'), title, line.width, line.height,
                s.querySelectorAll('.sm-survival-censor').length, !!s.querySelector('.sm-survival-median')]""")
    assert chart[0] == "img" and chart[1].startswith("Share of regimes still in special measures")
    assert chart[2] > 300 and chart[3] > 100, chart  # the steps are drawn across the plot
    assert chart[4] == ev["running"] + ev["closed_undated"] and chart[5] is True
    bars = await driver.js("return [...document.querySelectorAll('svg.sm-bar-chart')].map(s => s.dataset.chart)")
    assert bars == ["year-chart", "reentry-chart", "cost-chart"]
    links = await driver.js("return [...document.querySelectorAll('a.sm-csv')].map(a => a.getAttribute('href'))")
    assert links == [f"/web/evaluation/{n}.csv" for n in ("survival", "by-entry-year", "reentry", "cost")]
    # A download through the page's own session (the cookie), as the link would fetch it.
    text = await driver.call(driver.d.execute_async_script, """
        const done = arguments[arguments.length - 1];
        fetch('/web/evaluation/survival.csv').then(r => r.text()).then(done, e => done(String(e)));""")
    assert text.splitlines()[0] == "time_days,months,survival,at_risk,events,censored"
    assert len(text.splitlines()) == len(ev["survival"]) + 1
    await driver.js("document.querySelector('details').open = true")
    violations = await driver.axe()
    assert violations == [], violations
    await driver.screenshot("evaluation.png")


async def test_a_trust_user_is_refused_and_has_no_link(stack, driver):
    base = stack.base_url
    await driver.sign_in(base, stack.token("trust-1", "trust", trusts=["EV001"]))
    await driver.get(f"{base}/web/cohort")
    assert not await driver.js("return !!document.querySelector(\"a[href='/web/evaluation']\")")
    await driver.get(f"{base}/web/evaluation")
    assert "You do not have access to this page" in await driver.js("return document.body.innerText")
