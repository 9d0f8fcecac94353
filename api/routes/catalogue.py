"""The step kinds a decision can be made on, with their payload schemas (the contract's mapping at run time)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import Field

from api.contract import ActionSpec, StepKindList, StepKindSpec, deadline_spec, step_kinds
from api.deps import CurrentUser

router = APIRouter(tags=["step kinds"])


class WatchStepKindSpec(StepKindSpec):
    workflow: Literal["watch_list"] = "watch_list"


class StepKindCatalogue(StepKindList):
    watch_list: list[WatchStepKindSpec] = Field(
        description="the challenged-providers watch list's own kinds, decided at POST /watch-list/{id}/steps/{step}/"
                    "decisions (its entries also take the regime's appointment and funding kinds, listed in items)")


def watch_list_kinds() -> list[WatchStepKindSpec]:
    """The watch list's kinds that are not the regime's (domain/watchlist.py WATCH_STEPS: its review)."""
    from domain.steps import CATALOGUE
    from domain.watchlist import WATCH_STEPS

    return [WatchStepKindSpec(
        kind=kind, title=spec.title, short_title=spec.label, role=spec.role, group=spec.group, recurs=spec.recurs,
        deadline=deadline_spec(spec.deadline),
        actions={a: ActionSpec(payload_schema=m.__name__, reason_required=a in spec.needs_reason)
                 for a, m in spec.actions.items()})
        for kind, spec in WATCH_STEPS.items() if kind not in CATALOGUE]


@router.get("/step-kinds", operation_id="listStepKinds", response_model=StepKindCatalogue,
            summary="Every step kind: who acts, its actions, the payload schema of each action, its deadline rule "
                    "and where that rule comes from")
async def list_step_kinds(user: CurrentUser):
    """The payload schema names are those of `#/components/schemas` in /openapi.json; `decideStep` carries the
    same mapping as `x-step-payloads`. Any signed-in user may read it: it is the published contract. `items` are
    the regime's and the partnership's kinds; `watch_list` the watch list's own (marked `workflow: watch_list`)."""
    return StepKindCatalogue(items=step_kinds(), watch_list=watch_list_kinds())
