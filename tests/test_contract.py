"""The API's contract as an integrator meets it (issue 18): typed answers, short operation ids, published
payload models, and a client generated from /openapi.json that drives the first slice through its types.

The generated-client test runs openapi-python-client (the tool an integrator would use) against the schema
the running app serves, imports the package it writes, and places a regime, submits and agrees its plan,
reads its state and its audit log, all through the generated functions and models: an answer the schema
does not describe would come back as untyped data or fail to parse.
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

from api.app import create_app
from domain.dates import london_date
from domain.ledger import BUDDY_STEPS
from domain.steps import CATALOGUE

OPERATION_ID = re.compile(r"^[a-z][a-zA-Z]{2,29}$")
# A seed's section, as the catalogue cites it: "seed 000 §4a(iv)", "seed 002" (/work/shared/seeds).
SEED_SECTION = re.compile(r"seed 00[0-4]( §\d[a-z]?(\([ivx]+\))?)?")


def today() -> date:
    return london_date(datetime.now(UTC))


def schema() -> dict:
    return create_app().openapi()


def test_every_operation_has_a_short_stable_id_and_a_typed_success_answer():
    doc = schema()
    ids = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            oid = op.get("operationId", "")
            assert OPERATION_ID.match(oid), f"{method.upper()} {path}: operation id {oid!r} is not short camelCase"
            ids.append(oid)
            ok = {code: r for code, r in op["responses"].items() if code.startswith("2")}
            assert len(ok) == 1, f"{oid}: one success status, got {sorted(ok)}"
            (code, answer), = ok.items()
            json_schema = answer.get("content", {}).get("application/json", {}).get("schema", {})
            if oid == "getDocument":  # the document exactly as submitted: a JSON object of its kind's model
                assert json_schema.get("type") == "object"
                continue
            assert "$ref" in json_schema, f"{oid} answers {code} with no response model: {json_schema}"
    assert len(ids) == len(set(ids)), "operation ids must be unique"
    assert {"placeRegime", "getRegime", "decideStep", "listTasks", "getRegimeAudit"} <= set(ids)


def test_every_step_kind_and_action_maps_to_a_published_payload_schema():
    doc = schema()
    schemas = doc["components"]["schemas"]
    decide = doc["paths"]["/regimes/{regime_id}/steps/{step_id}/decisions"]["post"]
    mapping = decide["x-step-payloads"]
    payload = schemas["DecisionRequest"]["properties"]["payload"]
    offered = {ref["$ref"] for ref in payload["anyOf"]}
    for catalogue in (CATALOGUE, BUDDY_STEPS):
        for kind, spec in catalogue.items():
            assert set(mapping[kind]) == set(spec.actions), kind
            for action, model in spec.actions.items():
                ref = mapping[kind][action]["$ref"]
                assert ref == f"#/components/schemas/{model.__name__}"
                assert ref in offered, f"{kind}.{action}: {ref} is not one of the payload's schemas"
                assert schemas[model.__name__]["properties"].keys() == model.model_json_schema().get(
                    "properties", {}).keys()
                assert mapping[kind][action]["reason_required"] == (action in spec.needs_reason)
    # The main request bodies carry examples an integrator can start from.
    for name in ("PlacementRequest", "DecisionRequest", "DeadlineRequest", "BuddyAddRequest"):
        assert schemas[name].get("examples"), name


async def test_step_kinds_endpoint_serves_the_same_mapping(stack):
    r = await stack.http.get("/step-kinds", headers=stack.auth("ct-reader", "trust", trusts=["CT9"]))
    assert r.status_code == 200, r.text
    served = {k["kind"]: k for k in r.json()["items"]}
    assert set(served) == set(CATALOGUE) | set(BUDDY_STEPS)
    plan = served["improvement_plan"]
    assert plan["role"] == "trust" and plan["workflow"] == "regime"
    assert plan["actions"] == {"submit": {"payload_schema": "ImprovementPlanPayload", "reason_required": False}}
    assert served["buddy_confirm_trust"]["actions"]["dispute"]["reason_required"] is True
    assert plan["deadline"] == {"rule": CATALOGUE["improvement_plan"].deadline.rule, "basis": "statutory",
                                "source": "seed 000 §4a(iv)"}
    assert served["plan_review"]["deadline"]["source"] == "domain.steps.REVIEW_DAYS"
    assert served["monthly_return"]["recurs"] == "monthly" and served["buddy_authorise"]["recurs"] == "quarterly"
    # Every kind says where its deadline comes from: a section of a seed, or the service's constant that sets it.
    for kind, k in served.items():
        d = k["deadline"]
        assert d["rule"].strip(), kind
        if d["basis"] == "statutory":
            assert all(SEED_SECTION.fullmatch(s) for s in d["source"].split("; ")), (kind, d)
        else:
            assert d["basis"] == "service_default", (kind, d)
            module, _, name = d["source"].rpartition(".")
            assert hasattr(importlib.import_module(module), name), (kind, d)
    assert (await stack.http.get("/step-kinds")).status_code == 401


def generate_client(spec: str, out: Path) -> str:
    """Run openapi-python-client as an integrator would; return the generated package's name."""
    spec_file = out / "openapi.json"
    spec_file.write_text(spec)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run([sys.executable, "-m", "openapi_python_client", "generate", "--path", str(spec_file),
                           "--output-path", str(out / "client"), "--meta", "none", "--overwrite"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Warning" not in done.stdout + done.stderr, done.stdout + done.stderr
    return "client"


async def test_a_generated_client_drives_the_first_slice_through_its_typed_models(stack, tmp_path):
    spec = (await stack.http.get("/openapi.json")).text
    name = generate_client(spec, tmp_path)
    sys.path.insert(0, str(tmp_path))
    try:
        pkg = importlib.import_module(name)
        api = importlib.import_module(f"{name}.api")
        models = importlib.import_module(f"{name}.models")
        regimes = importlib.import_module(f"{name}.api.regimes")
        audit = importlib.import_module(f"{name}.api.audit")
        place_regime = importlib.import_module(f"{name}.api.regimes.place_regime")
        decide_step = importlib.import_module(f"{name}.api.regimes.decide_step")
        get_regime = importlib.import_module(f"{name}.api.regimes.get_regime")
        get_regime_audit = importlib.import_module(f"{name}.api.audit.get_regime_audit")
        assert api and regimes and audit

        def client(sub: str, role: str):
            token = stack.token(sub, role, trusts=["CT1"])
            return pkg.AuthenticatedClient(base_url=stack.base_url, token=token, raise_on_unexpected_status=True)

        entry = today()
        ratings = models.KeyQuestionRatings.from_dict({
            "safe": "inadequate", "effective": "requires_improvement", "caring": "good",
            "responsive": "requires_improvement", "well_led": "inadequate", "overall": "inadequate"})
        body = models.PlacementRequest(
            trust=models.Trust(ods_code="CT1", name="Contract Test Hospitals NHS Trust"),
            entry_date=entry, ratings=ratings)
        async with client("ct-reg", "regulator") as reg:
            placed = await place_regime.asyncio(client=reg, body=body)
        assert isinstance(placed, models.Placed), placed
        assert placed.regime_id == f"regime-CT1-{entry.isoformat()}" and placed.phase == "in_special_measures"
        rid = placed.regime_id

        plan = models.ImprovementPlanPayload(actions=[
            models.PlanAction(category=models.PlanActionCategory.MUST_DO, description="Staff the emergency "
                              "department to safe levels", owner="Chief Nurse", metric="RN fill rate >= 95%")])
        async with client("ct-trust", "trust") as trust:
            decided = await decide_step.asyncio(rid, "improvement_plan", client=trust,
                                                body=models.DecisionRequest(action="submit", payload=plan))
        assert isinstance(decided, models.StepDecided), decided
        assert decided.step.status == models.StepStatus.DONE and decided.step.kind == "improvement_plan"

        async with client("ct-id", "improvement_director") as idir:
            agreed = await decide_step.asyncio(rid, "plan_review", client=idir, body=models.DecisionRequest(
                action="agree", comment="a good plan", payload=models.EmptyPayload()))
        assert isinstance(agreed, models.StepDecided)
        assert agreed.step.outcome == "agree" and agreed.phase == "in_special_measures"

        await stack.settle(rid)
        async with client("ct-reader", "trust") as reader:
            state = await get_regime.asyncio(rid, client=reader)
            log = await get_regime_audit.asyncio(rid, client=reader)
        assert isinstance(state, models.RegimeView), state
        assert state.regime_id == rid and state.placement.trust.ods_code == "CT1"
        assert isinstance(state.projection, models.RegimeSummary) and state.projection.entry_date == entry
        open_kinds = {s.kind for s in state.open_steps}
        assert "plan_review" not in open_kinds and "plan_signoff_regulator" in open_kinds
        # Each step comes with where its due date comes from (issue 14, item 11), typed by the contract.
        assert all(isinstance(s, models.StepWithBasis) for s in state.open_steps)
        assert all(isinstance(s.deadline_basis, models.DeadlineBasis) for s in state.open_steps)
        assert {s.deadline_basis.kind for s in state.open_steps} <= {"statutory", "service_default", "amended"}
        assert state.policy.version == "2026-12" and placed.policy.version == "2026-12"
        assert isinstance(log, models.AuditPage)
        events = [e.event for e in log.items]
        assert events[0] == "regime_entered", events
        assert {e.step_kind for e in log.items} >= {"improvement_plan", "plan_review"}
        assert all(isinstance(e.at, datetime) for e in log.items)
    finally:
        sys.path.remove(str(tmp_path))
        for mod in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            del sys.modules[mod]
