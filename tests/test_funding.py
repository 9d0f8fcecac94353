"""Central funding through the HTTP API (issue 16 item 1): the agreement after the plan's financial review,
within the usual ceiling or with a reason, agreed by the trust and the improvement director; drawdowns against the
plan, approved and authorised by other people, never above the ceiling, paid once under a retried authorisation
and a worker that died after writing the payment."""

from __future__ import annotations

import asyncio

from temporalio.exceptions import ApplicationError

from activities.funding import FundingActivities
from domain.funding import DrawdownInstruction
from tests.driver import Regime
from tests.test_programme import programme_plan
from tools.polling import eventually


async def test_funding_agreement_and_drawdowns_paid_once(stack):
    reg = await Regime.place(stack, "RFU1")
    await reg.act("improvement_plan", "submit", programme_plan(reg.today))
    await reg.act("plan_review", "agree")
    st = await reg.state()
    assert {"financial_review", "funding_agreement"} <= {s["id"] for s in st["open_steps"]}
    usual = stack.settings.funding_usual_max_pence

    # The agreement comes after the plan's financial review, and above the usual maximum only with a reason.
    terms = {"ceiling_pence": 20_000_000, "areas": ["sepsis pathway", "mortality reviews"]}
    await reg.act("funding_agreement", "record", terms, expect=422)
    await reg.act("financial_review", "record", {"reviewed_on": str(reg.today), "achievable": True,
                                                 "summary": "affordable within the trust's plan"})
    r = await reg.act("funding_agreement", "record", {**terms, "ceiling_pence": usual + 1}, expect=422)
    assert "above_usual_reason" in r["detail"]
    await reg.act("funding_agreement", "record", terms)
    r = await stack.http.post(f"/regimes/{reg.id}/funding/drawdowns", headers=reg.users["trust"],
                              json={"amount_pence": 1_000_000, "against": ["S1"], "purpose": "too early"})
    assert r.status_code == 422 and "no agreed funding agreement" in r.json()["detail"]
    await reg.act("funding_agreement_trust", "agree")
    await reg.act("funding_agreement_director", "agree")

    async def funding() -> dict:
        r = await stack.http.get(f"/regimes/{reg.id}/funding", headers=reg.users["operations"])
        assert r.status_code == 200, r.text
        return r.json()
    f = await funding()
    assert (f["agreed"], f["ceiling_pence"], f["remaining_pence"]) == (True, 20_000_000, 20_000_000)

    # Drawdowns: against the plan, within what is left.
    url = f"/regimes/{reg.id}/funding/drawdowns"
    r = await stack.http.post(url, headers=reg.users["improvement_director"],
                              json={"amount_pence": 1, "against": ["S1"], "purpose": "not the trust"})
    assert r.status_code == 403
    r = await stack.http.post(url, headers=reg.users["trust"],
                              json={"amount_pence": 1_000_000, "against": ["NOPE"], "purpose": "unknown action"})
    assert r.status_code == 422 and "NOPE" in r.json()["detail"]
    r = await stack.http.post(url, headers=reg.users["trust"],
                              json={"amount_pence": 15_000_000, "against": ["S1", "Sepsis"], "purpose": "screening"})
    assert r.status_code == 201, r.text
    assert r.json()["step"]["id"] == "drawdown_approval-1" and r.json()["step"]["role"] == "improvement_director"
    r = await stack.http.post(url, headers=reg.users["trust"],
                              json={"amount_pence": 5_000_001, "against": ["M1"], "purpose": "over the ceiling"})
    assert r.status_code == 422 and "above what is left under the ceiling" in r.json()["detail"], r.text
    audit_before = await stack.pool.fetchval("SELECT count(*) FROM audit_log WHERE regime_id = $1", reg.id)
    assert (await funding())["requested_pence"] == 15_000_000

    # The ID approves; the regulator's authorisation, sent three times at once and retried under a key.
    await reg.act("drawdown_approval-1", "approve")
    auth = f"/regimes/{reg.id}/steps/drawdown_authorisation-1/decisions"
    sends = [stack.http.post(auth, headers=reg.users["regulator"], json={"action": "authorise"}) for _ in range(3)]
    codes = sorted(r.status_code for r in await asyncio.gather(*sends))
    assert codes == [200, 409, 409], codes
    key = {"Idempotency-Key": "authorise-drawdown-1"}
    r1 = await stack.http.post(auth, headers={**reg.users["regulator"], **key}, json={"action": "authorise"})
    r2 = await stack.http.post(auth, headers={**reg.users["regulator"], **key}, json={"action": "authorise"})
    assert r1.status_code == r2.status_code == 409 and r2.headers.get("idempotent-replayed") == "true"
    f = await eventually(funding, until=lambda f: f["paid_pence"] == 15_000_000, what="the drawdown paid",
                         timeout=15, interval=0.05)
    assert [(p["drawdown"], p["amount_pence"], p["against"]) for p in f["payments"]] == [(1, 15_000_000,
                                                                                        ["S1", "Sepsis"])]
    assert f["drawdowns"][0]["status"] == "paid" and f["remaining_pence"] == 5_000_000
    assert await stack.pool.fetchval("SELECT count(*) FROM audit_log WHERE regime_id = $1", reg.id) > audit_before

    # A worker that died after writing the row runs the activity again: the same payment, nothing written twice;
    # a different amount for the same drawdown is refused, never written.
    acts = FundingActivities(stack.pool)
    row = await stack.pool.fetchrow("SELECT id, authorised_at, authorised_by FROM funding_payments "
                                    "WHERE regime_id = $1", reg.id)
    ins = DrawdownInstruction(regime_id=reg.id, drawdown=1, amount_pence=15_000_000, against=["S1", "Sepsis"],
                              authorised_by=row["authorised_by"], authorised_at=row["authorised_at"])
    again = await acts.record_drawdown(ins)
    assert not again.created and again.payment_id == row["id"]
    try:
        await acts.record_drawdown(ins.model_copy(update={"amount_pence": 15_000_001}))
        raise AssertionError("a different payment for a paid drawdown was accepted")
    except ApplicationError as e:
        assert e.type == "PaymentConflict" and e.non_retryable
    assert await stack.pool.fetchval("SELECT count(*) FROM funding_payments WHERE regime_id = $1", reg.id) == 1
    paid = await stack.pool.fetch("SELECT detail FROM audit_log WHERE regime_id = $1 AND event = 'drawdown_paid'",
                                  reg.id)
    assert len(paid) == 1 and paid[0]["detail"]["first_write"] is True

    # A refused drawdown frees its amount; the costs include the money drawn.
    r = await stack.http.post(url, headers=reg.users["trust"],
                              json={"amount_pence": 5_000_000, "against": ["M1"], "purpose": "mortality reviews"})
    assert r.status_code == 201, r.text
    await reg.act("drawdown_approval-2", "refuse", comment="not in this quarter's priorities")
    assert (await funding())["remaining_pence"] == 5_000_000  # a refusal frees its amount
    costs = (await stack.http.get(f"/regimes/{reg.id}/costs", headers=reg.users["regulator"])).json()
    assert costs["direct_funding_pence"] == 15_000_000
    ev = (await stack.http.get("/evaluation", headers=reg.users["operations"])).json()
    [mine] = [c for c in ev["cost"]["items"] if c["regime_id"] == reg.id]
    assert (mine["funding_paid_pence"], mine["total_pence"]) == (15_000_000, 15_000_000)
