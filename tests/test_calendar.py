"""The regime's calendar on every day of the year.

The suite runs on whatever day CI runs it, so its date-sensitive expectations must hold on all of them
(tests/README.md). Here the calendar rules (domain/schedule.py, which the regime workflow opens its
steps from) are checked against independent oracles for every entry date and every go-live day of two
400-day windows (one around today, one fixed across a leap day, both across both clock changes and a
year end); then a sample of those entry dates, the boundary days among them, is placed as regimes
through the real stack and each regime's steps and escalations are compared with the rules.
"""

from __future__ import annotations

import asyncio
import calendar
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain import dates, schedule
from domain.dates import london_date
from infra import bank_holidays
from tests.helpers import ENGLAND, on_working_day, placement

LONDON = ZoneInfo("Europe/London")
WINDOW = 400


def today() -> date:
    return london_date(datetime.now(UTC))


def windows() -> list[date]:
    """Every day of 400 days around today, and of a fixed 400-day window holding 29 February 2028."""
    t = today()
    around = [t - timedelta(days=WINDOW // 2) + timedelta(days=i) for i in range(WINDOW)]
    leap = [date(2027, 11, 20) + timedelta(days=i) for i in range(WINDOW)]
    assert date(2028, 2, 29) in leap
    return around + leap


# ---------------------------------------------------------------- oracles, written without domain.dates
def months_later(d: date, n: int) -> date:
    """The same day `n` calendar months on, or that month's last day when it has no such day."""
    y, m = divmod(d.month - 1 + n, 12)
    days = [x for x in calendar.Calendar().itermonthdates(d.year + y, m + 1) if x.month == m + 1]
    return max(x for x in days if x.day <= d.day)


def third_monday(y: int, m: int) -> date:
    mondays = [d for d in calendar.Calendar().itermonthdates(y, m) if d.month == m and d.weekday() == 0]
    return mondays[2]


def last_day(month: date) -> date:
    return date(month.year, month.month, calendar.monthrange(month.year, month.month)[1])


def end_of_london_day(d: date) -> datetime:
    return datetime.combine(d + timedelta(days=1), datetime.min.time(), LONDON).astimezone(UTC)


def expected_first_month(entry: date, go_live: date) -> date:
    """The first month at or after both the entry month and the go-live month whose return falls due
    after the entry date (a search, not the rule's formula)."""
    y, m = max((entry.year, entry.month), (go_live.year, go_live.month))
    while third_monday(y, m) <= entry:
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return date(y, m, 1)


def expected_first_month_with_lead(entry: date, go_live: date, lead: int) -> date:
    """The first month from the later of entry and go-live whose 3rd Monday is at least `lead` days after that
    day (a search over months, not the rule's formula)."""
    start = max(entry, go_live)
    y, m = start.year, start.month
    while (third_monday(y, m) - start).days < lead:
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return date(y, m, 1)


# ---------------------------------------------------------------- the pure rules, day by day
def test_entry_steps_on_every_entry_date():
    for e in windows():
        due = {d.step_id: d.due for d in schedule.entry_steps(e)}
        assert due["improvement_plan"] == e + timedelta(days=28), e
        assert due["appoint_improvement_director"] == due["board_to_board"] == months_later(e, 3), e
        assert due["reinspection-1"] == months_later(e, 12), e
        for d in due.values():
            assert dates.end_of_day(d) == end_of_london_day(d), d  # 23- and 25-hour days included


def test_monthly_steps_of_every_month():
    months = sorted({date(d.year, d.month, 1) for d in windows()})
    for month in months:
        ret, oag, idm = schedule.monthly_steps(month)
        assert ret.due == third_monday(month.year, month.month) and ret.kind == "monthly_return"
        assert oag.due == idm.due == last_day(month)
        assert {ret.subject["month"], oag.subject["month"]} == {f"{month:%Y-%m}"}
        for d in (ret, oag, idm):
            assert dates.end_of_day(d.due) == end_of_london_day(d.due)


def test_first_tracked_month_for_every_entry_and_go_live_day():
    """Every go-live day of both windows, for regimes entered that day and up to 400 days before it."""
    ages = list(range(0, 45)) + list(range(45, WINDOW + 1, 5))
    for t in windows():
        for age in ages:
            e = t - timedelta(days=age)
            assert schedule.first_tracked_month(e, t) == expected_first_month(e, t), (e, t)


def test_first_return_at_least_the_lead_after_entry_or_go_live_on_every_day():
    """Issue 14 item 7: with CalendarRules.first_return_lead_days, for every entry and go-live day of both
    windows, the first return falls on a 3rd Monday at least the lead after the later of the two (so never two
    days after entry, and never overdue when a regime under way goes live after its month's 3rd Monday), and
    no 3rd Monday that would have done is skipped."""
    ages = list(range(0, 45)) + list(range(45, WINDOW + 1, 25))
    for lead in (1, 7, 14, 28):
        for t in windows():
            for age in ages:
                e = t - timedelta(days=age)
                month = schedule.first_tracked_month(e, t, lead)
                assert month == expected_first_month_with_lead(e, t, lead), (e, t, lead)
                first_due = schedule.monthly_steps(month)[0].due
                assert (first_due - max(e, t)).days >= lead and first_due > t, (e, t, lead)
                # At most one month's 3rd Monday further than it needs to be: no month is skipped.
                assert (first_due - max(e, t)).days < lead + 36, (e, t, lead)


def test_a_regime_entered_today_has_nothing_due_yet_on_any_day():
    """On every day of the year a fresh regime's next deadline is ahead of it and at most 28 days away
    (the improvement plan, or a monthly duty that falls sooner): what the regimes list shows as
    'N days left'. Which one it is depends on the day; that it is the earliest open step does not."""
    seen_days_left = set()
    for t in windows():
        opened = schedule.opened_by(t, t)
        assert all(d.due > t for d in opened), t
        nxt = min(d.due for d in opened)
        first = expected_first_month(t, t)
        candidates = [t + timedelta(days=28)]
        if first <= t:  # this month's duties open today too
            candidates += [third_monday(first.year, first.month), last_day(first)]
        assert nxt == min(candidates), t
        seen_days_left.add((nxt - t).days)
    # The calendar really does move the answer: it is not 28 on every day (issue 11's failing test).
    assert 28 in seen_days_left and len(seen_days_left) > 10


def test_buddy_quarters_from_every_agreement_date():
    """A partnership's quarters follow each other without gap or overlap, each three calendar months
    (89 to 92 days), whatever day the support plan was agreed on: the 31st, 29 February and the rest."""
    for agreed in windows():
        prev_end = agreed - timedelta(days=1)
        for n in range(1, 9):
            start, end = schedule.quarter_dates(agreed, n)
            assert start == prev_end + timedelta(days=1), (agreed, n)
            assert start == months_later(agreed, 3 * (n - 1)) and end == months_later(agreed, 3 * n) - timedelta(days=1)
            assert 89 <= (end - start).days + 1 <= 92, (agreed, n)
            prev_end = end


@given(st.dates(min_value=date(2000, 1, 1), max_value=date(2060, 12, 31)), st.integers(0, 3000))
def test_opened_by_matches_the_oracles(entry, age):
    t = entry + timedelta(days=age)
    opened = schedule.opened_by(entry, t)
    ids = [d.step_id for d in opened]
    assert len(ids) == len(set(ids))
    monthly = [d for d in opened if d.kind == "monthly_return"]
    for d in monthly:
        assert d.due == third_monday(d.due.year, d.due.month) and d.due > entry
    if monthly:
        assert date(monthly[0].due.year, monthly[0].due.month, 1) == expected_first_month(entry, t)
        assert date(monthly[-1].due.year, monthly[-1].due.month, 1) == date(t.year, t.month, 1)
    else:
        assert expected_first_month(entry, t) > t


# ---------------------------------------------------------------- bank holidays (issue 14 item 13)
# The oracle reads the library directly; known dates below pin what it says.


@pytest.mark.parametrize(("rules_date", "due", "why"), [
    (date(2025, 4, 21), date(2025, 4, 22), "Easter Monday is April 2025's 3rd Monday: the return moves a day"),
    (date(2026, 4, 3), date(2026, 4, 7), "Good Friday: over the weekend and Easter Monday"),
    (date(2026, 12, 25), date(2026, 12, 29), "Christmas Day, a Friday: Boxing Day's substitute is the Monday"),
    (date(2026, 12, 26), date(2026, 12, 26), "Boxing Day on a Saturday: a weekend deadline stays"),
    (date(2027, 1, 1), date(2027, 1, 4), "New Year's Day, a Friday"),
    (date(2026, 8, 31), date(2026, 9, 1), "the late summer bank holiday, the month's last day (its meetings)"),
    (date(2026, 6, 15), date(2026, 6, 15), "an ordinary 3rd Monday"),
])
def test_a_deadline_on_a_bank_holiday_moves_to_the_next_working_day(rules_date, due, why):
    held = bank_holidays.bank_holidays(2025, 2027)
    assert dates.off_bank_holiday(rules_date, held.days) == due, why
    assert on_working_day(rules_date) == due, why


def test_the_holidays_a_placement_records():
    """The first years a regime holds: from its entry year to two years past the later of entry and go-live;
    weekdays only (a Saturday Boxing Day is not a day a deadline moves for)."""
    held = bank_holidays.for_placement(date(2026, 11, 2), date(2026, 12, 1))
    assert (held.first_year, held.last_year) == (2026, 2028)
    assert date(2026, 12, 26) not in held.days and held.days[date(2026, 12, 28)].startswith("Boxing Day")
    assert all(d.weekday() < 5 for d in held.days) and len(held.days) >= 24
    # A regime of the 2013 cohort going live now holds every year since its entry (its entry steps' dates).
    old = bank_holidays.for_placement(date(2013, 7, 16), date(2026, 12, 1))
    assert (old.first_year, old.last_year) == (2013, 2028) and date(2013, 8, 26) in old.days


# ---------------------------------------------------------------- a sample through the real stack
def boundary_days(t: date) -> dict[str, date]:
    """The most recent day of each kind that makes calendars go wrong, within 400 days before `t`."""
    back = [t - timedelta(days=i) for i in range(WINDOW)]

    def latest(pred) -> date:
        return next(d for d in back if pred(d))

    spring = latest(lambda d: d.month == 3 and d.weekday() == 6 and d.day > 24)   # last Sunday of March
    autumn = latest(lambda d: d.month == 10 and d.weekday() == 6 and d.day > 24)  # last Sunday of October
    monday = latest(lambda d: d == third_monday(d.year, d.month))
    return {
        "today": t, "yesterday": t - timedelta(days=1),
        "month end": latest(lambda d: d < t and d == last_day(d)),
        "the 29th": latest(lambda d: d < t and d.day == 29), "the 30th": latest(lambda d: d.day == 30),
        "the 31st": latest(lambda d: d.day == 31), "28 February": latest(lambda d: (d.month, d.day) == (2, 28)),
        "1st of a month": latest(lambda d: d < t and d.day == 1),
        "3rd Monday": monday, "day before a 3rd Monday": monday - timedelta(days=1),
        "day after a 3rd Monday": latest(lambda d: d - timedelta(days=1) == third_monday(d.year, d.month)),
        "clocks go forward": spring, "day before clocks go forward": spring - timedelta(days=1),
        "clocks go back": autumn, "day before clocks go back": autumn - timedelta(days=1),
        "31 December": latest(lambda d: (d.month, d.day) == (12, 31)), "1 January": latest(lambda d: (d.month, d.day) == (1, 1)),
        "400 days ago": back[-1],
    }


async def test_regimes_entered_on_boundary_days_open_what_the_rules_say(stack):
    t = today()
    entries = sorted(set(boundary_days(t).values()))
    regulator = stack.auth("reg-1", "regulator")

    async def place(i: int, e: date) -> tuple[date, str]:
        r = await stack.http.post("/regimes", json=placement(f"RC{i:03d}", e), headers=regulator)
        assert r.status_code == 201, (e, r.text)
        return e, r.json()["regime_id"]

    placed = await asyncio.gather(*(place(i, e) for i, e in enumerate(entries)))
    lead = stack.settings.first_return_lead_days
    assert stack.settings.bank_holidays == "next_working_day"  # the defaults: the rules of regimes placed now
    for e, rid in placed:
        st = await stack.settle(rid)
        now = london_date(datetime.now(UTC))
        if now != t:
            pytest.skip("the test ran across midnight in London: the regimes' `today` moved under it")
        expected = {d.step_id: on_working_day(d.due).isoformat()
                    for d in schedule.opened_by(e, t, lead_days=lead, quality_summits=True, buddy_step=True,
                                                programme=True)}
        got = {sid: s["due"] for sid, s in st["steps"].items()}
        moved = {sid: s["due_moved_from"] for sid, s in st["steps"].items() if s["due_moved_from"]}
        assert all(date.fromisoformat(m) in ENGLAND for m in moved.values()), moved
        assert got == expected, (e, sorted(set(got.items()) ^ set(expected.items())))
        # Every rung whose instant has passed has fired, once; a reminder only while the deadline is ahead.
        rungs = {(sid, r["name"]) for sid, due in expected.items() for r in stack.settings.ladder
                 if date.fromisoformat(due) + timedelta(days=r["offset_days"]) < t
                 and (r["offset_days"] >= 0 or date.fromisoformat(due) >= t)}
        fired = [(x["step_id"], x["rung"]) for x in st["escalations"]]
        assert sorted(fired) == sorted(rungs), (e, set(fired) ^ rungs)
        overdue = {sid for sid, due in expected.items() if date.fromisoformat(due) < t}
        # The list's "next deadline" is the earliest open step, whatever the day.
        row = await stack.pool.fetchrow("SELECT next_due, overdue FROM regimes WHERE regime_id = $1", rid)
        assert row["next_due"] == min(date.fromisoformat(d) for d in expected.values()), e
        assert row["overdue"] == len(overdue), e
