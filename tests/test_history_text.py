"""Text rules are for the door, not for histories (domain/text.py).

The API refuses control characters; before it did, a comment such as "fine\\u0001" was accepted and is
recorded in running regimes' histories. Those must still decode when a worker replays them, or the new
rule would stop the very regimes it protects. Here such a decision reaches the workflow as an older API
would have sent it (straight through Temporal), then its history is replayed on the current code.
"""

from __future__ import annotations

from domain.models import Actor, Decision
from tests.driver import Regime
from tests.helpers import PLAN
from tools.replay import replay
from workflows.regime import RegimeWorkflow


async def test_a_history_with_text_the_api_now_refuses_still_replays(stack):
    reg = await Regime.place(stack, "RHT1")
    refused = await stack.http.post(f"/regimes/{reg.id}/steps/improvement_plan/decisions",
                                    headers=reg.users["trust"],
                                    json={"action": "submit", "payload": PLAN, "comment": "fine\u0001"})
    assert refused.status_code == 422 and "comment" in refused.text
    d = Decision.model_construct(step_id="improvement_plan", action="submit", payload=PLAN, comment="fine\u0001",
                                 actor=Actor(user_id="trust-RHT1", role="trust", request_id="r-1"))
    view = await stack.handle(reg.id).execute_update(RegimeWorkflow.decide_step, d)
    assert view.step.status == "done" and view.step.actions[0].comment == "fine\u0001"
    await stack.settle(reg.id)
    results = await replay([("with a control character", await stack.handle(reg.id).fetch_history())])
    assert results[0].ok, results[0].error
