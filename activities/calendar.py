"""The calendar activity: England and Wales bank holidays for a running regime's later years.

The workflow records the result in its history, so a later library upgrade cannot move a deadline it computed
(infra/bank_holidays.py). Pure computation, no database: it needs no resources.
"""

from __future__ import annotations

from temporalio import activity

from domain.models import BankHolidays
from workflows.common import BANK_HOLIDAYS, YearRange


class CalendarActivities:
    @activity.defn(name=BANK_HOLIDAYS)
    async def bank_holidays(self, years: YearRange) -> BankHolidays:
        # Imported here: the library stays out of the workflow sandbox, which imports this class.
        from infra import bank_holidays

        return bank_holidays.bank_holidays(years.first_year, years.last_year)
