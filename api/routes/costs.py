"""The cost of the interventions per regime (issue 16 item 2): buddy payments made, the improvement director's
recorded time at its day rate, and central funding drawn down and paid, by calendar quarter.

Every figure is integer pence. Buddy payments are read from `buddy_payments` (written once per partnership and
quarter by the payment activity), by the London date they were authorised; the director's time is the regime's
record (`RegimeState.director_time`), each month costed at the rate it was recorded with.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import asyncpg
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from api.deps import CurrentUser, DbPool, RequestId, SettingsDep, TemporalClientDep
from api.idempotency import idempotent
from api.routes.regimes.bodies import RegimeIdPath
from api.routes.regimes.permissions import acting_role, actor, regime_row, require_act
from api.routes.regimes.service import as_json, live_state, run_update
from domain.dates import london_date, months_between
from domain.models import DirectorTime, RegimeState
from domain.text import text
from workflows.regime import RegimeWorkflow

router = APIRouter(prefix="/regimes", tags=["costs"])


class DirectorTimeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    month: str = Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="YYYY-MM")
    days: float = Field(ge=0, le=31, multiple_of=0.5, description="days worked on the regime that month (half days)")
    reason: text(2000, min_length=1) | None = Field(None, description="required to correct a month already recorded")
    role: text(40) | None = Field(None, description="improvement_director (default) or regulator")


class DirectorTimeRecorded(BaseModel):
    month: str = Field(max_length=7)
    days: float
    rate_pence: int
    cost_pence: int
    by: str = Field(max_length=200)
    at: datetime
    reason: str | None = Field(None, max_length=2000)


class QuarterCost(BaseModel):
    quarter: str = Field(max_length=7, description="calendar quarter, e.g. 2027-Q1")
    buddy_paid_pence: int
    direct_funding_pence: int
    director_days: float
    director_time_pence: int
    total_pence: int


class Costs(BaseModel):
    regime_id: str = Field(max_length=100)
    quarters: list[QuarterCost] = Field(max_length=400, description="calendar quarters with a cost, oldest first")
    buddy_paid_pence: int
    director_days: float
    director_time_pence: int
    direct_funding_pence: int = Field(description="central funding drawn down and paid (GET /regimes/{id}/funding)")
    total_pence: int
    months_in_special_measures: float = Field(description="from entry to exit (or today), in months of 30.4 days")
    cost_per_month_pence: int = Field(description="total / months in special measures (at least one month), "
                                                  "rounded to the penny")


def quarter_of(d: date | str) -> str:
    if isinstance(d, str):
        y, m = int(d[:4]), int(d[5:7])
    else:
        y, m = d.year, d.month
    return f"{y:04d}-Q{(m - 1) // 3 + 1}"


async def costs_of(pool: asyncpg.Pool, state: RegimeState, regime_id: str, today: date) -> dict[str, Any]:
    rows = await pool.fetch("SELECT amount_pence, authorised_at FROM buddy_payments WHERE regime_id = $1", regime_id)
    by_q: dict[str, dict[str, Any]] = {}

    def q(key: str) -> dict[str, Any]:
        return by_q.setdefault(key, {"quarter": key, "buddy_paid_pence": 0, "direct_funding_pence": 0,
                                     "director_days": 0.0, "director_time_pence": 0})
    for r in rows:
        q(quarter_of(london_date(r["authorised_at"])))["buddy_paid_pence"] += int(r["amount_pence"])
    funded = await pool.fetch("SELECT amount_pence, authorised_at FROM funding_payments WHERE regime_id = $1",
                              regime_id)
    for r in funded:
        q(quarter_of(london_date(r["authorised_at"])))["direct_funding_pence"] += int(r["amount_pence"])
    for month, t in state.director_time.items():
        x = q(quarter_of(month))
        x["director_days"] += float(t["days"])
        x["director_time_pence"] += int(t["cost_pence"])
    quarters = [QuarterCost(**x, total_pence=x["buddy_paid_pence"] + x["direct_funding_pence"] +
                            x["director_time_pence"]) for _, x in sorted(by_q.items())]
    end = state.exit_date or today
    months = months_between(state.placement.entry_date, end)
    total = sum(x.total_pence for x in quarters)
    return Costs(regime_id=regime_id, quarters=quarters, buddy_paid_pence=sum(x.buddy_paid_pence for x in quarters),
                 direct_funding_pence=sum(x.direct_funding_pence for x in quarters),
                 director_days=sum(x.director_days for x in quarters),
                 director_time_pence=sum(x.director_time_pence for x in quarters), total_pence=total,
                 months_in_special_measures=months,
                 cost_per_month_pence=round(total / max(months, 1.0))).model_dump(mode="json")


@router.get("/{regime_id}/costs", operation_id="getCosts", response_model=Costs,
            summary="The cost of the interventions by quarter: buddy payments made, central funding paid, the "
                    "improvement director's recorded time")
async def get_costs(regime_id: RegimeIdPath, user: CurrentUser, pool: DbPool, client: TemporalClientDep):
    row = await regime_row(pool, regime_id, user)
    state = await live_state(client, regime_id, closed=row["closed"], pool=pool)
    return JSONResponse(await costs_of(pool, state, regime_id, london_date(datetime.now(UTC))))


@router.post("/{regime_id}/director-time", status_code=201, operation_id="recordDirectorTime",
             response_model=DirectorTimeRecorded,
             summary="Record the improvement director's days in a month (the appointed director, or the regulator); "
                     "a month recorded again is a correction with a reason")
async def record_director_time(regime_id: RegimeIdPath, req: DirectorTimeRequest, request: Request,
                               user: CurrentUser, pool: DbPool, client: TemporalClientDep, settings: SettingsDep,
                               rid: RequestId):
    row = await regime_row(pool, regime_id, user)
    role = acting_role(user, req.role, "improvement_director")
    require_act(user, role, row["ods_code"])

    async def handler() -> tuple[int, Any]:
        t = DirectorTime(month=req.month, days=req.days, rate_pence=settings.director_day_rate_pence,
                         reason=req.reason, actor=actor(user, role, rid))
        out = await run_update(client.get_workflow_handle(regime_id), RegimeWorkflow.record_director_time, t,
                               settings)
        return 201, out

    return await idempotent(request, pool, user, as_json(req), handler)
