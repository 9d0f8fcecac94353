"""Drives a regime through the HTTP API the way its people would, day by virtual day."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from domain.dates import london_date
from tests.harness import TestStack
from tests.helpers import PLAN, placement
from tools.polling import eventually

DEFAULT_ACTION: dict[str, tuple[str, Any]] = {
    "improvement_plan": ("submit", lambda d: PLAN),
    # The same actions (so the outstanding ones are carried), published (issue 15 item 5).
    "revised_action_plan": ("submit", lambda d: {**PLAN, "published_at": "https://trust.example.nhs.uk/plan",
                                                 "published_on": d}),
    "plan_review": ("agree", None),
    "plan_signoff_regulator": ("sign_off", None),
    "plan_signoff_commissioner": ("sign_off", None),
    # The director the regulator appoints is the one who then acts (Regime.users): the appointed one alone may.
    "appoint_improvement_director": ("record", lambda d: {"appointed_on": d, "improvement_director_user_id": None}),
    "board_to_board": ("record", lambda d: {"meeting_date": d}),
    "board_to_board_pre_inspection": ("record", lambda d: {"meeting_date": d}),
    "board_to_board_post_exit": ("record", lambda d: {"meeting_date": d}),
    "letter_to_chair": ("record", lambda d: {"sent_on": d}),
    "capability_review": ("record", lambda d: {"completed_on": d}),
    "monthly_return": ("submit", lambda d: {"summary": "progress against the plan"}),
    "monthly_return_cosign": ("cosign", None),
    "oversight_meeting": ("record", lambda d: {"meeting_date": d}),
    "delivery_meeting": ("record", lambda d: {"meeting_date": d, "on_trajectory": True}),
    "secretary_of_state_letter": ("send", lambda d: {"sent_on": d}),
    "quality_summit": ("record", lambda d: {"held_on": d, "attendees": [
        {"organisation": "the trust", "people": ["Chief Executive"]}, {"organisation": "CQC", "people": ["Inspector"]}]}),
    "factual_accuracy": ("no_comments", None),
    "appoint_buddy": ("no_buddy", None),  # with complete_open's comment as the reason
    # The improvement plan as a programme (issue 15)
    "plan_action": ("done", lambda d: {"completed_on": d}),
    "plan_change_review": ("agree", None),
    "programme_review": ("record", lambda d: {"reviewed_on": d, "assessment": "on_track", "conclusion": "on course"}),
    "self_assessment": ("record", lambda d: {"held_on": d, "form": "self_assessment", "findings": {
        "safe": {"rating": "requires_improvement", "summary": "evidence reviewed"}}}),
    "evidence_file": ("complete", lambda d: {"summary": "complete"}),
    "evidence_file_check": ("checked", None),
    "evidence_file_buddy_review": ("reviewed", None),
    # Central funding (issue 16 item 1)
    "financial_review": ("record", lambda d: {"reviewed_on": d, "achievable": True, "summary": "affordable"}),
    "funding_agreement": ("record", lambda d: {"ceiling_pence": 10_000_000, "areas": ["governance"]}),
    "funding_agreement_trust": ("agree", None),
    "funding_agreement_director": ("agree", None),
    "drawdown_approval": ("approve", None),
    "drawdown_authorisation": ("authorise", None),
    # A buddy trust's funding agreement (a partnership of a regime with central funding): within its agreed level.
    "buddy_funding_agreement": ("record", lambda d: {"agreed_pence": 1_000_000, "terms": "quarterly reimbursement"}),
    "buddy_funding_agreement_buddy": ("agree", None),
}


def default_decision(kind: str, day: str, ods: str) -> tuple[str, dict[str, Any] | None]:
    """The usual action on a step of this kind, and its payload, on `day` for the trust `ods`."""
    action, payload = DEFAULT_ACTION[kind]
    body = payload(day) if payload else None
    if body and "improvement_director_user_id" in body:
        body["improvement_director_user_id"] = f"id-{ods}"  # the director Regime.users acts as
    return action, body


class Regime:
    def __init__(self, stack: TestStack, ods: str, regime_id: str, start: date) -> None:
        self.stack, self.ods, self.id, self.start = stack, ods, regime_id, start
        self.day = 0
        self.users = {
            "trust": stack.auth("trust-" + ods, "trust", trusts=[ods]),
            "improvement_director": stack.auth("id-" + ods, "improvement_director", trusts=[ods]),
            "regulator": stack.auth("reg-1", "regulator"),
            "commissioner": stack.auth("ccg-" + ods, "commissioner", trusts=[ods]),
            "cqc": stack.auth("cqc-1", "cqc"),
            "operations": stack.auth("ops-1", "operations"),
        }

    @classmethod
    async def place(cls, stack: TestStack, ods: str, entry: date | None = None, multi_site: bool = False,
                    **extra: Any) -> Regime:
        today = london_date(datetime.now(UTC))
        entry = entry or today
        r = await stack.http.post("/regimes", json=placement(ods, entry, multi_site=multi_site, **extra),
                                  headers=stack.auth("reg-1", "regulator"))
        assert r.status_code == 201, r.text
        reg = cls(stack, ods, r.json()["regime_id"], today)
        return reg

    @property
    def today(self) -> date:
        return self.start + timedelta(days=self.day)

    async def state(self) -> dict[str, Any]:
        r = await self.stack.http.get(f"/regimes/{self.id}", headers=self.users["operations"])
        assert r.status_code == 200, r.text
        return r.json()

    def headers_for(self, role: str, subject: dict[str, Any] | None = None) -> dict[str, str]:
        """The user who acts in `role`; a buddy trust's on a regime step that names it (an evidence file's review)."""
        buddy = (subject or {}).get("buddy_ods")
        if role == "buddy" and buddy:
            return self.stack.auth(f"buddy-lead-{buddy}", "buddy", org=buddy)
        return self.users[role]

    async def act(self, step_id: str, action: str, payload: dict | None = None, comment: str | None = None,
                  role: str | None = None, expect: int = 200) -> dict[str, Any]:
        st = await self.state()
        step = st["steps"][step_id]
        role = role or step["role"]
        r = await self.stack.http.post(f"/regimes/{self.id}/steps/{step_id}/decisions",
                                       headers=self.headers_for(role, step.get("subject")),
                                       json={"action": action, "payload": payload or {}, "comment": comment})
        assert r.status_code == expect, r.text
        return r.json()

    async def complete_open(self, within_days: int = 10, skip: tuple[str, ...] = ()) -> list[str]:
        """Every open step due within `within_days` is done by its party with the usual action."""
        done: list[str] = []
        for _ in range(10):
            st = await self.state()
            todo = [s for s in st["open_steps"] if s["kind"] in DEFAULT_ACTION and s["kind"] not in skip
                    and date.fromisoformat(s["due"]) <= self.today + timedelta(days=within_days)]
            if not todo:
                return done
            for s in sorted(todo, key=lambda s: (s["due"], s["id"])):
                action, body = default_decision(s["kind"], self.today.isoformat(), self.ods)
                await self.act(s["id"], action, body, comment="done")
                done.append(s["id"])
        return done

    async def advance(self, days: int, diligent: bool = True, step: int = 7, skip: tuple[str, ...] = ()) -> None:
        """Move virtual time forward; a diligent regime completes what falls due on the way."""
        left = days
        while left > 0:
            n = min(step, left)
            if diligent:
                await self.complete_open(within_days=n + 1, skip=skip)
            await self.stack.fast_forward(self.id, n)
            self.day += n
            left -= n
        if diligent:
            await self.complete_open(within_days=1, skip=skip)

    async def inspect(self, ref: str, ratings: dict[str, str], core: list[dict] | None = None,
                      expect: int = 202, **extra: Any) -> None:
        from tests.helpers import outcome

        st = await self.state()
        multi = st["placement"]["trust"]["multi_site"]
        r = await self.stack.http.post(f"/regimes/{self.id}/inspections", headers=self.users["cqc"],
                                       json=outcome(ref, self.today - timedelta(days=3), ratings, core,
                                                    multi_site=multi, **extra))
        assert r.status_code == expect, r.text
        if expect == 202:
            await eventually(self.state, until=lambda st: any(i["outcome"]["reference"] == ref for i in st["inspections"]),
                             what=f"inspection {ref} to reach the workflow", timeout=10, interval=0.05)

    async def escalations(self, step_id: str) -> list[str]:
        return [e["rung"] for e in (await self.state())["escalations"] if e["step_id"] == step_id]
