"""Temporal workflow definitions. Deterministic: no clock, randomness, I/O or environment reads.

`WORKFLOWS` (what a worker registers) is resolved on first use, so that importing `workflows.common` (the
messages the activities share) does not import the workflows, which call those activities by reference.
"""


def __getattr__(name: str) -> list:
    if name == "WORKFLOWS":
        from workflows.buddy import BuddyPartnershipWorkflow
        from workflows.regime import RegimeWorkflow
        from workflows.watchlist import WatchListWorkflow

        return [RegimeWorkflow, BuddyPartnershipWorkflow, WatchListWorkflow]
    raise AttributeError(f"module 'workflows' has no attribute {name!r}")
