"""The raw Temporal baseline: minimal workflows doing the same engine work as the project, and nothing else.

- `RawUpdateWorkflow`: one update with a validator that answers at once (the bare `execute_update`
  round trip the approval API is compared with).
- `RawLifecycleWorkflow`: a given number of timers spread over a virtual span, an update handler, and one
  no-op activity after every wake (timer or update), the shape of the regime's loop (one effects batch
  per wake) without its state, its PostgreSQL writes or its API.

Kept out of any script's `__main__` so the workflow sandbox accepts them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.exceptions import ApplicationError

RAW_NOOP = "raw_noop"


@dataclass
class RawAct:
    step: str
    reject: bool = False


@dataclass
class RawPlan:
    timers: int
    span_seconds: float
    activity_per_wake: bool = True


@activity.defn(name=RAW_NOOP)
async def raw_noop(n: int) -> int:
    return n


@workflow.defn
class RawUpdateWorkflow:
    def __init__(self) -> None:
        self.n = 0
        self.done = False

    @workflow.run
    async def run(self) -> int:
        await workflow.wait_condition(lambda: self.done)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.n

    @workflow.update
    def act(self, a: RawAct) -> dict:
        self.n += 1
        return {"n": self.n, "step": a.step}

    @act.validator
    def _validate(self, a: RawAct) -> None:
        if a.reject:
            raise ApplicationError("refused", type="WrongRole", non_retryable=True)

    @workflow.signal
    def finish(self) -> None:
        self.done = True

    @workflow.query
    def get(self) -> dict:
        return {"n": self.n, "done": self.done}


@workflow.defn
class RawLifecycleWorkflow:
    def __init__(self) -> None:
        self.wake = False
        self.pending = 0
        self.done = False
        self.updates = 0

    @workflow.run
    async def run(self, plan: RawPlan) -> dict:
        start = workflow.now()
        step = timedelta(seconds=plan.span_seconds / max(plan.timers, 1))
        instants = [start + step * (i + 1) for i in range(plan.timers)]
        fired = activities = 0
        while True:
            while self.pending > 0 and plan.activity_per_wake:
                self.pending -= 1
                activities += 1
                await workflow.execute_activity(RAW_NOOP, activities, start_to_close_timeout=timedelta(seconds=30))
            if self.done:
                break
            self.wake = False
            timeout = None
            if fired < len(instants):
                timeout = max(instants[fired] - workflow.now(), timedelta(seconds=1))
            try:
                await workflow.wait_condition(lambda: self.wake or self.done, timeout=timeout)
            except TimeoutError:
                fired += 1
                self.pending += 1
        await workflow.wait_condition(workflow.all_handlers_finished)
        return {"fired": fired, "updates": self.updates, "activities": activities}

    @workflow.update
    def act(self, a: RawAct) -> dict:
        self.updates += 1
        self.pending += 1
        self.wake = True
        return {"n": self.updates, "step": a.step}

    @act.validator
    def _validate(self, a: RawAct) -> None:
        if a.reject:
            raise ApplicationError("refused", type="WrongRole", non_retryable=True)

    @workflow.signal
    def finish(self) -> None:
        self.done = True


RAW_WORKFLOWS = [RawUpdateWorkflow, RawLifecycleWorkflow]
RAW_ACTIVITIES = [raw_noop]
