"""Buddying for a trust on the challenged-providers watch list (issue 16 item 4: "a trust on the list can receive an
improvement director, buddying and central funding with the same steps, deadlines and payments"), through the HTTP
API on the real stack: the regime's partnership workflow, started by the entry, confidential (no search attribute,
no inbox task, its payment in no regime's figures), decided by its own parties through the entry's routes, and
ended with the entry."""

from __future__ import annotations

from datetime import date
from typing import Any

from temporalio.service import RPCError

from domain.dates import add_months
from domain.ledger import funding_agreement_due
from domain.steps import FUNDING_MONTHS
from tests.harness import TestStack
from tests.test_buddy import PLAN, TOR, World, lines
from tools.polling import eventually
from workflows.watchlist import WatchListWorkflow

SEARCH_ATTRIBUTES = {"TrustOdsCode", "RegimePhase", "NextDeadline", "EscalationLevel", "RegimeId"}


class WatchWorld(World):
    """test_buddy's World with a watch-list entry as the partnership's host: the entry's routes, no inbox."""

    @classmethod
    async def listed(cls, stack: TestStack, ods: str) -> WatchWorld:
        r = await stack.http.post("/watch-list", headers=stack.auth("reg-1", "regulator"), json={
            "trust": {"ods_code": ods, "name": f"{ods} Hospitals NHS Trust"}, "reasons": ["finances and safety"]})
        assert r.status_code == 201, r.text
        return cls(stack, ods, r.json()["entry_id"])

    async def add(self, buddy_ods: str, scope: str = "trust-wide", level: int | None = 30_000_000) -> str:
        body: dict[str, Any] = {"buddy": {"ods_code": buddy_ods, "name": f"{buddy_ods} Hospitals NHS FT"},
                                "scope": scope, "agreement_in_principle": {"agreed_level_pence": level,
                                                                           "terms_of_reference": TOR}}
        r = await self.stack.http.post(f"/watch-list/{self.rid}/buddies", json=body, headers=self.regulator)
        assert r.status_code == 201, r.text
        pid = r.json()["partnership_id"]
        self.pids.append(pid)
        await eventually(self.stack.handle(pid).describe, what=f"{pid} to start", timeout=10, interval=0.03,
                         ignore=RPCError)
        await self.settle(pid)
        return pid

    async def decide(self, step_id: str, action: str, headers: dict[str, str] | None = None,
                     payload: dict[str, Any] | None = None, comment: str | None = None, expect: int = 200,
                     **kw: Any):
        pid = next(p for p in self.pids if step_id.startswith(p.rsplit("-buddy-", 1)[1] + "."))
        if headers is None:
            st = (await self.open_steps(pid))[step_id]
            headers = self.headers_for(st.role, st.subject["buddy_ods"])
        body = {"action": action, "payload": payload or {}, **({"comment": comment} if comment else {})}
        r = await self.stack.http.post(f"/watch-list/{self.rid}/buddies/{pid}/steps/{step_id}/decisions", json=body,
                                       headers=headers, **kw)
        assert r.status_code == expect, r.text
        if expect == 200:
            await self.settle(pid)
        return r

    async def entry_buddies(self) -> dict[str, Any]:
        st = await self.stack.handle(self.rid).query(WatchListWorkflow.get_state)
        return {k: v.model_dump(mode="json") for k, v in st.buddies.items()}


async def test_a_watch_list_trust_is_buddied_confidentially_and_the_buddy_is_paid_once(stack):
    w = await WatchWorld.listed(stack, "RWB1")
    eid = w.rid
    buddy, other_buddy = w.buddy("BWB1"), w.buddy("BWB9")
    cqc = stack.auth("cqc-1", "cqc")
    other_trust = stack.auth("trust-B9", "trust", trusts=["RWB9"])

    # Only the regulator starts it; anyone who may not see the entry is told it does not exist.
    body = {"buddy": {"ods_code": "BWB1", "name": "BWB1 Hospitals NHS FT"}, "scope": "trust-wide"}
    assert (await stack.http.post(f"/watch-list/{eid}/buddies", json=body, headers=w.trust)).status_code == 403
    for h in (cqc, other_trust, buddy):
        r = await stack.http.post(f"/watch-list/{eid}/buddies", json=body, headers=h)
        assert r.status_code == 404 and r.json()["type"].endswith("unknown-watch-list-entry")
    bad = {**body, "buddy": {"ods_code": "RWB1", "name": "itself"}}
    r = await stack.http.post(f"/watch-list/{eid}/buddies", json=bad, headers=w.regulator)
    assert r.status_code == 422 and "own buddy" in r.json()["detail"]
    pid = await w.add("BWB1")
    assert pid == f"{eid}-buddy-BWB1"
    r = await stack.http.post(f"/watch-list/{eid}/buddies", json=body, headers=w.regulator)
    assert r.status_code == 409  # one running partnership per buddy and scope, as for a regime

    # Confidential: no search attribute, no inbox task; the entry shows it to its readers.
    desc = await stack.handle(pid).describe()
    assert not {p.key.name for p in desc.typed_search_attributes} & SEARCH_ATTRIBUTES
    assert await stack.pool.fetchval("SELECT count(*) FROM tasks WHERE workflow_id = $1", pid) == 0
    assert await stack.pool.fetchval("SELECT count(*) FROM audit_log WHERE workflow_id = $1", pid) > 0
    entry = (await stack.http.get(f"/watch-list/{eid}", headers=w.trust)).json()
    assert [b["partnership_id"] for b in entry["buddies"]] == [pid]

    # The buddy finds its steps (the inbox it cannot have); another buddy finds nothing and is told nothing.
    mine = (await stack.http.get("/watch-list/partnerships", headers=buddy)).json()["items"]
    assert [(i["partnership_id"], [s["id"] for s in i["open_steps"]]) for i in mine] == [(pid, ["BWB1.aip_buddy"])]
    assert (await stack.http.get("/watch-list/partnerships", headers=other_buddy)).json()["items"] == []
    assert (await stack.http.get("/watch-list/partnerships", headers=w.trust)).status_code == 403
    r = await stack.http.get(f"/watch-list/{eid}/buddies/{pid}", headers=other_buddy)
    assert r.status_code == 404 and r.json()["type"].endswith("unknown-watch-list-entry")
    r = await stack.http.get(f"/watch-list/{eid}/buddies/{pid}", headers=buddy)
    assert r.status_code == 200 and "finances and safety" not in r.text  # not the entry's reasons
    assert (await stack.http.get(f"/watch-list/{eid}", headers=buddy)).status_code == 404

    # The same chain as a regime's partnership, each step by its own party (a trust user cannot sign as the buddy).
    await w.decide("BWB1.aip_buddy", "accept", headers=w.trust, expect=403)
    await w.agree(pid, "BWB1", plan=PLAN)
    # The buddy's own funding agreement, in months 4-6 of the entry's time on the list (it has central funding), as
    # a regime's partnership has it: the regulator records it, the buddy agrees.
    opened = await w.open_steps(pid)
    assert sorted(opened) == ["BWB1.funding_agreement", "BWB1.q1.forecast"]
    added = date.fromisoformat(entry["added_on"])
    assert opened["BWB1.funding_agreement"].due == funding_agreement_due(add_months(added, FUNDING_MONTHS[1][1]),
                                                                        (await w.state(pid)).p.started_on)
    await w.decide("BWB1.funding_agreement", "record", payload={"agreed_pence": 30_000_001}, expect=422)
    await w.decide("BWB1.funding_agreement", "record", payload={"agreed_pence": 30_000_000})
    [buddy_step] = [sid for sid in await w.open_steps(pid) if "funding" in sid]
    await w.decide(buddy_step, "agree", headers=buddy)
    assert (await w.state(pid)).funding.finalised_on is not None
    q1 = lines(("governance", 3_000_000), ("maternity", 1_000_000))
    await w.decide("BWB1.q1.forecast", "sign_off", payload=q1)
    await w.advance(92)
    await w.confirm_all(pid, 1)
    await w.decide("BWB1.q1.authorise", "authorise", payload=q1)

    async def paid() -> list[Any]:
        return await stack.pool.fetch("SELECT regime_id, amount_pence FROM buddy_payments WHERE partnership_id=$1",
                                      pid)
    rows = await eventually(paid, until=lambda r: len(r) == 1, what="the quarter's payment", timeout=10,
                            interval=0.05)
    assert [(r["regime_id"], r["amount_pence"]) for r in rows] == [(eid, 4_000_000)]
    # Sent again with the same content, the authorisation changes nothing: paid once.
    await w.decide("BWB1.q1.authorise", "authorise", headers=w.idir, payload=q1, expect=409)
    shown = await eventually(w.entry_buddies, until=lambda b: b[pid]["paid_pence"] == 4_000_000,
                             what="the entry to show the payment", timeout=10, interval=0.05)
    assert shown[pid]["ended"] is False
    # In no national figure: the evaluation's costs read regimes only.
    ev = await stack.http.get("/evaluation?format=csv&table=cost", headers=w.ops)
    assert ev.status_code == 200 and eid not in ev.text

    # Taken off the list: the partnership ends with it, settling its quarter under way on its own.
    r = await stack.http.post(f"/watch-list/{eid}/removal", json={"reason": "improved"}, headers=w.regulator)
    assert r.status_code == 200, r.text
    assert [b["ended"] for b in r.json()["buddies"]] == [True]
    state = await eventually(lambda: w.state(pid), until=lambda s: s.stage in ("settling", "ended"),
                             what="the partnership to end with its entry", timeout=10, interval=0.05)
    assert state.stage in ("settling", "ended")

    # Who looked: the buddy's reads are in the entry's access log, with what they read.
    looks = (await stack.http.get(f"/watch-list/{eid}/access", headers=w.ops)).json()["items"]
    seen = {(x["user_id"], x["what"]) for x in looks}
    assert {("buddy-user-BWB1", f"partnership {pid}"), ("buddy-user-BWB1", "buddy partnerships")} <= seen
    assert not any(x["user_id"] == "buddy-user-BWB9" for x in looks)


async def test_a_trust_put_back_on_the_list_the_same_day_gets_a_numbered_entry(stack):
    regulator = stack.auth("reg-1", "regulator")
    body = {"trust": {"ods_code": "RWB2", "name": "Twice Listed NHS Trust"}, "reasons": ["at risk"]}
    first = (await stack.http.post("/watch-list", json=body, headers=regulator)).json()
    r = await stack.http.post(f"/watch-list/{first['entry_id']}/removal", json={"reason": "an error"},
                              headers=regulator)
    assert r.status_code == 200, r.text
    r = await stack.http.post("/watch-list", json=body, headers=regulator)
    assert r.status_code == 201, r.text
    second = r.json()
    if second["added_on"] == first["added_on"]:  # (the same London day, as nearly always in this test)
        assert second["entry_id"] == first["entry_id"] + "-2"
    else:
        assert second["entry_id"] == f"watch-RWB2-{second['added_on']}"
    r = await stack.http.get(f"/watch-list/{second['entry_id']}", headers=regulator)
    assert r.status_code == 200 and r.json()["status"] == "on_list"
    assert (await stack.http.get(f"/watch-list/{first['entry_id']}", headers=regulator)).json()["status"] == "removed"
