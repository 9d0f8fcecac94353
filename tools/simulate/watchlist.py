"""The challenged-providers watch list in a simulation (issue 16 item 4): the scenario's `watch_list` done before the
trust is placed, and the entry's part of the timeline with the confidentiality checks the simulator makes itself.

Before placement (all on the day of placement: the entry's workflow is not time-skipped): the regulator puts the
trust on the list with the reasons, appoints the improvement director (the user the simulation's improvement
director acts as), records the funding agreement, which the trust and the director agree; the trust requests each
drawdown, the director approves it, the regulator authorises it, and the simulator waits until the entry shows it
paid. Placing the trust (POST /regimes by the regulator) then links the regime to the entry by itself.

At the end: GET /watch-list/{id} as the regulator (status, regime, funding), and the entry must not show to anyone
else: GET /watch-list/{id} as a trust user of another trust is 404, GET /regimes/{regime} as CQC has no
`watch_list`, and the trust's audit export (CSV, as the regulator) does not name the entry.
"""

from __future__ import annotations

from typing import Any

from domain.steps import Kind
from tools.polling import eventually
from tools.scenario import WatchListSpec
from tools.simulate.session import RegimeRun, Session, SimulationError, _detail, user_for

# A trust user of another trust, for the confidentiality check.
OTHER_TRUST = "RZZ98"


class WatchListWork(Session):
    """What a simulation does with the watch list; Simulation and Timeline use it."""

    entry_id: str | None = None

    async def _watch(self, run: RegimeRun, method: str, path: str, role: str, body: Any, what: str,
                     do: str) -> Any:
        r = await self.call(method, path, role=role, body=body)
        if not 200 <= r.status_code < 300:
            raise SimulationError(f"{self.sc.where(('watch_list',))}: on the watch list the {role} could not {do} "
                                  f"{what}: {r.status_code} {_detail(r)}")
        self._log(run, role, do, what)
        return r

    async def watch_list_before_placement(self, run: RegimeRun) -> None:
        w: WatchListSpec | None = self.sc.watch_list
        if w is None or run.base != ():
            return
        run.day = (self.today - run.entry).days
        r = await self._watch(run, "POST", "/watch-list", "regulator",
                              {"trust": {**self.sc.trust.model_dump(), "ods_code": self.ods}, "reasons": w.reasons},
                              self.ods, "add_to_watch_list")
        eid = self.entry_id = r.json()["entry_id"]
        decide = f"/watch-list/{eid}/steps/{{}}/decisions"
        if w.director:
            await self._watch(run, "POST", decide.format(Kind.appoint_improvement_director), "regulator", {
                "action": "record", "role": "regulator",
                "payload": {"appointed_on": self.today.isoformat(),
                            "improvement_director_user_id": user_for("improvement_director", self.ods)}},
                Kind.appoint_improvement_director, "record")
        if w.funding is not None:
            await self._watch(run, "POST", decide.format(Kind.funding_agreement), "regulator", {
                "action": "record", "role": "regulator", "payload": w.funding.model_dump(mode="json",
                                                                                      exclude_none=True)},
                Kind.funding_agreement, "record")
            for step, who in ((Kind.funding_agreement_trust, "trust"),
                              (Kind.funding_agreement_director, "improvement_director")):
                await self._watch(run, "POST", decide.format(step), who, {"action": "agree", "role": who}, step,
                                  "agree")
        for d in w.drawdowns:
            r = await self._watch(run, "POST", f"/watch-list/{eid}/funding/drawdowns", "trust",
                                  d.model_dump(mode="json"), f"£{d.amount_pence / 100:,.2f}", "request_drawdown")
            body = r.json()
            step_id = (body.get("step") or body)["id"]
            n = int(step_id.rsplit("-", 1)[1])
            await self._watch(run, "POST", decide.format(f"{Kind.drawdown_approval}-{n}"), "improvement_director",
                              {"action": "approve", "role": "improvement_director"}, f"{Kind.drawdown_approval}-{n}",
                              "approve")
            await self._watch(run, "POST", decide.format(f"{Kind.drawdown_authorisation}-{n}"), "regulator",
                              {"action": "authorise", "role": "regulator"}, f"{Kind.drawdown_authorisation}-{n}",
                              "authorise")

            async def drawdown(n: int = n) -> dict[str, Any]:
                f = (await self.watch_entry())["funding"] or {}
                return next((x for x in f.get("drawdowns", []) if x["n"] == n), {})

            await eventually(drawdown, until=lambda x: x.get("status") == "paid",
                             what=f"drawdown {n} of {eid} paid", timeout=30, interval=0.1,
                             error=lambda m: SimulationError(f"{self.sc.where(('watch_list', 'drawdowns'))}: {m}"))

    async def watch_entry(self) -> dict[str, Any]:
        r = await self.call("GET", f"/watch-list/{self.entry_id}", role="regulator")
        if r.status_code != 200:
            raise SimulationError(f"reading {self.entry_id} failed: {r.status_code} {_detail(r)}")
        return r.json()

    # ------------------------------------------------------------------ the timeline's part
    async def watch_list_timeline(self, run: RegimeRun) -> dict[str, Any] | None:
        if self.sc.watch_list is None or run.base != () or self.entry_id is None:
            return None
        eid = self.entry_id
        entry = await self.watch_entry()
        f = entry.get("funding") or {}
        drawdowns = f.get("drawdowns") or []
        payments = await self.stack.pool.fetchval("SELECT count(*) FROM funding_payments WHERE regime_id = $1", eid)
        # Confidentiality, checked by the simulator itself.
        other = self.stack.auth(f"trust-lead-{OTHER_TRUST}", "trust", trusts=[OTHER_TRUST])
        r_other = await self.stack.http.get(f"/watch-list/{eid}", headers=other)
        r_cqc = await self.call("GET", f"/regimes/{run.regime_id}", role="cqc")
        r_csv = await self.call("GET", f"/trusts/{self.ods}/audit?format=csv", role="regulator")
        checks = {
            "other_trust_404": r_other.status_code == 404,
            "cqc_regime_view_without_watch_list": r_cqc.status_code == 200 and "watch_list" not in r_cqc.json()
            and eid not in r_cqc.text,
            "audit_export_without_entry": r_csv.status_code == 200 and eid not in r_csv.text,
        }
        r_own = await self.call("GET", f"/regimes/{run.regime_id}", role="trust")
        return {
            "entry_id": eid, "status": entry["status"], "added_on": entry["added_on"],
            "ended_on": entry["ended_on"], "reasons": entry["reasons"], "regime_id": entry["regime_id"],
            "linked": entry["regime_id"] == run.regime_id,
            "trust_view_link": (r_own.json().get("watch_list") or {}).get("entry_id") if r_own.status_code == 200
            else None,
            "director": (entry.get("assignees") or {}).get("improvement_director"),
            "steps": {s["id"]: {"status": s["status"], "outcome": s["outcome"], "by": s["completed_by"]}
                      for s in entry["steps"]},
            "funding": {k: f.get(k) for k in ("agreed", "ceiling_pence", "areas", "requested_pence",
                                              "authorised_pence", "paid_pence", "remaining_pence")} if f else None,
            "drawdowns": [{k: d.get(k) for k in ("n", "amount_pence", "against", "purpose", "status", "approved_by",
                                                 "authorised_by", "payment_id")} for d in drawdowns],
            "drawdowns_paid": sum(1 for d in drawdowns if d["status"] == "paid"),
            "paid_pence": f.get("paid_pence", 0) if f else 0,
            "recorded_payments": payments,
            "checks": checks,
            "confidential": all(checks.values()),
        }


def watch_list_expectations(spec: Any, tl: dict[str, Any]) -> list[dict[str, Any]]:
    """expect.watch_list against the timeline's `watch_list`."""
    x = spec.expect.watch_list
    if x is None:
        return []
    w = tl.get("watch_list") or {}
    return [{"check": f"watch_list.{k}", "expected": getattr(x, k), "actual": w.get(k),
             "ok": getattr(x, k) == w.get(k)}
            for k in ("status", "linked", "paid_pence", "confidential") if getattr(x, k) is not None]
