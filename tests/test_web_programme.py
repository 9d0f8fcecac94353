"""The improvement plan as a programme in the operations web view (issue 15 item 6), over plain HTTP: the plan page
(by theme, with a chart per theme), the readiness page (countdown, evidence files, self-assessments, items at risk)
and who may open them. The data is made through the real API, as tests/test_programme.py makes it; the browser test
of the same pages is tests/test_browser_programme.py."""

from __future__ import annotations

import re
from datetime import date, timedelta
from html import unescape
from typing import Any

from api.web import data, labels
from domain.steps import Kind
from tests.driver import Regime
from tests.test_programme import programme_plan

OPS = ("ops-1", "operations")
MADE_UP = "regime-QQ9-2020-01-01"
# While a month's report is the one under test, the regime leaves the later ones (and the plan's own tasks) open.
LEAVE_OPEN = (Kind.monthly_return, Kind.plan_action, Kind.delivery_meeting, Kind.monthly_return_cosign)
PROGRESS = {"actions": [
    {"action_id": "S1", "status": "off_track", "metric_value": "71%"},
    {"action_id": "M1", "status": "done", "metric_value": "100%"},
    {"action_id": "S2", "status": "on_track"}]}
CHALLENGE = "no training records were shown for two wards"


async def programme_regime(stack, ods: str, announce: bool = False) -> dict[str, Any]:
    """A regime with an agreed plan (tests/test_programme.py's, two themes) and its first monthly report per
    action (S1 off track, M1 done, S2 on track), co-signed by the improvement director with S2 challenged.
    With `announce`, the regime goes on past four months, so its first self-assessment is open and S1 past its
    target date, and CQC announces the re-inspection for 30 days later: the open self-assessment is at risk."""
    reg = await Regime.place(stack, ods)
    await reg.act("improvement_plan", "submit", programme_plan(reg.today))
    before = await get(stack, f"/web/regimes/{reg.id}/plan", *OPS)
    await reg.act("plan_review", "agree")
    await reg.advance(60, skip=(Kind.monthly_return, Kind.plan_action, Kind.delivery_meeting))
    st = await reg.state()
    first = min(s["id"] for s in st["open_steps"] if s["kind"] == Kind.monthly_return)
    month = st["steps"][first]["subject"]["month"]
    await reg.act(first, "submit", PROGRESS)
    await reg.act(first.replace(Kind.monthly_return, Kind.monthly_return_cosign), "cosign",
                  {"challenges": [{"action_id": "S2", "reason": CHALLENGE}]})
    if announce:
        await reg.advance(65, skip=LEAVE_OPEN)
        st = await reg.state()
        assert st["steps"]["self_assessment-1"]["status"] == "open", "the first self-assessment opens in month 4"
        r = await stack.http.post(f"/regimes/{reg.id}/reinspection", headers=reg.users["cqc"],
                                  json={"inspection_date": (reg.today + timedelta(days=30)).isoformat()})
        assert r.status_code == 200, r.text
    await stack.settle(reg.id)
    return {"reg": reg, "month": month, "before": before}


async def get(stack, path: str, *who, trusts=None):
    return await stack.http.get(path, headers=stack.auth(*who, trusts=trusts), follow_redirects=False)


def text(html: str) -> str:
    """The page's words, without tags, entities or runs of white space."""
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


def section(html: str, start: str, end: str | None = None) -> str:
    part = html.split(f'id="{start}"', 1)[1]
    return part.split(f'id="{end}"', 1)[0] if end else part


async def test_plan_and_readiness_pages_for_an_agreed_plan(stack):
    made = await programme_regime(stack, "RWP1")
    reg, month = made["reg"], made["month"]

    # Before the improvement director agreed the plan, the page said so plainly.
    assert made["before"].status_code == 200 and "No improvement plan has been agreed yet." in made["before"].text

    # The regime page links to both pages.
    html = (await get(stack, f"/web/regimes/{reg.id}", *OPS)).text
    assert f'href="/web/regimes/{reg.id}/plan"' in html and f'href="/web/regimes/{reg.id}/readiness"' in html

    r = await get(stack, f"/web/regimes/{reg.id}/plan", *OPS)
    assert r.status_code == 200
    html = r.text
    view = (await stack.http.get(f"/regimes/{reg.id}/plan", headers=reg.users["regulator"])).json()
    v = view["version"]
    assert f"Version 1, agreed on {labels.fmt_date(v['agreed_on'])} by {v['agreed_by']}" in text(html)
    assert f"/web/regimes/{reg.id}/documents/{v['sha256']}" in html
    assert 'data-on-trajectory="yes"' in html and "On trajectory" in html  # S1 is off track one month only
    assert f"Monthly reports 1 ({labels.fmt_month(month)})" in text(html)

    # At the top: the actions that need attention, with why.
    attention = section(html, "attention", "themes")
    assert re.findall(r'<tr data-action="([^"]+)"', attention) == ["S1"]
    assert "Off track in the latest report" in text(attention)

    # A section per theme, in the plan's order, each with its chart and its actions.
    themes = re.findall(r'<section class="sm-theme" id="theme-\d+" data-theme="([^"]+)"', html)
    assert themes == ["Sepsis", "Mortality"]
    sepsis = section(html, "theme-1", "theme-2")
    mortality = section(html, "theme-2")
    for part in (sepsis, mortality):
        assert part.count('<svg class="sm-plan-chart"') == 1 and "<title id=" in part and "<desc id=" in part
        assert part.count(f'<g class="sm-plan-bar" data-month="{month}">') == 1
    segs = dict(re.findall(r'<rect class="sm-plan-seg" data-status="([a-z_]+)" data-count="(\d+)"', sepsis))
    assert segs == {"on_track": "1", "off_track": "1"}
    segs = dict(re.findall(r'<rect class="sm-plan-seg" data-status="([a-z_]+)" data-count="(\d+)"', mortality))
    assert segs == {"done": "1", "not_reported": "1"}  # M2 is not in the month's report
    assert "url(#plan-chart-1-off_track)" in sepsis and 'id="plan-chart-2-off_track"' in mortality
    # The chart's figures as a table too, and its text alternative in words.
    assert f"{labels.fmt_month(month)}: 1 on track, 1 off track" in unescape(sepsis)
    row = re.search(rf'<tr data-month="{month}">(.*?)</tr>', sepsis, re.S).group(1)
    assert re.findall(r'data-status="([a-z_]+)">(\d+)<', row) == [
        ("done", "0"), ("on_track", "1"), ("at_risk", "0"), ("off_track", "1"), ("not_started", "0"),
        ("not_reported", "0")]

    actions = dict(re.findall(r'<tr data-action="([^"]+)" data-status="([a-z_]+)"', html))
    assert actions == {"S1": "off_track", "S2": "on_track", "M1": "done", "M2": "not_started"}
    s1 = re.search(r'<tr data-action="S1" data-status.*?</tr>', sepsis, re.S).group(0)
    plan = programme_plan(reg.start)["actions"][0]
    assert plan["description"] in text(s1) and plan["owner"] in text(s1)
    assert labels.fmt_date(date.fromisoformat(plan["target_date"])) in text(s1)
    assert "Off track" in text(s1) and f"{labels.fmt_month(month)}: off track (71%)" in text(s1)
    s2 = re.search(r'<tr data-action="S2" data-status.*?</tr>', sepsis, re.S).group(0)
    assert "Challenged" in s2 and CHALLENGE in text(s2)

    # Readiness: the countdown to the re-inspection's due date, on the regime's own clock.
    api = (await stack.http.get(f"/regimes/{reg.id}/readiness", headers=reg.users["trust"])).json()
    due = date.fromisoformat(api["next_reinspection"]["due"])
    first_day = (await data.clock(stack.client, reg.id)).today
    r = await get(stack, f"/web/regimes/{reg.id}/readiness", *OPS)
    last_day = (await data.clock(stack.client, reg.id)).today
    assert r.status_code == 200
    html = r.text
    days = int(re.search(r'id="countdown" data-days="(-?\d+)"', html).group(1))
    assert days in {(due - first_day).days, (due - last_day).days} and days > 0
    assert f"{days} days to the re-inspection on {labels.fmt_date(due)}" in text(html)
    assert "CQC has not announced the inspection date yet" in text(html)
    assert "No evidence file is open yet." in text(html) and 'id="at-risk"' not in html
    scheduled = text(section(html, "scheduled"))
    assert "Formal plan review" in scheduled and "Evidence file complete: Safe" in scheduled
    assert "Self-assessment 1" in text(section(html, "self-assessments", "checklist"))


async def test_items_open_when_the_reinspection_is_announced_are_at_risk(stack):
    reg = (await programme_regime(stack, "RWP2", announce=True))["reg"]
    html = (await get(stack, f"/web/regimes/{reg.id}/readiness", *OPS)).text
    api = (await stack.http.get(f"/regimes/{reg.id}/readiness", headers=reg.users["trust"])).json()
    announced = date.fromisoformat(api["next_reinspection"]["announced_date"])
    days = int(re.search(r'id="countdown" data-days="(-?\d+)"', html).group(1))
    assert f"{days} days to the re-inspection on {labels.fmt_date(announced)}" in text(html)
    assert "The date announced for" in text(html)
    at_risk = [i["step_id"] for i in api["items"] if i["at_risk"]]
    assert "self_assessment-1" in at_risk
    assert re.findall(r'<tr data-step="([^"]+)" data-state="[a-z_]+" data-at-risk="yes"', html) == at_risk
    assert f"{len(at_risk)} item{'s' if len(at_risk) != 1 else ''} at risk" in text(section(html, "at-risk"))
    # The announcement brought the evidence files forward (they were scheduled from the re-inspection's due
    # date): open now, due before the inspection, at risk; what is still scheduled after it says so.
    assert sum(1 for i in api["items"] if i["kind"] == Kind.evidence_file and i["at_risk"]) == 5
    late = re.findall(r'<tr data-kind="([a-z_]+)" data-after-inspection="yes">', section(html, "scheduled"))
    assert Kind.evidence_file not in late and Kind.programme_review in late

    # S1's target date has passed without it done: overdue, and the plan is off trajectory.
    html = (await get(stack, f"/web/regimes/{reg.id}/plan", *OPS)).text
    assert 'data-on-trajectory="no"' in html and "Off trajectory" in html
    assert "1 action(s) past their target date: S1" in text(html)
    assert '<tr data-action="S1" data-overdue="yes"' in section(html, "attention", "themes")


async def test_another_trusts_user_is_told_the_pages_do_not_exist(stack):
    reg = await Regime.place(stack, "RWP3")
    await reg.act("improvement_plan", "submit", programme_plan(reg.today))
    await reg.act("plan_review", "agree")
    await stack.settle(reg.id)
    for page in ("plan", "readiness"):
        mine = await get(stack, f"/web/regimes/{reg.id}/{page}", "trust-3", "trust", trusts=["RWP3"])
        assert mine.status_code == 200, page
        director = await get(stack, f"/web/regimes/{reg.id}/{page}", "id-3", "improvement_director", trusts=["RWP3"])
        assert director.status_code == 200, page
        other = await get(stack, f"/web/regimes/{reg.id}/{page}", "trust-9", "trust", trusts=["RWP9"])
        made_up = await get(stack, f"/web/regimes/{MADE_UP}/{page}", "trust-9", "trust", trusts=["RWP9"])
        assert other.status_code == made_up.status_code == 404, page
        assert text(other.text.replace(reg.id, "<id>")) == text(made_up.text.replace(MADE_UP, "<id>"))
        assert "Example" not in other.text and "RWP3" not in other.text.replace(reg.id, "<id>")
        # Without a view role: the same refusal as every other page.
        assert (await get(stack, f"/web/regimes/{reg.id}/{page}", "buddy-1", "buddy")).status_code == 403
    signed_out = await stack.http.get(f"/web/regimes/{reg.id}/plan", follow_redirects=False)
    assert signed_out.status_code == 303 and "/web/sign-in?next=" in signed_out.headers["location"]
