"""Every endpoint x every role x own / other trust (issue 17): who may do what, read from one table.

The table lists every operation of `/openapi.json`; a new endpoint without a row fails the first test. For
each row, each role is tried as a user of the regime's trust ("own": the trust in `trusts`, or for a buddy
user the partnership's buddy organisation) and of another trust ("other"). Refused means 403, or 404 where
the regime must look like one that does not exist (issue 17, finding 9); anything else means the request
passed the authorisation checks (a 2xx, or a business answer such as 409 or 422).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.service import RPCError

from domain.dates import london_date
from tests.driver import Regime
from tests.helpers import IMPROVED, PLAN, placement
from tests.test_buddy import PLAN as SUPPORT_PLAN
from tests.test_buddy import World
from tools.polling import eventually

ROLES = ("trust", "improvement_director", "regulator", "commissioner", "buddy", "cqc", "operations", "admin")
NATIONAL = {"regulator", "cqc", "operations", "admin"}
SCOPED = {"trust", "improvement_director", "commissioner"}
READERS = SCOPED | NATIONAL  # who may read a trust's regime


def today():
    return london_date(datetime.now(UTC))


# (method, path template) -> (roles allowed for their own trust, roles allowed for another trust, body)
# "public": anyone, even without a token. An admin places regimes and reads; the regulator's, CQC's and the
# parties' actions need those roles themselves (a token may carry several).
def table(ctx: dict[str, Any]) -> dict[tuple[str, str], tuple[set[str] | str, set[str], Any]]:
    d = today()
    return {
        ("GET", "/health/live"): ("public", set(ROLES), None),
        ("GET", "/health/ready"): ("public", set(ROLES), None),
        ("GET", "/regimes"): (set(ROLES), set(ROLES), None),  # a list: scoped to what each may see
        ("GET", "/tasks"): (set(ROLES), set(ROLES), None),
        ("GET", "/step-kinds"): (set(ROLES), set(ROLES), None),  # the published contract
        ("POST", "/regimes"): ({"regulator", "admin"}, {"regulator", "admin"},
                               lambda: placement("RMT" + ctx.pop_code(), d)),
        ("GET", "/regimes/{regime_id}"): (READERS, NATIONAL, None),
        ("POST", "/regimes/{regime_id}/steps/{step_id}/decisions"): (
            {"trust"}, set(), lambda: {"action": "submit", "payload": PLAN}),
        ("POST", "/regimes/{regime_id}/steps/{step_id}/deadline"): (
            {"regulator"}, {"regulator"},
            lambda: {"new_due": str(d + timedelta(days=90)), "reason": "matrix"}),
        ("POST", "/regimes/{regime_id}/inspections"): ({"cqc"}, {"cqc"}, lambda: {
            "reference": "INS-MX-" + ctx.pop_code(), "inspection_start": str(d - timedelta(days=400)),
            "inspection_end": str(d - timedelta(days=400)), "published": str(d - timedelta(days=380)),
            "ratings": IMPROVED, "inspection_type": "focused", "well_led_assessed": False,
            "special_measures_reinspection": False}),
        ("POST", "/regimes/{regime_id}/inspections/{reference}/withdrawal"): (
            {"cqc"}, {"cqc"}, lambda: {"reason": "matrix"}),
        ("POST", "/regimes/{regime_id}/inspections/{reference}/draft"): ({"cqc"}, {"cqc"},
                                                                       lambda: {"sent_on": str(d)}),
        ("POST", "/regimes/{regime_id}/reinspection"): ({"cqc", "regulator"}, {"cqc", "regulator"},
                                                        lambda: {"inspection_date": str(d + timedelta(days=30))}),
        ("POST", "/regimes/{regime_id}/enforcement"): ({"cqc"}, {"cqc"},
                                                       lambda: {"action": "warning_notice", "detail": "matrix"}),
        ("POST", "/regimes/{regime_id}/delegations"): ({"regulator", "improvement_director"},
                                                       {"regulator"}, lambda: {
            "to_user_id": "id-cover", "until": str(d + timedelta(days=5)), "reason": "matrix"}),
        ("POST", "/regimes/{regime_id}/closure"): ({"regulator"}, {"regulator"},
                                                   lambda: {"solution": "merger", "reason": "matrix",
                                                            "successor_ods_code": "RSU2"}),
        ("POST", "/regimes/{regime_id}/buddies"): ({"regulator"}, {"regulator"},
                                                   lambda: {"buddy": {"ods_code": "RZC", "name": "Another FT"}}),
        ("GET", "/regimes/{regime_id}/buddies"): (READERS, NATIONAL, None),
        ("GET", "/regimes/{regime_id}/buddies/{partnership_id}"): (READERS | {"buddy"}, NATIONAL, None),
        ("GET", "/regimes/{regime_id}/buddies/{partnership_id}/ledger"): (READERS | {"buddy"}, NATIONAL, None),
        ("POST", "/regimes/{regime_id}/buddies/{partnership_id}/end"): ({"regulator"}, {"regulator"},
                                                                        lambda: {"reason": "matrix"}),
        ("POST", "/regimes/{regime_id}/buddies/{partnership_id}/plan-changes"): ({"buddy"}, set(), lambda: {
            "plan": ctx.support_plan, "reason": "matrix"}),
        ("GET", "/regimes/{regime_id}/audit"): (READERS, NATIONAL, None),
        ("GET", "/regimes/{regime_id}/audit/verify"): (READERS, NATIONAL, None),
        ("GET", "/trusts/{ods_code}/audit"): (READERS, NATIONAL, None),
        ("GET", "/notifications"): ({"operations", "regulator", "admin"}, {"operations", "regulator", "admin"}, None),
        # The evaluation (issue 16 item 5): national figures naming every trust's regimes, for the national roles.
        ("GET", "/evaluation"): (NATIONAL, NATIONAL, None),
        ("GET", "/regimes/{regime_id}/documents/{sha256}"): (READERS, NATIONAL, None),
        # The improvement plan as a programme (issue 15): the trust proposes and records, everyone reading reads.
        ("GET", "/regimes/{regime_id}/plan"): (READERS, NATIONAL, None),
        ("GET", "/regimes/{regime_id}/plan/revision-draft"): (READERS, NATIONAL, None),
        ("GET", "/regimes/{regime_id}/readiness"): (READERS, NATIONAL, None),
        ("GET", "/regimes/{regime_id}/evidence"): (READERS, NATIONAL, None),
        ("POST", "/regimes/{regime_id}/plan/changes"): ({"trust"}, set(), lambda: {
            "plan": PLAN, "reason": "matrix"}),
        # The cost of the interventions (issue 16 item 2): the director records their time, or the regulator.
        ("GET", "/regimes/{regime_id}/costs"): (READERS, NATIONAL, None),
        ("POST", "/regimes/{regime_id}/director-time"): ({"improvement_director", "regulator"}, {"regulator"}, lambda: {
            "month": f"{d:%Y-%m}", "days": 1, "reason": "matrix"}),
        # Central funding (issue 16 item 1): the trust requests drawdowns (here refused: nothing is agreed yet).
        ("GET", "/regimes/{regime_id}/funding"): (READERS, NATIONAL, None),
        ("POST", "/regimes/{regime_id}/funding/drawdowns"): ({"trust"}, set(), lambda: {
            "amount_pence": 100, "against": ["A1"], "purpose": "matrix"}),
        # The challenged-providers watch list (issue 16 item 4): the regulator keeps it; the regulator, operations
        # and the trust's own users see an entry (the matrix's entry is another trust's: only the first two here).
        ("POST", "/watch-list"): ({"regulator"}, {"regulator"}, lambda: {
            "trust": {"ods_code": "RW" + ctx.pop_code(), "name": "Watched NHS Trust"}, "reasons": ["matrix"]}),
        ("GET", "/watch-list"): ({"regulator", "operations", "trust", "improvement_director"},
                                 {"regulator", "operations", "trust", "improvement_director"}, None),
        ("GET", "/watch-list/{entry_id}"): ({"regulator", "operations"}, {"regulator", "operations"}, None),
        ("GET", "/watch-list/{entry_id}/access"): ({"regulator", "operations"}, {"regulator", "operations"}, None),
        ("POST", "/watch-list/{entry_id}/steps/{watch_step_id}/decisions"): ({"regulator"}, {"regulator"}, lambda: {
            "action": "keep", "comment": "matrix"}),
        ("POST", "/watch-list/{entry_id}/removal"): ({"regulator"}, {"regulator"}, lambda: {"reason": "matrix"}),
        # Only the listed trust's own trust users request drawdowns (tests/test_watchlist.py); none here.
        ("POST", "/watch-list/{entry_id}/funding/drawdowns"): (set(), set(), lambda: {
            "amount_pence": 100, "against": ["matrix"], "purpose": "matrix"}),
        # Buddying for a trust on the list (tests/test_watchlist_buddies.py): the regulator starts and ends it; the
        # entry's readers and the partnership's own buddy read it; each step by its own party (here the buddy's).
        ("GET", "/watch-list/partnerships"): ({"buddy"}, {"buddy"}, None),  # a list: the buddy's own only
        ("POST", "/watch-list/{entry_id}/buddies"): ({"regulator"}, {"regulator"}, lambda: {
            "buddy": {"ods_code": "BW" + ctx.pop_code(), "name": "Matrix Buddy NHS FT"}, "scope": "trust-wide"}),
        ("GET", "/watch-list/{entry_id}/buddies/{watch_partnership_id}"): (
            {"regulator", "operations", "buddy"}, {"regulator", "operations"}, None),
        ("POST", "/watch-list/{entry_id}/buddies/{watch_partnership_id}/steps/{partnership_step_id}/decisions"): (
            {"buddy"}, set(), lambda: {"action": "accept"}),
        ("POST", "/watch-list/{entry_id}/buddies/{watch_partnership_id}/end"): (
            {"regulator"}, {"regulator"}, lambda: {"reason": "matrix"}),
        ("POST", "/regimes/{regime_id}/evidence"): ({"trust"}, set(), lambda: {
            "title": "Ward audit", "dated": str(d), "shows": "matrix", "url": "https://example.org/audit.pdf"}),
    }


# Run last, in this order: they end the partnership and close the regime.
LAST = [("POST", "/regimes/{regime_id}/buddies/{partnership_id}/end"), ("POST", "/regimes/{regime_id}/closure"),
        ("POST", "/watch-list/{entry_id}/buddies/{watch_partnership_id}/end"), ("POST", "/watch-list/{entry_id}/removal")]


class Ctx:
    def __init__(self) -> None:
        self.n = 0
        self.support_plan: dict[str, Any] = {}

    def pop_code(self) -> str:
        self.n += 1
        return f"{self.n:03d}"


async def test_the_table_covers_every_operation(stack):
    paths = (await stack.http.get("/openapi.json")).json()["paths"]
    operations = {(m.upper(), p) for p, ops in paths.items() for m in ops}
    assert operations == set(table(Ctx())), sorted(operations ^ set(table(Ctx())))


async def test_every_endpoint_for_every_role_own_and_other_trust(stack):
    ctx = Ctx()
    reg = await Regime.place(stack, "RMT1")
    w = World(stack, "RMT1", reg.id)
    await reg.act("improvement_plan", "submit", PLAN)
    await reg.act("appoint_improvement_director", "record",
                  {"appointed_on": str(today()), "improvement_director_user_id": "id-own"})
    pid = await w.add("RZB")
    ctx.support_plan = SUPPORT_PLAN
    st = await reg.state()
    sha = st["steps"]["improvement_plan"]["data"]["document"]["sha256"]
    await stack.settle(reg.id)
    r = await stack.http.post("/watch-list", headers=stack.auth("reg-1", "regulator"), json={
        "trust": {"ods_code": "RMW1", "name": "Matrix Watched NHS Trust"}, "reasons": ["matrix"]})
    assert r.status_code == 201, r.text
    eid = r.json()["entry_id"]
    r = await stack.http.post(f"/watch-list/{eid}/buddies", headers=stack.auth("reg-1", "regulator"), json={
        "buddy": {"ods_code": "RZB", "name": "Matrix Buddy NHS FT"}, "scope": "trust-wide",
        "agreement_in_principle": {"agreed_level_pence": 1_000_000, "terms_of_reference": "matrix"}})
    assert r.status_code == 201, r.text
    wpid = r.json()["partnership_id"]
    await eventually(stack.handle(wpid).describe, what=f"{wpid} to start", timeout=10, interval=0.03,
                     ignore=RPCError)
    await World(stack, "RMW1", eid).settle(wpid)
    values = {"regime_id": reg.id, "step_id": "improvement_plan-2", "reference": "INS-NONE", "partnership_id": pid,
              "ods_code": "RMT1", "sha256": sha, "entry_id": eid, "watch_step_id": "watch_review",
              "watch_partnership_id": wpid, "partnership_step_id": "RZB.aip_buddy"}
    # A fresh plan step for each trust decision: the first return reopens it.
    r = await stack.http.post(f"/regimes/{reg.id}/steps/plan_review/decisions", json={
        "action": "return", "comment": "matrix"}, headers=stack.auth("id-own", "improvement_director", trusts=["RMT1"]))
    assert r.status_code == 200, r.text

    def user(role: str, own: bool) -> dict[str, str]:
        if role == "buddy":
            return stack.auth("buddy-" + ("own" if own else "other"), "buddy", org="RZB" if own else "RZX")
        sub = "id-own" if (role == "improvement_director" and own) else f"{role}-{'own' if own else 'other'}"
        return stack.auth(sub, role, trusts=["RMT1" if own else "RZ9"])

    rows = table(ctx)
    order = [k for k in rows if k not in LAST] + LAST
    checked = 0
    for method, template in order:
        own_allowed, other_allowed, body = rows[(method, template)]
        path = template.format(**values)
        for own in (True, False):
            allowed = set(ROLES) if own_allowed == "public" else (own_allowed if own else other_allowed)
            for role in ROLES:
                r = await stack.http.request(method, path, headers=user(role, own), json=body() if body else None)
                refused = r.status_code in (401, 403) or (r.status_code == 404 and "/problems/unknown-" in r.text)
                assert refused != (role in allowed), (method, template, role, "own" if own else "other",
                                                      r.status_code, r.text[:300])
                assert r.status_code < 500, (method, template, role, r.text[:300])
                checked += 1
        if own_allowed == "public":
            assert (await stack.http.request(method, path)).status_code == 200
    assert checked == len(rows) * len(ROLES) * 2
