"""Fuzzing the API (issue 5, issue 8 fault 5): schemathesis generates requests for every operation in
/openapi.json of a running stack (API and worker as their own processes, the real dev server and PostgreSQL),
valid and invalid, sent with a valid token for each role. No response may be a 5xx, break the schema the
document declares for it (schemathesis's response-schema conformance), have a content type it does not
declare (content-type conformance), or be an error in any shape but application/problem+json.

Half the generated requests have their regime and partnership ids replaced by real ones seeded for the role, so
the fuzzer gets past 404 into the role checks, the validators and the workflows. Bounded: a few examples per
operation, role and mode; every failure is collected (not just the first) and printed as a curl command.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from bench.common import project, today
from tests.helpers import PLAN, placement

ROLES = ("trust", "improvement_director", "regulator", "commissioner", "buddy", "cqc", "operations", "admin")
EXAMPLES = {GenerationMode.POSITIVE: 15, GenerationMode.NEGATIVE: 6}


@pytest.fixture(scope="module")
async def fuzz_stack(temporal_address, database_url, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    async with project(temporal_address, database_url, tmp) as p:
        seeds: dict[str, dict[str, Any]] = {}
        regulator = p.auth("reg-seed", "regulator")
        async with httpx.AsyncClient(base_url=p.base_url, timeout=60) as http:
            for i, role in enumerate(ROLES):
                ods, buddy = f"FZ{i}", f"FZB{i}"
                r = await http.post("/regimes", json=placement(ods, today()), headers=regulator)
                assert r.status_code == 201, r.text
                rid = r.json()["regime_id"]
                r = await http.post(f"/regimes/{rid}/steps/improvement_plan/decisions", json={
                    "action": "submit", "payload": PLAN}, headers=p.auth(f"trust-{ods}", "trust", trusts=[ods]))
                assert r.status_code == 200, r.text
                r = await http.post(f"/regimes/{rid}/buddies", headers=regulator, json={
                    "buddy": {"ods_code": buddy, "name": f"{buddy} Hospitals NHS FT"},
                    "agreement_in_principle": {"agreed_level_pence": 10_000_000, "terms_of_reference": "mentoring"}})
                assert r.status_code == 201, r.text
                seeds[role] = {"regime_id": rid, "partnership_id": r.json()["partnership_id"],
                               "headers": p.auth(f"{role}-fuzz", role, trusts=[ods], org=buddy)}
        yield p, seeds


def problem_shape(response: Any) -> str | None:
    """Issue 5: one shape for every error (RFC 9457 problem+json with type, title, status, detail)."""
    if response.status_code < 400:
        return None
    ctype = response.headers.get("content-type", [""])
    ctype = ctype[0] if isinstance(ctype, list) else ctype
    if not ctype.startswith("application/problem+json"):
        return f"error response with content type {ctype!r}"
    try:
        body = json.loads(response.content)
    except ValueError:
        return "error body is not JSON"
    missing = {"type", "title", "status", "detail"} - set(body)
    if missing:
        return f"problem body lacks {sorted(missing)}"
    if body["status"] != response.status_code:
        return f"problem status {body['status']} but HTTP {response.status_code}"
    return None


def fuzz(base_url: str, seed: dict[str, Any]) -> tuple[int, Counter, list[str]]:
    schema = schemathesis.openapi.from_url(base_url + "/openapi.json")
    headers = seed["headers"]
    sent = 0
    statuses: Counter = Counter()
    failures: list[str] = []
    seen: set[tuple] = set()

    for result in schema.get_all_operations():
        op = result.ok()
        for mode, n in EXAMPLES.items():
            @settings(max_examples=n, deadline=None, database=None, suppress_health_check=list(HealthCheck),
                      phases=[Phase.explicit, Phase.generate])
            @given(case=op.as_strategy(generation_mode=mode), real_ids=st.booleans())
            def one(case, real_ids: bool) -> None:
                nonlocal sent
                if real_ids:
                    for name in ("regime_id", "partnership_id"):
                        if case.path_parameters and name in case.path_parameters:
                            case.path_parameters[name] = seed[name]
                # A valid token always (the generator may have written, mangled or left out Authorization).
                case.headers = {**(case.headers or {}), **headers}
                response = case.call(base_url=base_url, timeout=60)
                sent += 1
                statuses[response.status_code] += 1
                problems = []
                for check in (not_a_server_error, response_schema_conformance, content_type_conformance):
                    try:
                        case.validate_response(response, checks=[check], headers=headers)
                    except (Exception, BaseExceptionGroup) as e:  # noqa: B036 - schemathesis raises a group
                        problems.append(f"{check.__name__}: {str(e).strip().splitlines()[0][:200]}")
                shape = problem_shape(response)
                if shape:
                    problems.append(f"problem+json: {shape}")
                key = (case.operation.method, case.operation.path, response.status_code, tuple(p.split(":")[0] for p in problems))
                if problems and key not in seen:
                    seen.add(key)
                    failures.append(f"{case.operation.method.upper()} {case.operation.path} -> {response.status_code}: {'; '.join(problems)}\n"
                                    f"    {case.as_curl_command(headers=headers)}\n    {response.text[:300]}")

            try:
                one()
            except Unsatisfiable:  # nothing to make invalid (an operation without parameters or body)
                pass
    return sent, statuses, failures


@pytest.mark.parametrize("role", ROLES)
async def test_fuzz_every_operation_as_each_role(fuzz_stack, role):
    p, seeds = fuzz_stack
    started = time.monotonic()
    sent, statuses, failures = await asyncio.to_thread(fuzz, p.base_url, seeds[role])
    print(f"\nfuzz as {role}: {sent} requests in {time.monotonic() - started:.1f}s, statuses "
          f"{dict(sorted(statuses.items()))}; 5xx {sum(n for s, n in statuses.items() if s >= 500)}, "
          f"failures {len(failures)}")
    for f in failures:
        print(f)
    assert not failures, f"{len(failures)} kinds of bad response as {role}:\n" + "\n".join(failures)
