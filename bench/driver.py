"""Driving regimes and their buddy partnerships through the HTTP API of a running `Project`, on virtual time.

The regime side reuses the tests' diligent driver (`tests.driver.Regime`: every open step due in the window is
done by its party with the usual action, read from the regime page first). `Buddies` does the same for the
partnership steps. Every update sent is counted per workflow and per window (`UpdateLog`), so the raw baseline
can be driven with the same updates and fast-forwards.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError
from temporalio.testing import TimeSkipper

from bench.common import Project, fast_forward
from domain.ledger import CONFIRM_KIND, SIGN_KINDS, BuddyKind, Ledger
from tests.driver import Regime
from tools.polling import eventually

BUDDY_PLAN = {"workstreams": [
    {"id": "governance", "name": "Board governance", "activities": ["board mentoring"],
     "projected_cost_pence": 12_000_000},
    {"id": "maternity", "name": "Maternity safety", "activities": ["midwife secondment"],
     "projected_cost_pence": 8_000_000}]}
TOR = "Mentoring of the board and the maternity service; secondments by agreement."
IMPROVED = {"safe": "requires_improvement", "effective": "good", "caring": "good",
            "responsive": "requires_improvement", "well_led": "requires_improvement",
            "overall": "requires_improvement"}
MATERNITY_PLAN = {"workstreams": [
    {"id": "maternity", "name": "Maternity safety", "activities": ["midwife secondment", "CTG training"],
     "projected_cost_pence": 9_000_000}]}
STILL_INADEQUATE = dict(IMPROVED, well_led="inadequate", overall="inadequate")


@dataclass
class UpdateLog:
    """Updates sent, per window (between two fast-forwards) and per workflow."""

    windows: list[dict[str, Any]] = field(default_factory=list)
    current: Counter = field(default_factory=Counter)

    def add(self, workflow_id: str, n: int = 1) -> None:
        self.current[workflow_id] += n

    def close_window(self, days: float, forwarded: list[str]) -> None:
        self.windows.append({"days": days, "updates": dict(self.current), "forwarded": forwarded})
        self.current = Counter()

    def total(self) -> Counter:
        c: Counter = Counter()
        for w in self.windows:
            c.update(w["updates"])
        c.update(self.current)
        return c


class Stackish:
    """What `tests.driver.Regime` needs from a stack, over a `Project` running as separate processes."""

    def __init__(self, project: Project, http: httpx.AsyncClient, skipper: TimeSkipper) -> None:
        self.project, self.http, self.skipper = project, http, skipper
        self.logs: dict[str, UpdateLog] = {}
        self.ff_seconds = 0.0
        self.http_seconds: Counter = Counter()
        self.http_calls: Counter = Counter()
        self.http.event_hooks["request"].append(self._start)
        self.http.event_hooks["response"].append(self._count)

    async def _start(self, request: httpx.Request) -> None:
        request.extensions["t0"] = time.perf_counter()

    @staticmethod
    def category(request: httpx.Request) -> str:
        path = request.url.path
        if request.method == "GET":
            if "/buddies/" in path:
                return "read_partnership_page"
            return "read_regime_page" if path.count("/") == 2 and path.startswith("/regimes/") else "read_other"
        if path.endswith("/decisions"):
            return "decision"
        return "placement" if path == "/regimes" else "other_write"

    async def _count(self, r: httpx.Response) -> None:
        await r.aread()
        cat = self.category(r.request)
        self.http_seconds[cat] += time.perf_counter() - r.request.extensions.get("t0", time.perf_counter())
        self.http_calls[cat] += 1
        # An accepted decision, announcement, buddy start or closure is one update on the regime workflow.
        path = r.request.url.path
        # A published inspection is a signal; it is counted as one update too (the raw baseline then does a
        # little more work than the project, not less).
        if r.request.method == "POST" and r.status_code in (200, 201, 202) and path.count("/") >= 3 and (
                path.endswith(("/decisions", "/reinspection", "/buddies", "/closure", "/inspections"))):
            parts = path.split("/")
            step = parts[4] if len(parts) > 4 and parts[3] == "steps" else ""
            wf = parts[2]
            if "." in step:  # a partnership's step: `<key>.<step>`
                wf = f"{parts[2]}-buddy-{step.split('.', 1)[0]}"
            self.log(parts[2]).add(wf)

    def log(self, regime_id: str) -> UpdateLog:
        """The updates sent to one regime and its partnerships."""
        return self.logs.setdefault(regime_id, UpdateLog())

    def auth(self, sub: str, *roles: str, trusts: list[str] | None = None, org: str | None = None) -> dict:
        return self.project.auth(sub, *roles, trusts=trusts, org=org)

    def handle(self, workflow_id: str):
        return self.skipper.client.get_workflow_handle(workflow_id)

    async def fast_forward(self, regime_id: str, days: float) -> bool:
        return await fast_forward(self.skipper, self.handle(regime_id), days)


class BenchRegime(Regime):
    """The tests' diligent regime, acting with the role the regime page already showed (one read per round
    instead of one more before every decision)."""

    async def complete_open(self, within_days: int = 10, skip: tuple[str, ...] = ()) -> list[str]:
        from tests.driver import DEFAULT_ACTION, default_decision

        done: list[str] = []
        for _ in range(10):
            st = await self.state()
            todo = [s for s in st["open_steps"] if s["kind"] in DEFAULT_ACTION and s["kind"] not in skip
                    and s["due"] <= (self.today + timedelta(days=within_days)).isoformat()]
            if not todo:
                return done
            for s in sorted(todo, key=lambda s: (s["due"], s["id"])):
                action, body = default_decision(s["kind"], self.today.isoformat(), self.ods)
                await self.act(s["id"], action, body, comment="done", role=s["role"], subject=s.get("subject"))
                done.append(s["id"])
        return done

    async def act(self, step_id: str, action: str, payload: dict | None = None, comment: str | None = None,
                  role: str | None = None, expect: int = 200, subject: dict | None = None) -> dict[str, Any]:
        if role is None:
            return await super().act(step_id, action, payload, comment, expect=expect)
        r = await self.stack.http.post(f"/regimes/{self.id}/steps/{step_id}/decisions",
                                       headers=self.headers_for(role, subject),
                                       json={"action": action, "payload": payload or {}, "comment": comment})
        assert r.status_code == expect, r.text
        return r.json()


class Buddies:
    """A regime's partnerships, every party acting on time."""

    def __init__(self, stack: Stackish, reg: Regime) -> None:
        self.stack, self.reg = stack, reg
        self.pids: list[str] = []
        self.forecast: dict[str, int] = {}
        self.plans: dict[str, dict] = {}
        self.hold: set[str] = set()  # step kinds nobody acts on for now
        self.ops = stack.auth("ops-1", "operations")

    def headers(self, role: str, buddy_ods: str) -> dict[str, str]:
        if role == "buddy":
            return self.stack.auth(f"buddy-user-{buddy_ods}", "buddy", org=buddy_ods)
        return self.reg.users[role]

    async def add(self, buddy_ods: str, scope: str = "trust-wide", level: int = 30_000_000,
                  forecast: int = 4_000_000, plan: dict | None = None) -> str:
        r = await self.stack.http.post(
            f"/regimes/{self.reg.id}/buddies", headers=self.reg.users["regulator"],
            json={"buddy": {"ods_code": buddy_ods, "name": f"{buddy_ods} Hospitals NHS FT"}, "scope": scope,
                  "agreement_in_principle": {"agreed_level_pence": level, "terms_of_reference": TOR}})
        assert r.status_code == 201, r.text
        pid = r.json()["partnership_id"]
        # The regime starts the child once the update has answered.
        await eventually(self.stack.handle(pid).describe, what=f"{pid} to start", timeout=15, interval=0.03,
                         ignore=RPCError)
        self.pids.append(pid)
        self.forecast[pid] = forecast
        self.plans[pid] = plan or BUDDY_PLAN
        return pid

    async def state(self, pid: str) -> dict[str, Any]:
        r = await self.stack.http.get(f"/regimes/{self.reg.id}/buddies/{pid}", headers=self.ops)
        assert r.status_code == 200, r.text
        return r.json()

    async def running(self) -> list[str]:
        out = []
        for pid in self.pids:
            if (await self.stack.handle(pid).describe()).status == WorkflowExecutionStatus.RUNNING:
                out.append(pid)
        return out

    async def decide(self, pid: str, st: dict[str, Any], action: str, payload: dict | None = None,
                     comment: str | None = None) -> None:
        body: dict[str, Any] = {"action": action, "payload": payload or {}}
        if comment:
            body["comment"] = comment
        r = await self.stack.http.post(f"/regimes/{self.reg.id}/steps/{st['id']}/decisions", json=body,
                                       headers=self.headers(st["role"], st["subject"]["buddy_ods"]))
        assert r.status_code == 200, (st["id"], r.text)

    async def drive(self, within_days: int) -> int:
        """Every party acts on every partnership step due within the window (and on what that opens)."""
        acted_total = 0
        horizon = self.reg.today + timedelta(days=within_days)
        # A closed partnership has nothing to do; reading it would make the worker replay its whole history.
        for pid in await self.running():
            for _ in range(20):
                s = await self.state(pid)
                if s.get("finished"):
                    break
                todo = [st for st in s["open_steps"] if st["due"] <= horizon.isoformat()
                        and st["kind"] not in self.hold]
                if not todo:
                    break
                for st in sorted(todo, key=lambda x: (x["due"], x["id"])):
                    await self.act(pid, s, st)
                    acted_total += 1
        return acted_total

    async def act(self, pid: str, s: dict[str, Any], st: dict[str, Any]) -> None:
        k = st["kind"]
        led = s.get("ledger") or {}
        remaining = (s.get("ledger_totals") or {}).get("remaining_pence", 0)
        if k == BuddyKind.buddy_aip_buddy:
            await self.decide(pid, st, "accept")
        elif k in SIGN_KINDS:
            await self.decide(pid, st, "sign")
        elif k == BuddyKind.buddy_support_plan:
            await self.decide(pid, st, "submit", self.plans[pid])
        elif k in (BuddyKind.buddy_plan_agree_regulator, BuddyKind.buddy_plan_agree_trust):
            await self.decide(pid, st, "agree")
        elif k == BuddyKind.buddy_forecast:
            # Within what is left once the quarters not yet settled are counted (domain/ledger.py, issue 14).
            amount = min(self.forecast[pid], Ledger.model_validate(led).forecastable_pence() if led else 0)
            payload = {"lines": [{"workstream": "maternity", "description": "maternity support",
                                  "amount_pence": amount}]} if amount else {}
            await self.decide(pid, st, "sign_off", payload)
        elif k in CONFIRM_KIND.values():
            await self.decide(pid, st, "confirm")
        elif k == BuddyKind.buddy_funding_agreement:  # the buddy's, in a regime with central funding (issue 16)
            await self.decide(pid, st, "record", {"agreed_pence": led["agreed_level_pence"]})
        elif k == BuddyKind.buddy_funding_agreement_buddy:
            await self.decide(pid, st, "agree")
        elif k == BuddyKind.buddy_authorise:
            q = next(q for q in led["quarters"] if q["number"] == st["subject"]["quarter"])
            if q.get("forecast_pence") and q["forecast_pence"] <= remaining:
                await self.decide(pid, st, "authorise", {"lines": q["forecast_lines"]})
            else:
                await self.decide(pid, st, "decline", comment="nothing left of the agreed level to pay")
        else:
            raise AssertionError(f"no default action for {k}")


async def window(stack: Stackish, reg: Regime, buddies: Buddies | None, n: int, diligent: bool = True) -> None:
    """One window: everyone does what falls due in it, then the regime and its partnerships move n days."""
    if diligent:
        await reg.complete_open(within_days=n + 1)
        if buddies:
            await buddies.drive(n + 1)
    handles = [stack.handle(reg.id)]
    if buddies:
        handles += [stack.handle(pid) for pid in await buddies.running()]
    t = time.perf_counter()
    await asyncio.gather(*(fast_forward(stack.skipper, h, n) for h in handles))
    stack.ff_seconds += time.perf_counter() - t
    stack.log(reg.id).close_window(n, [h.id for h in handles])
    reg.day += n


async def advance_all(stack: Stackish, reg: Regime, buddies: Buddies | None, days: int, step: int = 7,
                      diligent: bool = True) -> None:
    """Move the regime and its running partnerships forward together, everyone acting on time."""
    left = days
    while left > 0:
        n = min(step, left)
        await window(stack, reg, buddies, n, diligent)
        left -= n
    if diligent:
        await reg.complete_open(within_days=1)
        if buddies:
            await buddies.drive(1)


async def announce_and_inspect(stack: Stackish, reg: Regime, buddies: Buddies | None, ref: str,
                               ratings: dict[str, str], step: int = 7) -> None:
    r = await stack.http.post(f"/regimes/{reg.id}/reinspection", headers=reg.users["cqc"],
                              json={"inspection_date": (reg.today + timedelta(days=14)).isoformat()})
    assert r.status_code == 200, r.text
    await advance_all(stack, reg, buddies, 14, step=step)
    await reg.inspect(ref, ratings)


async def drive_raw(skipper: TimeSkipper, task_queue: str, log: UpdateLog, timers: dict[str, int],
                    sem: asyncio.Semaphore | None = None) -> dict[str, str]:
    """Replay a project run's shape on raw workflows: one `RawLifecycleWorkflow` per project workflow, with its
    number of timers (fired) spread over the days it was forwarded, the same updates in the same windows and
    the same fast-forwards. Returns project workflow id -> raw workflow id."""
    import uuid

    from bench.raw import RawAct, RawLifecycleWorkflow, RawPlan

    span: Counter = Counter()
    for w in log.windows:
        for wf in w["forwarded"]:
            span[wf] += w["days"]
    handles: dict[str, Any] = {}

    async def ensure(wf: str):
        if wf not in handles:
            plan = RawPlan(timers=timers.get(wf, 0), span_seconds=max(span[wf], 1) * 86400)
            handles[wf] = await skipper.client.start_workflow(
                RawLifecycleWorkflow.run, plan, id=f"raw-{uuid.uuid4().hex[:10]}", task_queue=task_queue)
        return handles[wf]

    sem = sem or asyncio.Semaphore(1)
    for i, w in enumerate(log.windows):
        async with sem:
            for wf, n in w["updates"].items():
                h = await ensure(wf)
                for j in range(n):
                    await h.execute_update(RawLifecycleWorkflow.act, RawAct(step=f"w{i}u{j}"))
            hs = [await ensure(wf) for wf in w["forwarded"]]
            await asyncio.gather(*(fast_forward(skipper, h, w["days"]) for h in hs))
    for wf, n in log.current.items():
        h = await ensure(wf)
        for j in range(n):
            await h.execute_update(RawLifecycleWorkflow.act, RawAct(step=f"end{j}"))
    for h in handles.values():
        await h.signal(RawLifecycleWorkflow.finish)
    for h in handles.values():
        await h.result()
    return {wf: h.id for wf, h in handles.items()}
