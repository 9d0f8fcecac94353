"""The regime's history in plain English: one line per decision, signal, timer and escalation.

Two sources, merged by time: the audit log (who did what and why, as the workflow recorded it) and the
Temporal workflow history (timers that fired, signals received, child workflows, runs), fetched through
the Temporal client. Updates are not repeated from Temporal: each accepted update is a decision the
audit log already states with its actor and reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from api.web import labels
from domain.steps import Kind

# The audit event of a plan agreed and signed off by everyone (domain/steps.py `_plan_signed`).
PLAN_SIGNED_OFF = f"{Kind.improvement_plan}.signed_off"

MAX_EVENTS = 20_000
MAX_RUNS = 10


@dataclass
class Line:
    at: datetime
    kind: str  # decision, escalation, step, inspection, phase, signal, timer, workflow, buddy, other
    who: str
    what: str
    why: str
    source: str
    order: int = 0


def from_audit(rows: list[Any]) -> list[Line]:
    lines = []
    for r in rows:
        kind, what = describe_audit(r["event"], r["step_id"], r["step_kind"], r["detail"] or {}, r["reason"])
        who = "Service (automatic)" if r["actor"] == "system" else f"{r['actor']} ({labels.role_label(r['role'])})"
        why = r["reason"] or ""
        if kind in ("step",) and why.startswith("due "):
            why = ""
        lines.append(Line(at=r["at"], kind=kind, who=who, what=what, why=why, source=f"Audit entry {r['seq']}",
                          order=int(r["id"])))
    return lines


def _due_in_words(reason: str | None) -> str | None:
    """Entries written before the due date went into their detail said it only in words ("due 2027-01-28")."""
    return reason.removeprefix("due ") if reason and reason.startswith("due ") else None


def describe_audit(event: str, step_id: str | None, step_kind: str | None, detail: dict[str, Any],
                   reason: str | None) -> tuple[str, str]:
    title = labels.step_title(step_kind, step_id) if step_kind else ""
    if event == "regime_entered":
        prev = detail.get("previous_regime_id")
        return "phase", "Placed in special measures (segment 4)" + (f"; follows regime {prev}" if prev else "")
    if event == "step_opened":
        due = detail.get("due") or _due_in_words(reason)
        return "step", f"{title}: opened" + (f", due {labels.fmt_date(due)}" if due else "")
    if event == "step_imported":
        return "step", f"{title}: recorded as done on {labels.fmt_date(detail.get('completed_on'))}, before the " \
                       f"service took the regime on"
    if event == "escalation":
        notified = ", ".join(labels.role_label(n) for n in detail.get("notified", []))
        return "escalation", f"{labels.rung_label(detail.get('rung', ''))} (level {detail.get('level')}): {title}" \
                             + (f"; notified {notified}" if notified else "")
    if event == "deadline_amended":
        old, new = detail.get("old", {}), detail.get("new", {})
        parts = []
        if old.get("due") != new.get("due"):
            parts.append(f"due date moved from {labels.fmt_date(old.get('due'))} to {labels.fmt_date(new.get('due'))}")
        if old.get("paused") != new.get("paused"):
            parts.append("clock paused" if new.get("paused") else "clock restarted")
        return "decision", f"{title}: " + ("; ".join(parts) or "deadline changed")
    if event == PLAN_SIGNED_OFF:
        return "decision", "Improvement plan signed off by the regulator and the commissioner"
    if event == "reinspection_announced":
        return "inspection", f"CQC re-inspection announced ({reason})" if reason else "CQC re-inspection announced"
    if event in ("inspection_recorded", "inspection_corrected"):
        ref = detail.get("reference", "")
        verb = "recorded" if event == "inspection_recorded" else "corrected"
        return "inspection", f"CQC outcome {ref} {verb}"
    if event == "inspection_duplicate_ignored":
        return "inspection", "A CQC outcome received twice was ignored"
    if event == "inspection_older_ignored":
        return "inspection", f"An older CQC outcome {detail.get('reference', '')} was kept for the record only"
    if event == "inspection_withdrawn":
        return "inspection", f"CQC outcome {detail.get('reference', '')} withdrawn"
    if event == "inspection_withdrawal_ignored":
        return "inspection", "A withdrawal for an unknown CQC outcome was ignored"
    if event == "phase_changed":
        return "phase", f"Phase changed from {labels.phase_label(detail.get('from', ''))} to " \
                        f"{labels.phase_label(detail.get('to', ''))}"
    if event == "regime_closed":
        return "phase", f"Regime closed ({labels.humanise(detail.get('how', '')).lower()})"
    if event == "enforcement_recorded":
        return "decision", f"CQC enforcement action recorded: {labels.humanise(detail.get('action', '')).lower()}"
    if event == "buddy_added":
        return "buddy", f"Buddy partnership started with {reason}" if reason else "Buddy partnership started"
    if "." in event and step_kind:
        action = event.split(".", 1)[1]
        return "decision", f"{title}: {labels.ACTIONS.get(action, labels.humanise(action).lower())}"
    return ("buddy" if event.startswith("buddy") else "other"), labels.humanise(event)


_TERMINAL = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED: "Workflow completed",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED: "Workflow failed",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT: "Workflow timed out",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED: "Workflow terminated by an operator",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED: "Workflow cancelled",
}


async def from_temporal(client: Client, workflow_id: str, all_runs: bool = False) -> tuple[list[Line], int, bool]:
    """Lines from the workflow history (latest run, or every run when asked), reading at most MAX_EVENTS
    events; returns (lines, runs read, whether the cap stopped the reading)."""
    lines: list[Line] = []
    run_id: str | None = None
    runs = 0
    seen = 0
    while runs < (MAX_RUNS if all_runs else 1):
        handle = client.get_workflow_handle(workflow_id, run_id=run_id)
        previous: str | None = None
        async for ev in handle.fetch_history_events():
            seen += 1
            if seen > MAX_EVENTS:
                break
            line, prev = await _event_line(client, ev, runs)
            previous = previous or prev
            if line is not None:
                lines.append(line)
        runs += 1
        if not previous or seen > MAX_EVENTS:
            break
        run_id = previous
    return lines, runs, seen > MAX_EVENTS


async def _event_line(client: Client, ev: Any, run_index: int) -> tuple[Line | None, str | None]:
    at = ev.event_time.ToDatetime().replace(tzinfo=UTC)
    src = f"Workflow event {ev.event_id}" + (f" (run -{run_index})" if run_index else "")
    t = ev.event_type
    order = -1_000_000 + ev.event_id - run_index * MAX_EVENTS

    def line(kind: str, who: str, what: str, why: str = "") -> Line:
        return Line(at=at, kind=kind, who=who, what=what, why=why, source=src, order=order)

    if t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
        a = ev.workflow_execution_started_event_attributes
        prev = a.continued_execution_run_id or None
        what = "Workflow continued in a new run (continue-as-new)" if prev else "Workflow started"
        return line("workflow", a.identity or "Temporal", what), prev
    if t == EventType.EVENT_TYPE_TIMER_FIRED:
        return line("timer", "Temporal timer", "Timer fired: the regime woke to check its deadlines"), None
    if t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
        a = ev.workflow_execution_signaled_event_attributes
        return line("signal", a.identity or "Temporal", f"Signal received: {a.signal_name}",
                    await _signal_summary(client, a)), None
    if t == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
        a = ev.start_child_workflow_execution_initiated_event_attributes
        return line("buddy", "Service (automatic)", f"Child workflow started: {a.workflow_id}"), None
    if t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
        return line("workflow", "Service (automatic)", "History rolled over into a new run (continue-as-new)"), None
    if t in _TERMINAL:
        why = ""
        if t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED:
            why = ev.workflow_execution_terminated_event_attributes.reason
        elif t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
            why = ev.workflow_execution_failed_event_attributes.failure.message
        return line("workflow", "Temporal", _TERMINAL[t], why), None
    return None, None


async def _signal_summary(client: Client, attrs: Any) -> str:
    try:
        values = await client.data_converter.decode(list(attrs.input.payloads))
    except Exception:
        return ""
    if not values or not isinstance(values[0], dict):
        return ""
    v = values[0]
    if attrs.signal_name == "record_inspection":
        o = v.get("outcome", {})
        return f"CQC outcome {o.get('reference', '')} ({o.get('kind', 'published')})"
    if attrs.signal_name == "withdraw_inspection":
        return f"withdraw {v.get('reference', '')}: {v.get('reason', '')}"
    if attrs.signal_name == "buddy_changed":
        return f"{v.get('buddy_name', '')} ({v.get('scope', '')}) is at stage '{v.get('stage', '')}'"
    return ""


def merge(*sources: list[Line], newest_first: bool = True) -> list[Line]:
    lines = [ln for src in sources for ln in src]
    lines.sort(key=lambda ln: (ln.at, ln.order), reverse=newest_first)
    return lines
