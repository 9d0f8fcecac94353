"""What a regime placed from the challenged-providers watch list carries from its entry (issue 16 item 4).

The improvement director appointed while the trust was on the list stays appointed: the placement hands the
regime the entry's decision on its appointment step (`Placement.appointment_before_placement`), which the regime
takes at entry as its own decision on its own step (`RegimeWorkflow._appointed_before_placement`): the step done,
the audit entry, the director assigned as the regime's own appointment assigns them.

Confidential: the regime's steps and audit are read by everyone who reads the trust's regimes (CQC, the
commissioner, ...), who may not know the trust was on the list. So what the regime records says "appointed before
placement", who recorded it and when, and nothing of the list or its reasons; that it came from the list is shown
only in the regime's `watch_list` link, to those who may see the list (api/routes/watchlist.py `regime_link`).
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError

from domain.dates import london_date
from domain.models import Actor, Decision
from domain.steps import CATALOGUE, Kind
from domain.vocab import Role
from domain.watchlist import WatchState
from workflows.watchlist import WatchListWorkflow

log = logging.getLogger(__name__)


async def appointment_before_placement(client: Any, entry_id: str, regulator: Actor) -> Decision | None:
    """The entry's improvement director as the regime's decision on its appointment step, taken by the regulator
    who places the trust; None when the entry has no appointment done (the regime opens its own step)."""
    try:
        state: WatchState = await client.get_workflow_handle(entry_id).query(WatchListWorkflow.get_state)
    except Exception as e:  # the regime is placed all the same, with its own appointment step
        log.warning("watch-list entry %s not read at placement: %s", entry_id, e)
        return None
    kind = Kind.appoint_improvement_director
    done = [s for s in state.steps.values() if s.kind == kind and s.status == "done" and s.completed_at]
    if not done:
        return None
    st = max(done, key=lambda s: s.completed_at)
    director = state.assignees.get(Role.improvement_director) or st.data.get("improvement_director_user_id")
    model = CATALOGUE[kind].actions.get(st.outcome or "")
    if model is None or not director:
        return None
    try:
        payload = model.model_validate({**{k: st.data[k] for k in model.model_fields if k in st.data},
                                        "improvement_director_user_id": director})
    except ValidationError as e:
        log.warning("watch-list entry %s: its appointment does not fit the regime's step: %s", entry_id, e)
        return None
    appointed_on = payload.model_dump(mode="json")["appointed_on"]
    comment = (f"Improvement director {director} appointed before placement, on {appointed_on}; recorded by "
               f"{st.completed_by} on {london_date(st.completed_at).isoformat()}")
    return Decision(step_id=str(kind), action=st.outcome, actor=regulator, comment=comment,
                    payload=payload.model_dump(mode="json"))


def with_appointment(link: dict[str, Any], view: dict[str, Any]) -> dict[str, Any]:
    """The regime's `watch_list` link (for those who may see the list) says when the director it started with
    was appointed on the list."""
    carried = (view.get("placement") or {}).get("appointment_before_placement")
    if carried:
        payload = carried.get("payload") or {}
        link["improvement_director"] = {"user_id": payload.get("improvement_director_user_id"),
                                        "appointed_on": payload.get("appointed_on"),
                                        "appointed_on_watch_list": True}
    return link
