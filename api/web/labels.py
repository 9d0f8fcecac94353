"""Words for the people who run the regime: phases, roles, rungs, step states, dates and durations."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from domain import dates
from domain.ledger import BUDDY_STEPS
from domain.steps import CATALOGUE, Kind, Statutory, StepKind

PHASES: dict[str, tuple[str, str]] = {
    # phase: (label, NHS tag colour)
    "in_special_measures": ("In special measures", "orange"),
    "extended": ("Extended", "red"),
    "long_term_solution": ("Long-term solution", "purple"),
    "in_finance_special_measures": ("In finance special measures", "orange"),
    "exited": ("Exited", "green"),
    "closed_structural": ("Closed: structural solution", "grey"),
}
ROLES = {
    "trust": "Trust", "improvement_director": "Improvement director", "regulator": "Regulator",
    "commissioner": "Commissioner", "buddy": "Buddy trust", "cqc": "CQC", "operations": "Operations",
    "admin": "Administrator", "system": "Service (automatic)",
    "regulator_dd": "Regulator's D&D team", "regulator_executive": "Regulator's executives",
}
RUNGS = {
    "reminder": "Reminder",
    "breach": "Deadline missed",
    "dd_escalation": "Escalated to the regulator's D&D team",
    "executive_escalation": "Escalated to the regulator's executives",
}
ACTIONS = {
    "submit": "submitted", "agree": "agreed", "return": "returned", "sign_off": "signed off", "record": "recorded",
    "cosign": "co-signed", "recommend_exit": "CQC recommended exit",
    "recommend_remain": "CQC recommended the trust remains in special measures", "exit": "exit decided",
    "extend": "regime extended", "refer_to_secretary_of_state": "referred to the Secretary of State",
    "send": "sent", "published": "published", "cancelled": "cancelled",
    "completed_before_go_live": "done before the service took the regime on",
}
RATINGS: dict[str, tuple[str, str]] = {
    "outstanding": ("Outstanding", "blue"),
    "good": ("Good", "green"),
    "requires_improvement": ("Requires improvement", "orange"),
    "inadequate": ("Inadequate", "red"),
}
KEY_QUESTIONS = (("safe", "Safe"), ("effective", "Effective"), ("caring", "Caring"),
                 ("responsive", "Responsive"), ("well_led", "Well-led"), ("overall", "Overall"))

# Step states shown on the timeline and in tables: (label, colour, NHS tag colour).
STATES: dict[str, tuple[str, str, str]] = {
    "on_time": ("On time", "#005eb8", "blue"),
    "due_soon": ("Due soon", "#ffb81c", "yellow"),
    "overdue": ("Overdue", "#d5281b", "red"),
    "done": ("Done on time", "#007f3b", "green"),
    "done_late": ("Done late", "#7c2855", "pink"),
    "paused": ("Paused", "#330072", "purple"),
    "cancelled": ("Cancelled", "#768692", "grey"),
}


def phase_label(phase: str) -> str:
    return PHASES.get(phase, (humanise(phase), "grey"))[0]


def phase_colour(phase: str) -> str:
    return PHASES.get(phase, ("", "grey"))[1]


def role_label(role: str | None) -> str:
    return ROLES.get(role or "", humanise(role or ""))


def rung_label(rung: str) -> str:
    return RUNGS.get(rung, humanise(rung))


def humanise(s: str) -> str:
    s = s.replace("_", " ").replace(".", ": ").strip()
    return s[:1].upper() + s[1:]


def step_spec(kind: str | None) -> StepKind | None:
    """The catalogue entry of a regime or partnership step kind (None for a kind no catalogue has)."""
    return CATALOGUE.get(kind) or BUDDY_STEPS.get(kind) if kind else None


def inspection_label(o: Any, n: int | None = None) -> str:
    """What an outcome was: "Re-inspection 2" for the special-measures re-inspection (or an outcome recorded
    before outcomes said what they were), else its type, e.g. "Focused inspection"."""
    if o.special_measures_reinspection is False:
        return f"{(o.inspection_type or 'other').capitalize()} inspection"
    return f"Re-inspection {n}" if n else "Re-inspection"


BASIS_LABELS = {"statutory": "Statutory", "service_default": "Service default", "amended": "Moved by the regulator"}


def step_basis(step: Any) -> dict[str, str]:
    """A step's deadline basis for the pages, from the API's DeadlineBasis (api.contract): `kind`, a short
    `label`, the `source` (the seed section of a statutory clock, the setting of a service default, or who moved
    the date and why) and `why`, the rule with its source in a sentence. Empty strings for an unknown kind."""
    from api.contract import deadline_basis as basis_of

    def read(name: str) -> Any:
        return step.get(name) if isinstance(step, dict) else getattr(step, name, None)

    b = basis_of(read("kind"), read("amendments"))
    if b is None:
        return {"kind": "", "label": "", "source": "", "why": ""}
    if b["kind"] == "statutory":
        why = f"{b['rule']} ({b['source']})"
    elif b["kind"] == "service_default":
        why = f"service default: {b['rule']}; changed by {b['source']}"
    else:
        why = f"{b['source']}; the rule was: {b['rule']} ({b['amended_from']['source']})"
    return {"kind": b["kind"], "label": BASIS_LABELS[b["kind"]], "source": b["source"], "why": why}


def deadline_basis(kind: str | None, amended: bool = False) -> tuple[str, str]:
    """Where a step's due date comes from, as (a short label, its explanation): a statutory clock with the seed
    section that sets it, a service default with the setting that changes it, or the regulator's amendment."""
    if amended:
        return "Moved by the regulator", "the regulator amended this deadline (see the history for who and why)"
    spec = step_spec(kind)
    if spec is None or spec.deadline is None:
        return "", ""
    basis = spec.deadline.basis
    if isinstance(basis, Statutory):
        return "Statutory", f"{spec.deadline.rule} ({basis.section})"
    return "Service default", f"{spec.deadline.rule}; changed by {basis.setting}"


def step_title(kind: str | None, step_id: str | None = None) -> str:
    """The kind's short title; a numbered kind's carries its number ("CQC re-inspection 2"), a step opened again
    its repeat ("Improvement plan (2)"); a recurring kind's steps share one title."""
    spec = step_spec(kind)
    if not kind or spec is None:
        return humanise(kind or step_id or "")
    last = step_id.rsplit("-", 1)[-1] if step_id else ""
    if spec.numbered and last.isdigit():
        return f"{spec.label} {last}"
    if step_id and not (spec.recurs or spec.numbered):
        suffix = step_id.removeprefix(kind)
        if suffix.startswith("-") and suffix[1:].isdigit():
            return f"{spec.label} ({suffix[1:]})"
    return spec.label


# Documents are named after the step kind whose payload they are (domain/documents.py).
DOCUMENTS = {Kind.improvement_plan: "Improvement plan", Kind.monthly_return: "Monthly return"}


def document_title(kind: str) -> str:
    return DOCUMENTS.get(kind, kind)


def step_state(status: str, due: date, today: date, late: bool, paused: bool, soon_days: int) -> str:
    if status == "cancelled":
        return "cancelled"
    if status == "done":
        return "done_late" if late else "done"
    if paused:
        return "paused"
    if due < today:
        return "overdue"
    if (due - today).days <= soon_days:
        return "due_soon"
    return "on_time"


def state_label(state: str) -> str:
    return STATES[state][0]


def state_tag(state: str) -> str:
    return STATES[state][2]


def london(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt + dates.london_offset(dt)).replace(tzinfo=None)


def fmt_date(d: date | datetime | str | None) -> str:
    if d is None or d == "":
        return ""
    if isinstance(d, str):
        d = date.fromisoformat(d[:10])
    if isinstance(d, datetime):
        d = london(d).date()  # type: ignore[union-attr]
    return f"{d.day} {d:%b %Y}"


def fmt_time(dt: datetime | None) -> str:
    if dt is None:
        return ""
    local = london(dt)
    assert local is not None
    return f"{local.day} {local:%b %Y, %H:%M}"


def days_phrase(days: int) -> str:
    if days == 0:
        return "due today"
    if days > 0:
        return f"{days} day{'s' if days != 1 else ''} left"
    return f"{-days} day{'s' if days != -1 else ''} overdue"


def months(start: date, end: date) -> float:
    return dates.months_between(start, end)


def money(pence: int | None) -> str:
    return f"£{(pence or 0) / 100:,.2f}"


def ladder_rungs(ladder: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ladder with a readable label and timing for each rung (level n is rung n)."""
    out = []
    for i, r in enumerate(ladder, start=1):
        off = int(r["offset_days"])
        when = ("on the due date" if off == 0 else f"{-off} days before the due date" if off < 0
                else f"{off} days after the due date")
        out.append({"level": i, "name": r["name"], "label": rung_label(r["name"]), "when": when,
                    "late": off >= 0, "notify": [role_label(n) if n != "responsible" else "the person responsible"
                                                 for n in r.get("notify", [])]})
    return out


def london_today(now: datetime) -> date:
    return dates.london_date(now)


def day_start(d: date) -> datetime:
    return dates.london_midnight(d)


ONE_DAY = timedelta(days=1)


# The improvement plan as a programme (issue 15): an action's status (domain.programme.STATUSES) in words, with its
# NHS tag colour. The plan page's chart draws each with a colour and a texture of its own (api/web/charts.py).
PLAN_STATUSES: dict[str, tuple[str, str]] = {
    "not_started": ("Not started", "grey"),
    "on_track": ("On track", "blue"),
    "at_risk": ("At risk", "yellow"),
    "off_track": ("Off track", "red"),
    "done": ("Done", "green"),
}
PLAN_VERSION_SOURCES = {"plan": "the improvement plan", "change": "a change the trust proposed",
                        "revision": "the revised plan after an extension"}
# Readiness for the re-inspection: what each item of the checklist is, said of one key question.
READINESS_TITLES = {
    Kind.evidence_file: "Evidence file complete",
    Kind.evidence_file_check: "Evidence file checked by the improvement director",
    Kind.evidence_file_buddy_review: "Evidence file quality-checked by the buddy trust",
}


def plan_status_label(status: str) -> str:
    return PLAN_STATUSES.get(status, (humanise(status), "grey"))[0]


def plan_status_tag(status: str) -> str:
    return PLAN_STATUSES.get(status, ("", "grey"))[1]


def key_question_label(q: str | None) -> str:
    return dict(KEY_QUESTIONS).get(q or "", humanise(q or ""))


def sentence(s: str | None) -> str:
    """The first letter upper case and the rest as it is (Jinja's `capitalize` lowers the rest: action ids)."""
    s = s or ""
    return s[:1].upper() + s[1:]


def fmt_month(month: str) -> str:
    """A reported month, "2025-03", as "Mar 2025"."""
    try:
        return f"{date.fromisoformat(month + '-01'):%b %Y}"
    except ValueError:
        return month


def readiness_title(kind: str, step_id: str | None, key_question: str | None) -> str:
    """A readiness item in words: "Self-assessment 1", "Evidence file complete: Safe"."""
    title = READINESS_TITLES.get(kind) or step_title(kind, step_id)
    return f"{title}: {key_question_label(key_question)}" if key_question else title
