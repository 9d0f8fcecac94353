"""The fixed vocabularies (domain/vocab.py) are complete and spell exactly what is already stored.

Their values are in workflow histories, PostgreSQL rows and tokens: a renamed value would break replay and
reads, so the values are written out here once more. The code is scanned for literal kinds of refusal and
audit events the enums do not know, and the golden histories for phases, roles and events.
"""

from __future__ import annotations

import ast
import base64
import json
import re
import warnings
from pathlib import Path

from domain.ledger import BUDDY_STEPS, BuddyKind
from domain.models import ROLES, SYSTEM, Action, Actor, RegimeState, Step, StepView
from domain.steps import CATALOGUE, Kind
from domain.vocab import (
    ACTIVE_PHASES,
    PARTY_ROLES,
    AuditEvent,
    Phase,
    RejectionKind,
    Role,
    decision_event,
    kind_event,
)

ROOT = Path(__file__).resolve().parents[1]
HISTORIES = ROOT / "tests" / "histories"
SOURCES = [p for d in ("workflows", "domain", "activities", "api") for p in (ROOT / d).rglob("*.py")]


def test_values_are_the_stored_strings():
    assert [p.value for p in Phase] == ["in_special_measures", "extended", "long_term_solution",
                                        "in_finance_special_measures", "exited", "closed_structural"]
    assert [r.value for r in Role] == ["trust", "improvement_director", "regulator", "commissioner", "buddy", "cqc",
                                       "operations", "admin", "system"]
    assert ROLES == PARTY_ROLES and Role.system not in ROLES and len(ROLES) == len(Role) - 1
    assert {k.value for k in RejectionKind} == {
        "WrongRole", "SeparationOfDuties", "NotAssignee", "StepNotOpen", "Conflict", "UnknownStep", "UnknownAction",
        "ReasonRequired", "InvalidPayload", "RuleBroken", "Duplicate", "PaymentConflict"}
    assert RejectionKind.rule_broken.problem_type == "rule-broken"
    assert RejectionKind.separation_of_duties.problem_type == "separation-of-duties"
    assert AuditEvent.regime_entered == "regime_entered" and AuditEvent.support_plan_agreed == "support_plan.agreed"
    assert decision_event(Kind.plan_review, "agree") == "plan_review.agree"
    assert kind_event(Kind.improvement_plan, "signed_off") == "improvement_plan.signed_off"
    assert ACTIVE_PHASES == (Phase.in_special_measures, Phase.extended, Phase.long_term_solution,
                             Phase.in_finance_special_measures)
    # A member is its string wherever a string is expected.
    assert f"{Phase.exited}" == "exited" and str(Role.trust) == "trust" and json.dumps(Role.cqc) == '"cqc"'


def test_models_take_the_stored_strings_and_write_them_back_plain():
    state = RegimeState.model_validate_json(json.dumps({
        "placement": {"regime_id": "regime-RXX-2026-01-05", "entry_date": "2026-01-05", "basis": "cqc_recommendation",
                      "trust": {"ods_code": "RXX", "name": "X"}, "ladder": [],
                      "placed_by": {"user_id": "reg-1", "role": "regulator"}},
        "phase": "long_term_solution"}))
    assert state.phase is Phase.long_term_solution and state.placement.placed_by.role is Role.regulator
    dumped = json.loads(state.model_dump_json())
    assert dumped["phase"] == "long_term_solution" and dumped["placement"]["placed_by"]["role"] == "regulator"
    assert RegimeState.model_validate({**dumped}).model_dump(mode="json") == dumped
    assert RegimeState.model_fields["phase"].default is Phase.in_special_measures
    with warnings.catch_warnings():  # the workflow assigns the phase directly, a member or a string
        warnings.simplefilter("error")
        for phase in (Phase.exited, "extended"):
            state.phase = phase
            assert json.loads(state.model_dump_json())["phase"] == phase and state.model_dump()["phase"] == phase
    assert SYSTEM.role is Role.system and SYSTEM.model_dump(mode="json")["role"] == "system"
    step = Step.model_validate({"id": "s", "kind": "plan_review", "title": "t", "role": "improvement_director",
                                "group": "g", "due": "2026-02-02", "opened_at": "2026-01-05T09:00:00Z",
                                "actions": [{"action": "agree", "by": "id-1", "role": "improvement_director",
                                             "at": "2026-01-06T09:00:00Z"}]})
    assert step.role is Role.improvement_director and step.actions[0].role is Role.improvement_director
    assert StepView(step=step, phase="extended").model_dump(mode="json")["phase"] == "extended"
    for bad in ({"user_id": "u", "role": "nobody"}, {"user_id": "u", "role": "Regulator"}):
        try:
            Actor.model_validate(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad} accepted")
    assert Action(action="a", by="b", role="trust", at="2026-01-05T00:00:00Z").role == "trust"


def _calls(name: str) -> list[tuple[Path, int, ast.Call]]:
    out = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call):
                f = node.func
                called = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
                if called == name:
                    out.append((path.relative_to(ROOT), node.lineno, node))
    return out


def _literal(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def test_every_literal_kind_of_refusal_is_a_rejection_kind():
    found: dict[str, list[str]] = {}
    for name in ("reject", "LedgerError", "Refused"):
        for path, line, call in _calls(name):
            kind = _literal(call.args[0]) if call.args else None
            if kind is not None:
                found.setdefault(kind, []).append(f"{path}:{line}")
    for path, line, call in _calls("ApplicationError"):
        kind = next((_literal(k.value) for k in call.keywords if k.arg == "type"), None)
        if kind is not None:
            found.setdefault(kind, []).append(f"{path}:{line}")
    assert found, "the scan found no refusals at all: has `reject` been renamed?"
    unknown = {k: v for k, v in found.items() if k not in {r.value for r in RejectionKind}}
    assert not unknown, f"kinds of refusal missing from domain.vocab.RejectionKind: {unknown}"


def test_every_kind_of_refusal_has_its_http_status():
    from api.errors import REJECTION_STATUS, rejection_problem

    assert set(REJECTION_STATUS) == set(RejectionKind) - {RejectionKind.payment_conflict}
    p = rejection_problem("SeparationOfDuties", "no", step_id="s")
    assert (p.status, p.kind, p.detail, p.extra) == (403, "separation-of-duties", "no", {"step_id": "s"})
    assert (rejection_problem("Unheard", "x").status, rejection_problem(None, "x").kind) == (422, "rejected")


DECISION_EVENTS = {decision_event(kind, action) for cat in (CATALOGUE, BUDDY_STEPS) for kind, sk in cat.items()
                   for action in sk.actions}
KINDS = {k.value for k in (*Kind, *BuddyKind)}


def named_after_a_kind(event: str) -> bool:
    """An event built by kind_event: a step kind's name, a dot, and what happened."""
    kind, dot, what = event.partition(".")
    return bool(dot and what) and kind in KINDS


def test_every_literal_audit_event_is_an_audit_event_or_named_after_a_kind():
    found: dict[str, list[str]] = {}
    named: set[str] = set()  # AuditEvent members the calls name
    for path, line, call in _calls("audit"):
        arg = call.args[0] if call.args else None
        for node in [arg.body, arg.orelse] if isinstance(arg, ast.IfExp) else [arg]:  # "a" if ... else "b"
            if _literal(node) is not None:
                found.setdefault(_literal(node), []).append(f"{path}:{line}")
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "AuditEvent":
                named.add(AuditEvent[node.attr].value)
    assert {"regime_entered", "escalation"} <= named | set(found), "the scan no longer finds the audit calls"
    events = {e.value for e in AuditEvent}
    unknown = {e: v for e, v in found.items() if e not in events and not named_after_a_kind(e)}
    assert not unknown, f"audit events missing from domain.vocab.AuditEvent: {unknown}"
    assert not [e for e in events if named_after_a_kind(e) or e in KINDS], \
        "a fixed event must not be named after a step kind (build those with kind_event)"


def _payload_strings(node) -> list[str]:
    if isinstance(node, dict):
        out = []
        if isinstance(node.get("data"), str) and "metadata" in node:
            try:
                out.append(base64.b64decode(node["data"]).decode())
            except (ValueError, UnicodeDecodeError):
                pass
        for v in node.values():
            out += _payload_strings(v)
        return out
    if isinstance(node, list):
        return [s for v in node for s in _payload_strings(v)]
    return []


def test_golden_histories_speak_the_vocabularies():
    seen: dict[str, set[str]] = {"phase": set(), "role": set(), "event": set()}
    for f in sorted(HISTORIES.glob("*.json")):
        if f.name == "manifest.json":
            continue
        for text in _payload_strings(json.loads(f.read_text())):
            for key in seen:
                seen[key] |= set(re.findall(rf'"{key}":\s*"([^"]*)"', text))
    assert seen["phase"] and seen["role"] and seen["event"], "no payloads decoded from tests/histories"
    assert seen["phase"] <= {p.value for p in Phase}
    assert seen["role"] <= {r.value for r in Role}
    assert seen["event"] & DECISION_EVENTS
    unknown = {e for e in seen["event"] - {e.value for e in AuditEvent} if not named_after_a_kind(e)}
    assert not unknown, f"events in golden histories neither an AuditEvent nor named after a kind: {unknown}"
