"""Entry and exit rules of the special measures for quality regime (seed 002)."""

from __future__ import annotations

from pydantic import BaseModel

from domain.ratings import KEY_QUESTIONS, InspectionOutcome, KeyQuestionRatings, Rating

SEGMENT_IN_SPECIAL_MEASURES = 4
SEGMENT_AFTER_QUALITY_EXIT = 3


class Verdict(BaseModel):
    met: bool
    reasons: list[str]


def entry_rule(ratings: KeyQuestionRatings) -> Verdict:
    """Inadequate for well-led and for at least one other key question."""
    inadequate = ratings.inadequate_questions()
    others = [q for q in inadequate if q != "well_led"]
    reasons: list[str] = []
    if "well_led" in inadequate:
        reasons.append("well-led is rated inadequate")
    else:
        reasons.append(f"well-led is rated {ratings.well_led.value.replace('_', ' ')}, not inadequate")
    if others:
        reasons.append("also inadequate: " + ", ".join(others))
    else:
        reasons.append("no other key question (safe, effective, caring, responsive) is rated inadequate")
    return Verdict(met="well_led" in inadequate and bool(others), reasons=reasons)


def exit_rule(entry: KeyQuestionRatings | None, outcome: InspectionOutcome) -> Verdict:
    """Sufficient improvement as CQC usually finds it.

    1. every key question inadequate at entry, and the overall rating, now at least requires improvement
       (a regime placed without ratings, as the 2013 cohort was, has no entry ratings: then every key question
       is judged on the re-inspection's own ratings);
    2. single major site: no core service inadequate;
    3. multi-site: no core service inadequate, or exceptionally some are with significant evidence
       of a continuing trajectory of improvement.
    """
    now = outcome.ratings
    reasons: list[str] = []
    met = True
    if entry is None:
        reasons.append("placed without entry ratings: judged on this inspection's own ratings")
    # Inadequate at entry or now: a question that has fallen to inadequate has not improved either.
    at_entry = set(entry.inadequate_questions()) if entry is not None else set()
    watched = sorted(at_entry | set(now.inadequate_questions()), key=KEY_QUESTIONS.index)
    for q in watched:
        r: Rating = getattr(now, q)
        if r.rank < Rating.requires_improvement.rank:
            met = False
            reasons.append(f"{q} is still inadequate")
        else:
            reasons.append(f"{q} improved to {r.value.replace('_', ' ')}")
    if now.overall.rank < Rating.requires_improvement.rank:
        met = False
        reasons.append("overall rating is still inadequate")
    else:
        reasons.append(f"overall rating is {now.overall.value.replace('_', ' ')}")

    failing = [f"{c.service} at {c.site}" for c in outcome.core_services if c.rating is Rating.inadequate]
    if not failing:
        reasons.append("no core service is rated inadequate")
    elif not outcome.multi_site:
        met = False
        reasons.append("single-site trust with inadequate core services: " + "; ".join(failing))
    elif outcome.trajectory_evidence and outcome.trajectory_evidence.strip():
        reasons.append(
            "multi-site trust: inadequate core services (" + "; ".join(failing)
            + ") accepted exceptionally on evidence of a continuing trajectory of improvement"
        )
    else:
        met = False
        reasons.append(
            "multi-site trust with inadequate core services and no evidence of a continuing trajectory: "
            + "; ".join(failing)
        )
    return Verdict(met=met, reasons=reasons)
