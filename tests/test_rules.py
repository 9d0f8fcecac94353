"""The regime's rules as plain unit tests: entry rule, exit rule, due-date arithmetic."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from domain import dates
from domain.ratings import KEY_QUESTIONS, InspectionOutcome, KeyQuestionRatings, Rating
from domain.rules import entry_rule, exit_rule

LONDON = ZoneInfo("Europe/London")
ratings_st = st.sampled_from(list(Rating))


def kq(**kw: str) -> KeyQuestionRatings:
    base = {q: "good" for q in KEY_QUESTIONS} | {"overall": "good"}
    return KeyQuestionRatings.model_validate(base | kw)


def outcome(r: KeyQuestionRatings, core=(), multi_site=False, trajectory=None) -> InspectionOutcome:
    d = date(2027, 10, 1)
    return InspectionOutcome(reference="INS-1", inspection_start=d, inspection_end=d, published=d, ratings=r,
                             core_services=[{"site": s, "service": v, "rating": g} for s, v, g in core],
                             multi_site=multi_site, trajectory_evidence=trajectory)


def test_entry_rule_needs_well_led_and_one_other():
    assert entry_rule(kq(well_led="inadequate", safe="inadequate")).met
    v = entry_rule(kq(well_led="inadequate"))
    assert not v.met and any("no other key question" in r for r in v.reasons)
    v = entry_rule(kq(safe="inadequate", caring="inadequate"))
    assert not v.met and "well-led is rated good" in v.reasons[0]


@given(st.fixed_dictionaries({q: ratings_st for q in (*KEY_QUESTIONS, "overall")}))
def test_entry_rule_property(r):
    ratings = KeyQuestionRatings.model_validate(r)
    others = [q for q in KEY_QUESTIONS if q != "well_led" and r[q] is Rating.inadequate]
    assert entry_rule(ratings).met == (r["well_led"] is Rating.inadequate and bool(others))


ENTRY = kq(well_led="inadequate", safe="inadequate", overall="inadequate")


def test_exit_rule_all_improved_single_site():
    v = exit_rule(ENTRY, outcome(kq(well_led="requires_improvement", safe="requires_improvement",
                                    overall="requires_improvement")))
    assert v.met, v.reasons


def test_exit_rule_fails_when_overall_still_inadequate():
    v = exit_rule(ENTRY, outcome(kq(well_led="good", safe="good", overall="inadequate")))
    assert not v.met and "overall rating is still inadequate" in v.reasons


def test_exit_rule_single_site_inadequate_core_service_fails():
    v = exit_rule(ENTRY, outcome(kq(), core=[("Main", "maternity", "inadequate")]))
    assert not v.met and any("single-site" in r for r in v.reasons)


def test_exit_rule_multi_site_exceptional_route():
    core = [("North", "maternity", "inadequate"), ("South", "surgery", "good")]
    assert exit_rule(ENTRY, outcome(kq(), core=core, multi_site=True, trajectory="three audits improving")).met
    v = exit_rule(ENTRY, outcome(kq(), core=core, multi_site=True))
    assert not v.met and any("no evidence of a continuing trajectory" in r for r in v.reasons)


@given(st.fixed_dictionaries({q: ratings_st for q in (*KEY_QUESTIONS, "overall")}), st.booleans())
def test_exit_rule_never_passes_an_inadequate_question(r, multi):
    v = exit_rule(ENTRY, outcome(KeyQuestionRatings.model_validate(r), multi_site=multi))
    if any(r[q] is Rating.inadequate for q in (*KEY_QUESTIONS, "overall")):
        assert not v.met


def test_exit_rule_without_entry_ratings_judges_the_outcome_on_its_own():
    """The 2013 cohort was placed before CQC's ratings: its re-inspection is judged on its own ratings."""
    v = exit_rule(None, outcome(kq(well_led="inadequate", overall="requires_improvement")))
    assert not v.met and "well_led is still inadequate" in v.reasons
    assert "placed without entry ratings: judged on this inspection's own ratings" in v.reasons
    assert exit_rule(None, outcome(kq(well_led="requires_improvement", overall="requires_improvement"))).met


@given(st.fixed_dictionaries({q: ratings_st for q in (*KEY_QUESTIONS, "overall")}), st.booleans())
def test_exit_rule_without_entry_ratings_never_passes_an_inadequate_question(r, multi):
    v = exit_rule(None, outcome(KeyQuestionRatings.model_validate(r), multi_site=multi))
    assert v.met == (not any(r[q] is Rating.inadequate for q in (*KEY_QUESTIONS, "overall")))


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2060, 1, 1)))
def test_london_offset_matches_tzdata(naive):
    instant = naive.replace(tzinfo=UTC)
    assert dates.london_offset(instant) == instant.astimezone(LONDON).utcoffset()
    assert dates.london_date(instant) == instant.astimezone(LONDON).date()


@given(st.dates(min_value=date(2000, 1, 1), max_value=date(2060, 1, 1)))
def test_end_of_day_is_next_london_midnight(d):
    expected = datetime.combine(d + timedelta(days=1), datetime.min.time(), LONDON).astimezone(UTC)
    assert dates.end_of_day(d) == expected


def test_deadline_across_clock_changes():
    # Spring forward: the last Sunday of March 2027 is the 28th; London's day is 23 hours long.
    assert dates.end_of_day(date(2027, 3, 27)) == datetime(2027, 3, 28, 0, 0, tzinfo=UTC)
    assert dates.end_of_day(date(2027, 3, 28)) == datetime(2027, 3, 28, 23, 0, tzinfo=UTC)
    # Fall back: 31 October 2027.
    assert dates.end_of_day(date(2027, 10, 30)) == datetime(2027, 10, 30, 23, 0, tzinfo=UTC)
    assert dates.end_of_day(date(2027, 10, 31)) == datetime(2027, 11, 1, 0, 0, tzinfo=UTC)


@given(st.integers(2000, 2060), st.integers(1, 12))
def test_third_monday(y, m):
    d = dates.third_monday(y, m)
    assert d.weekday() == 0 and 15 <= d.day <= 21 and d.month == m


def test_calendar_months():
    assert dates.add_months(date(2026, 11, 30), 3) == date(2027, 2, 28)
    assert dates.add_months(date(2027, 1, 31), 1) == date(2027, 2, 28)
    assert dates.add_months(date(2027, 12, 15), 12) == date(2028, 12, 15)
    assert dates.third_monday(2026, 11) == date(2026, 11, 16)


@given(st.dates(min_value=date(2000, 1, 1), max_value=date(2060, 1, 1)), st.integers(0, 60))
def test_add_months_is_calendar_arithmetic(d, n):
    r = dates.add_months(d, n)
    assert (r.year * 12 + r.month) - (d.year * 12 + d.month) == n
    assert r.day == d.day or r.day < d.day and (r + timedelta(days=1)).day == 1
