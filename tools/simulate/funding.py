"""Central funding and the cost of the interventions in a simulation (issue 16 items 1 and 2): the scenario's
funding agreement done as routine, drawdowns the trust requests and the improvement director's time as operations,
and their part of the timeline (GET /regimes/{id}/funding and GET /regimes/{id}/costs at the end).

The financial review, the funding agreement (the scenario's `funding`, else the catalogue's routine terms), both
parties' agreement and each drawdown's approval (ID) and authorisation (regulator) are routine steps; the payment
is the regime's activity, once per drawdown.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from domain import dates
from domain.steps import Kind
from tools.scenario import DRAWDOWN_SIM_KEYS, StepSpec, director_month
from tools.simulate.session import RegimeRun, Session, SimulationError, _detail


class FundingWork(Session):
    """What a simulation does with central funding and the director's time; RoutineWork, Timeline and Simulation
    use it."""

    def funding_decision(self, run: RegimeRun, s: dict[str, Any], action: str,
                         payload: dict[str, Any]) -> dict[str, Any]:
        """The routine funding agreement records the scenario's terms (`funding`) when it gives them."""
        if s["kind"] == Kind.funding_agreement and action == "record" and run.spec.funding is not None:
            return run.spec.funding.model_dump(mode="json", exclude_none=True)
        return payload

    # ------------------------------------------------------------------ operations
    async def request_drawdown(self, run: RegimeRun, st: StepSpec, payload: dict[str, Any]) -> tuple[Any, str | None]:
        """POST /regimes/{id}/funding/drawdowns. With `expect_refused: true` the API must refuse it (422), e.g. as
        above what is left under the ceiling; the refusal is remembered for the timeline."""
        body = {k: v for k, v in payload.items() if k not in DRAWDOWN_SIM_KEYS}
        r = await self.call("POST", f"/regimes/{run.regime_id}/funding/drawdowns", role=st.who, user=st.user,
                            body=body)
        item = {"day": run.day, "amount_pence": body["amount_pence"], "against": body["against"],
                "purpose": body["purpose"], "status_code": r.status_code}
        step_id = None
        if r.status_code == 201:
            step_id = r.json()["step"]["id"]
            item["n"] = int(step_id.rsplit("-", 1)[1])
        else:
            item["refused"] = _detail(r)
        run.drawdown_requests.append(item)
        return r, step_id

    async def record_director_time(self, run: RegimeRun, st: StepSpec, payload: dict[str, Any]) -> Any:
        """POST /regimes/{id}/director-time; `month: N` is the regime's N-th calendar month (1: the month of
        entry)."""
        body = {"month": director_month(payload["month"], run.entry), "days": payload["days"], "role": st.who}
        if payload.get("reason"):
            body["reason"] = payload["reason"]
        return await self.call("POST", f"/regimes/{run.regime_id}/director-time", role=st.who, user=st.user,
                               body=body)

    # ------------------------------------------------------------------ the timeline's part
    async def funding_timeline(self, run: RegimeRun) -> tuple[dict[str, Any], dict[str, Any]]:
        """The funding agreement, each drawdown (with the day it was paid) and the payments recorded; the refused
        requests; and the cost of the interventions by quarter."""
        e = run.entry

        def day_of(ts: str | None) -> int | None:
            return (dates.london_date(datetime.fromisoformat(ts)) - e).days if ts else None

        r = await self.call("GET", f"/regimes/{run.regime_id}/funding", role="operations")
        if r.status_code != 200:
            raise SimulationError(f"reading the funding of {run.regime_id} failed: {r.status_code} {_detail(r)}")
        f = r.json()
        c = await self.call("GET", f"/regimes/{run.regime_id}/costs", role="operations")
        if c.status_code != 200:
            raise SimulationError(f"reading the costs of {run.regime_id} failed: {c.status_code} {_detail(c)}")
        paid = {p["drawdown"]: p for p in f["payments"]}
        drawdowns = [{
            "n": d["n"], "amount_pence": d["amount_pence"], "against": d["against"], "purpose": d["purpose"],
            "status": d["status"], "requested_day": (date.fromisoformat(d["requested_on"]) - e).days,
            "approved_by": d["approved_by"], "authorised_by": d["authorised_by"],
            "authorised_day": day_of(d["authorised_at"]), "refused_reason": d["refused_reason"],
            "payment_id": d["payment_id"], "payments": sum(1 for p in f["payments"] if p["drawdown"] == d["n"]),
            "paid_pence": (paid.get(d["n"]) or {}).get("amount_pence"),
        } for d in f["drawdowns"]]
        funding = {
            "agreed": f["agreed"], "agreed_day": (date.fromisoformat(f["agreed_on"]) - e).days if f["agreed_on"]
            else None, "ceiling_pence": f["ceiling_pence"], "areas": f["areas"],
            "requested_pence": f["requested_pence"], "authorised_pence": f["authorised_pence"],
            "paid_pence": f["paid_pence"], "remaining_pence": f["remaining_pence"], "drawdowns": drawdowns,
            "drawdowns_paid": sum(1 for d in drawdowns if d["status"] == "paid"),
            "drawdowns_refused": sum(1 for d in drawdowns if d["status"] == "refused"),
            "recorded_payments": len(f["payments"]),
            "requests_refused": [x for x in run.drawdown_requests if x["status_code"] != 201],
        }
        costs = {k: v for k, v in c.json().items() if k != "regime_id"}
        return funding, costs


def funding_expectations(spec: Any, tl: dict[str, Any]) -> list[dict[str, Any]]:
    """expect.funding and expect.costs against the timeline's `funding` and `costs`."""
    out: list[dict[str, Any]] = []

    def add(name: str, expected: Any, actual: Any) -> None:
        out.append({"check": name, "expected": expected, "actual": actual, "ok": expected == actual})

    f, c = tl.get("funding") or {}, tl.get("costs") or {}
    x = spec.expect.funding
    if x is not None:
        for k in ("agreed", "ceiling_pence", "paid_pence", "drawdowns_paid", "drawdowns_refused"):
            if getattr(x, k) is not None:
                add(f"funding.{k}", getattr(x, k), f.get(k))
        if x.refused is not None:
            add("funding.refused", x.refused, len(f.get("requests_refused") or []))
    y = spec.expect.costs
    if y is not None:
        for k in ("buddy_paid_pence", "direct_funding_pence", "director_days", "director_time_pence", "total_pence"):
            if getattr(y, k) is not None:
                add(f"costs.{k}", getattr(y, k), c.get(k))
    return out
