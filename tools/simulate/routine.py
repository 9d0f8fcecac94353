"""Routine work: what people do as a matter of course once it falls due (a scenario's `routine`), for the regime
and for its buddy partnerships, with the payloads they send; tools/scenario.py names the actions."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from domain import dates, schedule
from domain.ledger import FORECAST_LEAD_DAYS
from tools.polling import eventually
from tools.scenario import BUDDY_ROUTINE, ROUTINE_ACTIONS, resolve_dates
from tools.simulate.session import RegimeRun, Session, SimulationError, _detail, user_for

BUDDY_STRIDE_DAYS = 28
TOR = "Mentoring of the board and of the services rated inadequate; secondments by agreement."


class RoutineWork(Session):
    """The routine steps of a regime and of its partnerships: Simulation does them at every stop."""

    # ------------------------------------------------------------------ routine work
    def _routine_kind(self, run: RegimeRun, kind: str) -> bool:
        r = run.spec.routine
        return r.enabled and kind in ROUTINE_ACTIONS and kind not in r.skip

    def _act_day(self, run: RegimeRun, s: dict[str, Any]) -> int:
        opened = (dates.london_date(datetime.fromisoformat(s["opened_at"])) - run.entry).days
        due = (date.fromisoformat(s["due"]) - run.entry).days
        return max(opened, due - run.spec.routine.lead_days)

    async def routine(self, run: RegimeRun) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        """Do every routine step whose day has come; return the regime's and its partnerships' states."""
        for _ in range(50):
            state = await self.state(run.regime_id)
            todo = [s for s in state["open_steps"] if self._routine_kind(run, s["kind"]) and not s["paused"]
                    and self._act_day(run, s) <= run.day]
            if not todo:
                if not state["buddies"]:
                    return state, {}
                partners = await self.partner_routine(run, state)
                return await self.state(run.regime_id), partners
            for s in sorted(todo, key=lambda s: (s["due"], s["id"])):
                action, payload = ROUTINE_ACTIONS[s["kind"]]
                today = run.entry + timedelta(days=run.day)
                payload = resolve_dates(payload, run.entry, today)
                if "improvement_director_user_id" in payload:  # appoint the director who then acts
                    payload = {**payload, "improvement_director_user_id": user_for("improvement_director", self.ods)}
                r = await self.call("POST", f"/regimes/{run.regime_id}/steps/{s['id']}/decisions", role=s["role"],
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

    def _partner_action(self, bs: dict[str, Any], s: dict[str, Any]) -> tuple[str, dict[str, Any], str | None]:
        p = bs["p"]
        cfg = self.partners.get((p["buddy"]["ods_code"], p["scope"]), {})
        k = s["kind"]
        if k == "buddy_aip_regulator":
            return "record", cfg.get("agreement_in_principle") or {"agreed_level_pence": 20_000_000,
                                                                     "terms_of_reference": TOR}, None
        if k == "buddy_aip_buddy":
            return "accept", {}, None
        if k.startswith("buddy_sign_"):
            return "sign", {}, None
        if k.startswith("buddy_plan_agree_"):
            return "agree", {}, None
        if k.startswith("buddy_confirm_"):
            return "confirm", {}, None
        ledger = bs.get("ledger") or {"agreed_level_pence": 0, "quarters": []}
        level = ledger["agreed_level_pence"]
        if k == "buddy_support_plan":
            return "submit", cfg.get("support_plan") or {"workstreams": [
                {"id": "improvement-support", "name": "Improvement support", "activities": ["mentoring"],
                 "projected_cost_pence": level}]}, None
        plan = bs.get("plan") or {"workstreams": [{"id": "improvement-support"}]}
        ws = plan["workstreams"][0]["id"]
        remaining = (bs.get("ledger_totals") or {}).get("remaining_pence", 0)
        quarters = ledger["quarters"]

        def line(amount: int, what: str) -> dict[str, Any]:
            return {"lines": [{"workstream": ws, "description": what, "amount_pence": amount}]}

        if k == "buddy_forecast":
            # Forecasts of quarters not yet settled count against what is left of the agreed level.
            pending = sum(q["forecast_pence"] or 0 for q in quarters
                          if q["forecast_pence"] and q["payment_id"] is None and q["declined"] is None
                          and q["authorised_pence"] is None)
            amount = max(0, min(cfg.get("quarterly_pence") or level // 8, remaining - pending))
            return "sign_off", line(amount, "planned support") if amount else {}, None
        if k == "buddy_authorise":
            q = next(q for q in quarters if q["number"] == s["subject"]["quarter"])
            cap = q["forecast_pence"] or 0
            if q.get("cap_pence") is not None:
                cap = min(cap, q["cap_pence"])
            amount = min(cap, remaining)
            if amount <= 0:
                return "decline", {}, "nothing payable for this quarter"
            return "authorise", line(amount, "support delivered"), None
        raise AssertionError(k)

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
            action, payload, comment = self._partner_action(bs, s)
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
