"""Hosting buddy partnerships: what a regime and a watch-list entry both do (issue 16 item 4: a trust on the list
can receive buddying with the same steps, deadlines and payments), written once.

A host keeps a `BuddySummary` per partnership (its state's `buddies`), starts each partnership as a child
workflow (`workflows/buddy.py`) from its flush, tells it when it ends, and takes its `buddy_changed` reports. The
host says how a partnership starts (`_buddy_start`): the regime's placement, ladder and policy, or the entry's,
confidential.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from temporalio import workflow
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from domain.ledger import AgreementInPrinciple, RunOn
    from domain.models import SYSTEM, BuddySummary
    from domain.vocab import AuditEvent, RejectionKind, Role
    from workflows.common import BuddyRequest, BuddyStart, EndBuddy, StartBuddy, buddy_workflow_id
    from workflows.engine import errors, reject
from workflows.buddy import BuddyPartnershipWorkflow

# Partnerships a host may hold over its life, ended ones included (bounded state; a regime has had at most a
# handful: one per buddy trust and service).
MAX_PARTNERSHIPS = 20


class BuddyHost:
    """Mixin for a StepEngine workflow whose state has `buddies: dict[str, BuddySummary]`."""

    s: Any

    # ---------------------------------------------------------------- hooks
    def _host_id(self) -> str:
        """The regime's or the entry's id: the partnership ids start with it."""
        raise NotImplementedError

    def _buddy_start(self, req: BuddyRequest) -> BuddyStart:
        raise NotImplementedError

    # ---------------------------------------------------------------- rules
    def check_new_buddy(self, req: BuddyRequest, trust_ods: str) -> str:
        """The rules for a new partnership (the regulator's; not one that is running; not the trust itself);
        returns its id."""
        if req.actor.role != Role.regulator:
            raise reject(RejectionKind.wrong_role, "the regulator agrees buddy arrangements")
        pid = buddy_workflow_id(self._host_id(), req.buddy.ods_code, req.scope)
        buddies: dict[str, BuddySummary] = self.s.buddies
        if pid in buddies and not buddies[pid].ended:
            raise reject(RejectionKind.conflict, f"{pid} already exists")
        if pid not in buddies and len(buddies) >= MAX_PARTNERSHIPS:
            raise reject(RejectionKind.rule_broken, f"at most {MAX_PARTNERSHIPS} partnerships over the life of "
                                                    f"{self._host_id()}")
        if req.buddy.ods_code == trust_ods:
            raise reject(RejectionKind.rule_broken, "a trust cannot be its own buddy")
        if req.agreement_in_principle is not None:
            try:
                AgreementInPrinciple.model_validate(req.agreement_in_principle)
            except ValidationError as e:
                raise reject(RejectionKind.invalid_payload, "agreement_in_principle: " + errors(e)) from None
        return pid

    def begin_partnership(self, req: BuddyRequest) -> BuddySummary:
        """Record the new partnership and ask the flush to start it."""
        pid = buddy_workflow_id(self._host_id(), req.buddy.ods_code, req.scope)
        summary = BuddySummary(partnership_id=pid, buddy_ods=req.buddy.ods_code, buddy_name=req.buddy.name,
                               scope=req.scope, stage="starting")
        self.s.buddies[pid] = summary
        self.audit(AuditEvent.buddy_added, req.actor, reason=f"{req.buddy.name} ({req.scope})",
                   detail={"partnership_id": pid})
        self.emit(StartBuddy(partnership_id=pid, request=req.model_dump(mode="json")))
        return summary

    def take_buddy_report(self, summary: BuddySummary) -> None:
        """A partnership reports its state (signal `buddy_changed`); one this host never started is ignored."""
        if summary.partnership_id in self.s.buddies:
            self.s.buddies[summary.partnership_id] = summary

    def end_live_partnerships(self, reason: str) -> None:
        """The host ends (a watch-list entry taken off the list or placed): every running partnership ends as if
        the regulator ended it early (its quarter under way is cut short and settled, on its own). The host will
        not hear from them again (it has completed), so its summaries say ended now."""
        for pid, b in list(self.s.buddies.items()):
            if not b.ended:
                self.emit(EndBuddy(partnership_id=pid, reason=reason))
                self.s.buddies[pid] = b.model_copy(update={"ended": True, "stage": "ended"})

    # ---------------------------------------------------------------- the flush's part
    async def _signal_partnerships(self, eff: Any) -> bool:
        """Start or end a partnership, the effects the workflow does itself; True when one was started."""
        if isinstance(eff, StartBuddy):
            return await self._start_partnership(eff)
        if isinstance(eff, EndBuddy):
            try:
                handle = workflow.get_external_workflow_handle(eff.partnership_id)
                if eff.until is not None:
                    await handle.signal(BuddyPartnershipWorkflow.run_on, RunOn(until=eff.until, reason=eff.reason))
                else:
                    await handle.signal(BuddyPartnershipWorkflow.end_partnership, eff.reason)
            except Exception as e:  # it has already ended and completed: nothing to tell it
                workflow.logger.info("partnership %s not signalled: %s", eff.partnership_id, e)
        return False

    async def _start_partnership(self, eff: StartBuddy) -> bool:
        pid = eff.partnership_id
        try:
            await workflow.start_child_workflow(
                BuddyPartnershipWorkflow.run,
                self._buddy_start(BuddyRequest.model_validate(eff.request)),
                id=pid,
                # The host continues as new over the years; its partnerships must outlive each run.
                parent_close_policy=ParentClosePolicy.ABANDON,
            )
            return True
        except WorkflowAlreadyStartedError:
            # An ended partnership still settling its last quarter holds the id.
            self.audit(AuditEvent.buddy_start_refused, SYSTEM, reason=f"{pid} is still settling; add it again once it "
                       "has ended", detail={"partnership_id": pid})
            if pid in self.s.buddies:
                self.s.buddies[pid] = self.s.buddies[pid].model_copy(update={"stage": "start_refused", "ended": True})
            return False
