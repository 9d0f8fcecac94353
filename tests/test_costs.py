"""The cost of the interventions per regime (issue 16 item 2): buddy payments made and the improvement
director's recorded time at its day rate, by quarter, through the HTTP API."""

from __future__ import annotations

from datetime import date

from api.routes.costs import quarter_of
from domain.dates import add_months
from tests.test_buddy import lines, place_and_agree
from tools.polling import eventually


async def test_buddy_payments_and_the_directors_time_by_quarter(stack):
    w, pid = await place_and_agree(stack, "RCO1", "BCO1")
    entry = date.fromisoformat(w.rid.split("-", 2)[2])
    month = f"{entry:%Y-%m}"
    url = f"/regimes/{w.rid}/director-time"
    rate = stack.settings.director_day_rate_pence

    # The improvement director records their days; the trust may not; a month recorded again needs a reason.
    r = await stack.http.post(url, json={"month": month, "days": 3.5}, headers=w.trust)
    assert r.status_code == 403 and r.headers["content-type"].startswith("application/problem+json")
    r = await stack.http.post(url, json={"month": month, "days": 0.3}, headers=w.idir)
    assert r.status_code == 422  # half days
    r = await stack.http.post(url, json={"month": month, "days": 3.5}, headers=w.idir)
    assert r.status_code == 201, r.text
    assert (r.json()["cost_pence"], r.json()["rate_pence"], r.json()["by"]) == (3.5 * rate, rate, "id-1")
    r = await stack.http.post(url, json={"month": month, "days": 4}, headers=w.idir)
    assert r.status_code == 422 and "needs a reason" in r.json()["detail"]
    r = await stack.http.post(url, json={"month": month, "days": 4, "reason": "a day's visit missed"},
                              headers=w.idir)
    assert r.status_code == 201 and r.json()["cost_pence"] == 4 * rate
    before = f"{add_months(entry, -1):%Y-%m}"
    r = await stack.http.post(url, json={"month": before, "days": 1}, headers=w.regulator)
    assert r.status_code == 422 and "not a month of this regime" in r.json()["detail"]
    later = f"{add_months(entry, 1):%Y-%m}"
    r = await stack.http.post(url, json={"month": later, "days": 1}, headers=w.regulator)
    assert r.status_code == 422  # not yet

    # A quarter of buddy support paid.
    q1 = lines(("governance", 3_000_000), ("maternity", 750_000))
    await w.decide("BCO1.q1.forecast", "sign_off", payload=q1)
    await w.advance(92)
    await w.confirm_all(pid, 1)
    r = await stack.http.post(f"/regimes/{w.rid}/steps/BCO1.q1.authorise/decisions", headers=w.idir,
                              json={"action": "authorise", "payload": q1})
    assert r.status_code == 200, r.text
    await w.settle(pid)
    r = await stack.http.post(url, json={"month": later, "days": 2, "role": "regulator"}, headers=w.regulator)
    assert r.status_code == 201, r.text

    async def costs() -> dict:
        r = await stack.http.get(f"/regimes/{w.rid}/costs", headers=w.ops)
        assert r.status_code == 200, r.text
        return r.json()
    c = await eventually(costs, until=lambda c: c["buddy_paid_pence"] == 3_750_000,
                         what="the payment in the costs", timeout=10, interval=0.05)
    paid = await stack.pool.fetchval("SELECT authorised_at FROM buddy_payments WHERE partnership_id = $1", pid)
    by_q = {q["quarter"]: q for q in c["quarters"]}
    assert by_q[quarter_of(paid.date())]["buddy_paid_pence"] == 3_750_000
    director = {quarter_of(month): 4 * rate}
    director[quarter_of(later)] = director.get(quarter_of(later), 0) + 2 * rate
    assert {k: q["director_time_pence"] for k, q in by_q.items() if q["director_time_pence"]} == director
    assert c["director_days"] == 6 and c["director_time_pence"] == 6 * rate
    assert c["total_pence"] == 3_750_000 + 6 * rate and c["direct_funding_pence"] == 0
    assert c["cost_per_month_pence"] == round(c["total_pence"] / max(c["months_in_special_measures"], 1.0))
    corrected = await stack.pool.fetch("SELECT actor, reason, detail FROM audit_log WHERE regime_id = $1 AND "
                                       "event = 'director_time_recorded' ORDER BY seq", w.rid)
    assert [(a["actor"], a["detail"]["cost_pence"]) for a in corrected] == [
        ("id-1", 3.5 * rate), ("id-1", 4 * rate), ("reg-1", 2 * rate)]
    assert corrected[1]["reason"] == "a day's visit missed" and corrected[1]["detail"]["corrects"]["days"] == 3.5
    # The evaluation's cost per regime counts the same: each month's latest record, and the payment.
    ev = (await stack.http.get("/evaluation", headers=w.ops)).json()
    [mine] = [i for i in ev["cost"]["items"] if i["regime_id"] == w.rid]
    assert (mine["director_time_pence"], mine["buddy_paid_pence"]) == (6 * rate, 3_750_000)
    # ... and so does the cohort page, per regime.
    page = await stack.http.get("/web/cohort", headers=w.ops, follow_redirects=False)
    assert page.status_code == 200, page.text[:300]
    row = page.text.split(f'data-regime="{w.rid}"')[1].split("</tr>")[0]
    assert f'data-cost="{3_750_000 + 6 * rate}"' in row
