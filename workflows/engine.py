"""What the regime and partnership workflows share: deadline ladders, escalation, effects, amendments.

A host class provides `self.s` (with `steps`, `escalations`, `seq`), `self._effects`, and the hooks
`_ladder()`, `_notice_subject(step, rung)` and `_where()`; it may override `task(step)` and
`_audit_detail(detail)`. Everything here is deterministic workflow code.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel, ValidationError

    from activities.archive import ArchiveActivities
    from activities.effects import EffectActivities
    from domain import dates
    from domain.models import SYSTEM, Action, Actor, DeadlineChange, Decision, Escalation, Rung, Step
    from domain.steps import Refused, StepKind, handler_for
    from domain.vocab import AuditEvent, RejectionKind, Role
    from workflows.common import (
        WRITTEN_EFFECTS,
        ArchiveBatch,
        AuditEffect,
        Effect,
        EffectBatch,
        Notify,
        TaskClose,
        TaskOpen,
        TaskView,
    )

# Writing effects retries within one attempt window only: data PostgreSQL can never take is parked by the
# activity itself (a dead letter, activities/effects.py), so what still fails here is the database or the
# worker being unavailable. That is worth a few quick retries (a restart, a failover), but never worth
# holding the run loop: after EFFECTS_GIVE_UP the batch goes back to the front of the queue and the loop
# carries on with its clocks, trying again after EFFECTS_BACKOFF (doubling, up to EFFECTS_BACKOFF_MAX).
EFFECTS_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                            maximum_interval=timedelta(seconds=30))
EFFECTS_GIVE_UP = timedelta(minutes=2)
EFFECTS_BACKOFF = timedelta(minutes=1)
EFFECTS_BACKOFF_MAX = timedelta(minutes=30)
# Before continue-as-new, what the rules no longer need leaves the state for PostgreSQL (docs/limits.md).
ARCHIVE_ON_CONTINUE = "archive-on-continue-as-new"
# The state a run hands to the next is kept under this many bytes (JSON); above it operations are told.
STATE_BOUND_BYTES = 256 * 1024
# Records the rules only look at the latest of (inspections, enforcement actions, decisions): kept in state.
RECORDS_KEPT = 20
ARCHIVE_CHUNK_BYTES = 512 * 1024  # one activity input, well under Temporal's 2 MiB payload limit


def reject(kind: str, message: str) -> ApplicationError:
    """Refuse a message; the API answers with the HTTP status its REJECTION_STATUS gives the type."""
    return ApplicationError(message, type=kind, non_retryable=True)


def same_person(a: Action, actor: Actor) -> bool:
    """The same account, or two accounts of the same person when the identity provider names the person
    (Actor.person_id, from AUTH_PERSON_CLAIM): separation of duties compares people."""
    return a.by == actor.user_id or (a.person is not None and a.person == actor.person_id)


def errors(e: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(x) for x in err['loc']) or 'payload'}: {err['msg']}" for err in e.errors())


class StepEngine:
    s: Any
    _effects: list[Effect]
    _wake: bool
    _updates_this_run: int
    # The wake flag says "state changed: recompute the next wake-up". Handlers (updates, signals) set it; the
    # loop clears it before it decides how long to sleep. A handler can run while the loop awaits (a flush,
    # an archive), so the flag must be cleared *before* the loop looks at the state (then a change made
    # meanwhile wakes it again at once). The partnership workflow has always done that. The regime workflow
    # cleared it after its flush, so a change made during that flush waited for the next timer; its histories
    # recorded that order and replay it, so it keeps it (changing it is a behaviour change for a patch).
    WAKE_RESET_BEFORE_FLUSH = True

    # ---------------------------------------------------------------- the run loop
    async def _run_loop(self) -> None:
        """The one run loop of the regime and partnership workflows: open what time brings, write the
        effects, sleep until the next instant something is due or a handler wakes the loop, and continue as
        new at a safe point (no handler running, no effects queued); returns once the workflow is finished
        and everything it queued is written."""
        while True:
            if self.WAKE_RESET_BEFORE_FLUSH:
                self._wake = False
            await self._before_time()
            self._process_time()
            await self._flush()
            if self.s.finished:
                break
            if (self._should_continue_as_new() or self._continue_as_new_requested()) and not self._effects_pending():
                await self._continue_as_new()
            wake_at = self._next_wake()
            if not self.WAKE_RESET_BEFORE_FLUSH:
                self._wake = False
            timeout = None if wake_at is None else max(wake_at - workflow.now(), timedelta(seconds=1))
            try:
                await workflow.wait_condition(lambda: self._wake, timeout=timeout)
            except TimeoutError:
                pass
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self._flush()
        await self._drain_effects()

    async def _before_time(self) -> None:
        """What a workflow fetches before it opens what time brings (the regime's bank holidays). It must not
        await anything on a path a recorded history took without it (it then adds no command)."""

    def _should_continue_as_new(self) -> bool:
        info = workflow.info()
        return (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() > self._continue_as_new_after_events()
            or self._updates_this_run > 1000
        )

    async def _continue_as_new(self) -> None:
        """Once the handlers have finished: catch up with time, archive what the rules no longer need, and
        continue as new, unless the workflow finished meanwhile or its effects could not be written."""
        await workflow.wait_condition(workflow.all_handlers_finished)
        self._process_time()
        await self._flush()
        await self._archive_for_continue()
        await self._flush()
        if not self.s.finished and not self._effects_pending():
            workflow.continue_as_new(self._continue_input())

    def _continue_as_new_after_events(self) -> int:
        raise NotImplementedError

    def _continue_input(self) -> Any:
        raise NotImplementedError

    def _continue_as_new_requested(self) -> bool:
        """The workflow asks to continue as new at the next safe point (hook: the regime's partnership hand-off)."""
        return False

    def _process_time(self) -> None:
        raise NotImplementedError

    def _next_wake(self) -> datetime | None:
        raise NotImplementedError

    # ---------------------------------------------------------------- hooks
    def _ladder(self) -> list[Rung]:
        raise NotImplementedError

    def _notice_subject(self, st: Step, rung: str) -> str:
        raise NotImplementedError

    def _where(self) -> str:
        raise NotImplementedError

    def _audit_detail(self, detail: dict[str, Any]) -> dict[str, Any]:
        return detail

    def task(self, st: Step) -> TaskView:
        return TaskView(step_id=st.id, kind=st.kind, title=st.title, role=st.role, due=st.due, subject=st.subject,
                        paused=st.paused)

    # ---------------------------------------------------------------- time
    def now(self) -> datetime:
        return workflow.now()

    def today(self) -> date:
        return dates.london_date(workflow.now())

    def _rung_instant(self, st: Step, i: int) -> datetime:
        return dates.end_of_day(st.due + timedelta(days=self._ladder()[i].offset_days))

    def _ladder_wakes(self) -> list[datetime]:
        n = len(self._ladder())
        return [self._rung_instant(st, st.next_rung) for st in self.s.steps.values()
                if st.status == "open" and not st.paused and st.next_rung < n]

    def _fire_due_rungs(self) -> None:
        now, ladder = workflow.now(), self._ladder()
        for st in list(self.s.steps.values()):
            while st.status == "open" and not st.paused and st.next_rung < len(ladder):
                if self._rung_instant(st, st.next_rung) > now:
                    break
                rung = ladder[st.next_rung]
                st.next_rung += 1
                if rung.offset_days < 0 and dates.end_of_day(st.due) <= now:
                    continue  # a reminder after the deadline has passed is noise
                self._escalate(st, rung.name, st.next_rung, rung.notify)

    def _escalate(self, st: Step, rung: str, level: int, notify: list[str]) -> None:
        if self._ladder()[level - 1].offset_days >= 0:
            st.late = True
        days = (self.today() - st.due).days
        if days < 0:
            reason = f"'{st.title}' is due on {st.due.isoformat()} ({-days} days left)"
        elif days == 0:
            reason = f"'{st.title}' was due on {st.due.isoformat()} and is not done"
        else:
            reason = f"'{st.title}' is {days} days overdue (due {st.due.isoformat()})"
        targets = [st.role if n == "responsible" else n for n in notify]
        self.s.escalations.append(Escalation(step_id=st.id, step_title=st.title, rung=rung, level=level,
                                             at=workflow.now(), due=st.due, notified=targets, reason=reason))
        self.audit(AuditEvent.escalation, SYSTEM, step=st, reason=reason,
                    detail={"rung": rung, "level": level, "notified": targets})
        self.emit(Notify(step_id=st.id, rung=rung, recipients=targets, subject=self._notice_subject(st, rung),
                         body=reason))

    # ---------------------------------------------------------------- effects
    _effects_failures = 0
    _effects_retry_at: datetime | None = None

    async def _write_effects(self, batch: EffectBatch) -> bool:
        """Hand a batch to the effects activity; False when it could not be written now.

        A batch that fails goes back to the front of the queue, in order, and `_effects_wake` says when to
        try again; meanwhile deadlines escalate and decisions are taken as usual (their effects queue up
        behind it). The caller must not continue as new while effects are queued (`_effects_pending`).
        """
        try:
            await workflow.execute_activity_method(EffectActivities.apply_effects, batch,
                                                   start_to_close_timeout=timedelta(seconds=30),
                                                   schedule_to_close_timeout=EFFECTS_GIVE_UP,
                                                   retry_policy=EFFECTS_RETRY)
        except ActivityError as e:
            # Starting or ending a partnership is done before the batch is sent, and never twice.
            self._effects = [x for x in batch.effects if isinstance(x, WRITTEN_EFFECTS)] + self._effects
            self._effects_failures += 1
            delay = min(EFFECTS_BACKOFF * 2 ** (self._effects_failures - 1), EFFECTS_BACKOFF_MAX)
            self._effects_retry_at = workflow.now() + delay
            workflow.logger.warning("effects of %s not written (attempt window %d): %s; next try at %s",
                                    batch.workflow_id, self._effects_failures, e.cause or e,
                                    self._effects_retry_at.isoformat())
            return False
        self._effects_failures = 0
        self._effects_retry_at = None
        return True

    def _effects_pending(self) -> bool:
        return self._effects_retry_at is not None and bool(self._effects)

    def _effects_wake(self) -> list[datetime]:
        return [self._effects_retry_at] if self._effects_pending() and self._effects_retry_at else []

    async def _drain_effects(self) -> None:
        """Before the workflow returns: every queued effect is written, however long that takes."""
        while self._effects_pending():
            assert self._effects_retry_at is not None
            await workflow.sleep(max(self._effects_retry_at - workflow.now(), timedelta(seconds=1)))
            await self._flush()

    async def _flush(self) -> None:
        raise NotImplementedError

    # ---------------------------------------------------------------- bounded state
    def _still_needed(self, st: Step) -> bool:
        """A closed step the rules may still read (hook): it stays in the state."""
        return False

    def _records_to_archive(self) -> list[tuple[str, list[Any], Any]]:
        """(kind, items in their order, a function that removes them from the state) (hook)."""
        return []

    def _regime_id(self) -> str:
        raise NotImplementedError

    async def _archive_for_continue(self) -> None:
        """Move closed steps the rules no longer need (with their escalations) and old records to PostgreSQL,
        then check the state's size against STATE_BOUND_BYTES. Nothing leaves the state unless the archive
        activity wrote it; if it cannot, the state is carried whole and the next run tries again."""
        if not workflow.patched(ARCHIVE_ON_CONTINUE):
            return
        ids, rows = self._archivable_steps()
        records: list[dict[str, Any]] = []
        removers = []
        for kind, items, remove in self._records_to_archive():
            start = self.s.archived_counts.get(kind, 0)
            records += [{"kind": kind, "position": start + i, "record": item} for i, item in enumerate(items)]
            removers.append((kind, len(items), remove))
        try:
            await self._send_archive([(r, "steps") for r in rows] + [(r, "records") for r in records])
        except ActivityError as e:
            workflow.logger.warning("state of %s not archived (carried whole): %s", workflow.info().workflow_id,
                                    e.cause or e)
            return
        for sid in sorted(ids):
            del self.s.steps[sid]
        self.s.retired_step_ids += sorted(ids)
        self.s.escalations = [e for e in self.s.escalations if e.step_id not in ids]
        for kind, n, remove in removers:
            remove()
            self.s.archived_counts[kind] = self.s.archived_counts.get(kind, 0) + n
        self._check_state_bound()

    def _archivable_steps(self) -> tuple[set[str], list[dict[str, Any]]]:
        """Closed steps the rules no longer read, each in JSON mode with its escalations."""
        steps = [st for st in self.s.steps.values() if st.status != "open" and not st.data.get("imported_from")
                 and not self._still_needed(st)]
        ids = {st.id for st in steps}
        by_step: dict[str, list[dict[str, Any]]] = {}
        for e in self.s.escalations:
            if e.step_id in ids:
                by_step.setdefault(e.step_id, []).append(e.model_dump(mode="json"))
        return ids, [{**st.model_dump(mode="json"), "escalations": by_step.get(st.id, [])} for st in steps]

    async def _send_archive(self, items: list[tuple[dict[str, Any], str]]) -> None:
        """Write the items in chunks of at most ARCHIVE_CHUNK_BYTES, in order."""
        wid = workflow.info().workflow_id
        chunk = ArchiveBatch(workflow_id=wid, regime_id=self._regime_id())
        size = 0
        for item, field in items:
            n = len(str(item))
            if size and size + n > ARCHIVE_CHUNK_BYTES:
                await self._archive(chunk)
                chunk, size = ArchiveBatch(workflow_id=wid, regime_id=self._regime_id()), 0
            getattr(chunk, field).append(item)
            size += n
        if chunk.steps or chunk.records:
            await self._archive(chunk)

    def _check_state_bound(self) -> None:
        size = len(self.s.model_dump_json())
        if size <= STATE_BOUND_BYTES:
            return
        wid = workflow.info().workflow_id
        reason = (f"the state carried to the next run is {size:,} bytes, over the bound of "
                  f"{STATE_BOUND_BYTES:,} with everything the rules allow archived")
        self.audit(AuditEvent.state_over_bound, SYSTEM, reason=reason, detail={"bytes": size})
        self.emit(Notify(rung="state_over_bound", recipients=[Role.operations], subject=f"[state over bound] {wid}",
                         body=reason))

    async def _archive(self, batch: ArchiveBatch) -> None:
        # Like the effects: a few quick retries, then the state is carried whole and the loop goes on.
        await workflow.execute_activity_method(ArchiveActivities.archive_state, batch,
                                               start_to_close_timeout=timedelta(seconds=30),
                                               schedule_to_close_timeout=EFFECTS_GIVE_UP, retry_policy=EFFECTS_RETRY)

    def _step_id_taken(self, sid: str) -> bool:
        """A step id is never reused, archived or not (tasks and audit entries are keyed by it)."""
        if sid in self.s.steps:
            return True
        retired = getattr(self, "_retired_cache", None)
        if retired is None or len(retired) != len(self.s.retired_step_ids):
            retired = set(self.s.retired_step_ids)
            self._retired_cache = retired
        return sid in retired

    def emit(self, effect: Effect) -> None:
        self.s.seq += 1
        effect.seq = self.s.seq
        self._effects.append(effect)

    def show_task(self, st: Step) -> None:
        """Open or update the step's task in the inbox (its due date, pause, assignee)."""
        self.emit(TaskOpen(step=self.task(st)))

    def audit(self, event: str, actor: Actor, *, step: Step | None = None, reason: str | None = None,
               detail: dict[str, Any] | None = None) -> None:
        self.emit(AuditEffect(event=event, actor=actor.user_id, role=actor.role, request_id=actor.request_id,
                              step_id=step.id if step else None, step_kind=step.kind if step else None,
                              reason=reason, detail=self._audit_detail(detail or {}),
                              at=workflow.now().isoformat()))

    # ---------------------------------------------------------------- decisions
    # The workflow's step catalogue (domain/steps.py CATALOGUE, domain/ledger.py BUDDY_STEPS): who acts, the
    # actions and their payloads, the rules a decision must meet and what follows it.
    CATALOGUE: dict[str, StepKind]

    def check_role(self, actor: Actor, st: Step) -> None:
        if actor.role != st.role:
            raise reject(RejectionKind.wrong_role, f"'{st.title}' is for the {st.role.replace('_', ' ')}, "
                                      f"not the {actor.role.replace('_', ' ')}")

    def check_parties(self, actor: Actor, st: Step) -> None:
        """Separation of duties before the action is looked at (hook; the regime's)."""

    def check_parties_after_payload(self, actor: Actor, st: Step) -> None:
        """Separation of duties once the payload is valid (hook; the partnership's). The two workflows have
        always checked it at these two points, so a decision wrong in two ways is refused for the same reason
        as before."""

    def payload_model(self, st: Step, d: Decision) -> type[BaseModel]:
        return self.CATALOGUE[st.kind].actions[d.action]

    def validate_decision(self, d: Decision) -> tuple[Step, BaseModel]:
        """Every rule a decision must meet, in the order the answers are given: the step exists, the actor has
        its role (403 before 409), it is open, the action is one of its kind's, a reason where the kind needs
        one, the payload its model, then the kind's own rules (`@check` beside its definition). Returns the
        step and the typed payload."""
        st = self.s.steps.get(d.step_id)
        if st is None:
            raise reject(RejectionKind.unknown_step, f"no step '{d.step_id}' in {self._where()}")
        self.check_role(d.actor, st)
        if st.status != "open":
            raise reject(RejectionKind.step_not_open, f"'{st.title}' is {st.status} ({st.outcome}); nothing to decide")
        self.check_parties(d.actor, st)
        spec = self.CATALOGUE[st.kind]
        if d.action not in spec.actions:
            allowed = ", ".join(spec.actions) or "none (completed by a CQC outcome)"
            raise reject(RejectionKind.unknown_action, f"'{d.action}' is not an action of '{st.title}'; allowed: {allowed}")
        if d.action in spec.needs_reason and not (d.comment and d.comment.strip()):
            raise reject(RejectionKind.reason_required, f"'{d.action}' needs a reason")
        try:
            payload = self.payload_model(st, d).model_validate(d.payload)
        except ValidationError as e:
            raise reject(RejectionKind.invalid_payload, errors(e)) from None
        self.check_parties_after_payload(d.actor, st)
        for rule in spec.checks:
            try:
                rule(self, st, d, payload)
            except Refused as e:
                raise reject(e.kind, str(e)) from None
        return st, payload

    def take_decision(self, d: Decision) -> Step:
        """The update handler's part: validate again (two updates admitted in one activation both pass their
        validators before either runs), record the action and its payload, audit, close the step, and run
        what its kind registered to follow (`@after` beside its definition)."""
        self._updates_this_run += 1
        st, payload = self.validate_decision(d)
        st.actions.append(Action(action=d.action, by=d.actor.user_id, role=d.actor.role, at=workflow.now(),
                                 comment=d.comment, person=d.actor.person_id))
        st.data.update(payload.model_dump(mode="json"))
        self.audit(f"{st.kind}.{d.action}", d.actor, step=st, reason=d.comment,
                   detail={"payload": payload.model_dump(mode="json")} if d.payload else {})
        self.close_decided(st, d)
        handler = handler_for(self.CATALOGUE[st.kind], d.action)
        if handler is not None:
            try:
                handler(self, st, d, payload)
            except Refused as e:  # the validator ran the same rules: reaching here is a bug, never a payment
                raise reject(e.kind, str(e)) from None
        self._wake = True
        return st

    def close_decided(self, st: Step, d: Decision) -> None:
        self.close_step(st, d.action, d.actor, d.comment)

    # ---------------------------------------------------------------- steps
    def free_step_id(self, sid: str) -> str:
        """`sid`, or the first of `sid-2`, `sid-3`, ... not taken: a step id is never reused."""
        if not self._step_id_taken(sid):
            return sid
        n = 2
        while self._step_id_taken(f"{sid}-{n}"):
            n += 1
        return f"{sid}-{n}"

    def announce_opened(self, st: Step) -> None:
        """A step just opened: its task in the inbox, and the audit entry with its due date (in the detail,
        which the history page reads; the reason keeps the same words for people reading the log)."""
        self.show_task(st)
        reason, detail = f"due {st.due.isoformat()}", {"due": st.due.isoformat()}
        if st.due_moved_from is not None:  # CalendarRules.bank_holidays: the rules' date was a bank holiday
            held = getattr(self.s, "bank_holidays", None)
            holiday = held.days.get(st.due_moved_from, "a bank holiday") if held else "a bank holiday"
            reason += f" (moved from {st.due_moved_from.isoformat()}, {holiday})"
            detail |= {"moved_from": st.due_moved_from.isoformat(), "holiday": holiday}
        self.audit(AuditEvent.step_opened, SYSTEM, step=st, reason=reason, detail=detail)

    def close_step(self, st: Step, outcome: str, actor: Actor, comment: str | None = None) -> None:
        """Close a step: done (late if after the end of its due day) or cancelled; its task closes too. The
        comment is the decision's reason, which its audit entry carries."""
        st.status = "cancelled" if outcome == "cancelled" else "done"
        st.outcome = outcome
        st.completed_at = workflow.now()
        st.completed_by = actor.user_id
        if outcome != "cancelled" and workflow.now() > dates.end_of_day(st.due):
            st.late = True
        self.emit(TaskClose(step_id=st.id, state=st.status, outcome=outcome, closed_by=actor.user_id,
                            at=workflow.now().isoformat()))

    # ---------------------------------------------------------------- deadlines
    def _check_amend(self, c: DeadlineChange) -> None:
        st = self.s.steps.get(c.step_id)
        if st is None:
            raise reject(RejectionKind.unknown_step, f"no step '{c.step_id}' in {self._where()}")
        if st.status != "open":
            raise reject(RejectionKind.step_not_open, f"'{st.title}' is {st.status}; its deadline cannot change")
        if c.actor.role != Role.regulator:
            raise reject(RejectionKind.wrong_role, "only the regulator moves deadlines")
        if c.new_due is None and c.pause is None:
            raise reject(RejectionKind.invalid_payload, "give new_due, pause, or both")
        if c.new_due is not None and c.new_due < self.today():
            raise reject(RejectionKind.rule_broken, f"new due date {c.new_due.isoformat()} is in the past")
        if not c.reason.strip():
            raise reject(RejectionKind.reason_required, "a reason is required")

    def _amend(self, c: DeadlineChange) -> Step:
        """Move a due date or pause a clock; the ladder follows the new date at once."""
        st = self.s.steps[c.step_id]
        old = {"due": st.due.isoformat(), "paused": st.paused}
        if c.pause is not None:
            st.paused = c.pause
        if c.new_due is not None:
            st.due = c.new_due
        # The ladder restarts from the new date: rungs already past under it fire at once, except
        # reminders for a deadline still ahead (they would only repeat what was said).
        st.next_rung = 0
        now, ladder = workflow.now(), self._ladder()
        st.late = now > dates.end_of_day(st.due)
        while st.next_rung < len(ladder) and ladder[st.next_rung].offset_days < 0 \
                and self._rung_instant(st, st.next_rung) <= now and dates.end_of_day(st.due) > now:
            st.next_rung += 1
        new = {"due": st.due.isoformat(), "paused": st.paused}
        st.amendments.append({"at": now.isoformat(), "by": c.actor.user_id, "reason": c.reason,
                              "old": old, "new": new})
        self.audit(AuditEvent.deadline_amended, c.actor, step=st, reason=c.reason, detail={"old": old, "new": new})
        self.show_task(st)
        return st
