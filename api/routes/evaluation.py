"""The evaluation view (issue 16 item 5): time in special measures as a survival curve, time to exit by entry
year, re-entry and cost, as JSON, and the figures behind each chart as CSV (`format=csv&table=...`).

Readers: operations and the national roles (regulator, CQC, admin). A trust-scoped user (trust, improvement
director, commissioner) and a buddy are refused (403): the figures are the national programme's, and their
tables name every trust's regimes, while one trust's own two or three regimes make no survival curve; such a
user has the cohort page for the regimes they are assigned to.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import Field

from api import evaluation
from api.auth import NATIONAL_ROLES
from api.contract import Out, as_is
from api.deps import CurrentUser, DbPool
from api.errors import Problem
from domain.vocab import Role

router = APIRouter(tags=["evaluation"])
READERS = (Role.operations, *NATIONAL_ROLES)


class SurvivalPoint(Out):
    time_days: int
    months: float
    survival: float
    at_risk: int
    events: int
    censored: int


class Outcomes(Out):
    """How many regimes, how they ended (or not yet), and the Kaplan-Meier median time in special measures."""
    regimes: int
    exited: int
    closed: int
    running: int
    closed_undated: int
    median_days: float | None
    median_months: float | None


class EntryYear(Outcomes):
    year: int


class ExitItem(Out):
    regime_id: str
    trust_name: str
    ods_code: str
    exit_date: date
    reentered: bool
    reentry_regime_id: str | None
    reentry_date: date | None
    days_to_reentry: int | None


class Reentry(Out):
    exits: int
    reentered: int
    rate: float | None
    trusts_exited: int
    trusts_reentered: int
    median_days_to_reentry: float | None
    other_reentries: int
    items: list[ExitItem]


class RegimeCost(Out):
    regime_id: str
    trust_name: str
    ods_code: str
    entry_date: date
    end_date: date
    outcome: Literal["exited", "closed", "running", "closed_undated"]
    days: int
    months: float
    buddy_paid_pence: int
    buddy_per_month_pence: int | None
    funding_paid_pence: int = Field(description="central funding drawn down and paid (funding_payments)")
    director_time_pence: int = Field(description="the improvement director's recorded time, each month's latest "
                                                 "record at its rate")
    total_pence: int
    total_per_month_pence: int | None


class Cost(Out):
    buddy_paid_pence: int
    months: float
    buddy_per_month_pence: int | None
    buddy_per_regime_pence: int | None
    median_per_regime_pence: int | None
    regimes_with_payments: int
    funding_paid_pence: int
    director_time_pence: int
    total_pence: int
    total_per_month_pence: int | None
    total_per_regime_pence: int | None
    items: list[RegimeCost]


class Evaluation(Outcomes):
    as_of: date
    survival: list[SurvivalPoint]
    by_entry_year: list[EntryYear]
    reentry: Reentry
    cost: Cost


@router.get("/evaluation", operation_id="getEvaluation", response_model=Evaluation,
            responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
            summary="The evaluation figures: survival in special measures, exits by entry year, re-entry, cost")
async def get_evaluation(user: CurrentUser, pool: DbPool, format: Literal["json", "csv"] = "json",
                         table: Literal["survival", "by-entry-year", "reentry", "cost"] | None = Query(
                             None, description="with format=csv: the figures behind one chart")):
    """Every regime, current and past. The survival curve is Kaplan-Meier (statsmodels), regimes still running
    censored at today; a structural closure ends a regime at its closure. `format=csv` with `table` answers the
    figures behind one chart as CSV (`survival`, `by-entry-year`, `reentry`, `cost`)."""
    if not user.has(*READERS):
        raise Problem(403, "forbidden-role", "the evaluation is for operations, the regulator, CQC and admin")
    if format == "csv" and table is None:
        raise Problem(422, "table-missing", "format=csv needs table: survival, by-entry-year, reentry or cost")
    ev = await evaluation.evaluate(pool)
    if format == "json":
        return as_is(ev)
    return csv_response(ev, table)


def csv_response(ev: dict, table: str) -> Response:
    return Response(evaluation.to_csv(ev, table), media_type="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="evaluation-{table}.csv"'})
