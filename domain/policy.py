"""The regime's policy: the choice the service makes where its sources disagree (domain.md, "Where the seeds
disagree"), one field per disagreement, and the version of that set of choices.

A regime records the policy it was placed under (`Placement.policy`, filled from the `POLICY_*` settings at
placement), so a later change of the settings changes new placements only; moving a running regime to another
policy is a deliberate, recorded step, never a side effect of a deploy. The choices are recorded and shown here;
the rules that act on them read the regime's recorded policy once they are made to (none does yet: each default
is what the service does today, whatever the regime's policy says), except secretary_of_state_letter (the regime's
rules, domain/steps.py) and buddy_package_agreed_by (the partnership's agreement steps, domain/ledger.py), which
the rules follow.

`BASELINE` is the policy the service ran before regimes recorded one. It is what a placement recorded without a
policy decodes to (histories, states carried by continue-as-new): never change its values. A new policy is a new
`version` with its own values, given through the settings.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SecretaryOfStateLetter = Literal["end_of_extension", "recommending_extension"]
CapabilityReview = Literal["optional", "always"]
BuddyPackageAgreedBy = Literal["regulator_and_trust", "trusts_and_id"]
BoardToBoardTiming = Literal["within_3_months", "months_4_to_6"]
EntryRule = Literal["normal_trigger"]


class Policy(BaseModel):
    """Where the sources disagree, what this regime follows. Each field's description gives the choice's reason
    and both sources (seeds in /work/shared/seeds, sections as domain.md cites them)."""

    model_config = ConfigDict(frozen=True)

    version: str = Field("2026-12", min_length=1, max_length=40,
                         description="the name of this set of choices; a change of any choice is a new version")
    secretary_of_state_letter: SecretaryOfStateLetter = Field(
        "end_of_extension",
        description="When the Chief Inspector writes to the Secretary of State. end_of_extension (seed 000 §1): "
                    "at the end of an extension, when the trust has still not improved, giving the reasons, the "
                    "areas needing improvement and the improvement required; recommending_extension (seed 002, "
                    "'Removing trusts'): when recommending the extension, after which CQC writes to the regulator "
                    "to trigger urgent consideration of the action plan; the extension then takes effect (its revised "
                    "plan and re-inspection open) once the Secretary of State has agreed and CQC has written. The "
                    "referral at the end of an extension stays open under both, once for each extension. Default "
                    "end_of_extension: the pack (seed 000) is the fuller and later source on the regime's "
                    "procedure, its letter leads to the long-term solution the regime's `long_term_solution` phase "
                    "follows, and it adds no wait before an extension's plan and re-inspection.")
    extension_guidance_months: int = Field(
        6, ge=1, le=24,
        description="The length of an extension the guidance gives. Seed 000 §1: 'up to a further 6 months'; seed "
                    "002 ('Removing trusts'): a 'reasonable timeframe', usually 6 months. Default 6: both sources "
                    "name it; a longer extension needs a reason beyond the guidance (docs/regime.md).")
    capability_review: CapabilityReview = Field(
        "optional",
        description="Whether every regime has a review of its board's capability. optional (seed 000 §4b(ii), "
                    "and 'possible' in the months 4-6 column of its timeline §4c): it may be decided after the "
                    "board-to-board; always (seed 002, 'What happens'): the regulator will review the leadership's "
                    "capability. Default optional: the regulator commissions it when it records a board-to-board "
                    "or its letter to the chair, as seed 000 describes the step.")
    buddy_package_agreed_by: BuddyPackageAgreedBy = Field(
        "regulator_and_trust",
        description="Who agrees the buddy support package. regulator_and_trust (seed 000 §4a(ii)): the buddy support "
                    "plan is agreed by the regulator (NHS TDA) and the trust, forecasts signed off by the "
                    "improvement director; trusts_and_id (seed 000 §3): the package is agreed between both trusts "
                    "and the improvement director, costs between all parties. Default regulator_and_trust: the "
                    "regulator funds the package, so its agreement is asked for; the improvement director signs off "
                    "each quarter's forecast and all three parties confirm delivery before payment (§3). Under "
                    "trusts_and_id the trust and the improvement director agree the buddy's draft instead.")
    board_to_board_timing: BoardToBoardTiming = Field(
        "within_3_months",
        description="When the first board-to-board is due. within_3_months (seed 000 §4b(i)): one within three "
                    "months of entry; months_4_to_6 (seed 001's timeline, §4c): prepared in months 4-6, though it "
                    "'can happen at any point'. Default within_3_months: the only date either source states as a "
                    "deadline; the timeline places preparation, not a due date.")
    entry_rule: EntryRule = Field(
        "normal_trigger",
        description="What the entry ratings are. normal_trigger (seed 000 §1: the Chief Inspector 'typically' "
                    "recommends entry when well-led and one other key question are inadequate; seed 002, 'Why "
                    "trusts are placed': CQC will 'normally' recommend it): the rule is the usual trigger, not a "
                    "gate, so the regulator may place a trust on its own evidence with a reason (basis regulator_decision), as "
                    "the 2013 Keogh cohort entered, and confirms with its reason a recommendation whose ratings "
                    "do not meet it. The sources agree on this; it is recorded so that a later policy (e.g. the "
                    "2021 Recovery Support Programme's agreed criteria) is a visible change.")

    chosen_at_placement: tuple[str, ...] = Field(
        (), max_length=10, description="the choices the regulator made for this regime when it placed it, instead of the settings")


BASELINE = Policy()


class PolicyChoices(BaseModel):
    """Choices the regulator makes for one regime when it places it (PlacementRequest.policy), instead of the
    POLICY_* settings: each one given replaces the setting's, and the regime records which (`chosen_at_placement`)."""

    model_config = ConfigDict(extra="forbid")

    secretary_of_state_letter: SecretaryOfStateLetter | None = None
    capability_review: CapabilityReview | None = None
    buddy_package_agreed_by: BuddyPackageAgreedBy | None = None
    board_to_board_timing: BoardToBoardTiming | None = None

    def applied_to(self, policy: Policy) -> Policy:
        """`policy` with these choices, naming them in `chosen_at_placement`."""
        given = self.model_dump(exclude_none=True)
        if not given:
            return policy
        return policy.model_copy(update=given | {"chosen_at_placement": tuple(sorted(given))})

# What each choice means, in words for people (the regime page, docs/regime.md).
# Keys name Policy's fields through `F` (an unknown name fails at import). Two fields share their names with the
# step kinds they decide about, which tests/test_catalogue.py keeps out of string literals outside the catalogues.
F = SimpleNamespace(**{name: name for name in Policy.model_fields})
TITLES: dict[str, str] = {
    F.secretary_of_state_letter: "Letter to the Secretary of State",
    F.extension_guidance_months: "Length of an extension (guidance)",
    F.capability_review: "Board capability review",
    F.buddy_package_agreed_by: "Who agrees the buddy support package",
    F.board_to_board_timing: "First board-to-board",
    F.entry_rule: "Entry rule",
}
CHOICES: dict[str, dict[str, str]] = {
    F.secretary_of_state_letter: {"end_of_extension": "at the end of an extension, if the trust has not improved",
                                  "recommending_extension": "when recommending an extension"},
    F.capability_review: {"optional": "may be commissioned after a board-to-board",
                          "always": "every regime reviews its leadership"},
    F.buddy_package_agreed_by: {"regulator_and_trust": "the regulator and the trust",
                                "trusts_and_id": "both trusts and the improvement director"},
    F.board_to_board_timing: {"within_3_months": "within 3 months of entry", "months_4_to_6": "in months 4 to 6"},
    F.entry_rule: {"normal_trigger": "the normal trigger, not a gate"},
}
CHOICE_FIELDS = tuple(TITLES)


def setting_name(field: str) -> str:
    """The environment variable that chooses `field` for new placements (settings.py)."""
    return f"POLICY_{field.upper()}"


def describe(policy: Policy) -> list[dict[str, str]]:
    """Each choice of `policy` in words: {field, title, value, words, setting, why, chosen_at_placement}."""
    out = []
    for name in CHOICE_FIELDS:
        value = getattr(policy, name)
        words = (f"{value} months" if name == "extension_guidance_months"
                 else CHOICES[name].get(value, str(value)))
        out.append({"field": name, "title": TITLES[name], "value": str(value), "words": words,
                    "setting": setting_name(name), "why": Policy.model_fields[name].description or "",
                    "chosen_at_placement": name in policy.chosen_at_placement})
    return out


def policy_markdown() -> str:
    """The table of docs/regime.md "Where the sources disagree: the regime's policy" (tests/test_policy.py keeps
    them the same): every choice, its setting, its default and the reason with both sources."""
    lines = ["| choice | setting | default | values | reason and sources |", "| --- | --- | --- | --- | --- |"]
    for name in CHOICE_FIELDS:
        info = Policy.model_fields[name]
        values = ("1 to 24 (months)" if name == "extension_guidance_months"
                  else ", ".join(f"`{v}`" for v in CHOICES[name]))
        lines.append(f"| {TITLES[name]} | `{setting_name(name)}` | `{info.default}` | {values} | "
                     f"{info.description} |")
    return "\n".join(lines)
