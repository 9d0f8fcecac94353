""""Escalated" means one thing in the API and on the pages (domain/ladder.py): an open step has reached the first
rung at or after its due date. A reminder before the due date is not an escalation.

The rows are the regimes' projection as the effects activity writes it (table `regimes`), at fixed escalation
levels: what is checked is which of them each surface calls escalated, on any day of the year.
"""

from __future__ import annotations

from datetime import date

from domain.ladder import first_late_level, is_escalated
from settings import DEFAULT_LADDER

LEVELS = {"REF01": 0, "REF02": 1, "REF03": 2, "REF04": 4}  # none, reminder, breach, executive escalation


def test_the_first_late_rung_of_the_default_and_of_other_ladders():
    assert first_late_level(DEFAULT_LADDER) == 2  # reminder (-7), then breach (0)
    assert first_late_level([{"name": "a", "offset_days": -14}, {"name": "b", "offset_days": -3},
                             {"name": "c", "offset_days": 1}]) == 3
    assert first_late_level([{"name": "a", "offset_days": 0}]) == 1
    assert [is_escalated(n, DEFAULT_LADDER) for n in range(5)] == [False, False, True, True, True]


async def test_the_api_and_the_pages_agree_on_which_regimes_are_escalated(stack):
    for ods, level in LEVELS.items():
        await stack.pool.execute(
            "INSERT INTO regimes (regime_id, workflow_id, ods_code, trust_name, entry_date, phase, escalation_level) "
            "VALUES ($1, $1, $2, $3, $4, 'in_special_measures', $5)",
            f"regime-{ods}-2026-01-05", ods, f"Escalation Test Trust {ods}", date(2026, 1, 5), level)
    ops = stack.auth("ops-1", "operations")
    every = (await stack.http.get("/regimes", params={"q": "Escalation Test"}, headers=ops)).json()["items"]
    assert sorted(r["ods_code"] for r in every) == sorted(LEVELS)

    api = (await stack.http.get("/regimes", params={"q": "Escalation Test", "escalated_only": "true"},
                                headers=ops)).json()["items"]
    assert sorted(r["ods_code"] for r in api) == ["REF03", "REF04"]

    page = (await stack.http.get("/web/regimes", params={"q": "Escalation Test", "escalated_only": "1"},
                                 headers=ops)).text
    shown = sorted(ods for ods in LEVELS if f'data-regime="regime-{ods}-2026-01-05"' in page)
    assert shown == ["REF03", "REF04"]
