"""Scenario files for `regime simulate`: the format (see docs/scenarios.md), loading and validation.

A scenario is YAML or JSON. Every error names the file, the line and the field, e.g.
`scenarios/x.yaml:14: steps[2].who: 'trustee' is not a role; roles are trust, improvement_director, ...`.
"""

from __future__ import annotations

import datetime as dt
import re
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from domain.models import ROLES
from domain.ratings import CoreServiceRating, KeyQuestionRatings
from domain.steps import CATALOGUE

# Steps someone does as a matter of course in a diligent regime, and how.
ROUTINE_ACTIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "improvement_plan": ("submit", {"actions": [
        {"category": "must_do", "description": "Staff the emergency department to safe levels",
         "owner": "Chief Nurse", "metric": "registered nurse fill rate at least 95%"},
        {"category": "should_do", "description": "Audit sepsis screening monthly",
         "owner": "Medical Director", "metric": "screening within 1 hour at least 90%"}]}),
    "revised_action_plan": ("submit", {"actions": [
        {"category": "must_do", "description": "Embed the new leadership team's governance",
         "owner": "Chief Executive", "metric": "board assurance framework reviewed monthly"}]}),
    "plan_review": ("agree", {}),
    "plan_signoff_regulator": ("sign_off", {}),
    "plan_signoff_commissioner": ("sign_off", {}),
    "appoint_improvement_director": ("record", {"appointed_on": "today", "improvement_director_user_id": "id-1"}),
    "board_to_board": ("record", {"meeting_date": "today"}),
    "board_to_board_pre_inspection": ("record", {"meeting_date": "today"}),
    "board_to_board_post_exit": ("record", {"meeting_date": "today"}),
    "letter_to_chair": ("record", {"sent_on": "today"}),
    "capability_review": ("record", {"completed_on": "today"}),
    "monthly_return": ("submit", {"summary": "progress against the improvement plan"}),
    "monthly_return_cosign": ("cosign", {}),
    "oversight_meeting": ("record", {"meeting_date": "today"}),
    "delivery_meeting": ("record", {"meeting_date": "today", "on_trajectory": True}),
}

# Buddy partnership steps done as a matter of course (see tools/simulate/routine.py for their payloads).
BUDDY_ROUTINE = ("buddy_aip_regulator", "buddy_aip_buddy", "buddy_sign_regulator", "buddy_sign_trust",
                 "buddy_sign_buddy", "buddy_support_plan", "buddy_plan_agree_regulator", "buddy_plan_agree_trust",
                 "buddy_forecast", "buddy_confirm_id", "buddy_confirm_trust", "buddy_confirm_buddy",
                 "buddy_authorise")
# Keys of an add_buddy payload that tell the simulator how the partnership behaves; not sent to the API.
BUDDY_SIM_KEYS = ("support_plan", "quarterly_pence")

# Verbs that are not decisions on a step: each maps to its own API route.
OPERATIONS: dict[str, tuple[str, ...]] = {
    "announce_reinspection": ("cqc", "regulator"),
    "publish_inspection": ("cqc",),
    "withdraw_inspection": ("cqc",),
    "amend_deadline": ("regulator",),
    "close_regime": ("regulator",),
    "record_enforcement": ("cqc",),
    "add_buddy": ("regulator",),
}
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
    basis: Literal["cqc_recommendation", "regulator_decision"] = "cqc_recommendation"
    ratings: KeyQuestionRatings | str | None = "entry_inadequate"
    regulator_reason: str | None = None
    completed_steps: list[CompletedStepSpec] = Field(default_factory=list)
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


class RegimeSpec(_Strict):
    entry: EntrySpec = Field(default_factory=EntrySpec)
    routine: RoutineSpec = Field(default_factory=RoutineSpec)
    steps: list[StepSpec] = Field(default_factory=list)
    until_day: int | None = Field(None, ge=0, le=MAX_DAYS)
    expect: ExpectSpec = Field(default_factory=ExpectSpec)


class Scenario(RegimeSpec):
    name: str = Field(min_length=1, max_length=200)
    description: str | None = None
    trust: TrustSpec
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


def check(sc: Scenario, today: date) -> list[tuple[tuple[Any, ...], str]]:
    """Rules a schema cannot express. Returns (path, message) pairs."""
    out: list[tuple[tuple[Any, ...], str]] = []
    regimes: list[tuple[tuple[Any, ...], RegimeSpec]] = [((), sc)]
    if sc.then is not None:
        regimes.append((("then",), sc.then))
    entries = []
    for base, reg in regimes:
        e = entry_date(reg.entry, today)
        entries.append(e)
        if e > today:
            out.append((base + ("entry", "date"), f"{e.isoformat()} is in the future: the API refuses future "
                                                  "entry dates (the simulation starts today)"))
        start_day = (today - e).days
        r = reg.entry.ratings
        if isinstance(r, str) and r not in RATING_PRESETS:
            out.append((base + ("entry", "ratings"), f"unknown preset {r!r}; presets are "
                                                     + ", ".join(RATING_PRESETS) + " (or give all six ratings)"))
        if reg.entry.basis == "regulator_decision" and not (reg.entry.regulator_reason or "").strip():
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
        last = start_day
        for i, st in enumerate(reg.steps):
            path = base + ("steps", i)
            if (st.day is None) == (st.date is None):
                out.append((path + ("day",), "give day (counted from entry) or date, not both or neither"))
                continue
            d = step_day(st, e)
            if d < start_day:
                out.append((path + ("day" if st.day is not None else "date",),
                            f"day {d} is before the simulation starts (day {start_day}, today); "
                            "record it under entry.completed_steps instead"))
            if d < last:
                out.append((path + ("day" if st.day is not None else "date",),
                            f"day {d} comes before the previous step's day {last}; list steps in time order"))
            last = max(last, d)
            if st.who not in ROLES:
                out.append((path + ("who",), f"{st.who!r} is not a role; roles are {', '.join(ROLES)}"))
            if st.do in OPERATIONS:
                if st.who in ROLES and st.who not in OPERATIONS[st.do]:
                    out.append((path + ("who",), f"{st.do} is done by {' or '.join(OPERATIONS[st.do])}, "
                                                 f"not {st.who}"))
                if st.do == "amend_deadline" and not st.step:
                    out.append((path + ("step",), "amend_deadline needs the step whose deadline moves"))
                out += [(path + ("payload",) + p, m) for p, m in _check_operation(st)]
            elif st.do in STEP_ACTIONS or st.step:
                if not st.step:
                    out.append((path + ("step",), f"'{st.do}' is a decision: name the step it decides"))
                    continue
                kind = kind_of(st.step)
                if kind is not None and st.do not in CATALOGUE[kind].actions:
                    allowed = ", ".join(CATALOGUE[kind].actions) or "none (a CQC outcome completes it)"
                    out.append((path + ("do",), f"'{st.do}' is not an action of {kind}; allowed: {allowed}"))
                if kind is not None and st.who in ROLES and st.who != CATALOGUE[kind].role \
                        and st.expect_status is None:
                    out.append((path + ("who",), f"{kind} is for the {CATALOGUE[kind].role}, not the {st.who} "
                                                 "(set expect_status: 403 to show a refusal)"))
            else:
                out.append((path + ("do",), f"unknown action {st.do!r}; use a step action "
                                            f"({', '.join(STEP_ACTIONS)}) or one of {', '.join(OPERATIONS)}"))
        if reg.until_day is not None and reg.until_day < last:
            out.append((base + ("until_day",), f"until_day {reg.until_day} is before the last step (day {last})"))
    if len(entries) == 2 and entries[0] == entries[1]:
        out.append((("then", "entry"), "the later regime needs another entry date than the first (a regime's id is "
                                       "its trust and entry date): set then.entry.days_ago: 1"))
    return out


def _check_operation(st: StepSpec) -> list[tuple[tuple[Any, ...], str]]:
    p = st.payload
    need = {"announce_reinspection": ["inspection_date"], "publish_inspection": ["reference", "ratings"],
            "withdraw_inspection": ["reference", "reason"], "close_regime": ["solution", "reason"],
            "record_enforcement": ["action", "detail"], "add_buddy": ["buddy"],
            "amend_deadline": ["reason"]}[st.do]
    out: list[tuple[tuple[Any, ...], str]] = [((k,), "required") for k in need if k not in p]
    if st.do == "publish_inspection":
        r = p.get("ratings")
        if isinstance(r, str) and r not in RATING_PRESETS:
            out.append((("ratings",), f"unknown preset {r!r}; presets are {', '.join(RATING_PRESETS)}"))
        elif isinstance(r, dict):
            try:
                KeyQuestionRatings.model_validate(r)
            except ValidationError as e:
                out += [(("ratings",) + tuple(x["loc"]), x["msg"]) for x in e.errors()]
        for i, c in enumerate(p.get("core_services") or []):
            try:
                CoreServiceRating.model_validate(c)
            except ValidationError as e:
                out += [(("core_services", i) + tuple(x["loc"]), x["msg"]) for x in e.errors()]
    if st.do == "add_buddy":
        from domain.ledger import AgreementInPrinciple, SupportPlan

        for key, model in (("support_plan", SupportPlan), ("agreement_in_principle", AgreementInPrinciple)):
            if p.get(key) is not None:
                try:
                    model.model_validate(p[key])
                except ValidationError as e:
                    out += [((key,) + tuple(x["loc"]), x["msg"]) for x in e.errors()]
        q = p.get("quarterly_pence")
        if q is not None and not (isinstance(q, int) and not isinstance(q, bool) and q >= 0):
            out.append((("quarterly_pence",), "a whole number of pence, 0 or more"))
    for k, v in p.items():
        if isinstance(v, str) and v.startswith("day") and not DAY_REF.match(v):
            out.append(((k,), f"{v!r}: write a relative day as 'day N'"))
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
