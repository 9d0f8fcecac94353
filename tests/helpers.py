"""Small builders for test requests."""

from __future__ import annotations

import copy
from datetime import date, timedelta
from typing import Any

INADEQUATE_ENTRY = {"safe": "inadequate", "effective": "requires_improvement", "caring": "good",
                    "responsive": "requires_improvement", "well_led": "inadequate", "overall": "inadequate"}

PLAN = {"actions": [
    {"category": "must_do", "description": "Staff the emergency department to safe levels", "owner": "Chief Nurse",
     "metric": "RN fill rate >= 95%"},
    {"category": "should_do", "description": "Audit sepsis screening monthly", "owner": "Medical Director",
     "metric": "screening within 1 hour >= 90%"},
]}

REGULATOR = ("reg-1", "regulator")


def placement(ods: str, entry: date, name: str = "Example Hospitals NHS Trust", multi_site: bool = False,
              **extra: Any) -> dict[str, Any]:
    return copy.deepcopy({"trust": {"ods_code": ods, "name": name, "multi_site": multi_site},
                          "entry_date": entry.isoformat(), "ratings": INADEQUATE_ENTRY, **extra})


def outcome(ref: str, start: date, ratings: dict[str, str], core: list[dict] | None = None,
            multi_site: bool = False, **extra: Any) -> dict[str, Any]:
    """A published outcome as CQC sends it: by default the special-measures re-inspection (comprehensive,
    well-led assessed); `extra` overrides any field."""
    return {"reference": ref, "inspection_start": start.isoformat(), "inspection_end": start.isoformat(),
            "published": start.isoformat(), "ratings": ratings, "core_services": core or [],
            "multi_site": multi_site, "inspection_type": "comprehensive", "well_led_assessed": True,
            "special_measures_reinspection": True, **extra}


IMPROVED = {"safe": "requires_improvement", "effective": "good", "caring": "good",
            "responsive": "requires_improvement", "well_led": "requires_improvement",
            "overall": "requires_improvement"}


# England's bank holidays on weekdays, read from the library directly (tests/test_calendar.py pins known dates).
def _england() -> set[date]:
    import holidays

    return {d for d in holidays.country_holidays("GB", subdiv="ENG", years=range(2012, 2062)) if d.weekday() < 5}


ENGLAND = _england()


def on_working_day(d: date) -> date:
    """The due date a regime placed now gives for a rules date `d` (BANK_HOLIDAYS=next_working_day): `d`, or the
    next working day when `d` is a bank holiday. Tests expect this, not `d`, so that they hold on every day."""
    if d not in ENGLAND:
        return d
    while d in ENGLAND or d.weekday() >= 5:
        d += timedelta(days=1)
    return d
