"""Shares of a partnership's agreed level, named for what they measure: `authorised_share` (authorised / agreed)
and, in the API's partnership list, `paid_share` (paid / agreed). The old names (`used_share`, `share_used`)
still read and are still written beside the new ones, so states recorded before and API clients keep working."""

from __future__ import annotations

from domain.ledger import Ledger, LedgerTotals
from domain.models import BuddySummary


def test_a_state_recorded_with_the_old_name_still_loads_and_says_both():
    old = {"partnership_id": "p", "buddy_ods": "RB1", "buddy_name": "Buddy", "scope": "trust-wide",
           "stage": "quarterly_cycle", "agreed_level_pence": 1000, "authorised_pence": 400, "used_share": 0.4}
    b = BuddySummary.model_validate(old)
    assert b.authorised_share == 0.4
    assert b.model_dump(mode="json")["authorised_share"] == 0.4 and b.model_dump(mode="json")["used_share"] == 0.4
    # Written back and read again: the same figure, once.
    assert BuddySummary.model_validate(b.model_dump(mode="json")).authorised_share == 0.4


def test_ledger_totals_name_the_authorised_share():
    totals = Ledger(agreed_level_pence=1000).totals()
    assert isinstance(totals, LedgerTotals) and totals.authorised_share == 0.0
    assert LedgerTotals.model_validate({**totals.model_dump(), "authorised_share": 0.25}).used_share == 0.25
    schema = LedgerTotals.model_json_schema(mode="serialization")["properties"]
    assert schema["used_share"].get("deprecated") is True and "deprecated" not in schema["authorised_share"]
