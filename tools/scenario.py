"""Scenario files for `regime simulate`: the format (see docs/scenarios.md), loading and validation.

A scenario is YAML or JSON. Every error names the file, the line and the field, e.g.
`scenarios/x.yaml:14: steps[2].who: 'trustee' is not a role; roles are trust, improvement_director, ...`.
"""

from __future__ import annotations

import datetime as dt
import re
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from domain.dates import add_months
from domain.funding import FundingAgreementPayload
from domain.ledger import BUDDY_STEPS
from domain.models import ROLES
from domain.policy import PolicyChoices
from domain.programme import ACTION_ID, DEFAULT_THEME, KEY_QUESTIONS, KeyQuestion, Status
from domain.ratings import CoreServiceRating, KeyQuestionRatings
from domain.steps import CATALOGUE, ImprovementPlanPayload, Kind, PlanAction

# Steps someone does as a matter of course: the kinds whose catalogue entry has a `routine` (its action and
# payload). Regime kinds, then a partnership's.
ROUTINE_KINDS: tuple[str, ...] = tuple(k for k, s in CATALOGUE.items() if s.routine is not None)
BUDDY_ROUTINE: tuple[str, ...] = tuple(k for k, s in BUDDY_STEPS.items() if s.routine is not None)
# Keys of an add_buddy payload that tell the simulator how the partnership behaves; not sent to the API.
BUDDY_SIM_KEYS = ("support_plan", "quarterly_pence")

# Verbs that are not decisions on a step: each maps to its own API route.
OPERATIONS: dict[str, tuple[str, ...]] = {
    "announce_reinspection": ("cqc", "regulator"),
    "publish_inspection": ("cqc",),
    "withdraw_inspection": ("cqc",),
    "send_draft_report": ("cqc",),
    "amend_deadline": ("regulator",),
    "close_regime": ("regulator",),
    "record_enforcement": ("cqc",),
    "add_buddy": ("regulator",),
    "propose_plan_change": ("trust",),
    "record_evidence": ("trust",),
    "request_drawdown": ("trust",),
    "record_director_time": ("improvement_director", "regulator"),
}
# Keys of a request_drawdown payload for the simulator only: the request is to be refused (422), not sent.
DRAWDOWN_SIM_KEYS = ("expect_refused",)
YEAR_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
STEP_ACTIONS = sorted({a for k in CATALOGUE.values() for a in k.actions})
DAY_REF = re.compile(r"^day\s+(-?\d+)$")
RATING_PRESETS: dict[str, dict[str, str]] = {
    "entry_inadequate": {"safe": "inadequate", "effective": "requires_improvement", "caring": "good",
                         "responsive": "requires_improvement", "well_led": "inadequate", "overall": "inadequate"},
    "improved": {"safe": "requires_improvement", "effective": "good", "caring": "good",
                 "responsive": "requires_improvement", "well_led": "requires_improvement",
                 "overall": "requires_improvement"},
    "still_inadequate": {"safe": "requires_improvement", "effective": "good", "caring": "good",
                         "responsive": "requires_improvement", "well_led": "inadequate", "overall": "inadequate"},
}
MAX_DAYS = 366 * 6
MAX_MONTHS = 6 * 12 + 1
MONTHS = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+))?\s*$")
# Steps whose payload is an improvement plan: validated when the file is loaded, and their action ids and themes
# are what plan_progress, propose_plan_change, record_evidence and expect.programme may name.
PLAN_KINDS = (Kind.improvement_plan, Kind.revised_action_plan)
ActionId = Annotated[str, Field(pattern=ACTION_ID)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TrustSpec(_Strict):
    ods_code: str = Field(pattern=r"^[A-Z0-9]{3,6}$")
    name: str = Field(min_length=1, max_length=200)
    multi_site: bool = False


class CompletedStepSpec(_Strict):
    kind: str
    day: int = Field(description="day (counted from entry) on which it was done")
    by: str = Field(min_length=1)
    note: str | None = None


class EntrySpec(_Strict):
    date: dt.date | None = Field(None, description="entry date; in the past makes a regime already under way")
    days_ago: int | None = Field(None, ge=0, le=MAX_DAYS)
    measures: Literal["quality", "finance", "combined"] = Field(
        "quality", description="what the trust is placed in special measures for (finance: basis regulator_decision)")
    basis: Literal[Kind.cqc_recommendation, Kind.regulator_decision] = Kind.cqc_recommendation
    ratings: KeyQuestionRatings | str | None = "entry_inadequate"
    regulator_reason: str | None = None
    completed_steps: list[CompletedStepSpec] = Field(default_factory=list)
    policy: PolicyChoices | None = Field(None, description="choices made for this regime at placement instead of "
                                                           "the POLICY_* settings (domain/policy.py)")
    continue_as_new_after_events: int | None = Field(None, ge=200, le=40_000)

    @model_validator(mode="after")
    def _one_date(self) -> EntrySpec:
        if self.date is not None and self.days_ago is not None:
            raise ValueError("give entry.date or entry.days_ago, not both")
        return self


class RoutineSpec(_Strict):
    enabled: bool = True
    lead_days: int = Field(7, ge=0, le=60, description="do each routine step this many days before it is due")
    skip: list[str] = Field(default_factory=list, description="step kinds nobody does routinely")
    buddy: bool = True
    lead_days_by_kind: dict[str, Annotated[int, Field(ge=0, le=120)]] = Field(
        default_factory=dict, description="step kind -> lead_days for that kind only")

    def lead(self, kind: str) -> int:
        return self.lead_days_by_kind.get(kind, self.lead_days)


def month_range(value: int | str) -> tuple[int, int]:
    """`4` -> (4, 4); `"4-6"` -> (4, 6). ValueError when it is neither."""
    if isinstance(value, int) and not isinstance(value, bool):
        first = last = value
    else:
        m = MONTHS.match(str(value))
        if not m:
            raise ValueError(f"{value!r}: write a month as N or a range as 'N-M'")
        first = int(m.group(1))
        last = int(m.group(2)) if m.group(2) else first
    if not 1 <= first <= last <= MAX_MONTHS:
        raise ValueError(f"{value!r}: months run from 1 (the trust's first monthly return) to {MAX_MONTHS}, "
                         "first to last")
    return first, last


class ProgressSpec(_Strict):
    """What the trust reports for some actions (named, or all of a theme's) in some months of the regime."""
    months: int | str = Field(description="N or 'N-M': month N is the trust's N-th monthly return")
    theme: str | None = Field(None, min_length=1, max_length=100)
    actions: list[ActionId] | None = Field(None, min_length=1)
    status: Status
    metric_value: str | None = Field(None, min_length=1, max_length=200)
    note: str | None = Field(None, min_length=1, max_length=1000)
    challenge: str | None = Field(None, min_length=1, max_length=2000,
                                  description="the improvement director challenges these actions' report when "
                                              "co-signing the month's return, for this reason")

    @field_validator("months")
    @classmethod
    def _months(cls, v: int | str) -> int | str:
        month_range(v)
        return v

    @model_validator(mode="after")
    def _names_something(self) -> ProgressSpec:
        if (self.theme is None) == (self.actions is None):
            raise ValueError("name a theme or actions (one of them)")
        return self

    def covers(self, month: int, action: str, theme: str) -> bool:
        first, last = month_range(self.months)
        return first <= month <= last and (action in (self.actions or []) or theme == self.theme)


class PlanProgressSpec(_Strict):
    """How the trust reports on its plan, month by month, beyond the routine (docs/scenarios.md)."""
    reports: list[ProgressSpec] = Field(default_factory=list, description="statuses in given months; the last "
                                                                          "entry naming an action wins")
    never_done: list[ActionId] = Field(default_factory=list, description="actions nobody marks done: their "
                                                                         "steps go overdue and escalate")


class StepSpec(_Strict):
    day: int | None = Field(None, ge=0, le=MAX_DAYS)
    date: dt.date | None = None
    who: str
    user: str | None = Field(None, min_length=1, max_length=200)
    org: str | None = Field(None, pattern=r"^[A-Z0-9]{3,6}$")
    do: str
    step: str | None = None
    payload: dict[str, Any] = Field(default_factory=dict)
    comment: str | None = None
    expect_status: int | None = Field(None, ge=100, le=599)
    note: str | None = None


class ProgrammeExpect(_Strict):
    """Checks on the plan as a programme (the timeline's `programme`)."""
    actions: int | None = Field(None, description="actions in the agreed plan's latest version")
    versions: int | None = Field(None, description="versions of the plan agreed")
    flagged: list[ActionId] | None = Field(None, description="exactly these actions were flagged off track two "
                                                             "months in a row")
    overdue: list[ActionId] | None = Field(None, description="exactly these actions were past their target date "
                                                             "and not done at some monthly report")
    themes: dict[str, dict[int, Status]] = Field(default_factory=dict, description="theme -> {month: its worst "
                                                                                   "status after that month's report}")
    on_trajectory: dict[int, bool] = Field(default_factory=dict, description="month -> the plan's answer after "
                                                                             "that month's report")
    evidence_items: int | None = None
    evidence_files_checked: list[KeyQuestion] | None = Field(None, description="exactly these key questions' "
                                                                               "evidence files were complete and "
                                                                               "checked")


class FundingExpect(_Strict):
    """Checks on central funding, read from GET /regimes/{id}/funding at the end (the timeline's `funding`)."""
    agreed: bool | None = None
    ceiling_pence: int | None = None
    paid_pence: int | None = Field(None, description="drawdowns paid, pence")
    drawdowns_paid: int | None = Field(None, description="drawdowns paid (each paid once: one payment each)")
    drawdowns_refused: int | None = Field(None, description="drawdowns refused by the improvement director or the "
                                                            "regulator")
    refused: int | None = Field(None, description="requests the API refused when they were made (e.g. above what is "
                                                  "left under the ceiling)")


class CostsExpect(_Strict):
    """Checks on the cost of the interventions, read from GET /regimes/{id}/costs at the end."""
    buddy_paid_pence: int | None = None
    direct_funding_pence: int | None = None
    director_days: float | None = None
    director_time_pence: int | None = None
    total_pence: int | None = None


class WatchListExpect(_Strict):
    """Checks on the scenario's watch-list entry (the timeline's `watch_list`)."""
    status: Literal["on_list", "placed", "removed"] | None = None
    linked: bool | None = Field(None, description="the entry names the regime the trust was placed in")
    paid_pence: int | None = Field(None, ge=0, description="central funding paid to the trust while on the list")
    confidential: bool | None = Field(None, description="every confidentiality check the simulator makes held")


class ExpectSpec(_Strict):
    phase: str | None = None
    segment: int | None = None
    finished: bool | None = None
    runs_at_least: int | None = None
    extensions: int | None = None
    late: list[str] | None = Field(None, description="exactly these steps (ids) were late")
    escalations: dict[str, list[str]] = Field(default_factory=dict, description="step id -> rungs, in order")
    due_days: dict[str, int] = Field(default_factory=dict, description="step id -> due day (counted from entry)")
    only_reminders: bool | None = Field(None, description="no escalation beyond a reminder")
    buddies: int | None = None
    follows_previous: bool | None = Field(None, description="the regime is linked to the trust's earlier one")
    paid_pence: dict[str, int] = Field(default_factory=dict, description="partnership id suffix -> pence paid")
    done_days: dict[str, int] = Field(default_factory=dict, description="step id -> the day it was done")
    outcomes: dict[str, str] = Field(default_factory=dict, description="step id -> its outcome (the action taken)")
    programme: ProgrammeExpect | None = None
    funding: FundingExpect | None = None
    costs: CostsExpect | None = None
    watch_list: WatchListExpect | None = None


class RegimeSpec(_Strict):
    entry: EntrySpec = Field(default_factory=EntrySpec)
    routine: RoutineSpec = Field(default_factory=RoutineSpec)
    steps: list[StepSpec] = Field(default_factory=list)
    until_day: int | None = Field(None, ge=0, le=MAX_DAYS)
    plan_progress: PlanProgressSpec | None = None
    funding: FundingAgreementPayload | None = Field(
        None, description="the funding agreement the regulator records as routine, instead of the catalogue's")
    expect: ExpectSpec = Field(default_factory=ExpectSpec)


class WatchDrawdownSpec(_Strict):
    """A drawdown the trust requests while on the watch list (approved by its improvement director, authorised by
    the regulator, paid before the trust is placed)."""
    amount_pence: int = Field(gt=0, le=10_000_000_000, description="whole pence (e.g. 5000000 for £50,000)")
    against: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        min_length=1, max_length=20, description="areas of the watch list's funding agreement")
    purpose: str = Field(min_length=1, max_length=2000)


class WatchListSpec(_Strict):
    """The trust on the challenged-providers watch list before it is placed (docs/scenarios.md, "The watch
    list"): all of it happens on the day of placement."""
    reasons: list[Annotated[str, Field(min_length=1, max_length=2000)]] = Field(
        min_length=1, max_length=20, description="why the trust is at risk of special measures")
    director: bool = Field(True, description="the regulator appoints the trust's improvement director")
    funding: FundingAgreementPayload | None = Field(None, description="the central funding agreement, which the "
                                                                      "trust and its improvement director agree")
    drawdowns: list[WatchDrawdownSpec] = Field(default_factory=list, max_length=20)


class Scenario(RegimeSpec):
    name: str = Field(min_length=1, max_length=200)
    description: str | None = None
    trust: TrustSpec
    watch_list: WatchListSpec | None = Field(None, description="the trust on the watch list before it is placed")
    then: RegimeSpec | None = Field(None, description="a later regime of the same trust (re-entry)")
    _file: str = PrivateAttr("")
    _lines: Any = PrivateAttr(None)

    @property
    def file(self) -> str:
        return self._file

    def where(self, path: tuple[Any, ...]) -> str:
        """`file:line: field` for error messages at run time."""
        line = self._lines.line(path) if self._lines is not None else None
        return f"{self._file}:{line or '?'}: {_dotted(path)}"


# ----------------------------------------------------------------------------- errors
class ScenarioError(Exception):
    """All problems found in one scenario file, each with its line and field."""

    def __init__(self, file: str, problems: list[tuple[int | None, str, str]]) -> None:
        self.file = file
        self.problems = problems
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        return [f"{self.file}:{line or '?'}: {field or '(file)'}: {msg}" for line, field, msg in self.problems]


def _dotted(path: tuple[Any, ...]) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


class _LineMap:
    def __init__(self) -> None:
        self.lines: dict[tuple[Any, ...], int] = {}

    def walk(self, node: yaml.Node, path: tuple[Any, ...] = ()) -> None:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = k.value
                self.lines[path + (key,)] = k.start_mark.line + 1
                self.walk(v, path + (key,))
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                self.walk(v, path + (i,))

    def line(self, path: tuple[Any, ...]) -> int | None:
        for n in range(len(path), -1, -1):
            if path[:n] in self.lines:
                return self.lines[path[:n]]
        return None


# ----------------------------------------------------------------------------- loading
def load(path: str | Path, today: date | None = None) -> Scenario:
    """Parse and validate a scenario file; raise ScenarioError naming line and field of each problem."""
    p = Path(path)
    name = str(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ScenarioError(name, [(None, "", f"cannot read the file: {e.strerror}")]) from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        raise ScenarioError(name, [(mark.line + 1 if mark else None, "", f"not valid YAML/JSON: {e.problem}")]) \
            from None
    finally:
        loader.dispose()
    lm = _LineMap()
    if node is not None:
        lm.walk(node)
    if not isinstance(data, dict):
        raise ScenarioError(name, [(1, "", "a scenario is a mapping with at least 'name' and 'trust'")])
    try:
        sc = Scenario.model_validate(data)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            loc = tuple(x for x in err["loc"] if not _is_tag(x))
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = "unknown field (see docs/scenarios.md for the fields a scenario may have)"
            problems.append((lm.line(loc), _dotted(loc), msg))
        raise ScenarioError(name, _dedupe(problems)) from None
    problems = check(sc, today or _today())
    if problems:
        raise ScenarioError(name, [(lm.line(path), _dotted(path), msg) for path, msg in problems])
    sc._file, sc._lines = name, lm
    return sc


def _is_tag(x: Any) -> bool:
    """Pydantic names union members and validators in error locations; the file has no such keys."""
    return isinstance(x, str) and (x in ("str", "int", "date", "bool", "float") or x[:1].isupper() or "[" in x)


def _dedupe(problems: list[tuple[int | None, str, str]]) -> list[tuple[int | None, str, str]]:
    seen: set[tuple[int | None, str, str]] = set()
    out = []
    for p in problems:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


def _today() -> date:
    from datetime import UTC, datetime

    from domain.dates import london_date

    return london_date(datetime.now(UTC))


def entry_date(entry: EntrySpec, today: date) -> date:
    if entry.date is not None:
        return entry.date
    return today - timedelta(days=entry.days_ago or 0)


def step_day(st: StepSpec, entry: date) -> int:
    if st.day is not None:
        return st.day
    assert st.date is not None
    return (st.date - entry).days


def kind_of(step_id: str) -> str | None:
    """The catalogue kind of a regime step id (`regulator_decision-2` -> `regulator_decision`)."""
    if step_id in CATALOGUE:
        return step_id
    base = re.sub(r"(-\d+)+$", "", step_id)
    if base in CATALOGUE:
        return base
    base = re.sub(r"-\d{4}-\d{2}(-\d+)?$", "", step_id)
    return base if base in CATALOGUE else None


Problems = list[tuple[tuple[Any, ...], str]]


def check(sc: Scenario, today: date) -> Problems:
    """Rules a schema cannot express. Returns (path, message) pairs."""
    out: Problems = []
    regimes: list[tuple[tuple[Any, ...], RegimeSpec]] = [((), sc)]
    if sc.then is not None:
        regimes.append((("then",), sc.then))
    entries = []
    for base, reg in regimes:
        e = entry_date(reg.entry, today)
        entries.append(e)
        out += _check_entry(base, reg, e, today)
        last = _check_steps(base, reg, e, (today - e).days, out)
        out += _check_programme(base, reg, e)
        if reg.until_day is not None and reg.until_day < last:
            out.append((base + ("until_day",), f"until_day {reg.until_day} is before the last step (day {last})"))
    out += _check_watch_list(sc)
    if len(entries) == 2 and entries[0] == entries[1]:
        out.append((("then", "entry"), "the later regime needs another entry date than the first (a regime's id is "
                                       "its trust and entry date): set then.entry.days_ago: 1"))
    return out


def _check_watch_list(sc: Scenario) -> Problems:
    """The watch list: funding needs the improvement director (a party to the agreement, who approves each
    drawdown), drawdowns need the agreement, name its areas and stay under its ceiling; expect.watch_list needs a
    watch_list (the first regime's: the trust is placed from the list once)."""
    out: Problems = []
    w = sc.watch_list
    if w is None:
        if sc.expect.watch_list is not None:
            out.append((("expect", "watch_list"), "the scenario puts no trust on the watch list (add watch_list)"))
    else:
        if w.funding is not None and not w.director:
            out.append((("watch_list", "funding"), "the improvement director is a party to the funding agreement: "
                                                   "set director: true or drop funding"))
        if w.drawdowns and w.funding is None:
            out.append((("watch_list", "drawdowns"), "drawdowns are against a funding agreement: give funding"))
        elif w.funding is not None:
            total = 0
            for i, d in enumerate(w.drawdowns):
                for j, a in enumerate(d.against):
                    if a not in w.funding.areas:
                        out.append((("watch_list", "drawdowns", i, "against", j),
                                    f"{a!r} is not an area of the funding agreement ({', '.join(w.funding.areas)})"))
                total += d.amount_pence
                if total > w.funding.ceiling_pence:
                    out.append((("watch_list", "drawdowns", i, "amount_pence"),
                                f"the drawdowns come to {total} pence, above the ceiling of "
                                f"{w.funding.ceiling_pence}"))
    if sc.then is not None and sc.then.expect.watch_list is not None:
        out.append((("then", "expect", "watch_list"), "the watch list is checked on the first regime only"))
    return out


def _check_entry(base: tuple[Any, ...], reg: RegimeSpec, e: date, today: date) -> Problems:
    """The entry: its date, ratings, basis and the steps done before the simulation; the routine's skip list."""
    out: Problems = []
    if e > today:
        out.append((base + ("entry", "date"), f"{e.isoformat()} is in the future: the API refuses future "
                                              "entry dates (the simulation starts today)"))
    start_day = (today - e).days
    r = reg.entry.ratings
    if isinstance(r, str) and r not in RATING_PRESETS:
        out.append((base + ("entry", "ratings"), f"unknown preset {r!r}; presets are "
                                                 + ", ".join(RATING_PRESETS) + " (or give all six ratings)"))
    if reg.entry.basis == Kind.regulator_decision and not (reg.entry.regulator_reason or "").strip():
        out.append((base + ("entry", "regulator_reason"), "a placement by regulator decision needs a reason"))
    for i, cs in enumerate(reg.entry.completed_steps):
        if cs.kind not in CATALOGUE:
            out.append((base + ("entry", "completed_steps", i, "kind"), f"unknown step kind {cs.kind!r}"))
        if cs.day > start_day:
            out.append((base + ("entry", "completed_steps", i, "day"),
                        f"day {cs.day} is after the simulation starts (day {start_day}); script it as a step"))
    for k in reg.routine.skip:
        if k not in CATALOGUE and k not in BUDDY_ROUTINE:
            out.append((base + ("routine", "skip"), f"unknown step kind {k!r}"))
    for k in reg.routine.lead_days_by_kind:
        if k not in ROUTINE_KINDS and k not in BUDDY_ROUTINE:
            out.append((base + ("routine", "lead_days_by_kind", k), f"{k!r} is not a kind done as routine"))
    return out


def _check_steps(base: tuple[Any, ...], reg: RegimeSpec, e: date, start_day: int, out: Problems) -> int:
    """The scripted steps, in time order from the simulation's start; returns the last step's day."""
    last = start_day
    for i, st in enumerate(reg.steps):
        path = base + ("steps", i)
        if (st.day is None) == (st.date is None):
            out.append((path + ("day",), "give day (counted from entry) or date, not both or neither"))
            continue
        d = step_day(st, e)
        where = path + ("day" if st.day is not None else "date",)
        if d < start_day:
            out.append((where, f"day {d} is before the simulation starts (day {start_day}, today); "
                               "record it under entry.completed_steps instead"))
        if d < last:
            out.append((where, f"day {d} comes before the previous step's day {last}; list steps in time order"))
        last = max(last, d)
        if st.who not in ROLES:
            out.append((path + ("who",), f"{st.who!r} is not a role; roles are {', '.join(ROLES)}"))
        out += _check_step_action(path, st)
    return last


def _check_step_action(path: tuple[Any, ...], st: StepSpec) -> Problems:
    """What a scripted step does: an operation by one of its roles, or an action of the named step's kind by the
    role the catalogue gives it."""
    out: Problems = []
    if st.do in OPERATIONS:
        if st.who in ROLES and st.who not in OPERATIONS[st.do]:
            out.append((path + ("who",), f"{st.do} is done by {' or '.join(OPERATIONS[st.do])}, not {st.who}"))
        if st.do == "amend_deadline" and not st.step:
            out.append((path + ("step",), "amend_deadline needs the step whose deadline moves"))
        return out + [(path + ("payload",) + p, m) for p, m in _check_operation(st)]
    if not (st.do in STEP_ACTIONS or st.step):
        return [(path + ("do",), f"unknown action {st.do!r}; use a step action "
                                 f"({', '.join(STEP_ACTIONS)}) or one of {', '.join(OPERATIONS)}")]
    if not st.step:
        return [(path + ("step",), f"'{st.do}' is a decision: name the step it decides")]
    kind = kind_of(st.step)
    if kind is None:
        return out
    spec = CATALOGUE[kind]
    if st.do not in spec.actions:
        allowed = ", ".join(spec.actions) or "none (a CQC outcome completes it)"
        out.append((path + ("do",), f"'{st.do}' is not an action of {kind}; allowed: {allowed}"))
    if st.who in ROLES and st.who != spec.role and st.expect_status is None:
        out.append((path + ("who",), f"{kind} is for the {spec.role}, not the {st.who} "
                                     "(set expect_status: 403 to show a refusal)"))
    return out


# ----------------------------------------------------------------------------- the plan as a programme
class _Plan:
    """The action ids and themes a regime's plan has had, from its scripted versions (the routine plan when none is
    scripted), in time order: what later steps, plan_progress and expect.programme may name."""

    def __init__(self) -> None:
        from domain.steps import ROUTINE_PLAN

        self.ids: list[str] = []
        self.themes: list[str] = []
        self.named = False  # some scripted version gives its actions ids: the routine reports per action
        self.scripted = False
        self._take(ROUTINE_PLAN["actions"])

    def _take(self, actions: list[dict[str, Any]], named: bool = False) -> None:
        for n, a in enumerate(actions, 1):
            aid, theme = a.get("id") or f"A{n}", a.get("theme") or DEFAULT_THEME
            if aid not in self.ids:
                self.ids.append(aid)
            if theme not in self.themes:
                self.themes.append(theme)
            self.named |= named and bool(a.get("id"))

    def version(self, actions: list[dict[str, Any]]) -> None:
        if not self.scripted:
            self.ids, self.themes, self.scripted = [], [], True
        self._take(actions, named=True)

    def unknown(self, path: tuple[Any, ...], aid: Any) -> Problems:
        if aid in self.ids:
            return []
        some = ", ".join(self.ids[:8]) + (", ..." if len(self.ids) > 8 else "")
        return [(path, f"{aid!r} is not an action of the scenario's plan ({some})")]

    def unknown_theme(self, path: tuple[Any, ...], theme: Any) -> Problems:
        if theme in self.themes:
            return []
        return [(path, f"{theme!r} is not a theme of the scenario's plan ({', '.join(self.themes)})")]


def _check_programme(base: tuple[Any, ...], reg: RegimeSpec, e: date) -> Problems:
    """Plans scripted in the steps are valid improvement plans; plan changes, evidence, plan_progress and
    expect.programme name actions and themes the plan has."""
    out: Problems = []
    plan = _Plan()
    for i, st in enumerate(reg.steps):
        path = base + ("steps", i, "payload")
        p = resolve_dates(st.payload, e, e)  # 'today' stands for any day: only the shape is checked
        if st.do == "submit" and st.step and kind_of(st.step) in PLAN_KINDS:
            errs = _errors(path, ImprovementPlanPayload, p)
            out += errs
            if not errs:
                plan.version(p["actions"])
        elif st.do == "propose_plan_change":
            out += _check_plan_change(path, p, plan)
        elif st.do == "record_evidence":
            out += _check_evidence(path, p, plan)
        elif st.do == "request_drawdown":
            for j, x in enumerate(p["against"] if isinstance(p.get("against"), list) else []):
                if x not in plan.ids and x not in plan.themes:
                    out.append((path + ("against", j), f"{x!r} is not a theme or action of the scenario's plan "
                                                       f"(themes: {', '.join(plan.themes)})"))
        elif st.do == "record_director_time" and (st.day is None) != (st.date is None):
            out += _check_director_month(path, p, e, step_day(st, e))
    pp = reg.plan_progress
    if pp is not None:
        where = base + ("plan_progress",)
        if (pp.reports or pp.never_done) and not plan.named:
            out.append((where, "the routine reports per action on a plan whose actions carry ids: script the "
                               "improvement plan (a submit step) with an id for each action"))
        for j, r in enumerate(pp.reports):
            for k, aid in enumerate(r.actions or []):
                out += plan.unknown(where + ("reports", j, "actions", k), aid)
            if r.theme is not None:
                out += plan.unknown_theme(where + ("reports", j, "theme"), r.theme)
        for k, aid in enumerate(pp.never_done):
            out += plan.unknown(where + ("never_done", k), aid)
    x = reg.expect.programme
    if x is not None:
        where = base + ("expect", "programme")
        for key in ("flagged", "overdue"):
            for k, aid in enumerate(getattr(x, key) or []):
                out += plan.unknown(where + (key, k), aid)
        for theme in x.themes:
            out += plan.unknown_theme(where + ("themes", theme), theme)
    return out


def _check_plan_change(path: tuple[Any, ...], p: dict[str, Any], plan: _Plan) -> Problems:
    out: Problems = []
    fields = set(PlanAction.model_fields) - {"id"}
    for j, c in enumerate(p.get("change") or []):
        if not isinstance(c, dict) or "id" not in c:
            out.append((path + ("change", j), "a change names the action (id) and the fields it changes"))
            continue
        out += plan.unknown(path + ("change", j, "id"), c["id"])
        for k in c:
            if k != "id" and k not in fields:
                out.append((path + ("change", j, k), f"not a field of a plan action ({', '.join(sorted(fields))})"))
    added = []
    for j, a in enumerate(p.get("add") or []):
        errs = _errors(path + ("add", j), PlanAction, a)
        if not errs and not (isinstance(a, dict) and a.get("id")):
            errs = [(path + ("add", j, "id"), "an added action needs its id")]
        out += errs
        if not errs:
            added.append(a)
    for j, aid in enumerate(p.get("remove") or []):
        out += plan.unknown(path + ("remove", j), aid)
    if not (p.get("change") or p.get("add") or p.get("remove")):
        out.append((path, "a plan change changes, adds or removes actions: give change, add or remove"))
    for k in p:
        if k not in ("reason", "change", "add", "remove"):
            out.append((path + (k,), "unknown field (reason, change, add, remove)"))
    plan._take(added, named=True)
    return out


def _check_evidence(path: tuple[Any, ...], p: dict[str, Any], plan: _Plan) -> Problems:
    out: Problems = []
    for j, aid in enumerate(p.get("actions") or []):
        out += plan.unknown(path + ("actions", j), aid)
    for j, q in enumerate(p.get("key_questions") or []):
        if q not in KEY_QUESTIONS:
            out.append((path + ("key_questions", j), f"{q!r} is not a key question ({', '.join(KEY_QUESTIONS)})"))
    if ("url" in p) == ("document" in p):
        out.append((path, "give the document (document: {filename, media_type, content}) or where it lives (url)"))
    doc = p.get("document")
    if isinstance(doc, dict):
        for k in ("filename", "media_type"):
            if k not in doc:
                out.append((path + ("document", k), "required"))
        if ("content" in doc) == ("content_base64" in doc):
            out.append((path + ("document",), "give its text (content) or content_base64, one of them"))
    return out


# What each operation's payload must carry.
OPERATION_NEEDS: dict[str, tuple[str, ...]] = {
    "announce_reinspection": ("inspection_date",), "publish_inspection": ("reference", "ratings"),
    "withdraw_inspection": ("reference", "reason"), "close_regime": ("solution", "reason"),
    "send_draft_report": ("reference",),
    "record_enforcement": ("action", "detail"), "add_buddy": ("buddy",), "amend_deadline": ("reason",),
    "propose_plan_change": ("reason",), "record_evidence": ("title", "shows"),
    "request_drawdown": ("amount_pence", "against", "purpose"), "record_director_time": ("month", "days"),
}


def _check_operation(st: StepSpec) -> Problems:
    p = st.payload
    out: Problems = [((k,), "required") for k in OPERATION_NEEDS[st.do] if k not in p]
    if st.do == "publish_inspection":
        out += _check_inspection(p)
    if st.do == "add_buddy":
        out += _check_buddy(p)
    if st.do == "request_drawdown":
        out += _check_drawdown(p)
        if p.get("expect_refused") is True and st.expect_status not in (None, 422):
            out.append((("expect_refused",), f"a drawdown expected to be refused is refused with 422, not "
                                             f"{st.expect_status} (drop expect_status)"))
    if st.do == "record_director_time":
        out += _check_director_time(p)
    for k, v in p.items():
        if isinstance(v, str) and v.startswith("day") and not DAY_REF.match(v):
            out.append(((k,), f"{v!r}: write a relative day as 'day N'"))
    return out


def _pence(v: Any, positive: bool = True) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and (v > 0 if positive else v >= 0)


def _check_drawdown(p: dict[str, Any]) -> Problems:
    """request_drawdown: `amount_pence` (whole pence), `against` (themes or action ids), `purpose`, and for the
    simulator only `expect_refused`."""
    out: Problems = []
    if "amount_pence" in p and not _pence(p["amount_pence"]):
        out.append((("amount_pence",), "a whole number of pence, more than 0 (e.g. 12000000 for £120,000)"))
    a = p.get("against")
    if "against" in p and not (isinstance(a, list) and a and all(isinstance(x, str) and x for x in a)):
        out.append((("against",), "a list of the plan's themes or action ids, at least one"))
    if "purpose" in p and not (isinstance(p["purpose"], str) and p["purpose"].strip()):
        out.append((("purpose",), "what the money is for (text)"))
    if "expect_refused" in p and not isinstance(p["expect_refused"], bool):
        out.append((("expect_refused",), "true or false"))
    for k in p:
        if k not in ("amount_pence", "against", "purpose", *DRAWDOWN_SIM_KEYS):
            out.append(((k,), "unknown field (amount_pence, against, purpose, expect_refused)"))
    return out


def _check_director_time(p: dict[str, Any]) -> Problems:
    """record_director_time: `month` (N, the regime's N-th calendar month, or YYYY-MM), `days` (half days),
    `reason` (to correct a month recorded already)."""
    out: Problems = []
    m = p.get("month")
    if "month" in p and not ((isinstance(m, int) and not isinstance(m, bool) and 1 <= m <= MAX_MONTHS)
                             or (isinstance(m, str) and YEAR_MONTH.match(m))):
        out.append((("month",), f"{m!r}: the regime's N-th month (1 is the month of entry, up to {MAX_MONTHS}) "
                                "or a month as YYYY-MM"))
    d = p.get("days")
    if "days" in p and not (isinstance(d, int | float) and not isinstance(d, bool) and 0 <= d <= 31
                            and float(d * 2).is_integer()):
        out.append((("days",), f"{d!r}: days in the month, in half days from 0 to 31"))
    if "reason" in p and not (isinstance(p["reason"], str) and p["reason"].strip()):
        out.append((("reason",), "why the month is corrected (text)"))
    for k in p:
        if k not in ("month", "days", "reason"):
            out.append(((k,), "unknown field (month, days, reason)"))
    return out


def director_month(value: int | str, entry: date) -> str:
    """A record_director_time month as YYYY-MM: N is the regime's N-th calendar month (1: the month of entry)."""
    if isinstance(value, int):
        return f"{add_months(entry.replace(day=1), value - 1):%Y-%m}"
    return value


def _check_director_month(path: tuple[Any, ...], p: dict[str, Any], e: date, day: int) -> Problems:
    """The month is one of the regime's, begun by the step's day (the API refuses a month to come)."""
    m = p.get("month")
    if not ((isinstance(m, int) and not isinstance(m, bool) and 1 <= m <= MAX_MONTHS)
            or (isinstance(m, str) and YEAR_MONTH.match(m))):
        return []  # reported by _check_director_time
    ym = director_month(m, e)
    when = e + timedelta(days=day)
    if ym < f"{e:%Y-%m}":
        return [(path + ("month",), f"{ym} is before the month of entry ({e:%Y-%m})")]
    if ym > f"{when:%Y-%m}":
        return [(path + ("month",), f"{ym} has not begun on day {day} ({when.isoformat()}): record it in or after "
                                    "that month")]
    return []


def _errors(prefix: tuple[Any, ...], model: type[BaseModel], value: Any) -> Problems:
    try:
        model.model_validate(value)
    except ValidationError as e:
        return [(prefix + tuple(x["loc"]), x["msg"]) for x in e.errors()]
    return []


def _check_inspection(p: dict[str, Any]) -> Problems:
    out: Problems = []
    r = p.get("ratings")
    if isinstance(r, str) and r not in RATING_PRESETS:
        out.append((("ratings",), f"unknown preset {r!r}; presets are {', '.join(RATING_PRESETS)}"))
    elif isinstance(r, dict):
        out += _errors(("ratings",), KeyQuestionRatings, r)
    for i, c in enumerate(p.get("core_services") or []):
        out += _errors(("core_services", i), CoreServiceRating, c)
    return out


def _check_buddy(p: dict[str, Any]) -> Problems:
    from domain.ledger import AgreementInPrinciple, SupportPlan

    out: Problems = []
    for key, model in (("support_plan", SupportPlan), ("agreement_in_principle", AgreementInPrinciple)):
        if p.get(key) is not None:
            out += _errors((key,), model, p[key])
    q = p.get("quarterly_pence")
    if q is not None and not (isinstance(q, int) and not isinstance(q, bool) and q >= 0):
        out.append((("quarterly_pence",), "a whole number of pence, 0 or more"))
    return out


def ratings(value: KeyQuestionRatings | str | dict | None) -> dict[str, str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return dict(RATING_PRESETS[value])
    if isinstance(value, KeyQuestionRatings):
        return value.model_dump(mode="json")
    return dict(value)


def resolve_dates(value: Any, entry: date, today: date) -> Any:
    """'day N' -> the ISO date N days after entry; 'today' -> the simulated date."""
    if isinstance(value, str):
        m = DAY_REF.match(value)
        if m:
            return (entry + timedelta(days=int(m.group(1)))).isoformat()
        if value == "today":
            return today.isoformat()
        return value
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: resolve_dates(v, entry, today) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_dates(v, entry, today) for v in value]
    return value
