"""Issue 14 item 8: a regime closed by a structural solution keeps who the trust became.

A merger or an acquisition names the successor organisation (its ODS code); the regime links to it, CQC's view
on whether the solution is viable is recorded, a regime whose trust has already exited cannot be closed, and
the cohort view counts "left by merger" apart from exits and from closures for other reasons.
"""

from __future__ import annotations

from tests.driver import Regime
from tests.helpers import IMPROVED

OPS = ("ops-1", "operations")


async def test_a_merger_names_the_successor_and_the_views_link_to_it(stack):
    reg = await Regime.place(stack, "RCS1")
    regulator = reg.users["regulator"]
    r = await stack.http.post(f"/regimes/{reg.id}/closure", headers=regulator,
                              json={"solution": "merger", "reason": "merging with a neighbour"})
    assert r.status_code == 422 and "successor_ods_code" in r.text
    r = await stack.http.post(f"/regimes/{reg.id}/closure", headers=regulator,
                              json={"solution": "merger", "reason": "merging", "successor_ods_code": "RCS1"})
    assert r.status_code == 422 and "another organisation" in r.json()["detail"]
    assert (await reg.state())["phase"] == "in_special_measures"

    r = await stack.http.post(f"/regimes/{reg.id}/closure", headers=regulator, json={
        "solution": "merger", "reason": "merged into Caldmoor University Hospitals", "successor_ods_code": "RCS9",
        "successor_name": "Caldmoor University Hospitals NHS Foundation Trust",
        "cqc_view": "the merged trust's leadership is credible"})
    assert r.status_code == 200, r.text
    await stack.settle(reg.id)
    closure = (await reg.state())["closure"]
    assert (closure["successor_ods_code"], closure["cqc_view"]) == ("RCS9", "the merged trust's leadership is credible")
    row = await stack.pool.fetchrow("SELECT closure_solution, successor_ods_code FROM regimes WHERE regime_id = $1",
                                    reg.id)
    assert dict(row) == {"closure_solution": "merger", "successor_ods_code": "RCS9"}
    page = (await stack.http.get(f"/web/regimes/{reg.id}", headers=stack.auth(*OPS))).text
    assert "the trust became" in page and "/web/regimes?q=RCS9" in page and "leadership is credible" in page
    cohort = (await stack.http.get("/web/cohort", headers=stack.auth(*OPS))).text
    assert "left by merger or acquisition" in cohort


async def test_a_trust_that_has_exited_is_not_closed_by_a_structural_solution(stack):
    reg = await Regime.place(stack, "RCS2")
    await reg.advance(330)
    await reg.inspect("INS-RCS2-2", IMPROVED)
    await reg.act("cqc_recommendation", "recommend_exit")
    await reg.act("regulator_decision", "exit", comment="sustained improvement")
    assert (await reg.state())["phase"] == "exited"
    r = await stack.http.post(f"/regimes/{reg.id}/closure", headers=reg.users["regulator"],
                              json={"solution": "other", "reason": "tidying up"})
    assert r.status_code == 422 and "exited special measures" in r.json()["detail"], r.text
    assert (await reg.state())["phase"] == "exited"
