"""The regime workflow's part in the improvement plan as a programme (issue 15): the plan's summary, its
versions, monthly progress, the steps the plan's dates open (a plan action's, readiness for re-inspection) and
the steps scheduled from entry (the formal review, self-assessments, evidence files).

A mixin of RegimeWorkflow: deterministic workflow code, every effect through the engine (open_step, audit,
emit). Nothing here runs for a regime without a programme (every history recorded before issue 15), so those
histories replay unchanged.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from domain import dates, schedule
    from domain.models import SYSTEM, Actor, ScheduledStep, Step
    from domain.programme import PlanIndex, PlanVersion, ProgrammeState
    from domain.steps import ACTION_STEP_LEAD_DAYS, EVIDENCE_CHECK_DAYS_BEFORE, Kind
    from domain.vocab import ACTIVE_PHASES, AuditEvent, Role
    from workflows.common import Notify

READINESS_KINDS = frozenset({Kind.self_assessment, Kind.evidence_file, Kind.evidence_file_check,
                             Kind.evidence_file_buddy_review})


class ProgrammeRuntime:
    s: Any

    # ---------------------------------------------------------------- scheduled from entry
    def schedule_programme(self, entry: date, reinspection_due: date, measures: str = "quality") -> None:
        """What a regime placed with the programme (Placement.programme) opens as its months pass
        (domain.schedule.programme_steps): those still due when it is placed."""
        self._schedule_all(schedule.programme_steps(entry, reinspection_due, measures))

    def schedule_evidence_files(self, reinspection_due: date) -> None:
        """One evidence file per key question before the re-inspection due on `reinspection_due`."""
        self._schedule_all(schedule.evidence_files(reinspection_due))

    def _schedule_all(self, items: list[Any]) -> None:
        today = self.today()
        for d in items:
            self._schedule(ScheduledStep(opens=d.opens, kind=d.kind, due=d.due, step_id=d.step_id,
                                         subject=dict(d.subject)), today)

    def _schedule(self, item: ScheduledStep, today: date) -> None:
        if item.due >= today:
            self.s.scheduled.append(item)

    def _open_scheduled(self) -> None:
        if not self.s.scheduled:
            return
        if self.s.phase not in ACTIVE_PHASES or self.s.finished:
            self.s.scheduled = []  # exited or closed: what was still to open never will
            return
        now = workflow.now()
        ready = [x for x in self.s.scheduled if dates.london_midnight(x.opens) <= now]
        if not ready:
            return
        self.s.scheduled = [x for x in self.s.scheduled if x not in ready]
        for x in ready:
            self.open_step(x.kind, x.due, step_id=x.step_id, subject=dict(x.subject))

    # ---------------------------------------------------------------- the plan's summary
    def adopt_plan(self, index: dict[str, Any], sha256: str, source: str, actor: Actor, step_id: str) -> None:
        """An agreed version becomes the programme's baseline (every version kept in PostgreSQL and the audit log;
        the state keeps the last VERSIONS_KEPT)."""
        from domain.programme import VERSIONS_KEPT

        idx = PlanIndex.model_validate(index)
        prog = self.s.programme or ProgrammeState()
        self.s.programme = prog
        before = set(prog.actions)
        prog.adopt(idx)
        prog.versions_total += 1
        prog.versions = prog.versions[-(VERSIONS_KEPT - 1):] + [PlanVersion(
            n=prog.versions_total, sha256=sha256, source=source, agreed_on=self.today(), agreed_by=actor.user_id,
            actions=len(idx.actions), step_id=step_id)]
        removed = before - set(prog.actions)
        for st in self.s.steps.values():  # an action left out, or moved to a new date, has its step closed
            if st.kind == Kind.plan_action and st.status == "open":
                a = prog.actions.get(st.subject.get("action", ""))
                if a is None or a.step_due is None:
                    why = "action left out of the agreed plan" if a is None else "the action's target date changed"
                    self.close_step(st, "cancelled", SYSTEM, why)
        self.audit(AuditEvent.plan_version_agreed, actor, reason=f"version {prog.versions_total} ({source}) is the "
                   f"plan's baseline: {len(idx.actions)} actions in {len(idx.themes)} themes",
                   detail={"version": prog.versions_total, "sha256": sha256, "source": source,
                           "removed": sorted(removed)[:50]})
        self._wake = True

    def take_progress(self, month: str, sha256: str, statuses: dict[str, str], actor: Actor) -> None:
        prog = self.s.programme
        if prog is None:
            return
        newly = prog.record_report(month, sha256, statuses)
        for aid, status in statuses.items():
            if status == "done":
                self.action_done(aid, actor)
        for aid in newly:
            why = f"action {aid} is off track for a second month in a row ({month})"
            self.audit(AuditEvent.plan_action_off_track, SYSTEM, reason=why, detail={"action": aid, "month": month})
            self.emit(Notify(rung="off_track", recipients=[Role.regulator],
                             subject=f"[off track] {self.s.placement.trust.ods_code}: plan action {aid}", body=why))

    def action_done(self, aid: str | None, actor: Actor = SYSTEM) -> None:
        prog = self.s.programme
        if prog is None or aid is None or aid not in prog.actions:
            return
        prog.actions[aid].status = "done"
        prog.actions[aid].off, prog.actions[aid].off_since = 0, None
        prog.flagged = [x for x in prog.flagged if x != aid]
        for st in self.s.steps.values():
            if st.kind == Kind.plan_action and st.status == "open" and st.subject.get("action") == aid:
                self.close_step(st, "done", actor, "reported done in the monthly return")

    # ---------------------------------------------------------------- a plan action's step
    def _action_step_opens(self, due: date) -> datetime:
        return dates.london_midnight(due - timedelta(days=ACTION_STEP_LEAD_DAYS))

    def _open_action_steps(self) -> None:
        prog = self.s.programme
        if prog is None or self.s.phase not in ACTIVE_PHASES or self.s.finished:
            return
        now = workflow.now()
        for aid, a in prog.actions.items():
            if a.due is None or a.status == "done" or a.step_due == a.due or self._action_step_opens(a.due) > now:
                continue
            a.step_due = a.due
            self.open_step(Kind.plan_action, a.due, step_id=f"{Kind.plan_action}-{aid}",
                           subject={"action": aid, "theme": prog.themes[a.t] if a.t < len(prog.themes) else ""})

    def _programme_wakes(self) -> list[datetime]:
        out = [dates.london_midnight(x.opens) for x in self.s.scheduled]
        prog = self.s.programme
        if prog is not None and self.s.phase in ACTIVE_PHASES:
            out += [self._action_step_opens(a.due) for a in prog.actions.values()
                    if a.due is not None and a.status != "done" and a.step_due != a.due]
        return out

    # ---------------------------------------------------------------- readiness
    def evidence_file_completed(self, st: Step) -> None:
        """The trust marked a key question's file complete: the improvement director checks it, and the buddy
        trust's risk team too where a partnership is running (seed 000 §4a(vii))."""
        ri_due = st.subject.get("reinspection_due")
        by = date.fromisoformat(ri_due) - timedelta(days=EVIDENCE_CHECK_DAYS_BEFORE) if ri_due else self.today()
        due = max(by, self.today() + timedelta(days=7))
        subject = {k: v for k, v in st.subject.items() if k != "returned"} | {"file_step": st.id}
        self.open_step(Kind.evidence_file_check, due, subject=subject)
        for b in self.s.buddies.values():
            if not b.ended:
                self.open_step(Kind.evidence_file_buddy_review, due, subject=subject | {"buddy_ods": b.buddy_ods})

    def readiness_at_risk(self, actor: Actor, inspection_date: date) -> None:
        """CQC announced the re-inspection: readiness items scheduled to open later open now, due by the day
        before the inspection, and every readiness item still open is at risk."""
        early = [x for x in self.s.scheduled if x.kind in READINESS_KINDS]
        if early:
            self.s.scheduled = [x for x in self.s.scheduled if x not in early]
            by = max(inspection_date - timedelta(days=1), self.today())
            for x in early:
                self.open_step(x.kind, min(x.due, by), step_id=x.step_id, subject=dict(x.subject))
        open_items = [st for st in self.s.steps.values() if st.kind in READINESS_KINDS and st.status == "open"]
        for st in open_items:
            st.data["at_risk"] = True
        if open_items:
            self.audit(AuditEvent.readiness_at_risk, actor, reason=f"re-inspection announced for "
                       f"{inspection_date.isoformat()} with {len(open_items)} readiness item(s) open",
                       detail={"steps": [st.id for st in open_items][:50]})
