"""The operations web view over plain HTTP: sign-in, roles, the list, the regime page and the cohort."""

from __future__ import annotations

import random
import re
from datetime import UTC, date, datetime, timedelta
from html import unescape

from api.web import data, labels
from domain.dates import london_date, months_between
from tests.helpers import IMPROVED, PLAN, outcome, placement

OPS = ("ops-1", "operations")


def today() -> date:
    return london_date(datetime.now(UTC))


async def place(stack, ods: str, entry: date | None = None, name: str = "Example Hospitals NHS Trust") -> str:
    r = await stack.http.post("/regimes", json=placement(ods, entry or today(), name=name),
                              headers=stack.auth("reg-1", "regulator"))
    assert r.status_code == 201, r.text
    return r.json()["regime_id"]


async def get(stack, path: str, *who, trusts=None, **kw):
    headers = stack.auth(*who, trusts=trusts) if who else {}
    return await stack.http.get(path, headers=headers, follow_redirects=False, **kw)


async def regime_state(stack, rid: str) -> dict:
    r = await stack.http.get(f"/regimes/{rid}", headers=stack.auth(*OPS))
    assert r.status_code == 200, r.text
    return r.json()


async def next_due(stack, rid: str) -> date:
    """The regime's own next deadline: its earliest open step that is not paused."""
    return min(date.fromisoformat(s["due"]) for s in (await regime_state(stack, rid))["open_steps"] if not s["paused"])


async def escalation_level(stack, rid: str) -> int:
    """The highest rung any of the regime's still-open steps has reached."""
    st = await regime_state(stack, rid)
    open_ids = {s["id"] for s in st["open_steps"]}
    return max((e["level"] for e in st["escalations"] if e["step_id"] in open_ids), default=0)


def item_state(html: str, step_id: str) -> str:
    m = re.search(rf'<g class="sm-item [^"]*" data-step="{re.escape(step_id)}" data-state="([a-z_]+)"', html)
    assert m, f"no timeline item for {step_id}"
    return m.group(1)


async def test_sign_in_with_a_token_sets_an_httponly_cookie(stack):
    r = await get(stack, "/web/regimes")
    assert r.status_code == 303 and r.headers["location"].startswith("/web/sign-in?next=")
    page = await get(stack, r.headers["location"])
    assert page.status_code == 200 and "regime token" in page.text and 'name="token"' in page.text

    same_site = {"Origin": stack.base_url}  # browsers send it on every form POST; without it: refused
    bad = await stack.http.post("/web/sign-in", data={"token": "not-a-token", "next": "/web/cohort"},
                                headers=same_site)
    assert bad.status_code == 400 and "There is a problem" in bad.text

    token = stack.token(*OPS)
    r = await stack.http.post("/web/sign-in", data={"token": token, "next": "https://evil.example/"},
                              headers=same_site, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/web/regimes"  # no open redirect
    cookie = r.headers["set-cookie"]
    assert "sm_session=" in cookie and "HttpOnly" in cookie and "Path=/web" in cookie
    assert "samesite=lax" in cookie.lower()
    listing = await stack.http.get("/web/regimes", headers={"Cookie": f"sm_session={token}"})
    assert listing.status_code == 200 and "Sign out" in listing.text and "ops-1" in listing.text

    out = await stack.http.post("/web/sign-out", headers={"Cookie": f"sm_session={token}", **same_site},
                                follow_redirects=False)
    assert out.status_code == 303 and 'sm_session=""' in out.headers["set-cookie"]

    foreign = await stack.http.post("/web/sign-in", data={"token": token}, headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403


async def test_list_filters_sorts_and_refreshes_only_when_something_changed(stack):
    a = await place(stack, "RW1", name="Ashford General NHS Trust")
    b = await place(stack, "RW2", name="Bramley Hospitals NHS Foundation Trust")
    await stack.settle(a)
    await stack.settle(b)
    r = await get(stack, "/web/regimes", *OPS)
    assert r.status_code == 200
    html = r.text
    assert "Ashford General NHS Trust" in html and "Bramley Hospitals" in html and "RW1" in html
    assert f'href="/web/regimes/{a}"' in html and "In special measures" in html
    # The list shows the regime's own next deadline: the improvement plan in 28 days, or a monthly duty
    # that falls sooner on some days of the month (tests/test_calendar.py checks which, day by day).
    days = (await next_due(stack, a) - today()).days
    assert 1 <= days <= 28 and f"{days} day{'s' if days != 1 else ''} left" in html
    assert 'hx-trigger="every 10s"' in html and "/web/static/vendor/htmx/htmx.min.js" in html

    found = await get(stack, "/web/regimes?q=bramley", *OPS)
    assert "Bramley" in found.text and "Ashford" not in found.text
    assert "Ashford" not in (await get(stack, "/web/regimes?q=RW2", *OPS)).text
    assert "No regimes match" in (await get(stack, "/web/regimes?phase=exited", *OPS)).text
    assert "No regimes match" in (await get(stack, "/web/regimes?overdue_only=1", *OPS)).text
    desc = (await get(stack, "/web/regimes?sort=trust&dir=desc", *OPS)).text
    assert desc.index("Bramley") < desc.index("Ashford") and 'aria-sort="descending"' in desc

    version = re.search(r'data-version="([0-9a-f]+)"', html).group(1)
    same = await get(stack, f"/web/regimes/rows?v={version}", *OPS)
    assert same.status_code == 204
    await stack.fast_forward(a, 31)
    await stack.settle(a)
    changed = await get(stack, f"/web/regimes/rows?v={version}", *OPS)
    assert changed.status_code == 200 and 'id="regimes-table"' in changed.text and "<html" not in changed.text
    row = re.search(rf'<tr class="nhsuk-table__row" data-regime="{a}">(.*?)</tr>', changed.text, re.S).group(1)
    # The plan's deadline was missed (level 2, at least); a monthly duty may be further up the ladder.
    level = await escalation_level(stack, a)
    assert level >= 2 and "overdue" in row
    assert f"Level {level}" in row and labels.rung_label(stack.settings.ladder[level - 1]["name"]) in unescape(row)
    escalated = (await get(stack, "/web/regimes?escalated_only=1", *OPS)).text
    assert "Ashford" in escalated and "Bramley" not in escalated
    # A closed regime's page is drawn from its completed workflow's result.
    r = await stack.http.post(f"/regimes/{b}/closure", headers=stack.auth("reg-1", "regulator"),
                              json={"solution": "merger", "reason": "merged into Ashford General",
                                    "successor_ods_code": "RW1", "successor_name": "Ashford General NHS Trust"})
    assert r.status_code == 200, r.text
    await stack.settle(b)
    closed = await get(stack, f"/web/regimes/{b}", *OPS)
    assert closed.status_code == 200 and "merged into Ashford General" in closed.text


TOWNS = ["Abbey", "abbey", "Brookfield", "Carlton", "de Vere", "Dunmore", "Easton", "Fenwick", "Glenholm", "Hartley"]
KINDS = ["NHS Trust", "Hospitals NHS Foundation Trust", "Community NHS Trust"]
COLUMNS = ("regime_id", "workflow_id", "ods_code", "trust_name", "entry_date", "phase", "next_due", "overdue",
           "escalation_level", "buddy_count", "exit_date", "closed")


def projection_rows(n: int, seed: int = 7, prefix: str = "PG") -> list[dict]:
    """Rows of the `regimes` projection with many ties on every sort key (and names differing only in case).
    Nine in ten are closed; the others name workflows that do not exist, whose clocks are the wall clock."""
    rnd = random.Random(seed)
    # The phases of the data this test was designed on (its figures: over 100 Brookfields, running regimes on page
    # 2), and one phase without a label (humanised); a phase added since (in_finance_special_measures) would
    # reshuffle every random draw.
    phases = ["in_special_measures", "extended", "long_term_solution", "exited", "closed_structural",
              "awaiting_transfer"]
    rows = []
    for i in range(n):
        ods = f"{prefix}{i:04d}"
        entry = date(2019, 1, 1) + timedelta(days=rnd.randrange(2500))
        phase = rnd.choice(phases)
        rows.append({
            "regime_id": f"regime-{ods}-{entry}", "workflow_id": f"regime-{ods}-{entry}", "ods_code": ods,
            "trust_name": f"{rnd.choice(TOWNS)} {rnd.choice(KINDS)}", "entry_date": entry, "phase": phase,
            "next_due": None if rnd.random() < 0.2 else today() + timedelta(days=rnd.randrange(-30, 60)),
            "overdue": rnd.randrange(3), "escalation_level": rnd.randrange(5), "buddy_count": rnd.randrange(3),
            "exit_date": entry + timedelta(days=rnd.randrange(200, 900)) if phase == "exited" else None,
            "closed": i % 10 != 0,
        })
    return rows


async def insert_regimes(stack, rows: list[dict]) -> None:
    await stack.pool.copy_records_to_table("regimes", records=[tuple(r[c] for c in COLUMNS) for r in rows],
                                           columns=list(COLUMNS))


def expected_order(rows: list[dict], sort: str, direction: str) -> list[str]:
    """The order the page sorted in Python before it paged in SQL, with regime_id as the last tiebreak."""
    def name(r):
        return r["trust_name"].lower()

    key = {
        "trust": lambda r: (name(r), r["entry_date"]),
        "phase": lambda r: (labels.phase_label(r["phase"]), name(r)),
        "months": lambda r: (months_between(r["entry_date"], r["exit_date"] or today()), name(r)),
        "next_due": lambda r: (r["next_due"] is None, r["next_due"] or date.max, name(r)),
        "overdue": lambda r: (r["overdue"], r["escalation_level"], name(r)),
        "escalation": lambda r: (r["escalation_level"], r["overdue"], name(r)),
        "buddies": lambda r: (r["buddy_count"], name(r)),
    }[sort]
    ordered = sorted(rows, key=lambda r: (*key(r), r["regime_id"]), reverse=direction == "desc")
    return [r["regime_id"] for r in ordered]


def shown(html: str) -> list[str]:
    return re.findall(r'<tr class="nhsuk-table__row" data-regime="([^"]+)"', html)


def status(html: str) -> str:
    return " ".join(re.search(r'<p class="sm-live__status[^>]*>(.*?)</p>', html, re.S).group(1).split())


def pagination_link(html: str, rel: str) -> str | None:
    m = re.search(rf'<a href="([^"]+)" class="nhsuk-pagination__{"previous" if rel == "prev" else "next"}" '
                  rf'rel="{rel}"', html)
    return unescape(m.group(1)) if m else None


async def test_list_pages_in_sql_order_with_a_count_and_links_that_keep_filters(stack, monkeypatch):
    rows = projection_rows(1050)
    await insert_regimes(stack, rows)
    asked: list[list[str]] = []
    clocks = data.clocks

    async def recording_clocks(client, settings, workflow_ids):
        asked.append(list(workflow_ids))
        return await clocks(client, settings, workflow_ids)

    monkeypatch.setattr(data, "clocks", recording_clocks)

    # Page 2 holds the 51st to the 100th regime of the whole list, in every sort order and both directions.
    for sort in data.SORTS:
        for direction in ("asc", "desc"):
            html = (await get(stack, f"/web/regimes?sort={sort}&dir={direction}&page=2", *OPS)).text
            assert shown(html) == expected_order(rows, sort, direction)[50:100], (sort, direction)
            assert f'aria-sort="{"ascending" if direction == "asc" else "descending"}"' in html

    r = await get(stack, "/web/regimes?page=2", *OPS)  # default order: next deadline first
    assert r.status_code == 200
    html = r.text
    page2 = expected_order(rows, "next_due", "asc")[50:100]
    assert shown(html) == page2
    assert status(html).startswith("Showing 51 to 100 of 1,050 regimes.")
    assert pagination_link(html, "prev") == "/web/regimes?sort=next_due&dir=asc"
    assert pagination_link(html, "next") == "/web/regimes?sort=next_due&dir=asc&page=3"
    assert '<nav class="nhsuk-pagination nhsuk-pagination--numbered"' in html
    assert 'href="/web/regimes?sort=next_due&amp;dir=asc&amp;page=2" aria-label="Page 2" aria-current="page"' in html
    assert 'aria-label="Page 21"' in html and 'aria-label="Page 5"' not in html  # 1 2 3 … 21
    assert 'page=2' not in html.split("<thead")[1].split("</thead>")[0]  # a new sort starts at page 1
    # Only the page's running regimes had their clocks read (the stack runs in local mode).
    running = {r["workflow_id"] for r in rows if not r["closed"]}
    assert asked[-1] == [w for w in page2 if w in running] and 0 < len(asked[-1]) < 50

    last = (await get(stack, "/web/regimes?sort=trust&dir=desc&page=21", *OPS)).text
    assert status(last).startswith("Showing 1,001 to 1,050 of 1,050 regimes.")
    assert shown(last) == expected_order(rows, "trust", "desc")[1000:]
    assert pagination_link(last, "next") is None
    assert pagination_link(last, "prev") == "/web/regimes?sort=trust&dir=desc&page=20"

    # A filter narrows the total, and the page links keep the filter and the sort.
    brook = [r for r in rows if "brook" in r["trust_name"].lower()]
    assert 100 < len(brook) < 1050
    html = (await get(stack, "/web/regimes?q=brook&sort=months&dir=desc&page=2", *OPS)).text
    assert status(html).startswith(f"Showing 51 to 100 of {len(brook)} regimes.")
    assert shown(html) == expected_order(brook, "months", "desc")[50:100]
    assert pagination_link(html, "next") == "/web/regimes?q=brook&sort=months&dir=desc&page=3"
    assert pagination_link(html, "prev") == "/web/regimes?q=brook&sort=months&dir=desc"
    exited = [r for r in rows if r["phase"] == "exited" and r["escalation_level"] >= 2]
    html = (await get(stack, "/web/regimes?phase=exited&escalated_only=1&sort=phase", *OPS)).text
    assert status(html).startswith(f"Showing 1 to 50 of {len(exited)} regimes.")
    assert pagination_link(html, "next") == "/web/regimes?phase=exited&escalated_only=1&sort=phase&dir=asc&page=2"

    # The table refreshes the page it shows: 204 while nothing moved, the new page 2 once a regime sorts first.
    version = re.search(r'data-version="([0-9a-f]+)"', (await get(stack, "/web/regimes?page=2", *OPS)).text).group(1)
    assert (await get(stack, f"/web/regimes/rows?page=2&v={version}", *OPS)).status_code == 204
    first = projection_rows(1, seed=8, prefix="PX")[0]
    first.update(next_due=today() - timedelta(days=400), closed=True)
    await insert_regimes(stack, [first])
    changed = await get(stack, f"/web/regimes/rows?page=2&v={version}", *OPS)
    assert changed.status_code == 200 and "<html" not in changed.text
    assert shown(changed.text) == expected_order([*rows, first], "next_due", "asc")[50:100]
    assert shown(changed.text)[0] == expected_order(rows, "next_due", "asc")[49]
    assert status(changed.text).startswith("Showing 51 to 100 of 1,051 regimes.")
    assert 'hx-get="/web/regimes/rows?sort=next_due&amp;dir=asc&amp;page=2&amp;v=' in changed.text


async def test_list_page_parameter_out_of_range_or_garbage_shows_a_page(stack):
    rows = projection_rows(60, seed=3)
    await insert_regimes(stack, rows)
    order = expected_order(rows, "next_due", "asc")
    for value, first in (("abc", 1), ("0", 1), ("-2", 1), ("2.5", 1), ("", 1), ("\x00", 1), ("２", 1),
                         ("2", 51), ("3", 51), ("999", 51), ("9" * 40, 51)):
        for path in ("/web/regimes", "/web/regimes/rows"):
            r = await get(stack, path, *OPS, params={"page": value})
            assert r.status_code == 200, (path, value, r.status_code)
            assert status(r.text).startswith(f"Showing {first} to {min(first + 49, 60)} of 60 regimes."), value
            assert shown(r.text) == order[first - 1:first + 49]
    # The scope stays: a trust user sees only their trusts, on one page without page links.
    mine = [r for r in rows if r["ods_code"] in ("PG0001", "PG0002")]
    html = (await get(stack, "/web/regimes?page=2", "trust-1", "trust", trusts=["PG0001", "PG0002"])).text
    assert status(html).startswith("2 regimes.") and "nhsuk-pagination" not in html
    assert shown(html) == expected_order(mine, "next_due", "asc")


async def test_regime_page_timeline_tasks_escalations_ratings_and_history(stack):
    rid = await place(stack, "RW3", name="Castleford NHS Trust")
    await stack.settle(rid)
    html = (await get(stack, f"/web/regimes/{rid}", *OPS)).text
    assert "<h1" in html and "Castleford NHS Trust" in html
    assert '<svg class="sm-timeline"' in html and "Today" in html
    assert item_state(html, "improvement_plan") == "on_time"
    tasks = html.split('id="tasks"')[1].split('id="escalations"')[0]
    assert "Improvement plan submitted" in tasks and "<td>Trust</td>" in tasks and "28 days left" in tasks
    st = await regime_state(stack, rid)
    if st["escalations"]:  # a monthly duty due within the week has its reminder already (some days only)
        assert {e["rung"] for e in st["escalations"]} == {"reminder"} and "No escalations." not in html
    else:
        assert "No escalations." in html
    assert f"/namespaces/default/workflows/{rid}" in html and "Open in the Temporal UI" in html
    ratings = html.split('id="ratings"')[1].split('id="history"')[0]
    assert "At entry" in ratings and "Inadequate" in ratings and "Requires improvement" in ratings
    history = html.split('id="history"')[1]
    assert "Placed in special measures" in history and "Workflow started" in history
    assert "Improvement plan: opened, due" in history

    await stack.fast_forward(rid, 31)
    await stack.settle(rid)
    html = (await get(stack, f"/web/regimes/{rid}", *OPS)).text
    assert "virtual time" in html
    assert item_state(html, "improvement_plan") == "overdue"
    assert "Overdue 3 days" in html
    esc = html.split('id="escalations"')[1].split('id="buddies"')[0]
    assert 'data-step="improvement_plan" data-rung="breach"' in esc and "Deadline missed" in esc
    assert 'data-step="improvement_plan" data-rung="reminder"' in esc
    history = html.split('id="history"')[1]
    assert "Deadline missed (level 2): Improvement plan" in history and "Timer fired" in history

    r = await stack.http.post(f"/regimes/{rid}/steps/improvement_plan/decisions",
                              headers=stack.auth("trust-1", "trust", trusts=["RW3"]),
                              json={"action": "submit", "payload": PLAN})
    assert r.status_code == 200, r.text
    await stack.settle(rid)
    html = (await get(stack, f"/web/regimes/{rid}", *OPS)).text
    assert item_state(html, "improvement_plan") == "done_late"
    assert "Improvement plan: submitted" in html and "trust-1 (Trust)" in html


async def test_roles_same_as_the_api(stack):
    mine = await place(stack, "RW4", name="Denton NHS Trust")
    other = await place(stack, "RW5", name="Elmhurst NHS Trust")
    refused = await get(stack, "/web/regimes", "buddy-1", "buddy")
    assert refused.status_code == 403 and "You do not have access" in refused.text
    assert "Sign in as someone else" in refused.text
    assert (await get(stack, "/web/cohort", "buddy-1", "buddy")).status_code == 403

    trust = ("trust-4", "trust")
    listing = await get(stack, "/web/regimes", *trust, trusts=["RW4"])
    assert listing.status_code == 200 and "Denton" in listing.text and "Elmhurst" not in listing.text
    assert (await get(stack, f"/web/regimes/{mine}", *trust, trusts=["RW4"])).status_code == 200
    # Another trust's regime is "not found", like one that does not exist, and the page does not name it
    # (issue 17, finding 9).
    no = await get(stack, f"/web/regimes/{other}", *trust, trusts=["RW4"])
    assert no.status_code == 404 and "Elmhurst" not in no.text
    idir = await get(stack, f"/web/regimes/{other}", "id-5", "improvement_director", trusts=["RW5"])
    assert idir.status_code == 200
    cohort = (await get(stack, "/web/cohort", *trust, trusts=["RW4"])).text
    assert "Denton" in cohort and "Elmhurst" not in cohort
    assert (await get(stack, "/web/regimes/regime-NOPE-2020-01-01", *OPS)).status_code == 404


async def test_exit_then_reentry_links_regimes_and_fills_the_cohort(stack):
    entry = today() - timedelta(days=20)
    first = await place(stack, "RW6", entry=entry, name="Fairfield NHS Trust")
    cqc, reg = stack.auth("cqc-1", "cqc"), stack.auth("reg-2", "regulator")
    r = await stack.http.post(f"/regimes/{first}/inspections", headers=cqc,
                              json=outcome("INS-RW6-1", today(), IMPROVED))
    assert r.status_code == 202, r.text
    await stack.settle(first)
    r = await stack.http.post(f"/regimes/{first}/steps/cqc_recommendation/decisions", headers=cqc,
                              json={"action": "recommend_exit"})
    assert r.status_code == 200, r.text
    r = await stack.http.post(f"/regimes/{first}/steps/regulator_decision/decisions", headers=reg,
                              json={"action": "exit", "payload": {"continued_support": ["maternity"]}})
    assert r.status_code == 200, r.text
    await stack.settle(first)
    second = await place(stack, "RW6", name="Fairfield NHS Trust")
    await stack.settle(second)

    html = (await get(stack, f"/web/regimes/{second}", *OPS)).text
    assert f'href="/web/regimes/{first}"' in html and "earlier regime, directly before this one" in html
    html = (await get(stack, f"/web/regimes/{first}", *OPS)).text
    assert f'href="/web/regimes/{second}"' in html and "later regime" in html
    ratings = html.split('id="ratings"')[1].split('id="history"')[0]
    assert "Re-inspection 1" in ratings and "INS-RW6-1" in ratings and "exit rule met" in ratings
    assert "safe improved to requires improvement" in ratings
    assert "CQC recommended exit" in html and "Exited special measures" in html
    assert "Signal received: record_inspection" in html

    cohort = (await get(stack, "/web/cohort", *OPS)).text
    assert '<svg class="sm-cohort-chart"' in cohort and "Fairfield NHS Trust" in cohort
    stats = dict(re.findall(r'<span class="sm-stat__value">([^<]+)</span><span class="sm-stat__label">([^<(;]+)',
                            cohort))
    assert stats["2"].startswith("regimes") and stats["1"].startswith("exits")
    assert "Per trust" in cohort


async def test_assets_are_local_and_pages_call_no_cdn(stack):
    html = (await get(stack, "/web/cohort", *OPS)).text
    for ref in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert not ref.startswith(("http://", "https://", "//")), ref
    for path in ("/web/static/nhsuk/nhsuk-frontend.min.css", "/web/static/nhsuk/nhsuk-frontend.min.js",
                 "/web/static/web.css", "/web/static/vendor/htmx/htmx.min.js",
                 "/web/static/nhsuk/assets/images/favicon.svg"):
        r = await stack.http.get(path)
        assert r.status_code == 200, path
    css = (await stack.http.get("/web/static/nhsuk/nhsuk-frontend.min.css")).text
    assert "assets.nhs.uk" not in css and "url(http" not in css


async def test_documents_are_shown_from_postgresql_by_their_hash(stack):
    rid = await place(stack, "RW9", name="Kingsbridge NHS Trust")
    r = await stack.http.post(f"/regimes/{rid}/steps/improvement_plan/decisions",
                              headers=stack.auth("trust-9", "trust", trusts=["RW9"]),
                              json={"action": "submit", "payload": PLAN})
    assert r.status_code == 200, r.text
    sha = r.json()["step"]["data"]["document"]["sha256"]
    await stack.settle(rid)
    html = (await get(stack, f"/web/regimes/{rid}", *OPS)).text
    docs = html.split('id="documents"')[1].split('id="ratings"')[0]
    assert f'data-sha256="{sha}"' in docs and f"/web/regimes/{rid}/documents/{sha}" in docs
    assert f"{len(PLAN['actions'])} actions" in docs
    page = await get(stack, f"/web/regimes/{rid}/documents/{sha}", *OPS)
    assert page.status_code == 200 and sha in page.text
    for a in PLAN["actions"]:
        assert a["description"] in unescape(page.text) and a["owner"] in unescape(page.text)
    other = await get(stack, f"/web/regimes/{rid}/documents/{sha}", "trust-x", "trust", trusts=["RW0"])
    assert other.status_code == 404  # another trust's regime: as if it did not exist (issue 17, finding 9)
    missing = await get(stack, f"/web/regimes/{rid}/documents/{'0' * 64}", *OPS)
    assert missing.status_code == 404


async def test_open_tasks_say_whether_a_deadline_is_statutory_a_service_default_or_moved(stack):
    """domain.md: every deadline is statutory (a seed section) or a service default (a setting), and users can
    tell which; a deadline the regulator moved says so."""
    rid = await place(stack, "RWB1")
    html = (await get(stack, f"/web/regimes/{rid}", *OPS)).text
    row = re.search(r'<tr data-step="improvement_plan">(.*?)</tr>', html, re.S).group(1)
    assert "Statutory: 28 days after entry" in unescape(row) and "seed 000 §4a" in unescape(row)
    reg = stack.auth("reg-1", "regulator")
    r = await stack.http.post(f"/regimes/{rid}/steps/improvement_plan/deadline", headers=reg,
                              json={"new_due": (today() + timedelta(days=40)).isoformat(), "reason": "trust merger talks"})
    assert r.status_code == 200, r.text
    await stack.settle(rid)
    html = (await get(stack, f"/web/regimes/{rid}", *OPS)).text
    row = re.search(r'<tr data-step="improvement_plan">(.*?)</tr>', html, re.S).group(1)
    assert "Moved by the regulator" in row and "Statutory" not in row
    # The appointment's three months are a seed rule too; the ID's review of a plan is the service's choice.
    assert "Statutory" in re.search(r'<tr data-step="appoint_improvement_director">(.*?)</tr>', html, re.S).group(1)
