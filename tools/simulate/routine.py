"""Routine work: what people do as a matter of course once it falls due (a scenario's `routine`), for the regime
and for its buddy partnerships, with the payloads they send; tools/scenario.py names the actions."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from domain import dates, schedule
from domain.ledger import BUDDY_STEPS, FORECAST_LEAD_DAYS
from domain.steps import CATALOGUE, RoutineContext
from tools.polling import eventually
from tools.scenario import BUDDY_ROUTINE
from tools.simulate.funding import FundingWork
from tools.simulate.programme import ProgrammeWork
from tools.simulate.session import RegimeRun, SimulationError, _detail, user_for

BUDDY_STRIDE_DAYS = 28


class RoutineWork(ProgrammeWork, FundingWork):
    """The routine steps of a regime and of its partnerships: Simulation does them at every stop."""

    # ------------------------------------------------------------------ routine work
    def _act_day(self, run: RegimeRun, s: dict[str, Any]) -> int:
        opened = (dates.london_date(datetime.fromisoformat(s["opened_at"])) - run.entry).days
        due = (date.fromisoformat(s["due"]) - run.entry).days
        return max(opened, due - run.spec.routine.lead(s["kind"]))

    async def routine(self, run: RegimeRun) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        """Do every routine step whose day has come; return the regime's and its partnerships' states."""
        for _ in range(50):
            state = await self.state(run.regime_id)
            todo = [s for s in state["open_steps"] if self._routine_kind(run, s["kind"]) and not s["paused"]
                    and self._act_day(run, s) <= run.day and not self.never_done(run, s)]
            if not todo:
                if not state["buddies"]:
                    return state, {}
                partners = await self.partner_routine(run, state)
                return await self.state(run.regime_id), partners
            for s in sorted(todo, key=lambda s: (s["due"], s["id"])):
                routine = CATALOGUE[s["kind"]].routine
                assert routine is not None
                action, payload, _ = routine.decision(RoutineContext(
                    today=run.entry + timedelta(days=run.day), step=s, state=state,
                    user=lambda role: user_for(role, self.ods)))  # e.g. appoint the director who then acts
                payload = await self.programme_decision(run, s, state, action, payload)
                payload = self.funding_decision(run, s, action, payload)
                # A regime step for a buddy trust (its evidence file review) is done by that trust's lead.
                org = s["subject"].get("buddy_ods") if s["role"] == "buddy" else None
                r = await self.call("POST", f"/regimes/{run.regime_id}/steps/{s['id']}/decisions", role=s["role"],
                                    user=f"buddy-lead-{org}" if org else None, org=org,
                                    body={"action": action, "payload": payload, "role": s["role"],
                                          "comment": "routine"})
                if r.status_code != 200:
                    raise SimulationError(f"{self.sc.where(run.base + ('routine',))}: routine {action} of "
                                          f"{s['id']} on day {run.day} refused: {r.status_code} {_detail(r)}")
                self._log(run, s["role"], action, s["id"], routine=True)
        raise SimulationError(f"{self.sc.where(run.base + ('routine',))}: routine work does not settle on day "
                              f"{run.day}")

    # ------------------------------------------------------------------ buddy partnerships
    async def partner_states(self, run: RegimeRun, state: dict[str, Any]) -> dict[str, dict[str, Any]]:
        out = {}
        for pid in state["buddies"]:
            r = await self.call("GET", f"/regimes/{run.regime_id}/buddies/{pid}", role="operations")
            if r.status_code == 200:
                out[pid] = r.json()
            elif r.status_code != 404:  # 404: the regime has not started it yet
                raise SimulationError(f"reading partnership {pid} failed: {r.status_code} {_detail(r)}")
        return out

    def _partner_routine_kind(self, run: RegimeRun, kind: str) -> bool:
        r = run.spec.routine
        return r.enabled and r.buddy and kind in BUDDY_ROUTINE and kind not in r.skip

    def _partner_stops(self, run: RegimeRun, bs: dict[str, Any]) -> list[int]:
        """Days on which a partnership's routine step falls due or a quarter's steps open."""
        if bs["finished"]:
            return []
        out = [self._act_day(run, s) for s in bs["open_steps"] if self._partner_routine_kind(run, s["kind"])]
        if bs["stage"] == "quarterly_cycle" and bs.get("plan_agreed_on"):
            agreed = date.fromisoformat(bs["plan_agreed_on"])
            start, _ = schedule.quarter_dates(agreed, bs["next_forecast_quarter"])
            out.append((start - timedelta(days=FORECAST_LEAD_DAYS) - run.entry).days)
            quarters = (bs.get("ledger") or {}).get("quarters") or []
            if bs["next_review_quarter"] <= len(quarters):
                end = date.fromisoformat(quarters[bs["next_review_quarter"] - 1]["end"])
                out.append((end + timedelta(days=1) - run.entry).days)
        out.append(run.day + BUDDY_STRIDE_DAYS)  # in case a partnership opens steps we cannot foresee
        return out

    def _partner_action(self, run: RegimeRun, bs: dict[str, Any], s: dict[str, Any]) -> tuple[str, dict[str, Any],
                                                                                          str | None]:
        """The routine decision on a partnership's step (its catalogue entry's `routine`), with the scenario's
        add_buddy settings for this partnership."""
        p = bs["p"]
        routine = BUDDY_STEPS[s["kind"]].routine
        assert routine is not None, s["kind"]
        return routine.decision(RoutineContext(
            today=run.entry + timedelta(days=run.day), step=s, state=bs,
            config=self.partners.get((p["buddy"]["ods_code"], p["scope"]), {}),
            user=lambda role: user_for(role, self.ods)))

    async def _wait_task(self, workflow_id: str, step_id: str) -> None:
        """The API routes a decision by the task row the partnership writes; wait until it is there."""
        await eventually(lambda: self.stack.pool.fetchval("SELECT 1 FROM tasks WHERE workflow_id = $1 AND step_id = $2",
                                                          workflow_id, step_id),
                         what=f"the task {step_id} of {workflow_id} to reach PostgreSQL", timeout=15, interval=0.05,
                         error=SimulationError)

    async def partner_routine(self, run: RegimeRun, state: dict[str, Any]) -> dict[str, dict[str, Any]]:
        for _ in range(100):
            partners = await self.partner_states(run, state)
            todo = [(pid, bs, s) for pid, bs in partners.items() for s in bs["open_steps"]
                    if self._partner_routine_kind(run, s["kind"]) and not s["paused"]
                    and self._act_day(run, s) <= run.day]
            if not todo:
                return partners
            pid, bs, s = min(todo, key=lambda t: (t[2]["due"], t[2]["id"]))
            action, payload, comment = self._partner_action(run, bs, s)
            await self._wait_task(pid, s["id"])
            role = s["role"]
            org = s["subject"].get("buddy_ods") if role == "buddy" else None
            r = await self.call("POST", f"/regimes/{run.regime_id}/steps/{s['id']}/decisions", role=role,
                                user=f"buddy-lead-{org}" if org else None, org=org,
                                body={"action": action, "payload": payload, "role": role,
                                      "comment": comment or "routine"})
            if r.status_code != 200:
                raise SimulationError(f"{self.sc.where(run.base + ('routine',))}: routine {action} of {s['id']} "
                                      f"on day {run.day} refused: {r.status_code} {_detail(r)}")
            self._log(run, role, action, s["id"], routine=True)
        raise SimulationError(f"{self.sc.where(run.base + ('routine',))}: partnership routine does not settle "
                              f"on day {run.day}")
