"""The evaluation view (issue 16 item 5) over a synthetic cohort written straight into the test schema's tables:
44 regimes with known durations (exits, regimes still running, re-entries, structural closures, one closure with
no recorded date, buddy payments). The API's survival curve and median must be statsmodels' own `SurvfuncRight`
on the same durations; a small cohort checks the median by hand; the CSVs must say what the JSON says; the page
renders and only the national roles and operations see it. Every date is relative to today."""

from __future__ import annotations

import csv
import io
import random
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from statsmodels.duration.survfunc import SurvfuncRight

from domain.dates import london_date

NATIONAL = ("operations", "regulator", "cqc", "admin")
SCOPED = ("trust", "improvement_director", "commissioner")


def today() -> date:
    return london_date(datetime.now(UTC))


class Cohort:
    """Regimes written as the effects activity would leave them, with the duration each must count for."""

    def __init__(self, pool) -> None:
        self.pool = pool
        self.expected: list[tuple[int, bool]] = []  # (days, ended) per regime
        self.n = 0

    async def regime(self, days: int, outcome: str, *, ago: int = 0, ods: str | None = None,
                     previous: str | None = None, paid: list[int] = ()) -> dict[str, Any]:
        """A regime of `days` in special measures whose end (exit or closure) was `ago` days before today; a
        running one entered `days` ago. Returns its id, trust and dates."""
        self.n += 1
        rid, ods = f"EV-{self.n:03d}", ods or f"EV{self.n:03d}"
        end = today() - timedelta(days=ago)
        entry = end - timedelta(days=days)
        exit_date = end if outcome == "exited" else None
        phase = {"exited": "exited", "running": "in_special_measures", "closed": "closed_structural",
                 "closed_undated": "closed_structural"}[outcome]
        await self.pool.execute(
            "INSERT INTO regimes (regime_id, workflow_id, ods_code, trust_name, entry_date, phase, exit_date, closed, "
            "closure_solution, previous_regime_id, updated_at) VALUES ($1,$1,$2,$3,$4,$5,$6,$7,$8,$9,$10)",
            rid, ods, f"Trust {ods} NHS Trust", entry, phase, exit_date, outcome.startswith("closed"),
            "merger" if outcome.startswith("closed") else None, previous,
            datetime.combine(end, time(12), tzinfo=UTC))
        if outcome == "closed":  # the closure's date is the regime_closed audit entry's
            await self.pool.execute(
                "INSERT INTO audit_log (regime_id, workflow_id, seq, event, actor, role, at, prev_hash, hash, hash_alg) "
                "VALUES ($1,$1,1,'regime_closed','system','system',$2,'0','0','hmac-sha256')",
                rid, datetime.combine(end, time(12), tzinfo=UTC))
        for q, pence in enumerate(paid, start=1):
            async with self.pool.acquire() as conn, conn.transaction():
                pid = await conn.fetchval(
                    "INSERT INTO buddy_payments (partnership_id, quarter, regime_id, buddy_ods, amount_pence, "
                    "authorised_by, authorised_at) VALUES ($1,$2,$3,'RZZ',$4,'id-1',now()) RETURNING id",
                    f"{rid}-buddy", q, rid, pence)
                await conn.execute("INSERT INTO buddy_payment_lines (payment_id, line_no, workstream, description, "
                                   "amount_pence) VALUES ($1,1,'Governance','mentoring',$2)", pid, pence)
        # A closure with no recorded date is censored at the row's last change (here: its `end`).
        self.expected.append((days, outcome in ("exited", "closed")))
        return {"regime_id": rid, "ods": ods, "entry": entry, "end": end}


async def synthetic_cohort(pool) -> Cohort:
    """44 regimes: 24 exits (two pairs of tied durations), 13 running, 4 re-entries (two running, two exited
    again, 200, 300, 400 and 500 days after the exit before), 2 structural closures and 1 closure with no date."""
    rng = random.Random(165)
    c = Cohort(pool)
    firsts = []
    for i in range(24):
        days = [400, 400, 730, 730][i] if i < 4 else rng.randint(150, 1300)
        firsts.append(await c.regime(days, "exited", ago=900 + 100 * i if i < 4 else rng.randint(30, 1500)))
    for _ in range(13):
        await c.regime(rng.randint(20, 1100), "running")
    for n, first in enumerate(firsts[:4]):
        gap = 200 + 100 * n
        ago = (today() - first["end"]).days - gap  # the re-entry entered `gap` days after the exit
        if n < 2:
            await c.regime(ago, "running", ods=first["ods"], previous=first["regime_id"])
        else:
            await c.regime(ago // 2, "exited", ago=ago - ago // 2, ods=first["ods"], previous=first["regime_id"])
    await c.regime(500, "closed", ago=100)
    await c.regime(900, "closed", ago=20)
    await c.regime(600, "closed_undated", ago=50)
    assert len(c.expected) == 44
    return c


async def library(expected: list[tuple[int, bool]]) -> SurvfuncRight:
    return SurvfuncRight([float(d) for d, _ in expected], [1 if e else 0 for _, e in expected])


def get_json(r) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    return r.json()


async def test_median_and_curve_are_the_librarys_on_a_synthetic_cohort_of_44(stack):
    c = await synthetic_cohort(stack.pool)
    paid = await c.regime(365, "exited", ago=10, paid=[2_500_000, 1_250_050])
    await c.regime(200, "running", paid=[600_000])
    assert len(c.expected) >= 40 + 4
    ev = get_json(await stack.http.get("/evaluation", headers=stack.auth("ops-1", "operations")))
    sf = await library(c.expected)

    assert ev["regimes"] == len(c.expected) == 46
    assert (ev["exited"], ev["closed"], ev["running"], ev["closed_undated"]) == (27, 2, 16, 1)
    # The median: the library's quantile(0.5), in days and months.
    assert ev["median_days"] == float(sf.quantile(0.5))
    assert ev["median_months"] == round(float(sf.quantile(0.5)) / 30.4375, 1)
    # The curve: from (0, 100%), then the library's steps with its numbers at risk and ends.
    points = ev["survival"]
    assert points[0] == {"time_days": 0, "months": 0.0, "survival": 1.0, "at_risk": 46, "events": 0,
                         "censored": points[0]["censored"]}
    assert [p["time_days"] for p in points[1:]] == [int(t) for t in sf.surv_times]
    assert [p["survival"] for p in points[1:]] == pytest.approx([float(s) for s in sf.surv_prob], abs=1e-12)
    assert [p["at_risk"] for p in points[1:]] == [int(k) for k in sf.n_risk]
    assert [p["events"] for p in points[1:]] == [int(k) for k in sf.n_events]
    assert sum(p["events"] + p["censored"] for p in points) == 46
    assert any(p["events"] == 2 for p in points), "tied durations end together"

    # Re-entry: four of the exits were followed by a re-entry, 200, 300, 400 and 500 days later.
    re = ev["reentry"]
    assert (re["exits"], re["reentered"]) == (27, 4)
    assert re["rate"] == pytest.approx(4 / 27)
    assert sorted(e["days_to_reentry"] for e in re["items"] if e["reentered"]) == [200, 300, 400, 500]
    assert re["median_days_to_reentry"] == 350.0

    # Cost: the buddy payments paid, per regime and per month in special measures.
    cost = ev["cost"]
    assert cost["buddy_paid_pence"] == 2_500_000 + 1_250_050 + 600_000
    assert cost["regimes_with_payments"] == 2
    item = next(i for i in cost["items"] if i["regime_id"] == paid["regime_id"])
    assert item["buddy_paid_pence"] == 3_750_050 and item["days"] == 365
    assert item["buddy_per_month_pence"] == round(3_750_050 / (365 / 30.4375))
    assert cost["total_pence"] == cost["buddy_paid_pence"] + cost["funding_paid_pence"] + cost["director_time_pence"]

    # By entry year: each year's median is the library's on that year's regimes.
    entries = await stack.pool.fetch("SELECT regime_id, entry_date FROM regimes ORDER BY entry_date, regime_id")
    year_of = {r["regime_id"]: r["entry_date"].year for r in entries}
    durations = {i["regime_id"]: (i["days"], i["outcome"] in ("exited", "closed")) for i in cost["items"]}
    assert sorted(durations.values()) == sorted(c.expected)
    for y in ev["by_entry_year"]:
        group = [durations[r] for r, yr in year_of.items() if yr == y["year"]]
        assert y["regimes"] == len(group)
        q = float((await library(group)).quantile(0.5))
        assert y["median_days"] == (None if q != q else q), y
    assert sum(y["regimes"] for y in ev["by_entry_year"]) == 46


async def test_a_small_cohort_whose_median_is_plain(stack):
    cohort = Cohort(stack.pool)
    for days in (100, 200, 300, 400, 500):
        await cohort.regime(days, "exited", ago=10)
    await cohort.regime(250, "running")  # censored at 250 days
    ev = get_json(await stack.http.get("/evaluation", headers=stack.auth("reg-1", "regulator")))
    # Six regimes: 1 - 1/6 at 100 days, then x 4/5 at 200; the censored one leaves three at risk at 300 days
    # (x 2/3 = 4/9, the first value below one half: the median), x 1/2 at 400, 0 at 500.
    assert [(p["time_days"], round(p["survival"], 4), p["at_risk"], p["events"], p["censored"])
            for p in ev["survival"]] == [
        (0, 1.0, 6, 0, 0), (100, round(5 / 6, 4), 6, 1, 0), (200, round(4 / 6, 4), 5, 1, 1),
        (300, round(4 / 9, 4), 3, 1, 0), (400, round(2 / 9, 4), 2, 1, 0), (500, 0.0, 1, 1, 0)]
    assert ev["median_days"] == 300.0 and ev["median_months"] == 9.9


async def test_no_median_while_most_regimes_run(stack):
    cohort = Cohort(stack.pool)
    await cohort.regime(100, "exited", ago=5)
    for _ in range(3):
        await cohort.regime(300, "running")
    ev = get_json(await stack.http.get("/evaluation", headers=stack.auth("cqc-1", "cqc")))
    assert ev["median_days"] is None and ev["median_months"] is None
    assert [p["survival"] for p in ev["survival"]] == [1.0, 0.75]


def parse(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


async def test_the_csvs_say_what_the_json_says(stack):
    c = await synthetic_cohort(stack.pool)
    await c.regime(365, "exited", ago=10, paid=[1_000_000])
    h = stack.auth("adm-1", "admin")
    ev = get_json(await stack.http.get("/evaluation", headers=h))
    tables = {}
    for name in ("survival", "by-entry-year", "reentry", "cost"):
        r = await stack.http.get("/evaluation", params={"format": "csv", "table": name}, headers=h)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/csv")
        assert f'filename="evaluation-{name}.csv"' in r.headers["content-disposition"]
        tables[name] = parse(r.text)
    assert [(int(p["time_days"]), float(p["survival"]), int(p["at_risk"]), int(p["events"]), int(p["censored"]))
            for p in tables["survival"]] == [(p["time_days"], p["survival"], p["at_risk"], p["events"], p["censored"])
                                             for p in ev["survival"]]
    assert [(int(y["year"]), int(y["regimes"]), float(y["median_days"]) if y["median_days"] else None)
            for y in tables["by-entry-year"]] == [(y["year"], y["regimes"], y["median_days"])
                                                  for y in ev["by_entry_year"]]
    assert [(e["regime_id"], e["reentered"] == "true", int(e["days_to_reentry"]) if e["days_to_reentry"] else None)
            for e in tables["reentry"]] == [(e["regime_id"], e["reentered"], e["days_to_reentry"])
                                            for e in ev["reentry"]["items"]]
    assert [(r["regime_id"], int(r["days"]), int(r["buddy_paid_pence"]), int(r["total_pence"]))
            for r in tables["cost"]] == [(i["regime_id"], i["days"], i["buddy_paid_pence"], i["total_pence"])
                                         for i in ev["cost"]["items"]]
    assert sum(int(r["buddy_paid_pence"]) for r in tables["cost"]) == ev["cost"]["buddy_paid_pence"] == 1_000_000
    assert any(r["buddy_paid_pounds"] == "10000.00" for r in tables["cost"])
    # The web page's downloads are the same files.
    for name, rows in tables.items():
        r = await stack.http.get(f"/web/evaluation/{name}.csv", headers=h)
        assert r.status_code == 200 and parse(r.text) == rows, name
    r = await stack.http.get("/evaluation", params={"format": "csv"}, headers=h)
    assert r.status_code == 422 and "table" in r.json()["detail"]


async def test_a_trust_name_that_looks_like_a_formula_is_text_in_the_csv(stack):
    await stack.pool.execute(
        "INSERT INTO regimes (regime_id, workflow_id, ods_code, trust_name, entry_date, phase) "
        "VALUES ('EV-F', 'EV-F', 'EVF', '=HYPERLINK(\"x\")', $1, 'in_special_measures')", today() - timedelta(days=90))
    r = await stack.http.get("/evaluation", params={"format": "csv", "table": "cost"},
                             headers=stack.auth("ops-1", "operations"))
    assert parse(r.text)[0]["trust_name"] == "'=HYPERLINK(\"x\")"


async def test_only_operations_and_the_national_roles_read_it(stack):
    for role in NATIONAL:
        assert (await stack.http.get("/evaluation", headers=stack.auth(f"{role}-1", role))).status_code == 200
        assert (await stack.http.get("/web/evaluation", headers=stack.auth(f"{role}-1", role))).status_code == 200
    for role in SCOPED:
        h = stack.auth(f"{role}-1", role, trusts=["EV001"])
        r = await stack.http.get("/evaluation", headers=h)
        assert r.status_code == 403 and r.json()["type"].endswith("/forbidden-role"), r.text
        assert (await stack.http.get("/web/evaluation", headers=h)).status_code == 403
        assert (await stack.http.get("/web/evaluation/cost.csv", headers=h)).status_code == 403
        page = await stack.http.get("/web/cohort", headers=h)
        assert 'href="/web/evaluation"' not in page.text
    assert (await stack.http.get("/evaluation", headers=stack.auth("b-1", "buddy", org="RZZ"))).status_code == 403
    assert (await stack.http.get("/evaluation")).status_code == 401


async def test_the_page_shows_the_median_the_curve_and_the_downloads(stack):
    c = await synthetic_cohort(stack.pool)
    await c.regime(365, "exited", ago=10, paid=[2_500_000])
    h = stack.auth("ops-1", "operations")
    ev = get_json(await stack.http.get("/evaluation", headers=h))
    r = await stack.http.get("/web/evaluation", headers=h)
    assert r.status_code == 200, r.text
    html = r.text
    assert f'data-figure="median">{ev["median_months"]}<' in html
    assert 'class="sm-survival-chart"' in html and 'class="sm-survival-line"' in html
    assert html.count('class="sm-survival-censor"') == ev["running"] + ev["closed_undated"]
    assert 'role="img"' in html and 'id="survival-chart-title"' in html and 'id="survival-chart-desc"' in html
    assert html.count("<tr data-year=") == len(ev["by_entry_year"])
    for name in ("survival", "by-entry-year", "reentry", "cost"):
        assert f'href="/web/evaluation/{name}.csv"' in html
    assert "£25,000.00" in html and 'data-figure="total-cost">' in html
    assert 'href="/web/evaluation"' in html  # the navigation's link, next to the cohort's
    assert (await stack.http.get("/web/evaluation/nothing.csv", headers=h)).status_code == 404


async def test_an_empty_service_has_a_page_too(stack):
    h = stack.auth("ops-1", "operations")
    ev = get_json(await stack.http.get("/evaluation", headers=h))
    assert ev["regimes"] == 0 and ev["survival"] == [] and ev["median_days"] is None
    assert ev["reentry"]["rate"] is None and ev["cost"]["buddy_per_month_pence"] is None
    r = await stack.http.get("/web/evaluation", headers=h)
    assert r.status_code == 200 and "No regimes yet" in r.text
