"""A regime's money in the web view (issue 16 items 1 and 2), over plain HTTP through the real app: the "Funding and
costs" page (/web/regimes/{id}/money) shows the funding agreement, its paid drawdown and the costs by quarter as
the API answers them (GET /regimes/{id}/funding and /costs), to whoever may read the regime; a user of another
trust gets the regime page's own "not found"; a regime with nothing spent says so. The regime is made as
tests/test_funding.py and tests/test_costs.py make theirs; the browser test of the page is
tests/test_browser_money.py."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from api.routes.costs import quarter_of
from api.web import labels
from api.web.money import quarter_label
from domain.steps import Kind
from tests.driver import Regime
from tests.test_buddy import World, lines, place_and_agree
from tests.test_programme import programme_plan
from tests.test_web_watchlist import text
from tools.polling import eventually

CEILING = 20_000_000
DRAWN = 15_000_000
BUDDY_PAID = 3_750_000
AREAS = ["sepsis pathway", "mortality reviews"]


async def funding_of(stack, rid: str) -> dict[str, Any]:
    r = await stack.http.get(f"/regimes/{rid}/funding", headers=stack.auth("ops-1", "operations"))
    assert r.status_code == 200, r.text
    return r.json()


async def costs_of(stack, rid: str) -> dict[str, Any]:
    r = await stack.http.get(f"/regimes/{rid}/costs", headers=stack.auth("ops-1", "operations"))
    assert r.status_code == 200, r.text
    return r.json()


async def money_regime(stack, ods: str, buddy_ods: str) -> tuple[World, Regime]:
    """A regime with money spent on every intervention: a funding agreement agreed by the trust and the director
    with one drawdown paid (as tests/test_funding.py), the director's time in the month of entry, and a quarter of
    buddy support paid (as tests/test_costs.py)."""
    w, pid = await place_and_agree(stack, ods, buddy_ods)
    entry = date.fromisoformat(w.rid.split("-", 2)[2])
    reg = Regime(stack, ods, w.rid, entry)
    await reg.act(Kind.improvement_plan, "submit", programme_plan(reg.today))
    await reg.act(Kind.plan_review, "agree")
    await reg.act(Kind.financial_review, "record", {"reviewed_on": str(reg.today), "achievable": True,
                                                    "summary": "affordable within the trust's plan"})
    await reg.act(Kind.funding_agreement, "record", {"ceiling_pence": CEILING, "areas": AREAS})
    await reg.act(Kind.funding_agreement_trust, "agree")
    await reg.act(Kind.funding_agreement_director, "agree")
    r = await stack.http.post(f"/regimes/{w.rid}/funding/drawdowns", headers=reg.users["trust"],
                              json={"amount_pence": DRAWN, "against": ["S1", "Sepsis"], "purpose": "screening"})
    assert r.status_code == 201, r.text
    await reg.act(f"{Kind.drawdown_approval}-1", "approve")
    await reg.act(f"{Kind.drawdown_authorisation}-1", "authorise")
    await eventually(lambda: funding_of(stack, w.rid), until=lambda f: f["paid_pence"] == DRAWN,
                     what="the drawdown paid", timeout=15, interval=0.05)

    r = await stack.http.post(f"/regimes/{w.rid}/director-time", json={"month": f"{entry:%Y-%m}", "days": 3.5},
                              headers=w.idir)
    assert r.status_code == 201, r.text

    q1 = lines(("governance", 3_000_000), ("maternity", 750_000))
    await w.decide(f"{buddy_ods}.q1.forecast", "sign_off", payload=q1)
    await w.advance(92)
    await w.confirm_all(pid, 1)
    r = await stack.http.post(f"/regimes/{w.rid}/steps/{buddy_ods}.q1.authorise/decisions", headers=w.idir,
                              json={"action": "authorise", "payload": q1})
    assert r.status_code == 200, r.text
    await w.settle(pid)
    await eventually(lambda: costs_of(stack, w.rid), until=lambda c: c["buddy_paid_pence"] == BUDDY_PAID,
                     what="the buddy payment in the costs", timeout=10, interval=0.05)
    return w, reg


def element(html: str, tag: str, attrs: str) -> str:
    """The inner HTML of the first `tag` whose opening tag carries `attrs` (e.g. 'data-quarter="2027-Q1"')."""
    m = re.search(rf"<{tag}\b[^>]*{re.escape(attrs)}[^>]*>(.*?)</{tag}>", html, re.S)
    assert m, f"no <{tag} {attrs}> on the page"
    return m.group(1)


def opening(html: str, tag: str, attrs: str) -> str:
    m = re.search(rf"<{tag}\b[^>]*{re.escape(attrs)}[^>]*>", html)
    assert m, f"no <{tag} {attrs}> on the page"
    return m.group(0)


def figure(html: str, name: str) -> str:
    return text(element(html, "span", f'data-figure="{name}"'))


async def test_the_money_page_shows_the_apis_funding_and_costs(stack):
    w, reg = await money_regime(stack, "RMW1", "BMW1")
    f = await funding_of(stack, w.rid)
    c = await costs_of(stack, w.rid)

    # Reached from the regime page.
    r = await stack.http.get(f"/web/regimes/{w.rid}", headers=w.ops)
    assert r.status_code == 200 and f'href="/web/regimes/{w.rid}/money"' in r.text

    for who in (w.ops, reg.users["trust"], reg.users["commissioner"]):  # whoever may read the regime
        r = await stack.http.get(f"/web/regimes/{w.rid}/money", headers=who)
        assert r.status_code == 200, r.text[:300]
    page = r.text
    words = text(page)
    assert "Funding and costs" in words and w.rid in words

    # The agreement: the ceiling, its areas, agreed by both parties, and what is left.
    assert figure(page, "ceiling") == labels.money(f["ceiling_pence"]) == labels.money(CEILING)
    assert figure(page, "paid") == labels.money(f["paid_pence"])
    assert figure(page, "requested") == labels.money(f["requested_pence"])
    assert figure(page, "remaining") == labels.money(f["remaining_pence"]) == labels.money(CEILING - DRAWN)
    assert [text(li) for li in re.findall(r"<li>(.*?)</li>", element(page, "ul", 'id="funding-areas"'))] == AREAS
    assert 'data-agreed="yes"' in page
    for kind in (Kind.funding_agreement_trust, Kind.funding_agreement_director):
        assert 'data-said="Agreed"' in opening(page, "span", f'data-party="{kind}"')

    # The paid drawdown: amount, against, purpose, who approved and authorised it, its payment.
    [d] = f["drawdowns"]
    [p] = f["payments"]
    row = element(page, "tr", f'data-drawdown="{d["n"]}"')
    assert f'data-status="{d["status"]}"' in opening(page, "tr", f'data-drawdown="{d["n"]}"') and d["status"] == "paid"
    cells = text(row)
    for shown in (labels.money(d["amount_pence"]), ", ".join(d["against"]), d["purpose"], d["approved_by"],
                  d["authorised_by"], d["requested_by"], "Paid"):
        assert shown in cells, (shown, cells)
    assert f'data-paid="{p["amount_pence"]}"' in row and p["amount_pence"] == DRAWN

    # The costs by quarter, each as the API gives it, and the totals.
    assert {q["quarter"] for q in c["quarters"]} >= {quarter_of(date.fromisoformat(w.rid.split("-", 2)[2]))}
    assert sum(q["buddy_paid_pence"] for q in c["quarters"]) == BUDDY_PAID
    assert sum(q["direct_funding_pence"] for q in c["quarters"]) == DRAWN
    for q in c["quarters"]:
        tr = opening(page, "tr", f'data-quarter="{q["quarter"]}"')
        assert (f'data-buddy="{q["buddy_paid_pence"]}" data-funding="{q["direct_funding_pence"]}" '
                f'data-director="{q["director_time_pence"]}" data-total="{q["total_pence"]}"') in tr
        cells = text(element(page, "tr", f'data-quarter="{q["quarter"]}"'))
        assert cells.startswith(quarter_label(q["quarter"]))
        for pence in ("buddy_paid_pence", "direct_funding_pence", "director_time_pence", "total_pence"):
            assert labels.money(q[pence]) in cells
    shown = re.findall(r'<tr\b[^>]*data-quarter="(\d{4}-Q\d)"', page)
    assert shown == [q["quarter"] for q in c["quarters"]]  # oldest first, as the API lists them
    total = text(element(page, "tr", 'data-quarter="total"'))
    for pence in ("buddy_paid_pence", "direct_funding_pence", "director_time_pence", "total_pence"):
        assert labels.money(c[pence]) in total
    assert figure(page, "total-cost") == labels.money(c["total_pence"])
    # Months in special measures run to the regime's own today (virtual time here, ahead of the API's wall
    # clock), and the cost per month is the API's rule over them.
    months = float(figure(page, "months"))
    assert months >= c["months_in_special_measures"]
    assert figure(page, "cost-per-month") == labels.money(round(c["total_pence"] / max(months, 1.0)))


async def test_another_trusts_user_gets_the_regime_pages_not_found(stack):
    reg = await Regime.place(stack, "RMW2")
    other = stack.auth("trust-MW9", "trust", trusts=["RMW9"])
    regime = await stack.http.get(f"/web/regimes/{reg.id}", headers=other)
    money = await stack.http.get(f"/web/regimes/{reg.id}/money", headers=other)
    unknown = await stack.http.get("/web/regimes/regime-QQ9-2020-01-01/money", headers=other)
    assert regime.status_code == money.status_code == unknown.status_code == 404
    title = re.compile(r"<h1[^>]*>(.*?)</h1>", re.S)
    assert text(title.search(money.text).group(1)) == text(title.search(regime.text).group(1)) \
        == text(title.search(unknown.text).group(1))
    assert text(money.text.replace(reg.id, "<id>")) == text(regime.text.replace(reg.id, "<id>"))
    assert "RMW2" not in money.text.replace(reg.id, "")
    # The API answers the same user the same way.
    for what in ("funding", "costs"):
        r = await stack.http.get(f"/regimes/{reg.id}/{what}", headers=other)
        assert r.status_code == 404


async def test_a_regime_with_nothing_spent_says_so(stack):
    reg = await Regime.place(stack, "RMW3")
    f = await funding_of(stack, reg.id)
    c = await costs_of(stack, reg.id)
    assert (f["ceiling_pence"], f["drawdowns"], c["quarters"], c["total_pence"]) == (0, [], [], 0)
    r = await stack.http.get(f"/web/regimes/{reg.id}/money", headers=reg.users["trust"])
    assert r.status_code == 200, r.text[:300]
    words = text(r.text)
    assert "No central funding agreement has been recorded for this regime." in words
    assert "No drawdown has been requested." in words
    assert ("Nothing has been spent on this regime yet: no buddy payment, central funding paid or improvement "
            "director's time has been recorded.") in words
    assert 'id="costs-table"' not in r.text and 'id="drawdowns-table"' not in r.text
    assert 'data-figure="ceiling"' not in r.text
