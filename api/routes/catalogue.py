"""The step kinds a decision can be made on, with their payload schemas (the contract's mapping at run time)."""

from __future__ import annotations

from fastapi import APIRouter

from api.contract import StepKindList, step_kinds
from api.deps import CurrentUser

router = APIRouter(tags=["step kinds"])


@router.get("/step-kinds", operation_id="listStepKinds", response_model=StepKindList,
            summary="Every step kind: who acts, its actions, the payload schema of each action, its deadline rule "
                    "and where that rule comes from")
async def list_step_kinds(user: CurrentUser):
    """The payload schema names are those of `#/components/schemas` in /openapi.json; `decideStep` carries the
    same mapping as `x-step-payloads`. Any signed-in user may read it: it is the published contract."""
    return StepKindList(items=step_kinds())
