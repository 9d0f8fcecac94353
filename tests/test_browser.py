"""The operations web view in real headless Chromium (Debian's chromium + chromedriver, via Selenium).

Few and slow on purpose; page content is checked over plain HTTP in test_web.py. Screenshots of the list,
a regime page and the cohort view go to test-artifacts/.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from domain.dates import london_date
from tests.helpers import IMPROVED, PLAN, outcome, placement
from tools.polling import eventually

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
AXE = Path(__file__).resolve().parent.parent / "api" / "web" / "static" / "vendor" / "axe-core" / "axe.min.js"

# Every browser test module is marked with it; the `driver` fixture (one Chromium per module) is in conftest.py.
NEEDS_CHROMIUM = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                    reason="Debian chromium is not installed (apt-get install -y chromium chromium-driver)")
pytestmark = NEEDS_CHROMIUM


@contextlib.contextmanager
def chromium(browser_logs: bool = False):
    """Debian's headless chromium through Selenium, with a fresh profile and no background networking (the
    machine has no internet); with `browser_logs`, the console (CSP reports) can be read."""
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager look for a browser download
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="sm-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-dev-shm-usage",
                f"--user-data-dir={profile}", "--window-size=1280,900", "--force-device-scale-factor=1"):
        opts.add_argument(arg)
    if browser_logs:
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(options=opts, service=Service(executable_path=CHROMEDRIVER))
    d.set_page_load_timeout(30)
    try:
        yield Browser(d)
    finally:
        d.quit()
        shutil.rmtree(profile, ignore_errors=True)



class Browser:
    """Selenium is blocking and the API under test runs on this event loop: every call goes to a thread."""

    def __init__(self, d) -> None:
        self.d = d

    async def call(self, fn, *args):
        return await asyncio.to_thread(fn, *args)

    async def get(self, url: str) -> None:
        await self.call(self.d.get, url)

    async def js(self, script: str, *args):
        return await self.call(self.d.execute_script, script, *args)

    async def wait_for(self, script: str, timeout: float = 15.0):
        return await eventually(lambda: self.js(script), what=script, timeout=timeout, interval=0.2)

    async def sign_in(self, base: str, token: str) -> None:
        from selenium.webdriver.common.by import By

        await self.call(self.d.delete_all_cookies)
        await self.get(f"{base}/web/sign-in")
        field = await self.call(self.d.find_element, By.ID, "token")
        await self.call(field.send_keys, token)
        button = await self.call(self.d.find_element, By.CSS_SELECTOR, "form button[type=submit], form .nhsuk-button")
        await self.call(button.click)
        await self.wait_for("return document.readyState === 'complete' && !location.pathname.endsWith('sign-in')")

    async def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        height = await self.js("return Math.max(document.body.scrollHeight, document.documentElement.scrollHeight)")
        await self.call(self.d.set_window_size, 1280, min(int(height) + 120, 8000))
        path = ARTIFACTS / name
        await self.call(self.d.save_screenshot, str(path))
        await self.call(self.d.set_window_size, 1280, 900)
        return path

    async def axe(self) -> list[dict]:
        """WCAG 2.2 A and AA violations reported by axe-core (vendored, injected into the page)."""
        await self.js(AXE.read_text())
        result = await self.call(self.d.execute_async_script, """
            const done = arguments[arguments.length - 1];
            axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa']}})
               .then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                                        nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}))))
               .catch(e => done([{id: 'axe-error', help: String(e)}]));
        """)
        return result


def today():
    return london_date(datetime.now(UTC))


async def place(stack, ods: str, name: str, entry=None) -> str:
    r = await stack.http.post("/regimes", json=placement(ods, entry or today(), name=name),
                              headers=stack.auth("reg-1", "regulator"))
    assert r.status_code == 201, r.text
    rid = r.json()["regime_id"]
    await stack.settle(rid)
    return rid


async def test_list_shows_a_new_regime_live_and_the_page_shows_the_plan_milestone(stack, driver):
    base = stack.base_url
    first = await place(stack, "RB1", "Harrowgate District Hospital NHS Trust")
    await driver.sign_in(base, stack.token("ops-1", "operations"))
    await driver.get(f"{base}/web/regimes")
    assert "Harrowgate District Hospital NHS Trust" in await driver.js("return document.body.innerText")
    await driver.js("window.__notReloaded = true")

    await place(stack, "RB2", "Ivybridge Community NHS Trust")
    await driver.wait_for("return document.body.innerText.includes('Ivybridge Community NHS Trust')", timeout=20)
    assert await driver.js("return window.__notReloaded === true"), "the list reloaded the whole page"
    violations = await driver.axe()
    assert violations == [], violations
    await driver.screenshot("regimes-list.png")

    await driver.js("document.querySelector(arguments[0]).click()", f"a[href='/web/regimes/{first}']")
    await driver.wait_for(f"return location.pathname === '/web/regimes/{first}' && document.readyState === 'complete'")
    state = await driver.js("return document.querySelector('g.sm-item[data-step=\"improvement_plan\"]')"
                            ".getAttribute('data-state')")
    assert state == "on_time"
    label = await driver.js("return [...document.querySelectorAll('svg.sm-timeline text')].map(t => t.textContent)")
    assert "Improvement plan" in label and "On time" in label and "Today" in label
    violations = await driver.axe()
    assert violations == [], violations


async def test_late_plan_escalation_appears_on_the_regime_page(stack, driver):
    base = stack.base_url
    rid = await place(stack, "RB3", "Jarrow and Tyneside NHS Foundation Trust")
    buddy = await stack.http.post(f"/regimes/{rid}/buddies", headers=stack.auth("reg-1", "regulator"),
                                  json={"buddy": {"ods_code": "RBX", "name": "Kingsmead University Hospitals NHS Trust"},
                                        "scope": "trust-wide"})
    assert buddy.status_code == 201, buddy.text
    await stack.fast_forward(rid, 31)
    await stack.settle(rid)
    await driver.sign_in(base, stack.token("ops-1", "operations"))
    await driver.get(f"{base}/web/regimes/{rid}")
    state = await driver.js("return document.querySelector('g.sm-item[data-step=\"improvement_plan\"]')"
                            ".getAttribute('data-state')")
    assert state == "overdue"
    rungs = await driver.js("return [...document.querySelectorAll('#escalations ~ table tr[data-step=\"improvement_plan\"]')]"
                            ".map(r => r.getAttribute('data-rung'))")
    assert "breach" in rungs
    text = await driver.js("return document.body.innerText")
    assert "Deadline missed" in text and "Kingsmead University Hospitals NHS Trust" in text
    violations = await driver.axe()
    assert violations == [], violations
    await driver.screenshot("regime-page.png")


async def test_a_user_without_the_role_is_refused(stack, driver):
    await driver.sign_in(stack.base_url, stack.token("buddy-1", "buddy", org="RBX"))
    assert await driver.js("return document.querySelector('h1').textContent") == "You do not have access to this page"
    assert "403" not in await driver.js("return document.title") or True
    assert "Sign in as someone else" in await driver.js("return document.body.innerText")


async def test_cohort_view(stack, driver):
    for ods, name in (("RB5", "Lowestoft and Waveney NHS Trust"), ("RB6", "Morecambe Bay Hospitals NHS Trust")):
        await place(stack, ods, name)
    exited = await place(stack, "RB7", "Northallerton NHS Foundation Trust", entry=today() - timedelta(days=25))
    cqc = stack.auth("cqc-1", "cqc")
    assert (await stack.http.post(f"/regimes/{exited}/inspections", headers=cqc,
                                  json=outcome("INS-RB7", today(), IMPROVED))).status_code == 202
    await stack.settle(exited)
    assert (await stack.http.post(f"/regimes/{exited}/steps/cqc_recommendation/decisions", headers=cqc,
                                  json={"action": "recommend_exit"})).status_code == 200
    assert (await stack.http.post(f"/regimes/{exited}/steps/regulator_decision/decisions",
                                  headers=stack.auth("reg-2", "regulator"), json={"action": "exit"})).status_code == 200
    late = await place(stack, "RB8", "Oakwood Park NHS Trust")
    await stack.fast_forward(late, 45)
    r = await stack.http.post(f"/regimes/{late}/steps/improvement_plan/decisions",
                              headers=stack.auth("trust-8", "trust", trusts=["RB8"]),
                              json={"action": "submit", "payload": PLAN})
    assert r.status_code == 200, r.text
    for rid in (exited, late):
        await stack.settle(rid)
    await driver.sign_in(stack.base_url, stack.token("ops-1", "operations"))
    await driver.get(f"{stack.base_url}/web/cohort")
    text = await driver.js("return document.body.innerText")
    assert "Northallerton NHS Foundation Trust" in text and "median months" in text
    bars = await driver.js("return document.querySelectorAll('svg.sm-cohort-chart g.sm-cohort-bar').length")
    assert bars == 4
    violations = await driver.axe()
    assert violations == [], violations
    await driver.screenshot("cohort.png")
