"""The improvement plan as a programme in a simulation (issue 15): the trust's monthly report on every action of
the agreed plan, what a scenario's `plan_progress` scripts of it, the improvement director's challenges, plan
changes and evidence items as operations, the stops the plan's dates and the scheduled steps need, and the
programme's part of the timeline (month by month: statuses by theme, flagged and overdue actions, the plan's
answer to "on trajectory?").

Routine progress (docs/scenarios.md, "The plan as a programme"): once a plan whose actions carry ids is agreed,
each month's routine return reports every action of the agreed plan (GET /regimes/{id}/plan):
- an action marked done stays done;
- else the last `plan_progress.reports` entry naming it (by id or theme) for the month gives its status;
- else an action in `plan_progress.never_done` is on_track until its target date, at_risk after;
- else an action whose target date has passed is reported done (the routine marks it done before, on its
  `plan_action` step, unless that kind is skipped);
- else on_track.
Month N is the trust's N-th monthly return (the first is due at least 14 days after entry).

The revised action plan after an extension: since issue 15 the regime refuses one that does not carry (or drop
with a reason) every outstanding action of the agreed plan, or is not published, and the catalogue's routine
payload for it (domain/steps.py ROUTINE_REVISED_PLAN: one new action, unpublished) does neither; with an agreed plan
the simulator's routine submits the revision draft (GET /regimes/{id}/plan/revision-draft), published, instead.
"""

from __future__ import annotations

import base64
import json
from datetime import date, timedelta
from typing import Any

from domain.programme import STATUSES, ProgrammeState, months_apart
from domain.steps import ACTION_STEP_LEAD_DAYS, Kind
from domain.vocab import ACTIVE_PHASES
from tools.scenario import ROUTINE_KINDS, ProgressSpec, StepSpec
from tools.simulate.session import RegimeRun, Session, SimulationError, _detail

# A theme's status in a month is its actions' worst, in this order.
WORST_FIRST = ("off_track", "at_risk", "not_started", "on_track", "done")
assert set(WORST_FIRST) == set(STATUSES)


def worst(statuses: list[str]) -> str | None:
    return min(statuses, key=WORST_FIRST.index) if statuses else None


def state_bytes(programme: dict[str, Any]) -> int:
    """The size of the plan's summary as the workflow holds it (its JSON in the workflow's state)."""
    return len(ProgrammeState.model_validate(programme).model_dump_json())


def report_month(state: dict[str, Any], tag: str) -> int:
    """Month N of a return (its month tag, YYYY-MM): the trust's N-th monthly return."""
    tags = sorted({s["subject"].get("month") for s in state["steps"].values()
                   if s["kind"] == Kind.monthly_return and s["subject"].get("month")})
    return months_apart(tags[0] if tags else tag, tag) + 1


class ProgrammeWork(Session):
    """What a simulation does with the plan as a programme; RoutineWork, Timeline and Simulation use it."""

    # ------------------------------------------------------------------ the scenario's plan_progress
    def _scripted(self, run: RegimeRun, month: int, aid: str, theme: str) -> ProgressSpec | None:
        pp = run.spec.plan_progress
        hits = [r for r in (pp.reports if pp else []) if r.covers(month, aid, theme)]
        return hits[-1] if hits else None

    def never_done(self, run: RegimeRun, s: dict[str, Any]) -> bool:
        """A plan action's step nobody does (plan_progress.never_done)."""
        pp = run.spec.plan_progress
        return s["kind"] == Kind.plan_action and pp is not None and s["subject"].get("action") in pp.never_done

    async def _named_plan(self, run: RegimeRun, sha256: str) -> bool:
        """The agreed version's actions carry their own ids (then the routine reports per action)."""
        if sha256 not in run.named_plans:
            doc = await self._document(run, sha256)
            run.named_plans[sha256] = bool(doc.get("actions")) and all(a.get("id") for a in doc["actions"])
        return run.named_plans[sha256]

    async def _document(self, run: RegimeRun, sha256: str) -> dict[str, Any]:
        r = await self.call("GET", f"/regimes/{run.regime_id}/documents/{sha256}", role="operations")
        if r.status_code != 200:
            raise SimulationError(f"reading document {sha256[:12]} of {run.regime_id} failed: {r.status_code} "
                                  f"{_detail(r)}")
        return r.json()

    async def plan_view(self, run: RegimeRun) -> dict[str, Any]:
        r = await self.call("GET", f"/regimes/{run.regime_id}/plan", role="operations")
        if r.status_code != 200:
            raise SimulationError(f"reading the plan of {run.regime_id} failed: {r.status_code} {_detail(r)}")
        return r.json()

    # ------------------------------------------------------------------ routine decisions
    async def programme_decision(self, run: RegimeRun, s: dict[str, Any], state: dict[str, Any], action: str,
                                 payload: dict[str, Any]) -> dict[str, Any]:
        """The routine payload for a step of the programme's: the month's return per action, the director's
        challenges when co-signing, the evidence a key question's file holds. Others unchanged."""
        prog = state.get("programme") or {}
        if s["kind"] == Kind.monthly_return and action == "submit" and prog.get("versions") \
                and await self._named_plan(run, prog["versions"][-1]["sha256"]):
            return await self._progress_report(run, s, state)
        if s["kind"] == Kind.monthly_return_cosign and action == "cosign" and prog.get("actions"):
            month = report_month(state, s["subject"].get("month") or "")
            challenges = []
            for aid, a in prog["actions"].items():
                theme = prog["themes"][a["t"]] if a["t"] < len(prog["themes"]) else ""
                scripted = self._scripted(run, month, aid, theme)
                if scripted is not None and scripted.challenge:
                    challenges.append({"action_id": aid, "reason": scripted.challenge})
            return {"challenges": challenges} if challenges else payload
        if s["kind"] == Kind.revised_action_plan and action == "submit" and prog.get("versions"):
            return await self._revised_plan(run, payload)
        if s["kind"] == Kind.evidence_file and action == "complete":
            q = s["subject"].get("key_question")
            held = [str(e["number"]) for e in run.evidence if q in e["key_questions"]]
            if held:
                return {"evidence": held, "summary": f"evidence file complete: {len(held)} evidence item(s) on {q}"}
        return payload

    async def _revised_plan(self, run: RegimeRun, payload: dict[str, Any]) -> dict[str, Any]:
        """The revised action plan after an extension starts from the agreed plan's outstanding actions and CQC's
        latest concerns (GET /regimes/{id}/plan/revision-draft) and is published (issue 15 item 5). The catalogue's
        routine payload (one new action, unpublished) is refused since then: see the module's docstring."""
        r = await self.call("GET", f"/regimes/{run.regime_id}/plan/revision-draft", role="operations")
        if r.status_code != 200:
            raise SimulationError(f"reading the revision draft of {run.regime_id} failed: {r.status_code} "
                                  f"{_detail(r)}")
        draft = r.json()
        actions = [{k: v for k, v in a.items() if v is not None} for a in draft["actions"]] or payload["actions"]
        today = run.entry + timedelta(days=run.day)
        return {"actions": actions, "dropped": draft.get("dropped") or [],
                "published_at": f"https://www.example.nhs.uk/{self.ods.lower()}/revised-action-plan",
                "published_on": today.isoformat()}

    async def _progress_report(self, run: RegimeRun, s: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
        today = run.entry + timedelta(days=run.day)
        month = report_month(state, s["subject"].get("month") or "")
        view = await self.plan_view(run)
        pp = run.spec.plan_progress
        out = []
        for theme in view["themes"]:
            for a in theme["actions"]:
                aid = a["id"]
                scripted = self._scripted(run, month, aid, theme["name"])
                target = date.fromisoformat(a["target_date"]) if a.get("target_date") else None
                if a["status"] == "done":
                    status = "done"
                elif scripted is not None:
                    status = scripted.status
                elif pp is not None and aid in pp.never_done:
                    status = "at_risk" if target is not None and target < today else "on_track"
                elif target is not None and target < today:
                    status = "done"
                else:
                    status = "on_track"
                item: dict[str, Any] = {"action_id": aid, "status": status}
                if scripted is not None and status == scripted.status:
                    item |= {k: v for k, v in (("metric_value", scripted.metric_value), ("note", scripted.note)) if v}
                evidence = [str(e["number"]) for e in run.evidence if aid in e["actions"] and aid not in e["reported"]]
                if evidence:
                    item["evidence"] = evidence[-20:]
                    for e in run.evidence:
                        if aid in e["actions"]:
                            e["reported"].append(aid)
                out.append(item)
        return {"actions": out}

    # ------------------------------------------------------------------ stops
    def programme_stops(self, run: RegimeRun, state: dict[str, Any]) -> list[int]:
        """Days routine work on the programme falls due that no open step shows yet: a plan action's step (it opens
        ACTION_STEP_LEAD_DAYS before the action's target date), a scheduled step (the review, self-assessments,
        evidence files)."""
        routine = run.spec.routine
        if not routine.enabled or state["finished"] or state["phase"] not in ACTIVE_PHASES:
            return []

        def day(d: str) -> int:
            return (date.fromisoformat(d) - run.entry).days

        out = []
        prog = state.get("programme") or {}
        pp = run.spec.plan_progress
        if self._routine_kind(run, Kind.plan_action):
            for aid, a in (prog.get("actions") or {}).items():
                if a.get("due") and a["status"] != "done" and a.get("step_due") != a["due"] \
                        and not (pp is not None and aid in pp.never_done):
                    out.append(max(day(a["due"]) - ACTION_STEP_LEAD_DAYS, day(a["due"]) - routine.lead(Kind.plan_action)))
        for x in state.get("scheduled") or []:
            if self._routine_kind(run, x["kind"]):
                out.append(max(day(x["opens"]), day(x["due"]) - routine.lead(x["kind"])))
        return out

    def _routine_kind(self, run: RegimeRun, kind: str) -> bool:
        r = run.spec.routine
        return r.enabled and kind in ROUTINE_KINDS and kind not in r.skip

    # ------------------------------------------------------------------ operations
    async def propose_plan_change(self, run: RegimeRun, state: dict[str, Any], st: StepSpec,
                                  payload: dict[str, Any]) -> tuple[Any, str | None]:
        """The trust proposes a new version: the agreed version with `change` ({id, fields...}), `add` (actions)
        and `remove` (ids) applied. The improvement director agrees it (routine) or the scenario scripts that."""
        prog = state.get("programme") or {}
        if not prog.get("versions"):
            return await self.call("POST", f"/regimes/{run.regime_id}/plan/changes", role=st.who, user=st.user,
                                   body={"plan": {"actions": payload.get("add") or []},
                                         "reason": payload["reason"]}), None
        doc = await self._document(run, prog["versions"][-1]["sha256"])
        actions = [{k: v for k, v in a.items() if v is not None} for a in doc["actions"]]
        for n, a in enumerate(actions, 1):
            a.setdefault("id", f"A{n}")
        by_id = {a["id"]: a for a in actions}
        for c in payload.get("change") or []:
            if c["id"] in by_id:
                by_id[c["id"]].update({k: v for k, v in c.items() if k != "id"})
        gone = set(payload.get("remove") or [])
        plan = {"actions": [a for a in actions if a["id"] not in gone] + list(payload.get("add") or [])}
        r = await self.call("POST", f"/regimes/{run.regime_id}/plan/changes", role=st.who, user=st.user,
                            body={"plan": plan, "reason": payload["reason"]})
        step_id = r.json().get("step", {}).get("id") if r.status_code == 201 else None
        return r, step_id

    async def record_evidence(self, run: RegimeRun, st: StepSpec, payload: dict[str, Any], today: date) -> Any:
        """POST /regimes/{id}/evidence; `document.content` (text) is sent base64-encoded. The item's number is
        remembered: the next report of its actions and its key questions' evidence files cite it."""
        body = dict(payload)
        body.setdefault("dated", today.isoformat())
        doc = body.get("document")
        if isinstance(doc, dict) and "content" in doc:
            doc = dict(doc)
            doc["content_base64"] = base64.b64encode(str(doc.pop("content")).encode()).decode()
            body["document"] = doc
        r = await self.call("POST", f"/regimes/{run.regime_id}/evidence", role=st.who, user=st.user, body=body)
        if r.status_code == 201:
            n = r.json()["number"]
            run.evidence.append({"number": n, "day": run.day, "title": body["title"],
                                 "actions": list(body.get("actions") or []),
                                 "key_questions": list(body.get("key_questions") or []), "reported": []})
        return r

    # ------------------------------------------------------------------ month by month
    async def plan_snapshot(self, run: RegimeRun, state: dict[str, Any]) -> None:
        """After a month's report per action: the plan as it stands (GET /regimes/{id}/plan), kept for the
        timeline. A return sent back and submitted again replaces its month's snapshot."""
        reports = (state.get("programme") or {}).get("reports") or []
        if not reports:
            return
        last = reports[-1]
        key = (last["month"], last["sha256"])
        if key == run.last_report:
            return
        run.last_report = key
        view = await self.plan_view(run)
        snap = {"month": report_month(state, last["month"]), "tag": last["month"], "day": run.day,
                "counts": {k: last["counts"].get(k, 0) for k in WORST_FIRST},
                "themes": {t["name"]: worst([a["status"] for a in t["actions"]]) for t in view["themes"]},
                "flagged": view["flagged"], "overdue": view["overdue"], "on_trajectory": view["on_trajectory"],
                "trajectory_reason": view["trajectory_reason"],
                "challenged": sorted(a["id"] for t in view["themes"] for a in t["actions"] if a["challenged"]),
                "actions": sum(len(t["actions"]) for t in view["themes"]),
                "state_bytes": state_bytes(state["programme"])}
        run.plan_months = [m for m in run.plan_months if m["tag"] != snap["tag"]] + [snap]

    # ------------------------------------------------------------------ the timeline's part
    async def programme_timeline(self, run: RegimeRun, st: dict[str, Any]) -> dict[str, Any] | None:
        prog = st.get("programme")
        if not prog or not prog.get("versions"):
            return None
        e = run.entry
        view = await self.plan_view(run)
        ready = await self.call("GET", f"/regimes/{run.regime_id}/readiness", role="operations")
        kq = ready.json().get("key_questions", {}) if ready.status_code == 200 else {}
        audit = await self.call("GET", f"/regimes/{run.regime_id}/audit?limit=5000", role="operations")
        theme_of = {a["id"]: t["name"] for t in view["themes"] for a in t["actions"]}
        month_of = {m["tag"]: m["month"] for m in run.plan_months}
        flags = []
        for x in (audit.json().get("items", []) if audit.status_code == 200 else []):
            if x["event"] != "plan_action_off_track":
                continue
            d = x["detail"] if isinstance(x["detail"], dict) else json.loads(x["detail"] or "{}")
            flags.append({"action": d.get("action"), "theme": theme_of.get(d.get("action")),
                          "tag": d.get("month"), "month": month_of.get(d.get("month"))})
        per_action = {}
        for t in view["themes"]:
            for a in t["actions"]:
                target = a.get("target_date")
                per_action[a["id"]] = {
                    "theme": t["name"], "category": a["category"], "owner": a["owner"],
                    "target_day": (date.fromisoformat(target) - e).days if target else None,
                    "horizon": a.get("horizon"), "status": a["status"], "challenged": a["challenged"],
                    "months": {str(month_of.get(h["month"], h["month"])): h["status"] for h in a["history"]},
                    "metric_values": {str(month_of.get(h["month"], h["month"])): h["metric_value"]
                                      for h in a["history"] if h.get("metric_value")},
                    "evidence": sorted({x for h in a["history"] for x in h.get("evidence") or []}, key=int)}
        return {
            "actions": sum(len(t["actions"]) for t in view["themes"]),
            "by_action": per_action,
            "themes": {t["name"]: len(t["actions"]) for t in view["themes"]},
            "versions": [{"n": v["n"], "source": v["source"], "agreed_on": v["agreed_on"],
                          "agreed_day": (date.fromisoformat(v["agreed_on"]) - e).days, "actions": v["actions"]}
                         for v in view["versions"]],
            "months": run.plan_months,
            "flags": flags,
            "flagged": sorted({f["action"] for f in flags}),
            "overdue": sorted({a for m in run.plan_months for a in m["overdue"]} | set(view["overdue"])),
            "evidence_items": view["evidence_items"],
            "evidence": [{k: v for k, v in x.items() if k != "reported"} for x in run.evidence],
            "readiness": kq,
            "evidence_files_checked": sorted(q for q, v in kq.items() if v.get("complete") and v.get("checked")),
            "status_now": {s: sum(1 for t in view["themes"] for a in t["actions"] if a["status"] == s)
                           for s in WORST_FIRST},
            "state_bytes": state_bytes(prog),
            "max_state_bytes": max([m["state_bytes"] for m in run.plan_months] + [state_bytes(prog)]),
        }
