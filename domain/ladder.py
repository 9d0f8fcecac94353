"""What counts as escalated on the escalation ladder (settings ESCALATION_LADDER), decided once.

An open step is *escalated* once it has reached the first rung at or after its due date (offset >= 0: "breach" on
the default ladder); a reminder before the due date is not an escalation. A regime's `escalation_level` is the
highest level its open steps have reached, so a regime is escalated when that level is at least
`first_late_level(ladder)`. The operations pages and the API's `escalated_only` filter both ask this.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def first_late_level(ladder: Sequence[Any]) -> int:
    """The level (1-based) of the first rung at or after the due date; 1 on a ladder of reminders only."""
    for level, rung in enumerate(ladder, start=1):
        offset = rung["offset_days"] if isinstance(rung, Mapping) else rung.offset_days
        if int(offset) >= 0:
            return level
    return 1


def is_escalated(level: int, ladder: Sequence[Any]) -> bool:
    return level >= first_late_level(ladder)
