"""Issue 14, item 12: where the sources disagree, each choice is a named policy setting (domain/policy.py) with its
default (what the service does today) and its reason (docs/regime.md); each regime records the policy it was placed
under and keeps it when the settings change later; histories recorded before regimes recorded a policy decode to
the baseline."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

from domain.ledger import BUDDY_STEPS, BuddyKind
from domain.models import Placement, RegimeStart
from domain.policy import BASELINE, CHOICE_FIELDS, CHOICES, Policy, describe, policy_markdown, setting_name
from domain.steps import CATALOGUE, EXTENSION_GUIDANCE_MONTHS, Kind, MeetingPayload, Statutory
from domain.vocab import Role
from settings import Settings
from tests.driver import Regime

ROOT = Path(__file__).resolve().parent.parent


def test_the_baseline_is_fixed():
    """What a placement recorded without a policy decodes to: changing it would change running regimes silently."""
    assert BASELINE == Policy()
    assert BASELINE.model_dump() == {
        "version": "2026-12", "secretary_of_state_letter": "end_of_extension", "extension_guidance_months": 6,
        "capability_review": "optional", "buddy_package_agreed_by": "regulator_and_trust",
        "board_to_board_timing": "within_3_months", "entry_rule": "normal_trigger", "chosen_at_placement": ()}


def test_each_default_is_what_the_service_does_today():
    assert BASELINE.extension_guidance_months == EXTENSION_GUIDANCE_MONTHS
    # Capability review: commissioned by choice when a board-to-board or its letter is recorded (seed 000 §4b(ii)).
    assert BASELINE.capability_review == "optional" and MeetingPayload(meeting_date="2027-01-01") \
        .commission_capability_review is False
    # The buddy support plan is agreed by the regulator and the trust (seed 000 §4a(ii)).
    agree = {s.role for k, s in BUDDY_STEPS.items() if k in (BuddyKind.buddy_plan_agree_regulator,
                                                             BuddyKind.buddy_plan_agree_trust)}
    assert BASELINE.buddy_package_agreed_by == "regulator_and_trust" and agree == {Role.regulator, Role.trust}
    # The first board-to-board is due 3 months after entry, statutory under seed 000 §4b(i).
    b2b = CATALOGUE[Kind.board_to_board].deadline
    assert BASELINE.board_to_board_timing == "within_3_months"
    assert b2b.rule == "3 months after entry" and b2b.basis == Statutory("seed 000 §4b(i)")


def test_every_choice_gives_its_reason_and_both_sources():
    assert set(CHOICE_FIELDS) == set(Policy.model_fields) - {"version", "chosen_at_placement"}
    for name in CHOICE_FIELDS:
        why = Policy.model_fields[name].description or ""
        assert "Default" in why or "agree" in why, name
        cited = {c.lower() for c in re.findall(r"seed 00\d(?: §[\w().]+)?", why, re.I)}
        assert len(cited) >= 2, f"{name}: cite both sources: {why}"
        if name in CHOICES:
            for value in CHOICES[name]:
                assert value in why, (name, value)


def test_settings_choose_the_policy_of_new_placements(monkeypatch):
    s = Settings(_env_file=None)
    assert s.policy == BASELINE
    for name in CHOICE_FIELDS:
        assert getattr(s, f"policy_{name}") == getattr(BASELINE, name)
        assert setting_name(name) == f"policy_{name}".upper()
    monkeypatch.setenv("POLICY_VERSION", "2027-04")
    monkeypatch.setenv("POLICY_CAPABILITY_REVIEW", "always")
    monkeypatch.setenv("POLICY_BOARD_TO_BOARD_TIMING", "months_4_to_6")
    p = Settings(_env_file=None).policy
    assert (p.version, p.capability_review, p.board_to_board_timing) == ("2027-04", "always", "months_4_to_6")
    assert p.secretary_of_state_letter == BASELINE.secretary_of_state_letter
    monkeypatch.setenv("POLICY_CAPABILITY_REVIEW", "sometimes")
    try:
        Settings(_env_file=None)
    except ValueError as e:
        assert "policy_capability_review" in str(e)
    else:
        raise AssertionError("an unknown policy value must stop the service")


def test_a_placement_recorded_before_policies_decodes_to_the_baseline():
    """The golden histories were recorded before Placement had a policy: their input decodes, and reads as the
    baseline (tests/test_replay.py replays them whole)."""
    history = json.loads((ROOT / "tests/histories/continue_as_new.regime.run1.json").read_text())
    started = history["events"][0]["workflowExecutionStartedEventAttributes"]
    raw = json.loads(base64.b64decode(started["input"]["payloads"][0]["data"]))
    assert "policy" not in raw["placement"]
    start = RegimeStart.model_validate(raw)
    assert start.placement is not None and start.placement.policy == BASELINE
    again = Placement.model_validate(start.placement.model_dump(mode="json"))
    assert again.policy == BASELINE


def test_docs_list_every_policy_as_the_model_has_it():
    text = (ROOT / "docs/regime.md").read_text()
    m = re.search(r"<!-- policy:begin -->\n(.*?)\n<!-- policy:end -->", text, re.S)
    assert m, "docs/regime.md needs the policy table between <!-- policy:begin --> and <!-- policy:end -->"
    assert m.group(1) == policy_markdown(), ("docs/regime.md's policy table differs from domain/policy.py: paste "
                                             "`python -c 'from domain.policy import policy_markdown; "
                                             "print(policy_markdown())'`")
    assert "## Where the sources disagree" in text


def test_describe_names_each_choice_in_words():
    rows = describe(BASELINE)
    assert [r["field"] for r in rows] == list(CHOICE_FIELDS)
    words = {r["field"]: r["words"] for r in rows}
    assert words["extension_guidance_months"] == "6 months"
    assert words["board_to_board_timing"] == "within 3 months of entry"
    assert all(r["setting"].startswith("POLICY_") and r["why"] for r in rows)


async def test_a_regime_keeps_its_policy_when_the_settings_change(stack):
    first = await Regime.place(stack, "RPA")
    r = await stack.http.get(f"/regimes/{first.id}", headers=first.users["operations"])
    assert r.status_code == 200, r.text
    assert r.json()["policy"] == BASELINE.model_dump(mode="json") == r.json()["placement"]["policy"]

    # A new policy for regimes placed from now on.
    stack.settings.policy_version = "2027-04"
    stack.settings.policy_capability_review = "always"
    stack.settings.policy_board_to_board_timing = "months_4_to_6"
    placed = await stack.http.post("/regimes", json=_placement("RPB"), headers=stack.auth("reg-1", "regulator"))
    assert placed.status_code == 201, placed.text
    assert placed.json()["policy"]["version"] == "2027-04"
    second = placed.json()["regime_id"]

    old = (await stack.http.get(f"/regimes/{first.id}", headers=first.users["operations"])).json()
    assert old["policy"]["version"] == "2026-12" and old["policy"]["capability_review"] == "optional"
    assert old["policy"]["board_to_board_timing"] == "within_3_months"
    new = (await stack.http.get(f"/regimes/{second}", headers=first.users["operations"])).json()
    assert new["policy"]["version"] == "2027-04" and new["policy"]["capability_review"] == "always"
    assert new["placement"]["policy"] == new["policy"]

    # The pages show each regime's own policy.
    ops = stack.auth("ops-1", "operations")
    page = await stack.http.get(f"/web/regimes/{first.id}", headers=ops)
    assert page.status_code == 200, page.text
    assert "Policy 2026-12" in page.text and "Policy 2027-04" not in page.text
    assert 'data-policy="capability_review" data-value="optional"' in page.text
    page = await stack.http.get(f"/web/regimes/{second}", headers=ops)
    assert "Policy 2027-04" in page.text and 'data-policy="capability_review" data-value="always"' in page.text
    assert 'data-policy="board_to_board_timing" data-value="months_4_to_6"' in page.text


def _placement(ods: str) -> dict:
    from tests.helpers import placement
    from tests.test_api import today

    return placement(ods, today())


async def test_the_regulator_can_choose_a_policy_for_one_regime_when_it_places_it(stack):
    """PlacementRequest.policy: a choice for this regime instead of the setting, recorded and named as such."""
    regulator = stack.auth("reg-1", "regulator")
    body = _placement("RPC") | {"policy": {"secretary_of_state_letter": "sometime"}}
    refused = await stack.http.post("/regimes", json=body, headers=regulator)
    assert refused.status_code == 422 and refused.headers["content-type"].startswith("application/problem+json")
    assert (await stack.http.get("/regimes?ods_code=RPC", headers=stack.auth("ops-1", "operations"))).json()[
        "items"] == []

    body["policy"] = {"secretary_of_state_letter": "recommending_extension"}
    placed = await stack.http.post("/regimes", json=body, headers=regulator)
    assert placed.status_code == 201, placed.text
    policy = placed.json()["policy"]
    assert policy["secretary_of_state_letter"] == "recommending_extension"
    assert policy["chosen_at_placement"] == ["secretary_of_state_letter"]
    assert policy["version"] == stack.settings.policy_version
    assert policy["capability_review"] == stack.settings.policy_capability_review  # the rest from the settings
    page = await stack.http.get(f"/web/regimes/{placed.json()['regime_id']}", headers=stack.auth("ops-1", "operations"))
    row = re.search(r'<tr data-policy="secretary_of_state_letter".*?</tr>', page.text, re.S)
    assert row and "chosen when placed" in row.group(0) and "when recommending an extension" in row.group(0)
