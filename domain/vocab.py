"""The regime's fixed vocabularies, each written once: phases, roles, kinds of refusal and audit events.

Each is a `StrEnum` whose values are exactly the strings already stored in workflow histories, in
PostgreSQL (`regimes.phase`, `audit_log.event`, `audit_log.role`, `tasks.role`) and in tokens (`roles`):
a member *is* its string (`Phase.exited == "exited"`, `f"{Role.trust}" == "trust"`), pydantic writes it as
the plain string, and a field typed with the enum accepts the stored strings, so histories replay and
rows read unchanged. Code compares and builds with the members; nothing else spells the strings.
"""

from __future__ import annotations

from enum import StrEnum


class Phase(StrEnum):
    """Where a regime stands (RegimeState.phase, the `RegimePhase` search attribute, `regimes.phase`)."""

    in_special_measures = "in_special_measures"
    extended = "extended"  # the regulator extended the regime after CQC recommended it remain
    long_term_solution = "long_term_solution"  # the Chief Inspector wrote to the Secretary of State
    # A combined quality-and-finance regime whose trust has exited quality special measures and is still in
    # finance special measures (seed 002: it stays in segment 4), issue 16 item 3.
    in_finance_special_measures = "in_finance_special_measures"
    exited = "exited"
    closed_structural = "closed_structural"  # merger, acquisition, service reconfiguration...


ACTIVE_PHASES: tuple[Phase, ...] = (Phase.in_special_measures, Phase.extended, Phase.long_term_solution,
                                    Phase.in_finance_special_measures)


class Role(StrEnum):
    """The parties who act (a token's `roles`, Actor.role, Step.role) and the service's own identity.

    `system` is the service itself (domain.models.SYSTEM): never a token's role (`PARTY_ROLES`).
    """

    trust = "trust"
    improvement_director = "improvement_director"
    regulator = "regulator"
    commissioner = "commissioner"
    buddy = "buddy"
    cqc = "cqc"
    operations = "operations"
    admin = "admin"
    system = "system"


# The roles a person may hold (in a token, `regime token --role`): every role but the service's own.
PARTY_ROLES: tuple[Role, ...] = tuple(r for r in Role if r is not Role.system)


class RejectionKind(StrEnum):
    """Why a message or decision is refused: the `type` of the workflow's non-retryable ApplicationError
    (workflows/engine.py `reject`, domain.steps.Refused, domain.ledger.LedgerError). The API answers each
    with its HTTP status (api.errors.REJECTION_STATUS) and a problem type in kebab case
    (`RuleBroken` -> `.../problems/rule-broken`).

    `PaymentConflict` is an activity's refusal (activities/payments.py: a payment row that differs from the
    one already written); the partnership workflow records it and it never reaches a caller.
    """

    wrong_role = "WrongRole"
    separation_of_duties = "SeparationOfDuties"
    not_assignee = "NotAssignee"
    step_not_open = "StepNotOpen"
    conflict = "Conflict"
    unknown_step = "UnknownStep"
    unknown_action = "UnknownAction"
    reason_required = "ReasonRequired"
    invalid_payload = "InvalidPayload"
    rule_broken = "RuleBroken"
    duplicate = "Duplicate"
    payment_conflict = "PaymentConflict"

    @property
    def problem_type(self) -> str:
        """The kebab-case problem type the API answers with (`RuleBroken` -> `rule-broken`)."""
        return kebab_case(self.value)


class AuditEvent(StrEnum):
    """The fixed audit event names (`audit_log.event`).

    Events named after a step kind are not here: they stay dynamic, built from the kind's enum member
    (domain.steps.Kind, domain.ledger.BuddyKind) by `kind_event`, because a kind's name is written only in its
    catalogue (tests/test_catalogue.py). They are a decision's event, `{kind}.{action}` (`decision_event`:
    the plan review's "agree", and "record" when the workflow records a meeting or a step on a person's
    behalf), and what follows a decision on a kind, `{kind}.{what}`: the improvement plan's and a quarter's
    forecast's "signed_off" once every party has signed (domain/steps.py, domain/ledger.py).
    """

    # the regime
    regime_entered = "regime_entered"
    phase_changed = "phase_changed"
    regime_closed = "regime_closed"
    delegation_recorded = "delegation_recorded"
    enforcement_recorded = "enforcement_recorded"
    draft_report_sent = "draft_report_sent"
    state_over_bound = "state_over_bound"
    # steps and their deadlines
    step_opened = "step_opened"
    step_imported = "step_imported"
    deadline_amended = "deadline_amended"
    escalation = "escalation"
    # inspections
    reinspection_announced = "reinspection_announced"
    inspection_recorded = "inspection_recorded"
    inspection_corrected = "inspection_corrected"
    inspection_duplicate_ignored = "inspection_duplicate_ignored"
    inspection_older_ignored = "inspection_older_ignored"
    inspection_withdrawn = "inspection_withdrawn"
    inspection_withdrawal_ignored = "inspection_withdrawal_ignored"
    # buddy partnerships
    buddy_added = "buddy_added"
    buddy_start_refused = "buddy_start_refused"
    partnership_started = "partnership_started"
    partnership_ending = "partnership_ending"
    partnership_continues = "partnership_continues"
    partnership_ended = "partnership_ended"
    formal_agreement_signed = "formal_agreement.signed"
    support_plan_agreed = "support_plan.agreed"
    support_plan_change_proposed = "support_plan.change_proposed"
    support_plan_change_rejected = "support_plan.change_rejected"
    support_plan_changed = "support_plan.changed"
    buddy_payment_recorded = "buddy_payment_recorded"
    buddy_payment_refused = "buddy_payment_refused"
    buddy_quarter_cut_short = "buddy_quarter_cut_short"
    # the improvement plan as a programme (issue 15)
    plan_version_agreed = "plan_version_agreed"
    plan_change_proposed = "plan_change_proposed"
    plan_action_off_track = "plan_action_off_track"
    evidence_recorded = "evidence_recorded"
    readiness_at_risk = "readiness_at_risk"
    # the cost of the interventions (issue 16)
    director_time_recorded = "director_time_recorded"
    funding_agreed = "funding_agreed"
    # the challenged-providers watch list (issue 16 item 4)
    watch_listed = "watch_listed"
    watch_list_ended = "watch_list_ended"
    drawdown_requested = "drawdown_requested"
    drawdown_paid = "drawdown_paid"
    drawdown_payment_refused = "drawdown_payment_refused"


def kebab_case(name: str) -> str:
    """`RuleBroken` -> `rule-broken`: a rejection kind as a problem type."""
    return "".join("-" + c.lower() if c.isupper() else c for c in name).lstrip("-")


def kind_event(kind: str, what: str) -> str:
    """An audit event named after a step kind (dynamic, not an AuditEvent): `{kind}.{what}`."""
    return f"{kind}.{what}"


def decision_event(kind: str, action: str) -> str:
    """The audit event of a decision on a step of `kind`: `{kind}.{action}`."""
    return kind_event(kind, action)
