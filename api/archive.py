"""Reads put back what a workflow archived at continue-as-new (activities/archive.py, docs/limits.md).

A regime's state keeps what its rules still need; closed steps with their escalations, and older
inspections, enforcement actions, decisions and ended partnerships live in PostgreSQL. People read the
whole regime: these functions merge the archived rows into the state the workflow answers with.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from domain.ledger import BuddyState, PlanChangeRecord
from domain.models import BuddySummary, Escalation, InspectionRecord, RegimeState, Step


async def _rows(pool: asyncpg.Pool, workflow_id: str) -> tuple[list[Any], dict[str, list[Any]]]:
    async with pool.acquire() as conn:
        steps = await conn.fetch("SELECT step, escalations FROM archived_steps WHERE workflow_id = $1 "
                                 "ORDER BY opened_at, step_id", workflow_id)
        recs = await conn.fetch("SELECT kind, record FROM archived_records WHERE workflow_id = $1 "
                                "ORDER BY kind, position", workflow_id)
    by_kind: dict[str, list[Any]] = {}
    for r in recs:
        by_kind.setdefault(r["kind"], []).append(r["record"])
    return list(steps), by_kind


def _merge_steps(state: Any, rows: list[Any]) -> None:
    if not rows:
        return
    archived = {r["step"]["id"]: Step.model_validate(r["step"]) for r in rows}
    merged = sorted([*archived.values(), *(s for s in state.steps.values() if s.id not in archived)],
                    key=lambda s: s.opened_at)
    state.steps = {s.id: s for s in merged}
    escalations = [Escalation.model_validate(e) for r in rows for e in r["escalations"]]
    state.escalations = sorted([*escalations, *state.escalations], key=lambda e: e.at)


async def regime_with_archive(pool: asyncpg.Pool, workflow_id: str, state: RegimeState) -> RegimeState:
    if not state.archived_counts and not state.retired_step_ids:
        return state  # nothing was ever archived: no query
    steps, recs = await _rows(pool, workflow_id)
    state = state.model_copy(deep=True)
    _merge_steps(state, steps)
    state.inspections = [InspectionRecord.model_validate(r) for r in recs.get("inspection", [])] + state.inspections
    state.enforcement = recs.get("enforcement", []) + state.enforcement
    state.decisions = recs.get("decision", []) + state.decisions
    for b in recs.get("buddy", []):
        summary = BuddySummary.model_validate(b)
        state.buddies.setdefault(summary.partnership_id, summary)
    return state


async def partnership_with_archive(pool: asyncpg.Pool, workflow_id: str, state: BuddyState) -> BuddyState:
    if not state.archived_counts and not state.retired_step_ids:
        return state
    steps, recs = await _rows(pool, workflow_id)
    state = state.model_copy(deep=True)
    _merge_steps(state, steps)
    plans = {r["number"]: PlanChangeRecord.model_validate(r).plan for r in recs.get("plan_change", [])}
    for change in state.plan_changes:
        if change.plan is None and change.number in plans:
            change.plan = plans[change.number]
    return state
