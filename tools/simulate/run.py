"""Running a simulation: place the trust through the API, walk virtual time from stop to stop and do the scripted
steps and the routine work of each stop (see the package's docstring); and running many scenario files on one
stack."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from domain import dates, schedule
from tools.polling import eventually
from tools.scenario import (
    BUDDY_SIM_KEYS,
    MAX_DAYS,
    RegimeSpec,
    Scenario,
    StepSpec,
    director_month,
    entry_date,
    load,
    ratings,
    resolve_dates,
    step_day,
)
from tools.simulate.report import Timeline, _money
from tools.simulate.routine import RoutineWork
from tools.simulate.session import Progress, RegimeRun, SimulationError, _detail, _quiet
from tools.stack import ServiceStack, embedded_services, run_stack

ACTIVE = ("in_special_measures", "extended", "long_term_solution", "in_finance_special_measures")


def noon(d: date) -> datetime:
    return dates.london_midnight(d) + timedelta(hours=12)


class Simulation(RoutineWork, Timeline):
    """One scenario on a running stack: `await Simulation(stack, scenario).run()` returns each regime's timeline
    and whether the expectations held."""

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
            await self.watch_list_before_placement(run)  # the scenario's watch_list, if any (the first regime)
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
        if e.measures != "quality":
            body["measures"] = e.measures
        role = "regulator"
        if e.policy is not None:
            body["policy"] = e.policy.model_dump(exclude_none=True)
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
            await self.plan_snapshot(run, state)
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
                if self._routine_kind(run, s["kind"]) and not self.never_done(run, s):
                    cands.append(self._act_day(run, s))
            nm = state.get("next_monthly")
            if nm and state["phase"] in ACTIVE:
                m = date.fromisoformat(nm)
                for due in schedule.monthly_steps(m):  # the month's return and meetings, from its 1st
                    if self._routine_kind(run, due.kind):
                        cands.append(max((m - run.entry).days, (due.due - run.entry).days - routine.lead(due.kind)))
            cands += self.programme_stops(run, state)
        for bs in partners.values():
            cands += self._partner_stops(run, bs)
            if bs.get("run_until") and not bs.get("ending"):  # runs on after exit: it ends (and settles) then
                cands.append((date.fromisoformat(bs["run_until"]["until"]) - run.entry).days)
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
        elif st.do == "send_draft_report":
            r = await self.call("POST", f"/regimes/{rid}/inspections/{payload['reference']}/draft", role=st.who,
                                user=st.user, body={"sent_on": payload.get("sent_on", today.isoformat())})
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
        elif st.do == "propose_plan_change":
            r, step_id = await self.propose_plan_change(run, before, st, payload)
        elif st.do == "record_evidence":
            r = await self.record_evidence(run, st, payload, today)
        elif st.do == "request_drawdown":
            r, step_id = await self.request_drawdown(run, st, payload)
        elif st.do == "record_director_time":
            r = await self.record_director_time(run, st, payload)
        else:
            step_id = await self._resolve_decision_step(run, before, st, path)
            r = await self.call("POST", f"/regimes/{rid}/steps/{step_id}/decisions", role=st.who, user=st.user,
                                org=st.org, body={"action": st.do, "payload": payload, "comment": st.comment,
                                                  "role": st.who})
        expected = st.expect_status
        if st.do == "request_drawdown" and payload.get("expect_refused"):
            expected = 422
        ok = r.status_code == expected if expected is not None else 200 <= r.status_code < 300
        if not ok:
            raise SimulationError(f"{self.sc.where(path)}: on day {run.day} {st.who} could not {st.do}"
                                  f"{' ' + step_id if step_id else ''}: {r.status_code} {_detail(r)}"
                                  + (f" (expected {expected})" if expected is not None else ""))
        if r.status_code == 202:
            await self._await_signal(rid, before["seq"], path)
        what = step_id or payload.get("reference") or payload.get("solution") or payload.get("action") or \
            payload.get("title") or (
            payload.get("buddy", {}).get("ods_code") if st.do == "add_buddy" else None) or (
            f"{director_month(payload['month'], run.entry)}: {payload['days']} days"
            if st.do == "record_director_time" else None) or (
            f"{_money(payload['amount_pence'])}" if st.do == "request_drawdown" else None)
        note = st.note or (f"refused as expected: {r.status_code}" if expected and expected >= 400 else None)
        self._log(run, st.who, st.do, what, note=note)

    def _outcome(self, p: dict[str, Any], today: date) -> dict[str, Any]:
        end = p.get("inspection_end") or (today - timedelta(days=21)).isoformat()
        out = {"reference": p["reference"], "inspection_start": p.get("inspection_start") or end,
               "inspection_end": end, "published": p.get("published") or today.isoformat(),
               "ratings": ratings(p["ratings"]), "core_services": p.get("core_services") or [],
               "multi_site": self.sc.trust.multi_site,
               # A scenario's published outcome is the special-measures re-inspection unless it says otherwise
               # (inspection_type, well_led_assessed, special_measures_reinspection).
               "inspection_type": "comprehensive", "well_led_assessed": True, "special_measures_reinspection": True}
        for k in ("trajectory_evidence", "kind", "inspection_type", "well_led_assessed",
                  "special_measures_reinspection"):
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
