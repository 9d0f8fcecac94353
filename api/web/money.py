"""A regime's money in the web view (issue 16 items 1 and 2): the central funding agreement and its drawdowns, and
the cost of the interventions by calendar quarter, at /web/regimes/{id}/money ("Funding and costs").

Nothing is computed here: the figures are the API's own answers, built by the same functions
(api.routes.funding.funding_view for GET /regimes/{id}/funding, api.routes.costs.costs_of for
GET /regimes/{id}/costs), on the regime's own clock as the other regime pages are. The page is read as the regime
page is (api.web.routes._regime_state): whoever may read the regime's trust; anyone else gets the same "not found"
page as for a regime that does not exist.

The page is added to the web view's router (api.web.routes imports this module at its end).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from api.routes.costs import costs_of
from api.routes.funding import funding_view
from api.web import data, labels
from api.web.routes import Viewer, _regime_state, _settings, page, router
from domain.models import RegimeState, Step
from domain.steps import Kind

# A drawdown's status as the page says it, and its tag's colour.
DRAWDOWN_STATUSES = {
    "requested": ("Waiting for the improvement director's approval", "grey"),
    "approved": ("Waiting for the regulator's authorisation", "yellow"),
    "authorised": ("Authorised, payment being recorded", "blue"),
    "paid": ("Paid", "green"),
    "refused": ("Refused", "red"),
}
PARTIES = ((Kind.funding_agreement_trust, "The trust"), (Kind.funding_agreement_director, "The improvement director"))
QUARTER_MONTHS = {"1": "January to March", "2": "April to June", "3": "July to September", "4": "October to December"}


def quarter_label(quarter: str) -> str:
    """A calendar quarter as the API names it, "2027-Q1", as "January to March 2027"."""
    year, _, q = quarter.partition("-Q")
    return f"{QUARTER_MONTHS[q]} {year}" if q in QUARTER_MONTHS else quarter


def _when(stamp: str | None) -> datetime | None:
    return datetime.fromisoformat(stamp) if stamp else None


def agreement_parties(state: RegimeState) -> list[dict[str, Any]]:
    """The trust's and the improvement director's agreement to the latest funding agreement recorded: each party's
    step (open, agreed, or returned), read from the regime's steps."""
    recorded = [s for s in state.steps.values() if s.kind == Kind.funding_agreement and s.status == "done"]
    if not recorded:
        return []
    latest = max(recorded, key=lambda s: (s.completed_at or s.opened_at, s.id))
    out = []
    for kind, who in PARTIES:
        st: Step | None = next((s for s in state.steps.values()
                                if s.kind == kind and s.subject.get("agreement") == latest.id), None)
        if st is None:
            continue
        if st.status == "done" and st.outcome == "agree":
            said, colour = "Agreed", "green"
        elif st.status == "done":
            said, colour = "Returned", "red"
        elif st.status == "open":
            said, colour = "Not agreed yet", "grey"
        else:
            said, colour = "Cancelled", "grey"
        by = next((a.by for a in reversed(st.actions) if a.by), st.completed_by)
        out.append({"kind": kind.value, "who": who, "said": said, "colour": colour, "status": st.status,
                    "on": st.completed_at, "by": by, "due": st.due})
    return out


def drawdown_rows(funding: dict[str, Any]) -> list[dict[str, Any]]:
    """The drawdowns as the API lists them, each with its recorded payment (if any) and a readable status."""
    paid = {p["drawdown"]: p for p in funding["payments"]}
    rows = []
    for d in funding["drawdowns"]:
        label, colour = DRAWDOWN_STATUSES.get(d["status"], (labels.humanise(d["status"]), "grey"))
        p = paid.get(d["n"])
        rows.append({**d, "status_label": label, "status_colour": colour,
                     "authorised": _when(d.get("authorised_at")),
                     "payment": {**p, "at": _when(p["authorised_at"])} if p else None})
    return rows


@router.get("/regimes/{regime_id}/money")
async def money_page(request: Request, user: Viewer, regime_id: str):
    """Funding and costs (issue 16 items 1 and 2): the funding agreement, its drawdowns and what is left under the
    ceiling, and the cost of the interventions by quarter, from the API's own reads."""
    got = await _regime_state(request, user, regime_id)
    if isinstance(got, Response):
        return got
    row, state, clock = got
    pool = request.app.state.pool
    funding = await funding_view(pool, state, row["regime_id"])
    costs = await costs_of(pool, state, row["regime_id"], clock.today)
    return page(request, "money.html", {
        "user": user, "row": data.row_view(row, clock, _settings(request)), "clock": clock, "today": clock.today,
        "funding": funding, "has_agreement": funding["ceiling_pence"] > 0 or bool(funding["drawdowns"]),
        "parties": agreement_parties(state), "drawdowns": drawdown_rows(funding),
        "costs": costs, "quarters": [{**q, "label": quarter_label(q["quarter"])} for q in costs["quarters"]]})
