"""Due-date arithmetic in Europe/London, computed without tz databases.

UK civil time has followed one rule since 1996: BST (UTC+1) from 01:00 UTC on the last Sunday of
March to 01:00 UTC on the last Sunday of October. Computing it here keeps running workflows
independent of the tzdata shipped with a Python release, so replay can never change a deadline.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta


def _last_sunday(year: int, month: int) -> date:
    last = date(year, month, calendar.monthrange(year, month)[1])
    return last - timedelta(days=(last.weekday() - 6) % 7)


def bst_bounds(year: int) -> tuple[datetime, datetime]:
    start = datetime.combine(_last_sunday(year, 3), datetime.min.time(), UTC) + timedelta(hours=1)
    end = datetime.combine(_last_sunday(year, 10), datetime.min.time(), UTC) + timedelta(hours=1)
    return start, end


def london_offset(instant: datetime) -> timedelta:
    """UTC offset of Europe/London at an aware instant."""
    u = instant.astimezone(UTC)
    start, end = bst_bounds(u.year)
    return timedelta(hours=1) if start <= u < end else timedelta(0)


def london_date(instant: datetime) -> date:
    """The calendar date in London at an aware instant."""
    u = instant.astimezone(UTC)
    return (u + london_offset(u)).date()


def london_midnight(d: date) -> datetime:
    """The UTC instant at which London's day `d` begins."""
    naive_utc = datetime.combine(d, datetime.min.time(), UTC)
    # London midnight is never inside a transition (they happen at 01:00 UTC), so one pass is exact.
    return naive_utc - london_offset(naive_utc)


def end_of_day(d: date) -> datetime:
    """A deadline on date `d` falls due at the end of that London day."""
    return london_midnight(d + timedelta(days=1))


def add_months(d: date, months: int) -> date:
    """Calendar months; the 31st clamps to the last day of a shorter month."""
    m = d.month - 1 + months
    y = d.year + m // 12
    m = m % 12 + 1
    return date(y, m, min(d.day, calendar.monthrange(y, m)[1]))


def nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))


def third_monday(year: int, month: int) -> date:
    return nth_weekday(year, month, calendar.MONDAY, 3)


def off_bank_holiday(d: date, holidays: Mapping[date, str]) -> date:
    """`d` if it is not a bank holiday; otherwise the next working day (neither a weekend nor a bank holiday).
    A deadline on an ordinary Saturday or Sunday stays where the rule put it: the seeds count calendar days."""
    if d not in holidays:
        return d
    while d in holidays or d.weekday() >= 5:
        d += timedelta(days=1)
    return d


def months_between(start: date, end: date) -> float:
    return round((end - start).days / 30.4375, 1)
