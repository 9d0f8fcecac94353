"""Central funding of a regime's improvement programme (issue 16 item 1): the agreement, drawdowns, payments.

The agreement is recorded and agreed as steps (`funding_agreement`, then the trust's and the improvement
director's); each drawdown the trust requests here is approved (ID) and authorised (regulator) as steps too,
through `POST /regimes/{id}/steps/{step}/decisions`. The payment is recorded once by the regime's funding activity.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from activities.funding import funding_payments
from api.deps import CurrentUser, DbPool, RequestId, SettingsDep, TemporalClientDep
from api.idempotency import idempotent
from api.routes.regimes.bodies import RegimeIdPath
from api.routes.regimes.permissions import actor, regime_row, require_act
from api.routes.regimes.service import as_json, live_state, run_update
from domain.funding import FundingState
from domain.models import DrawdownMessage, RegimeState, StepView
from domain.text import text
from workflows.regime import RegimeWorkflow

router = APIRouter(prefix="/regimes", tags=["funding"])


class DrawdownBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount_pence: int = Field(gt=0, le=10_000_000_000, description="integer pence")
    against: list[text(100, min_length=1)] = Field(min_length=1, max_length=20,
                                                   description="what the money is for: themes or action ids of the "
                                                               "agreed plan (a regime; with no plan, and on the watch "
                                                               "list, the agreement's areas of direct support)")
    purpose: text(2000, min_length=1)


class FundingView(BaseModel):
    regime_id: str = Field(max_length=100)
    agreed: bool
    agreed_on: str | None = Field(None, max_length=10)
    ceiling_pence: int
    areas: list[str] = Field(max_length=30)
    requested_pence: int = Field(description="requested, approved, authorised or paid: what the ceiling covers")
    authorised_pence: int
    paid_pence: int
    remaining_pence: int
    drawdowns: list[dict[str, Any]] = Field(max_length=200)
    payments: list[dict[str, Any]] = Field(max_length=200, description="recorded payments, one per drawdown")


async def funding_view(pool: asyncpg.Pool, state: RegimeState, regime_id: str) -> dict[str, Any]:
    """The regime's funding as GET /regimes/{id}/funding answers it (JSON); the web view's money page reads it too."""
    figures = (state.funding or FundingState()).figures()
    return FundingView(regime_id=regime_id, **figures,
                       payments=await funding_payments(pool, regime_id)).model_dump(mode="json")


@router.get("/{regime_id}/funding", operation_id="getFunding", response_model=FundingView,
            summary="The funding agreement: ceiling, areas of direct support, drawdowns and their payments")
async def get_funding(regime_id: RegimeIdPath, user: CurrentUser, pool: DbPool, client: TemporalClientDep):
    row = await regime_row(pool, regime_id, user)
    state = await live_state(client, regime_id, closed=row["closed"], pool=pool)
    return JSONResponse(await funding_view(pool, state, regime_id))


@router.post("/{regime_id}/funding/drawdowns", status_code=201, operation_id="requestDrawdown",
             response_model=StepView,
             summary="Request a drawdown of central funding against plan themes or actions (trust); refused above "
                     "what is left under the ceiling")
async def request_drawdown(regime_id: RegimeIdPath, req: DrawdownBody, request: Request, user: CurrentUser,
                           pool: DbPool, client: TemporalClientDep, settings: SettingsDep, rid: RequestId):
    row = await regime_row(pool, regime_id, user)
    require_act(user, "trust", row["ods_code"])

    async def handler() -> tuple[int, Any]:
        m = DrawdownMessage(amount_pence=req.amount_pence, against=req.against, purpose=req.purpose,
                            actor=actor(user, "trust", rid))
        view = await run_update(client.get_workflow_handle(regime_id), RegimeWorkflow.request_drawdown, m, settings)
        return 201, as_json(view)

    return await idempotent(request, pool, user, as_json(req), handler)
