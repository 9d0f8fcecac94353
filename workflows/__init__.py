"""Temporal workflow definitions. Deterministic: no clock, randomness, I/O or environment reads."""


def _all() -> list:
    from workflows.buddy import BuddyPartnershipWorkflow
    from workflows.regime import RegimeWorkflow

    return [RegimeWorkflow, BuddyPartnershipWorkflow]


WORKFLOWS = _all()
