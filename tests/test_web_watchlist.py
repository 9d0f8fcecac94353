"""The challenged-providers watch list in the operations web view (issue 16 item 4), over plain HTTP through the
real app: the list (the regulator and operations only), an entry's page (them and the trust's own users; anyone
else the same "not found" as for an entry that does not exist), the header link only for those who read the list,
every page view recorded in the access log, and a placed entry linking its regime. The entries are made through
the real API, as tests/test_watchlist.py makes them; the browser test of the same pages is
tests/test_browser_watchlist.py."""

from __future__ import annotations

import re
from datetime import date
from html import unescape
from typing import Any

from api.web import labels
from domain.steps import Kind
from domain.watchlist import WatchKind
from tests.helpers import placement

MADE_UP = "watch-QQ9-2020-01-01"
NAV_LINK = 'href="/web/watch-list"'


def text(html: str) -> str:
    """The page's words, without tags, entities or runs of white space."""
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


def visible_text(html: str, asked: str) -> str:
    return text(html.replace(asked, "<id>"))


async def add(stack, ods: str, name: str, reasons: list[str]) -> dict[str, Any]:
    r = await stack.http.post("/watch-list", headers=stack.auth("reg-1", "regulator"),
                              json={"trust": {"ods_code": ods, "name": name}, "reasons": reasons})
    assert r.status_code == 201, r.text
    return r.json()


async def looks(stack, entry_id: str) -> list[dict[str, Any]]:
    r = await stack.http.get(f"/watch-list/{entry_id}/access", headers=stack.auth("ops-1", "operations"))
    assert r.status_code == 200, r.text
    return r.json()["items"]


async def test_who_sees_the_watch_list_pages_and_every_view_is_recorded(stack):
    regulator = stack.auth("reg-1", "regulator")
    ops = stack.auth("ops-1", "operations")
    own_trust = stack.auth("trust-G1", "trust", trusts=["RWG1"])
    own_director = stack.auth("id-G1", "improvement_director", trusts=["RWG1"])
    other_trust = stack.auth("trust-G9", "trust", trusts=["RWG9"])
    cqc = stack.auth("cqc-1", "cqc")
    reasons = ["Four-hour A&E performance below 60% for two quarters", "a board without a substantive chief executive"]
    entry = await add(stack, "RWG1", "Greyfriars Hospitals NHS Trust", reasons)
    eid = entry["entry_id"]
    steps = {s["kind"]: s for s in entry["steps"]}

    # The regulator: the list, with the trust linked to its entry, and the header link.
    before = len(await looks(stack, eid))
    r = await stack.http.get("/web/watch-list", headers=regulator)
    assert r.status_code == 200, r.text
    assert NAV_LINK in r.text and f'href="/web/watch-list/{eid}"' in r.text
    row = r.text.split(f'data-entry="{eid}"', 1)[1].split("</tr>", 1)[0]
    assert "Greyfriars Hospitals NHS Trust" in row and "RWG1" in row and "On the list" in row
    assert labels.fmt_date(entry["added_on"]) in row
    first_due = min(s["due"] for s in entry["steps"] if s["status"] == "open")
    assert f"{sum(s['status'] == 'open' for s in entry['steps'])} open" in text(row)
    assert labels.fmt_date(first_due) in row
    after_list = await looks(stack, eid)
    assert len(after_list) == before + 1 and (after_list[-1]["user_id"], after_list[-1]["what"]) == ("reg-1",
                                                                                                      "web list")

    # The entry's page: its reasons, who added it, its steps with their due dates and deadline basis, who looked.
    r = await stack.http.get(f"/web/watch-list/{eid}", headers=regulator)
    assert r.status_code == 200, r.text
    page = text(r.text)
    assert all(reason in page for reason in reasons)
    assert "Added " + labels.fmt_date(entry["added_on"]) + " by reg-1" in page
    director = r.text.split(f'data-step="{steps[Kind.appoint_improvement_director]["id"]}"', 1)[1].split("</tr>")[0]
    assert labels.fmt_date(steps[Kind.appoint_improvement_director]["due"]) in director
    assert 'data-basis="' in director
    review = r.text.split(f'data-step="{steps[WatchKind.watch_review]["id"]}"', 1)[1].split("</tr>")[0]
    assert 'data-basis="service_default"' in review and labels.fmt_date(steps[WatchKind.watch_review]["due"]) in review
    assert 'id="access"' in r.text and 'data-what="web list"' in r.text and 'data-what="web entry"' in r.text
    assert 'id="buddies"' not in r.text  # no partnership: no section
    after_entry = await looks(stack, eid)
    assert len(after_entry) == before + 2 and (after_entry[-1]["user_id"], after_entry[-1]["what"]) == (
        "reg-1", "web entry")
    r = await stack.http.get(f"/web/watch-list/{eid}", headers=ops)
    assert r.status_code == 200 and NAV_LINK in r.text

    # The trust's own users see their entry (without who looked) but not the list, and have no link to it.
    for who, headers in (("trust-G1", own_trust), ("id-G1", own_director)):
        n = len(await looks(stack, eid))
        r = await stack.http.get(f"/web/watch-list/{eid}", headers=headers)
        assert r.status_code == 200, r.text
        assert all(reason in text(r.text) for reason in reasons)
        assert NAV_LINK not in r.text and 'id="access"' not in r.text
        got = await looks(stack, eid)
        assert len(got) == n + 1 and (got[-1]["user_id"], got[-1]["what"]) == (who, "web entry")
        r = await stack.http.get("/web/watch-list", headers=headers)
        assert r.status_code == 403 and "You do not have access to this page" in r.text
        assert "Greyfriars" not in r.text and eid not in r.text
        assert NAV_LINK not in (await stack.http.get("/web/regimes", headers=headers)).text

    # Anyone else: the same page as for an entry that does not exist, nothing recorded, and no link.
    n = len(await looks(stack, eid))
    for headers in (other_trust, cqc):
        real = await stack.http.get(f"/web/watch-list/{eid}", headers=headers)
        fake = await stack.http.get(f"/web/watch-list/{MADE_UP}", headers=headers)
        assert real.status_code == fake.status_code == 404, real.text
        assert visible_text(real.text, eid) == visible_text(fake.text, MADE_UP)
        assert "Greyfriars" not in real.text and "RWG1 " not in text(real.text) and NAV_LINK not in real.text
        assert NAV_LINK not in (await stack.http.get("/web/regimes", headers=headers)).text
        assert NAV_LINK not in (await stack.http.get("/web/cohort", headers=headers)).text
    r = await stack.http.get("/web/watch-list", headers=cqc)
    assert r.status_code == 403 and "Greyfriars" not in r.text
    assert len(await looks(stack, eid)) == n
    # A malformed id is not found either (not a validation error that would tell the ids' shape apart).
    r = await stack.http.get("/web/watch-list/not-an-entry", headers=regulator)
    assert r.status_code == 404 and "Watch-list entry not found" in r.text


async def test_a_placed_entry_links_its_regime_and_a_removed_one_shows_why(stack):
    regulator = stack.auth("reg-1", "regulator")
    cqc = stack.auth("cqc-1", "cqc")
    own_trust = stack.auth("trust-G2", "trust", trusts=["RWG2"])
    placed = await add(stack, "RWG2", "Hartwell NHS Trust", ["mortality above the expected range"])
    eid = placed["entry_id"]
    # Central funding agreed on the list: its figures on the page.
    r = await stack.http.post(f"/watch-list/{eid}/steps/{Kind.funding_agreement}/decisions", headers=regulator,
                              json={"action": "record", "payload": {"ceiling_pence": 12_500_000,
                                                                    "areas": ["urgent care flow"]}})
    assert r.status_code == 200, r.text
    page = text((await stack.http.get(f"/web/watch-list/{eid}", headers=regulator)).text)
    assert "Central funding" in page and labels.money(12_500_000) in page and "urgent care flow" in page

    # Placed in special measures (entered on the service's own day): the entry links the regime.
    r = await stack.http.post("/regimes", headers=regulator,
                              json=placement("RWG2", date.fromisoformat(placed["added_on"]), name="Hartwell NHS Trust"))
    assert r.status_code == 201, r.text
    rid = r.json()["regime_id"]
    await stack.settle(rid)
    for headers in (regulator, own_trust):
        r = await stack.http.get(f"/web/watch-list/{eid}", headers=headers)
        assert r.status_code == 200, r.text
        assert f'id="regime-link" href="/web/regimes/{rid}"' in r.text
        assert 'data-status="placed"' in r.text and "Placed in special measures" in r.text
    r = await stack.http.get("/web/watch-list", headers=regulator)
    row = r.text.split(f'data-entry="{eid}"', 1)[1].split("</tr>", 1)[0]
    assert f'href="/web/regimes/{rid}"' in row and "Placed in special measures" in row
    # The regime's page says nothing of the watch list to those who may not see it.
    html = (await stack.http.get(f"/web/regimes/{rid}", headers=cqc)).text
    assert eid not in html and "watch list" not in html.lower() and "watch-list" not in html.lower()

    # Taken off the list: the reason shows.
    removed = await add(stack, "RWG3", "Ivybridge Community NHS Trust", ["finances"])
    r = await stack.http.post(f"/watch-list/{removed['entry_id']}/removal", headers=regulator,
                              json={"reason": "performance recovered for two quarters"})
    assert r.status_code == 200, r.text
    r = await stack.http.get(f"/web/watch-list/{removed['entry_id']}", headers=regulator)
    assert r.status_code == 200 and 'data-status="removed"' in r.text
    assert 'id="removal-reason">performance recovered for two quarters<' in r.text
    assert 'id="regime-link"' not in r.text
