"""`regime simulate SCENARIO...`: rehearse a lifecycle on the real stack, with time skipping.

The simulator places the trust through the HTTP API, then walks virtual time from stop to stop:
a stop is a day on which something happens (a scripted step, routine work falling due, the next
monthly return). At each stop people act through the API with minted tokens; between stops the
regime's clock (and its buddy partnerships' clocks) is fast-forwarded to noon, London time, of the
next stop. Deadlines nobody meets escalate on the way, exactly as in production.

Day 0 is the entry date; the simulation starts today (the API refuses future entry dates), so
printed dates depend on the day the simulation runs and the day numbers do not.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import typer

from domain import dates, schedule
from domain.ledger import FORECAST_LEAD_DAYS
from tools.polling import eventually
from tools.scenario import (
    BUDDY_ROUTINE,
    BUDDY_SIM_KEYS,
    MAX_DAYS,
    ROUTINE_ACTIONS,
    RegimeSpec,
    Scenario,
    ScenarioError,
    StepSpec,
    entry_date,
    load,
    ratings,
    resolve_dates,
    step_day,
)
from tools.stack import ServiceStack, embedded_services, run_stack

SCOPED = ("trust", "improvement_director", "commissioner")
ACTIVE = ("in_special_measures", "extended", "long_term_solution")
BUDDY_STRIDE_DAYS = 28
TOR = "Mentoring of the board and of the services rated inadequate; secondments by agreement."


class SimulationError(Exception):
    """A scenario that cannot go on: names the scenario line that caused it."""


Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def user_for(role: str, ods: str) -> str:
    """User ids, never names: one person per role and trust, so separation of duties holds."""
    return {"trust": f"trust-lead-{ods}", "improvement_director": f"id-{ods}", "commissioner": f"ccg-{ods}",
            "regulator": "regulator-dd-1", "cqc": "cqc-inspector-1", "buddy": f"buddy-lead-{ods}",
            "operations": "ops-1", "admin": "admin-1"}.get(role, f"{role}-1")


def noon(d: date) -> datetime:
    return dates.london_midnight(d) + timedelta(hours=12)


@dataclass
class RegimeRun:
    """One regime of a scenario as it runs."""

    spec: RegimeSpec
    base: tuple[Any, ...]
    entry: date
    regime_id: str = ""
    day: int = 0
    actions: list[dict[str, Any]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)


class Simulation:
    def __init__(self, stack: ServiceStack, scenario: Scenario, *, progress: Progress = _quiet, verbose: bool = False,
                 ods: str | None = None) -> None:
        self.stack = stack
        self.sc = scenario
        self.ods = ods or scenario.trust.ods_code
        self.progress = progress
        self.verbose = verbose
        self.today = dates.london_date(datetime.now(UTC))
        self.runs: list[RegimeRun] = []
        self.tag = uuid.uuid4().hex[:8]
        self._n = 0
        self.partners: dict[tuple[str, str], dict[str, Any]] = {}

    # ------------------------------------------------------------------ http
    def headers(self, role: str, user: str | None = None, org: str | None = None) -> dict[str, str]:
        self._n += 1
        roles = [role] if role != "admin" else ["admin", "regulator"]
        h = self.stack.auth(user or user_for(role, self.ods), *roles,
                            trusts=[self.ods] if role in SCOPED else None, org=org)
        h["Idempotency-Key"] = f"sim-{self.tag}-{self._n}"
        return h

    async def call(self, method: str, path: str, *, role: str, body: Any = None, user: str | None = None,
                   org: str | None = None) -> httpx.Response:
        headers = self.headers(role, user, org)
        for attempt in range(20):
            r = await self.stack.http.request(method, path, json=body, headers=headers)
            if r.status_code not in (429, 503) or attempt == 19:
                return r
            await asyncio.sleep(min(1.0, float(r.headers.get("retry-after", "0.2"))))
        raise AssertionError("unreachable")

    async def state(self, rid: str) -> dict[str, Any]:
        r = await self.call("GET", f"/regimes/{rid}", role="operations")
        if r.status_code != 200:
            raise SimulationError(f"reading {rid} failed: {r.status_code} {r.text}")
        return r.json()

    # ------------------------------------------------------------------ run
    async def run(self) -> dict[str, Any]:
        started = time.monotonic()
        self.progress(f"{self.sc.name}: {self.sc.trust.name} ({self.ods})")
        out: list[dict[str, Any]] = []
        specs: list[tuple[tuple[Any, ...], RegimeSpec]] = [((), self.sc)]
        if self.sc.then is not None:
            specs.append((("then",), self.sc.then))
        for base, spec in specs:
            run = RegimeRun(spec=spec, base=base, entry=entry_date(spec.entry, self.today))
            self.runs.append(run)
            await self.place(run)
            await self.drive(run)
            out.append(await self.timeline(run))
        return {"scenario": self.sc.name, "file": self.sc.file, "trust": {**self.sc.trust.model_dump(),
                                                                         "ods_code": self.ods},
                "simulated_on": self.today.isoformat(), "wall_seconds": round(time.monotonic() - started, 1),
                "regimes": out, "ok": all(c["ok"] for r in out for c in r["expectations"])}

    async def place(self, run: RegimeRun) -> None:
        e = run.spec.entry
        body: dict[str, Any] = {
            "trust": {**self.sc.trust.model_dump(), "ods_code": self.ods}, "entry_date": run.entry.isoformat(),
            "basis": e.basis, "ratings": ratings(e.ratings), "regulator_reason": e.regulator_reason,
            "completed_steps": [{"kind": c.kind, "completed_on": (run.entry + timedelta(days=c.day)).isoformat(),
                                 "by": c.by, "note": c.note} for c in e.completed_steps],
        }
        role = "regulator"
        if e.continue_as_new_after_events is not None:
            body["continue_as_new_after_events"] = e.continue_as_new_after_events
            role = "admin"  # an operational setting, admin only
        r = await self.call("POST", "/regimes", role=role, body=body)
        if r.status_code != 201:
            hint = " (a regime for this trust and date exists on this server: use --ods)" \
                if r.status_code == 409 else ""
            raise SimulationError(f"{self.sc.where(run.base + ('entry',))}: placement refused: "
                                  f"{r.status_code} {_detail(r)}{hint}")
        run.regime_id = r.json()["regime_id"]
        run.day = (self.today - run.entry).days
        prev = r.json().get("previous_regime_id")
        self.progress(f"  day {run.day:>4} {self.today}  regulator: placed {run.regime_id}"
                      + (f" (follows {prev})" if prev else ""))

    async def drive(self, run: RegimeRun) -> None:
        spec = run.spec
        pending = deque(sorted(((step_day(s, run.entry), i, s) for i, s in enumerate(spec.steps)),
                               key=lambda t: (t[0], t[1])))
        limit = spec.until_day if spec.until_day is not None else MAX_DAYS
        last_beat = run.day
        while True:
            while pending and pending[0][0] <= run.day:
                _, i, st = pending.popleft()
                await self.perform(run, st, run.base + ("steps", i))
            state, partners = await self.routine(run)
            if state["finished"]:
                if pending:
                    raise SimulationError(f"{self.sc.where(run.base + ('steps', pending[0][1]))}: the regime "
                                          f"finished on day {run.day}, before this step")
                break
            if spec.until_day is not None and run.day >= spec.until_day and not pending:
                break
            nxt = self.next_stop(run, state, partners, pending)
            if nxt > limit:
                if spec.until_day is None:
                    raise SimulationError(f"{self.sc.where(run.base)}: the regime had not finished by day "
                                          f"{MAX_DAYS}; set until_day")
                nxt = limit
            await self.advance(run, partners, nxt)
            if run.day - last_beat >= 60:
                last_beat = run.day
                st = await self.state(run.regime_id)
                self.progress(f"  day {run.day:>4} {run.entry + timedelta(days=run.day)}  {st['phase']}, "
                              f"{len(st['open_steps'])} open, {len(st['escalations'])} escalations, "
                              f"run {st['runs']}")
        run.day = await self.day_now(run)

    async def day_now(self, run: RegimeRun) -> int:
        now = await self.stack.virtual_now(run.regime_id)
        return (dates.london_date(now) - run.entry).days

    def next_stop(self, run: RegimeRun, state: dict[str, Any], partners: dict[str, dict[str, Any]],
                  pending: deque) -> int:
        cands = [pending[0][0]] if pending else []
        if run.spec.until_day is not None:
            cands.append(run.spec.until_day)
        routine = run.spec.routine
        if routine.enabled:
            for s in state["open_steps"]:
                if self._routine_kind(run, s["kind"]):
                    cands.append(self._act_day(run, s))
            nm = state.get("next_monthly")
            if nm and state["phase"] in ACTIVE:
                m = date.fromisoformat(nm)
                for due in schedule.monthly_steps(m):  # the month's return and meetings, from its 1st
                    if self._routine_kind(run, due.kind):
                        cands.append(max((m - run.entry).days, (due.due - run.entry).days - routine.lead_days))
        for bs in partners.values():
            cands += self._partner_stops(run, bs)
        later = [c for c in cands if c > run.day]
        return min(later) if later else run.day + 30

    async def advance(self, run: RegimeRun, partners: dict[str, dict[str, Any]], day: int) -> None:
        target = noon(run.entry + timedelta(days=day))
        # Partnerships keep their own clocks: each is moved to the same instant as the regime.
        ids = [run.regime_id] + [pid for pid, bs in partners.items() if not bs["finished"]]

        async def one(wid: str) -> None:
            now = await self.stack.virtual_now(wid)
            if target > now:
                await self.stack.fast_forward(wid, target - now)

        await asyncio.gather(*(one(w) for w in ids))
        run.day = await self.day_now(run)

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

    def _log(self, run: RegimeRun, who: str, do: str, what: str | None, routine: bool = False,
             note: str | None = None) -> None:
        today = run.entry + timedelta(days=run.day)
        run.actions.append({"day": run.day, "date": today.isoformat(), "who": who, "do": do, "step": what,
                            "routine": routine})
        if not routine or self.verbose:
            self.progress(f"  day {run.day:>4} {today}  {who}: {do}" + (f" {what}" if what else "")
                          + (f"  ({note})" if note else ""))

    # ------------------------------------------------------------------ scripted steps
    async def perform(self, run: RegimeRun, st: StepSpec, path: tuple[Any, ...]) -> None:
        rid = run.regime_id
        today = run.entry + timedelta(days=run.day)
        payload = resolve_dates(st.payload, run.entry, today)
        before = await self.state(rid)
        step_id = None
        if st.do == "announce_reinspection":
            r = await self.call("POST", f"/regimes/{rid}/reinspection", role=st.who, user=st.user,
                                body={"inspection_date": payload["inspection_date"]})
        elif st.do == "publish_inspection":
            r = await self.call("POST", f"/regimes/{rid}/inspections", role=st.who, user=st.user,
                                body=self._outcome(payload, today))
        elif st.do == "withdraw_inspection":
            r = await self.call("POST", f"/regimes/{rid}/inspections/{payload['reference']}/withdrawal",
                                role=st.who, user=st.user, body={"reason": payload["reason"]})
        elif st.do == "amend_deadline":
            step_id = self._resolve_step(before, st, path)
            r = await self.call("POST", f"/regimes/{rid}/steps/{step_id}/deadline", role=st.who, user=st.user,
                                body=payload)
        elif st.do == "close_regime":
            r = await self.call("POST", f"/regimes/{rid}/closure", role=st.who, user=st.user, body=payload)
        elif st.do == "record_enforcement":
            r = await self.call("POST", f"/regimes/{rid}/enforcement", role=st.who, user=st.user, body=payload)
        elif st.do == "add_buddy":
            cfg = {k: payload.pop(k) for k in BUDDY_SIM_KEYS if k in payload}
            cfg["agreement_in_principle"] = payload.get("agreement_in_principle")
            self.partners[(payload["buddy"]["ods_code"], payload.get("scope", "trust-wide"))] = cfg
            r = await self.call("POST", f"/regimes/{rid}/buddies", role=st.who, user=st.user, body=payload)
        else:
            step_id = await self._resolve_decision_step(run, before, st, path)
            r = await self.call("POST", f"/regimes/{rid}/steps/{step_id}/decisions", role=st.who, user=st.user,
                                org=st.org, body={"action": st.do, "payload": payload, "comment": st.comment,
                                                  "role": st.who})
        expected = st.expect_status
        ok = r.status_code == expected if expected is not None else 200 <= r.status_code < 300
        if not ok:
            raise SimulationError(f"{self.sc.where(path)}: on day {run.day} {st.who} could not {st.do}"
                                  f"{' ' + step_id if step_id else ''}: {r.status_code} {_detail(r)}"
                                  + (f" (expected {expected})" if expected is not None else ""))
        if r.status_code == 202:
            await self._await_signal(rid, before["seq"], path)
        what = step_id or payload.get("reference") or payload.get("solution") or payload.get("action") or (
            payload.get("buddy", {}).get("ods_code") if st.do == "add_buddy" else None)
        note = st.note or (f"refused as expected: {r.status_code}" if expected and expected >= 400 else None)
        self._log(run, st.who, st.do, what, note=note)

    def _outcome(self, p: dict[str, Any], today: date) -> dict[str, Any]:
        end = p.get("inspection_end") or (today - timedelta(days=21)).isoformat()
        out = {"reference": p["reference"], "inspection_start": p.get("inspection_start") or end,
               "inspection_end": end, "published": p.get("published") or today.isoformat(),
               "ratings": ratings(p["ratings"]), "core_services": p.get("core_services") or [],
               "multi_site": self.sc.trust.multi_site}
        for k in ("trajectory_evidence", "recommendation", "kind"):
            if k in p:
                out[k] = p[k]
        return out

    async def _await_signal(self, rid: str, seq: int, path: tuple[Any, ...]) -> None:
        async def seq_now() -> int:
            return (await self.state(rid))["seq"]

        await eventually(seq_now, until=lambda n: n > seq, what=f"the regime to record the CQC message (seq > {seq})",
                         timeout=15, interval=0.05, error=lambda m: SimulationError(f"{self.sc.where(path)}: {m}"))

    def _resolve_step(self, state: dict[str, Any], st: StepSpec, path: tuple[Any, ...]) -> str:
        assert st.step is not None
        if st.step in state["steps"] and state["steps"][st.step]["status"] == "open":
            return st.step
        # A kind names its open step: `cqc_recommendation` is `cqc_recommendation-2` at the second time.
        same = sorted((s for s in state["open_steps"] if s["kind"] == st.step), key=lambda s: (s["due"], s["id"]))
        if same:
            return same[0]["id"]
        if st.step in state["steps"]:
            return st.step  # closed: the API says why it cannot be decided
        opened = ", ".join(s["id"] for s in state["open_steps"]) or "none"
        raise SimulationError(f"{self.sc.where(path + ('step',))}: no step {st.step!r} is open on this day "
                              f"(open: {opened})")

    async def _resolve_decision_step(self, run: RegimeRun, state: dict[str, Any], st: StepSpec,
                                     path: tuple[Any, ...]) -> str:
        assert st.step is not None
        if st.step in state["steps"] or any(s["kind"] == st.step for s in state["open_steps"]):
            return self._resolve_step(state, st, path)
        # A step of a buddy partnership: the task inbox knows it once the partnership has written it.
        await self.stack.settle(run.regime_id)
        r = await self.call("GET", f"/tasks?trust={self.ods}&limit=500", role="operations")
        tasks = r.json().get("items", []) if r.status_code == 200 else []
        hits = [t for t in tasks if t.get("regime_id") == run.regime_id
                and (t.get("step_id") == st.step or t.get("kind") == st.step)]
        if hits:
            return sorted(hits, key=lambda t: (t.get("due") or "", t["step_id"]))[0]["step_id"]
        return self._resolve_step(state, st, path)

    # ------------------------------------------------------------------ timeline
    async def timeline(self, run: RegimeRun) -> dict[str, Any]:
        await self.stack.settle(run.regime_id)
        st = await self.state(run.regime_id)
        e = run.entry

        def day_of(d: date | str | None) -> int | None:
            if d is None:
                return None
            d = date.fromisoformat(d) if isinstance(d, str) else d
            return (d - e).days

        def ldate(ts: str | None) -> str | None:
            return dates.london_date(datetime.fromisoformat(ts)).isoformat() if ts else None

        milestones = []
        for s in sorted(st["steps"].values(), key=lambda s: (s["opened_at"], s["id"])):
            done = ldate(s["completed_at"]) if s["status"] == "done" else None
            milestones.append({
                "step": s["id"], "kind": s["kind"], "title": s["title"], "role": s["role"],
                "opened": ldate(s["opened_at"]), "due": s["due"], "due_day": day_of(s["due"]),
                "status": s["status"], "outcome": s["outcome"], "done": done, "done_day": day_of(done),
                "late": s["late"], "by": s["completed_by"], "amended": len(s["amendments"]),
            })
        escalations = [{"step": x["step_id"], "title": x["step_title"], "rung": x["rung"], "level": x["level"],
                        "date": ldate(x["at"]), "day": day_of(ldate(x["at"])), "due": x["due"],
                        "notified": x["notified"], "reason": x["reason"]} for x in st["escalations"]]
        entry_r = st["placement"].get("entry_ratings")
        rating_rows = []
        if entry_r:
            rating_rows.append({"reference": "entry", "day": 0, "date": e.isoformat(), "status": "entry",
                                **entry_r, "core_inadequate": [], "exit_rule_met": None, "reasons": []})
        for i in st["inspections"]:
            o = i["outcome"]
            rating_rows.append({
                "reference": o["reference"], "day": day_of(ldate(i["received_at"])), "date": ldate(i["received_at"]),
                "inspected": o["inspection_end"], "status": i["status"], "kind": o["kind"], **o["ratings"],
                "core_inadequate": [f"{c['service']} at {c['site']}" for c in o["core_services"]
                                    if c["rating"] == "inadequate"],
                "exit_rule_met": (i["verdict"] or {}).get("met"), "reasons": (i["verdict"] or {}).get("reasons", []),
            })
        payments = []
        for pid, b in st["buddies"].items():
            bs, ledger = await self._partner_record(run, pid)
            key = (bs or {}).get("p", {}).get("key", pid)
            for x in (bs or {}).get("steps", {}).values():
                done = ldate(x["completed_at"]) if x["status"] == "done" else None
                milestones.append({
                    "step": x["id"], "kind": x["kind"], "title": x["title"], "role": x["role"],
                    "opened": ldate(x["opened_at"]), "due": x["due"], "due_day": day_of(x["due"]),
                    "status": x["status"], "outcome": x["outcome"], "done": done, "done_day": day_of(done),
                    "late": x["late"], "by": x["completed_by"], "amended": len(x["amendments"]), "partnership": key})
            escalations += [{"step": x["step_id"], "title": x["step_title"], "rung": x["rung"], "level": x["level"],
                             "date": ldate(x["at"]), "day": day_of(ldate(x["at"])), "due": x["due"],
                             "notified": x["notified"], "reason": x["reason"], "partnership": key}
                            for x in (bs or {}).get("escalations", [])]
            quarters = [{"quarter": q["number"], "start": q["start"], "end": q["end"],
                         "forecast_pence": q["forecast_pence"], "authorised_pence": q["authorised_pence"],
                         "paid_pence": q["paid_pence"], "paid_on": ldate(q["authorised_at"]) if q["payment_id"]
                         else None, "paid_day": day_of(ldate(q["authorised_at"])) if q["payment_id"] else None,
                         "declined": q["declined"]} for q in (ledger or {}).get("quarters", [])]
            payments.append({"partnership": pid, "key": key, "buddy": b["buddy_name"], "buddy_ods": b["buddy_ods"],
                             "scope": b["scope"], "stage": (bs or {}).get("stage", b["stage"]),
                             "agreed_level_pence": b["agreed_level_pence"],
                             "paid_pence": (ledger or {}).get("recorded_paid_pence", b["paid_pence"]),
                             "remaining_pence": ((ledger or {}).get("totals") or {}).get("remaining_pence"),
                             "ended": b["ended"], "quarters": quarters,
                             "recorded_payments": len((ledger or {}).get("payments", []))})
        escalations.sort(key=lambda x: (x["date"] or "", x["step"]))
        runs = await self.history_runs(run.regime_id)
        final = {
            "phase": st["phase"], "segment": st["segment"], "finished": st["finished"], "day": run.day,
            "date": (e + timedelta(days=run.day)).isoformat(), "exit_date": st["exit_date"],
            "exit_day": day_of(st["exit_date"]), "extensions": st["extensions"], "decisions": st["decisions"],
            "continued_support": st["continued_support"], "closure": st["closure"],
            "sos_letter": st["sos_letter"], "enforcement": st["enforcement"], "runs": st["runs"],
            "history": runs, "history_events": sum(r["events"] for r in runs),
            "previous_regime_id": st["placement"].get("previous_regime_id"),
        }
        tl = {"regime_id": run.regime_id, "entry_date": e.isoformat(), "milestones": milestones,
              "escalations": escalations, "ratings": rating_rows, "payments": payments, "final": final,
              "actions": run.actions, "wall_seconds": round(time.monotonic() - run.started, 1)}
        tl["expectations"] = check_expectations(run.spec, tl)
        return tl

    async def _partner_record(self, run: RegimeRun, pid: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        r = await self.call("GET", f"/regimes/{run.regime_id}/buddies/{pid}", role="operations")
        if r.status_code != 200:
            return None, None
        led = await self.call("GET", f"/regimes/{run.regime_id}/buddies/{pid}/ledger", role="operations")
        return r.json(), led.json() if led.status_code == 200 else None

    async def history_runs(self, workflow_id: str) -> list[dict[str, Any]]:
        """Every run of the continue-as-new chain, walked back from the latest through the predecessor
        each run's first event names (visibility lists runs too, but lags a run that just started)."""
        out = []
        run_id: str | None = None
        while True:
            h = self.stack.client.get_workflow_handle(workflow_id, run_id=run_id)
            d = await h.describe()
            out.append({"run_id": d.run_id, "status": d.status.name if d.status else None,
                        "events": d.raw_description.workflow_execution_info.history_length,
                        "started": d.start_time.isoformat()})
            first = None
            async for ev in self.stack.client.get_workflow_handle(workflow_id, run_id=d.run_id).fetch_history_events(
                    page_size=1):
                first = ev
                break
            run_id = first.workflow_execution_started_event_attributes.continued_execution_run_id if first else None
            if not run_id:
                break
        return sorted(out, key=lambda r: r["started"])


def _detail(r: httpx.Response) -> str:
    try:
        body = r.json()
    except ValueError:
        return r.text[:300]
    return str(body.get("detail") or body)[:500] if isinstance(body, dict) else str(body)[:300]


def check_expectations(spec: RegimeSpec, tl: dict[str, Any]) -> list[dict[str, Any]]:
    x = spec.expect
    f = tl["final"]
    out: list[dict[str, Any]] = []

    def add(name: str, expected: Any, actual: Any) -> None:
        out.append({"check": name, "expected": expected, "actual": actual, "ok": expected == actual})

    for k in ("phase", "segment", "finished"):
        if getattr(x, k) is not None:
            add(k, getattr(x, k), f[k])
    if x.extensions is not None:
        add("extensions", x.extensions, len(f["extensions"]))
    if x.runs_at_least is not None:
        out.append({"check": "runs_at_least", "expected": x.runs_at_least, "actual": f["runs"],
                    "ok": f["runs"] >= x.runs_at_least})
    if x.late is not None:
        add("late", sorted(x.late), sorted(m["step"] for m in tl["milestones"] if m["late"]))
    for step, rungs in x.escalations.items():
        add(f"escalations[{step}]", rungs, [e["rung"] for e in tl["escalations"] if e["step"] == step])
    for step, day in x.due_days.items():
        add(f"due_days[{step}]", day, next((m["due_day"] for m in tl["milestones"] if m["step"] == step), None))
    if x.only_reminders is not None:
        beyond = [f"{e['step']}:{e['rung']}" for e in tl["escalations"] if e["rung"] != "reminder"]
        out.append({"check": "only_reminders", "expected": x.only_reminders, "actual": beyond,
                    "ok": (not beyond) == x.only_reminders})
    if x.follows_previous is not None:
        add("follows_previous", x.follows_previous, f["previous_regime_id"] is not None)
    if x.buddies is not None:
        add("buddies", x.buddies, len(tl["payments"]))
    for suffix, pence in x.paid_pence.items():
        paid = [p["paid_pence"] for p in tl["payments"] if p["partnership"].endswith(suffix)]
        add(f"paid_pence[{suffix}]", pence, paid[0] if len(paid) == 1 else paid)
    return out


# ---------------------------------------------------------------------------- running many
async def simulate_files(paths: Sequence[str | Path], *, progress: Progress = _quiet, verbose: bool = False,
                         ods: str | None = None, parallel: int = 1, stack: ServiceStack | None = None,
                         on_done: Callable[[Simulation, dict[str, Any]], Any] | None = None) -> list[dict[str, Any]]:
    """Validate every file first (so a typo fails fast), then run them on one stack."""
    scenarios = [load(p) for p in paths]

    async def go(st: ServiceStack) -> list[dict[str, Any]]:
        sem = asyncio.Semaphore(max(1, parallel))

        async def one(sc: Scenario) -> dict[str, Any]:
            async with sem:
                sim = Simulation(st, sc, progress=progress, verbose=verbose, ods=ods)
                result = await sim.run()
                if on_done is not None:
                    await on_done(sim, result)
                return result

        return list(await asyncio.gather(*(one(sc) for sc in scenarios)))

    if stack is not None:
        return await go(stack)
    with embedded_services() as (address, url):
        async with run_stack(address, url) as st:
            return await go(st)


# ---------------------------------------------------------------------------- output
def render(results: list[dict[str, Any]], all_rows: bool = False) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    con = Console() if sys.stdout.isatty() else Console(width=160)
    for res in results:
        con.rule(f"[bold]{res['scenario']}[/]  {res['trust']['name']} ({res['trust']['ods_code']}"
                 f"{', multi-site' if res['trust']['multi_site'] else ''})  {res['wall_seconds']} s")
        for reg in res["regimes"]:
            f = reg["final"]
            con.print(f"[bold]{reg['regime_id']}[/]  entered {reg['entry_date']} (day 0)"
                      + (f", follows {f['previous_regime_id']}" if f["previous_regime_id"] else ""))
            t = Table("step", "who", "opened", "due (day)", "done (day)", "outcome", "late", title="Milestones",
                      title_justify="left")
            monthly = [m for m in reg["milestones"] if m["kind"].startswith("monthly_return")
                       or m.get("partnership") and ".q" in m["step"]]
            for m in reg["milestones"]:
                if m in monthly and not all_rows and not m["late"]:
                    continue
                t.add_row(m["step"], m["role"], m["opened"], f"{m['due']} ({m['due_day']})",
                          f"{m['done']} ({m['done_day']})" if m["done"] else "-", m["outcome"] or m["status"],
                          "[red]late[/]" if m["late"] else "")
            if monthly and not all_rows:
                on_time = sum(1 for m in monthly if m["status"] == "done" and not m["late"])
                t.add_row(f"monthly returns, buddy quarters ({len(monthly)} steps; --all lists them)", "", "", "",
                          "", f"{on_time} done on time", "", style="dim")
            con.print(t)
            if reg["escalations"]:
                t = Table("day", "date", "step", "rung", "level", "notified", title="Escalations",
                          title_justify="left")
                for x in reg["escalations"]:
                    t.add_row(str(x["day"]), x["date"], x["step"], x["rung"], str(x["level"]), ", ".join(x["notified"]),
                              style="dim" if x["rung"] == "reminder" else None)
                con.print(t)
            t = Table("ref", "day", "safe", "effective", "caring", "responsive", "well-led", "overall",
                      "inadequate core services", "exit rule", title="Ratings", title_justify="left")
            for r in reg["ratings"]:
                t.add_row(r["reference"] + ("" if r["status"] in ("entry", "current") else f" ({r['status']})"),
                          str(r["day"]), *(_SHORT.get(r[k], r[k]) for k in
                                           ("safe", "effective", "caring", "responsive", "well_led", "overall")),
                          "; ".join(r["core_inadequate"]),
                          "" if r["exit_rule_met"] is None else ("met" if r["exit_rule_met"] else "not met"))
            con.print(t)
            if reg["payments"]:
                t = Table("partnership", "quarter", "forecast", "authorised", "paid on (day)", "paid",
                          title="Buddy payments", title_justify="left")
                for p in reg["payments"]:
                    for q in p["quarters"]:
                        t.add_row(p["key"], f"Q{q['quarter']} {q['start']}..{q['end']}", _money(q["forecast_pence"]),
                                  _money(q["authorised_pence"]),
                                  f"{q['paid_on']} ({q['paid_day']})" if q["paid_on"] else (q["declined"] or "-"),
                                  _money(q["paid_pence"]))
                    t.add_row(f"[bold]{p['key']}[/]", p["stage"] + (", ended" if p["ended"] and p["stage"] != "ended" else ""),
                              f"agreed {_money(p['agreed_level_pence'])}", "", "", f"[bold]{_money(p['paid_pence'])}[/]")
                con.print(t)
            runs = f["history"]
            con.print(f"[bold]Final:[/] {f['phase']} (segment {f['segment']}) on day {f['day']} ({f['date']})"
                      + (f"; exit on day {f['exit_day']}" if f["exit_day"] is not None else "")
                      + (f"; {len(f['extensions'])} extension(s)" if f["extensions"] else "")
                      + ("; letter to the Secretary of State" if f["sos_letter"] else "")
                      + (f"; closed by {f['closure']['solution']}" if f["closure"] else "")
                      + ("; finished" if f["finished"] else "; still running")
                      + f"; {len(runs)} run(s), {f['history_events']} history events")
            for c in reg["expectations"]:
                mark = "[green]ok[/]" if c["ok"] else "[red]FAILED[/]"
                con.print(f"  expect {escape(c['check'])}: {mark}" + (
                    "" if c["ok"] else escape(f" expected {c['expected']!r}, got {c['actual']!r}")))


_SHORT = {"requires_improvement": "req. improvement"}


def _money(pence: int | None) -> str:
    return "-" if pence is None else f"£{pence / 100:,.2f}"


def register(app: typer.Typer) -> None:
    @app.command()
    def simulate(
        scenario: list[Path] = typer.Argument(..., help="scenario file(s), YAML or JSON (see docs/scenarios.md)"),
        as_json: bool = typer.Option(False, "--json", help="print the timeline as JSON"),
        all_rows: bool = typer.Option(False, "--all", help="list every monthly return in the table"),
        verbose: bool = typer.Option(False, "--verbose", "-v", help="show routine actions as well"),
        ods: str | None = typer.Option(None, help="use this ODS code instead of the scenario's"),
        parallel: int = typer.Option(1, help="scenarios run at once"),
        check_only: bool = typer.Option(False, "--check", help="validate the files, run nothing"),
    ) -> None:
        """Run scenario files against the real stack (embedded unless TEMPORAL_ADDRESS/DATABASE_URL are set)."""
        from rich.console import Console
        from rich.markup import escape

        err = Console(stderr=True, soft_wrap=True)
        try:
            if check_only:
                for p in scenario:
                    load(p)
                    err.print(f"{p}: ok")
                return
            results = asyncio.run(simulate_files(scenario, progress=lambda m: err.print(escape(m), highlight=False),
                                                 verbose=verbose, ods=ods, parallel=parallel))
        except ScenarioError as e:
            for line in e.lines():
                err.print(escape(line), style="red", highlight=False)
            raise typer.Exit(2) from None
        except SimulationError as e:
            err.print(escape(str(e)), style="red", highlight=False)
            raise typer.Exit(2) from None
        if as_json:
            sys.stdout.write(json.dumps(results if len(results) > 1 else results[0], indent=2, default=str) + "\n")
        else:
            render(results, all_rows)
        if not all(r["ok"] for r in results):
            raise typer.Exit(1)
