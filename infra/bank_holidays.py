"""England and Wales bank holidays, from the maintained `holidays` library (python-holidays).

Read only outside workflows: by the API when it places a regime (the first years go in the workflow's input)
and by the calendar activity when a running regime needs later years. Either way the dates are recorded in the
workflow's history, so upgrading the library never moves a deadline a running regime has already computed
(docs/regime.md, "Bank holidays").
"""

from __future__ import annotations

from datetime import date

import holidays

from domain.models import BankHolidays

# How far ahead a regime holds its holidays: the year of every deadline it can open without a later fetch (the
# re-inspection, 12 months after entry, is the farthest a step is opened ahead; extensions run up to 24 months).
YEARS_AHEAD = 2
# At most this many years in one fetch (a placement entered long ago, in the 2013 cohort, asks for the most).
MAX_YEARS = 20


def bank_holidays(first_year: int, last_year: int) -> BankHolidays:
    """The bank holidays of England and Wales from `first_year` to `last_year`, on working days only.

    The library lists Christmas Day and Boxing Day on the day they fall and the substitute day as well ("Boxing
    Day (observed)"); a deadline on a Saturday or Sunday stays where the rules put it (the seeds count calendar
    days), so only the weekdays of that list count: the substitute day in such a year, never the weekend."""
    first_year = max(first_year, last_year - MAX_YEARS + 1)
    found = holidays.country_holidays("GB", subdiv="ENG", years=range(first_year, last_year + 1))
    days = {d: name for d, name in sorted(found.items()) if d.weekday() < 5}
    return BankHolidays(first_year=first_year, last_year=last_year, days=days)


def for_placement(entry: date, today: date) -> BankHolidays:
    """The holidays a regime entered on `entry` and placed in the service on `today` needs from its start."""
    return bank_holidays(entry.year, max(entry, today).year + YEARS_AHEAD)
