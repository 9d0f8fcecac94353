"""What the parts of a simulation share: one regime as it runs, the error that stops a scenario, and the session
with the service, in which people (user ids, minted tokens) act through the HTTP API and what they did is logged."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx

from domain import dates
from tools.scenario import RegimeSpec, Scenario
from tools.stack import ServiceStack

SCOPED = ("trust", "improvement_director", "commissioner")


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
    # The plan as a programme (tools/simulate/programme.py): evidence items recorded, the plan after each month's
    # report, the last report seen, and whether each agreed version's actions carry ids.
    evidence: list[dict[str, Any]] = field(default_factory=list)
    plan_months: list[dict[str, Any]] = field(default_factory=list)
    last_report: tuple[str, str] | None = None
    named_plans: dict[str, bool] = field(default_factory=dict)
    # Central funding (tools/simulate/funding.py): every drawdown the trust asked for, granted a step or refused.
    drawdown_requests: list[dict[str, Any]] = field(default_factory=list)


class Session:
    """One simulation's dealings with the service; Simulation (run.py) is the whole of it."""

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

    def _log(self, run: RegimeRun, who: str, do: str, what: str | None, routine: bool = False,
             note: str | None = None) -> None:
        today = run.entry + timedelta(days=run.day)
        run.actions.append({"day": run.day, "date": today.isoformat(), "who": who, "do": do, "step": what,
                            "routine": routine})
        if not routine or self.verbose:
            self.progress(f"  day {run.day:>4} {today}  {who}: {do}" + (f" {what}" if what else "")
                          + (f"  ({note})" if note else ""))


def _detail(r: httpx.Response) -> str:
    try:
        body = r.json()
    except ValueError:
        return r.text[:300]
    return str(body.get("detail") or body)[:500] if isinstance(body, dict) else str(body)[:300]
