"""The improvement plan as a programme (issue 15): themes of actions, monthly progress, challenges, reviews,
evidence and readiness for re-inspection.

Plan data is documents (the plan's versions, the monthly progress reports, evidence items: PostgreSQL, by
reference, domain/documents.py) plus a small summary the regime workflow keeps: each action's theme, target date,
latest status and how many months in a row it has been off track (`ProgrammeState`, about 130 bytes an action).
The API builds the summary (`plan_index`, `progress_index`) from the validated document and sends it with the
document's reference, so the workflow never holds a plan's text.

Who does what follows the sources (seed 000 §4a): the trust owns the plan and reports on it, the improvement
director agrees its versions and co-signs or challenges each month's report, the regulator's delivery team
reviews it.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from domain.text import text

KEY_QUESTIONS = ("safe", "effective", "caring", "responsive", "well_led")
KeyQuestion = Literal["safe", "effective", "caring", "responsive", "well_led"]
Status = Literal["not_started", "on_track", "at_risk", "off_track", "done"]
STATUSES: tuple[Status, ...] = ("not_started", "on_track", "at_risk", "off_track", "done")
ACTION_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,15}$"
DEFAULT_THEME = "General"
# An action off track in this many monthly reports in a row is flagged to the delivery team (issue 15 item 2).
OFF_TRACK_MONTHS_FLAGGED = 2
MAX_ACTIONS = 500
MAX_THEMES = 50


def months_apart(first: str, last: str) -> int:
    """Calendar months from month `first` to month `last` (YYYY-MM; other text counts as the same month)."""
    try:
        y1, m1 = (int(x) for x in first[:7].split("-"))
        y2, m2 = (int(x) for x in last[:7].split("-"))
    except ValueError:
        return 0
    return max(0, (y2 - y1) * 12 + m2 - m1)


def action_id(n: int) -> str:
    """The id an action without one gets: its position in the plan, from 1 ("A1")."""
    return f"A{n}"


class IndexedAction(BaseModel):
    """What the workflow keeps of an action: its theme (an index into PlanIndex.themes), target date and class."""
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=ACTION_ID)
    t: int = Field(ge=0, lt=MAX_THEMES)
    due: date | None = None
    must: bool = True


class PlanIndex(BaseModel):
    model_config = ConfigDict(extra="forbid")
    themes: list[text(100, min_length=1)] = Field(max_length=MAX_THEMES)
    actions: list[IndexedAction] = Field(max_length=MAX_ACTIONS)
    dropped: list[text(16)] = Field(default_factory=list, max_length=MAX_ACTIONS,
                               description="outstanding actions of the previous version left out, with a reason")
    published: bool = False


def plan_index(plan: dict) -> PlanIndex:
    """The summary of a plan (ImprovementPlanPayload, validated, JSON mode) the workflow keeps."""
    themes: list[str] = []
    out = []
    for n, a in enumerate(plan.get("actions") or [], 1):
        theme = a.get("theme") or DEFAULT_THEME
        if theme not in themes:
            themes.append(theme)
        due = a.get("target_date")
        out.append(IndexedAction(id=a.get("id") or action_id(n), t=themes.index(theme),
                                 due=date.fromisoformat(due) if isinstance(due, str) else due,
                                 must=a.get("category") == "must_do"))
    return PlanIndex(themes=themes, actions=out, dropped=[x["action_id"] for x in plan.get("dropped") or []],
                     published=bool(plan.get("published_at") and plan.get("published_on")))


class ProgressIndex(BaseModel):
    """What the workflow keeps of a monthly report: each reported action's status."""
    model_config = ConfigDict(extra="forbid")
    statuses: dict[str, Status] = Field(default_factory=dict, max_length=MAX_ACTIONS)


def progress_index(actions: list[dict]) -> ProgressIndex:
    return ProgressIndex(statuses={a["action_id"]: a["status"] for a in actions})


class ProgrammeAction(BaseModel):
    """One action in the workflow's summary. `step_due` is the target date its `plan_action` step was opened
    for (None: not opened yet)."""
    model_config = ConfigDict(extra="forbid")
    t: int = 0
    due: date | None = None
    must: bool = True
    status: Status = "not_started"
    off: int = Field(0, description="months in a row the action has been reported off track")
    off_since: text(7) | None = Field(None, description="the first month (YYYY-MM) of the current run off track")
    challenged: bool = False
    step_due: date | None = None


class PlanVersion(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n: int
    sha256: text(64)
    source: Literal["plan", "change", "revision"]
    agreed_on: date
    agreed_by: text(200)
    actions: int
    step_id: text(200) | None = None


class ProposedChange(BaseModel):
    """A change to the plan the trust proposed, waiting for the improvement director (`plan_change_review`)."""
    model_config = ConfigDict(extra="forbid")
    sha256: text(64)
    index: PlanIndex
    step_id: text(200)
    proposed_by: text(200)
    person: text(200) | None = None
    reason: text(2000)


class MonthReport(BaseModel):
    model_config = ConfigDict(extra="forbid")
    month: text(200)
    sha256: text(64)
    counts: dict[Status, int] = Field(default_factory=dict, max_length=len(STATUSES))


# Months of report summaries the state keeps (older ones are in PostgreSQL and the audit log).
REPORTS_KEPT = 12
VERSIONS_KEPT = 24


class ProgrammeState(BaseModel):
    model_config = ConfigDict(extra="forbid")
    themes: list[text(100)] = Field(default_factory=list, max_length=MAX_THEMES)
    actions: dict[text(16), ProgrammeAction] = Field(default_factory=dict, max_length=MAX_ACTIONS)
    versions: list[PlanVersion] = Field(default_factory=list, max_length=VERSIONS_KEPT)
    versions_total: int = 0
    proposed: ProposedChange | None = None
    reports: list[MonthReport] = Field(default_factory=list, max_length=REPORTS_KEPT)
    flagged: list[text(16)] = Field(default_factory=list, max_length=MAX_ACTIONS, description="actions off track "
                                                                  f"{OFF_TRACK_MONTHS_FLAGGED} months in a row")
    evidence: int = 0

    def current(self) -> PlanVersion | None:
        return self.versions[-1] if self.versions else None

    def adopt(self, index: PlanIndex) -> None:
        """A newly agreed version becomes the baseline: actions kept by id keep their progress."""
        old = self.actions
        self.themes = list(index.themes)
        self.actions = {}
        for a in index.actions:
            prev = old.get(a.id)
            keep = prev.model_dump() if prev is not None else {}
            if prev is not None and prev.due != a.due:
                keep["step_due"] = None  # a new target date: a new step when it comes near
            self.actions[a.id] = ProgrammeAction(**{**keep, "t": a.t, "due": a.due, "must": a.must})

    def record_report(self, month: str, sha256: str, statuses: dict[str, str]) -> list[str]:
        """Take a month's statuses; returns the actions that have just become off track for
        OFF_TRACK_MONTHS_FLAGGED months in a row."""
        newly: list[str] = []
        for aid, st in statuses.items():
            a = self.actions.get(aid)
            if a is None:
                continue
            a.status = st  # type: ignore[assignment]
            a.challenged = False
            if st == "off_track":
                # Counted in months, so a month's report sent back and submitted again counts once.
                a.off_since = min(a.off_since or month, month)
                a.off = months_apart(a.off_since, month) + 1
            else:
                a.off_since, a.off = None, 0
            if a.off >= OFF_TRACK_MONTHS_FLAGGED and aid not in self.flagged:
                newly.append(aid)
        self.flagged = [aid for aid, a in self.actions.items() if a.off >= OFF_TRACK_MONTHS_FLAGGED]
        counts = {s: sum(1 for a in self.actions.values() if a.status == s) for s in STATUSES}
        self.reports = [r for r in self.reports if r.month != month][-(REPORTS_KEPT - 1):] + [
            MonthReport(month=month, sha256=sha256, counts=counts)]
        return newly

    def overdue(self, today: date) -> list[str]:
        return [aid for aid, a in self.actions.items() if a.due is not None and a.due < today and a.status != "done"]

    def on_trajectory(self, today: date, overdue: list[str] | None = None) -> tuple[bool, str]:
        """The plan's own answer to the Integrated Delivery Meeting's question (issue 15 item 3), with why:
        off trajectory while an action is past its target date (`overdue`, by default those on `today`) or
        off track for OFF_TRACK_MONTHS_FLAGGED months in a row."""
        overdue = self.overdue(today) if overdue is None else overdue
        if overdue:
            return False, f"{len(overdue)} action(s) past their target date: {', '.join(overdue[:10])}"
        if self.flagged:
            return False, (f"{len(self.flagged)} action(s) off track {OFF_TRACK_MONTHS_FLAGGED} months in a row: "
                           f"{', '.join(self.flagged[:10])}")
        return True, "no action past its target date or off track two months in a row"
