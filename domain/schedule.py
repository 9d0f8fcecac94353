"""The regime's calendar as pure functions of dates: what opens at entry, and what each month opens.

These are the date-sensitive rules (28 days, calendar months that clamp at month ends, the 3rd Monday,
the month's last day). The regime workflow opens its steps from them, and the tests check them day by
day over whole years (tests/test_calendar.py), so an expectation that holds on some days only cannot
hide in either.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

from domain import dates
from domain.programme import KEY_QUESTIONS
from domain.steps import (
    EVIDENCE_FILE_DAYS_BEFORE,
    EVIDENCE_FILES_OPEN_MONTHS_BEFORE,
    FINANCE_REVIEW_MONTHS,
    FUNDING_MONTHS,
    PROGRAMME_REVIEW_MONTHS,
    QUALITY_SUMMIT_DAYS,
    SELF_ASSESSMENT_MONTHS,
    Kind,
)

PLAN_DAYS = 28  # seed 000 §4a: the improvement plan within 28 days of entry
APPOINTMENT_MONTHS = 3  # the improvement director appointed, and the first board-to-board, within 3 months
REINSPECTION_MONTHS = 12  # CQC re-inspects within 12 months of entry


@dataclass(frozen=True)
class Due:
    """A step the calendar opens: its kind, the id it gets, its due date and what it concerns; `opens` when it
    opens on a later day than the one that schedules it."""

    kind: str
    step_id: str
    due: date
    subject: dict[str, str] = field(default_factory=dict)
    opens: date | None = None


def programme_steps(entry: date, reinspection_due: date, measures: str = "quality") -> list[Due]:
    """What a regime tracking its plan as a programme (issue 15) opens as its months pass: the delivery team's
    formal review (months 7-9), two self-assessments (due at 6 and 10 months, seed 000 §4a(vii)), the plan's
    financial review and the funding agreement (months 4-6, issue 16), and the evidence files before the
    re-inspection due on `reinspection_due`."""
    opens, due = (dates.add_months(entry, m) for m in PROGRAMME_REVIEW_MONTHS)
    out = [Due(Kind.programme_review, Kind.programme_review, due, opens=opens)]
    out += [Due(Kind.self_assessment, f"{Kind.self_assessment}-{n}", dates.add_months(entry, d),
                opens=dates.add_months(entry, o)) for n, (o, d) in enumerate(SELF_ASSESSMENT_MONTHS, 1)]
    # Central funding (issue 16 item 1): the plan's financial review, then the funding agreement in months 4-6.
    out += [Due(kind, kind, dates.add_months(entry, d), opens=dates.add_months(entry, o))
            for kind, (o, d) in zip((Kind.financial_review, Kind.funding_agreement), FUNDING_MONTHS, strict=True)]
    if measures == "finance":  # readiness for a CQC re-inspection is quality's
        return [d for d in out if d.kind != Kind.self_assessment]
    return out + evidence_files(reinspection_due)


def evidence_files(reinspection_due: date) -> list[Due]:
    """One evidence file per key question before the re-inspection due on `reinspection_due`."""
    opens = dates.add_months(reinspection_due, -EVIDENCE_FILES_OPEN_MONTHS_BEFORE)
    due = reinspection_due - timedelta(days=EVIDENCE_FILE_DAYS_BEFORE)
    return [Due(Kind.evidence_file, f"{Kind.evidence_file}-{q}", due,
                {"key_question": q, "reinspection_due": reinspection_due.isoformat()}, opens=opens)
            for q in KEY_QUESTIONS]


def entry_steps(entry: date, measures: str = "quality") -> list[Due]:
    """The steps a regime opens on the day it is entered, in the order it opens them. Finance special measures
    (issue 16 item 3) have no CQC re-inspection: the regulator reviews the exit itself (`finance_review`)."""
    out = [
        Due(Kind.improvement_plan, Kind.improvement_plan, entry + timedelta(days=PLAN_DAYS)),
        Due(Kind.appoint_improvement_director, Kind.appoint_improvement_director,
            dates.add_months(entry, APPOINTMENT_MONTHS)),
        Due(Kind.board_to_board, Kind.board_to_board, dates.add_months(entry, APPOINTMENT_MONTHS)),
    ]
    if measures != "finance":
        out.append(Due(Kind.reinspection, f"{Kind.reinspection}-1", dates.add_months(entry, REINSPECTION_MONTHS)))
    if measures != "quality":
        out.append(Due(Kind.finance_review, Kind.finance_review, dates.add_months(entry, FINANCE_REVIEW_MONTHS[0])))
    return out


def entry_summit(entry: date, placed_on: date) -> Due | None:
    """The Quality Summit on the report that led to entry (issue 14 item 15; seed 000 §1, §4a), due
    QUALITY_SUMMIT_DAYS after entry; None for a regime the service takes on after that date (it was held before)."""
    due = entry + timedelta(days=QUALITY_SUMMIT_DAYS)
    return Due(Kind.quality_summit, Kind.quality_summit, due, {"report": "entry"}) if due >= placed_on else None


def buddy_appointment(entry: date, placed_on: date) -> Due | None:
    """The regulator's step to agree a buddy trust in months 1-3 (issue 14 item 14; seed 000 §4c), due with the
    improvement director's appointment; None for a regime the service takes on after that date."""
    due = dates.add_months(entry, APPOINTMENT_MONTHS)
    return Due(Kind.appoint_buddy, Kind.appoint_buddy, due) if due >= placed_on else None


def first_tracked_month(entry: date, today: date, lead_days: int | None = None) -> date:
    """The first month (its 1st) whose monthly duties the service tracks.

    With `lead_days` (CalendarRules.first_return_lead_days, issue 14 item 7): the first month whose return, due
    on its 3rd Monday, falls at least `lead_days` days after the later of entry and `today` (the day the service
    took the regime on, for a regime placed as already under way). So the first return is never due days after
    entry, and a regime going live after its month's 3rd Monday is not overdue at once.

    Without it (regimes placed before that rule, `lead_days` None): tracked from the month the service took the
    regime on or the entry month, whichever is later; a month whose return fell due on or before the entry date
    is not the regime's, so tracking starts with the next one.
    """
    if lead_days is not None:
        earliest = max(entry, today) + timedelta(days=lead_days)
        month = date(max(entry, today).year, max(entry, today).month, 1)
        while dates.third_monday(month.year, month.month) < earliest:
            month = dates.add_months(month, 1)
        return month
    month = max(date(entry.year, entry.month, 1), date(today.year, today.month, 1))
    if dates.third_monday(month.year, month.month) <= entry:
        month = dates.add_months(month, 1)
    return month


def month_tag(month: date) -> str:
    return f"{month.year:04d}-{month.month:02d}"


def monthly_steps(month: date, meetings: bool = True) -> list[Due]:
    """What the 1st of `month` opens: the trust's return, due on the 3rd Monday, and (with `meetings`)
    the Oversight and Assurance Group and the Integrated Delivery Meeting, due on the month's last day."""
    tag = month_tag(month)
    out = [Due(Kind.monthly_return, f"{Kind.monthly_return}-{tag}", dates.third_monday(month.year, month.month),
               {"month": tag})]
    if meetings:
        end = dates.add_months(month, 1) - timedelta(days=1)
        out += [Due(kind, f"{kind}-{tag}", end, {"month": tag}) for kind in (Kind.oversight_meeting, Kind.delivery_meeting)]
    return out


def opened_by(entry: date, today: date, meetings: bool = True, lead_days: int | None = None,
              placed_on: date | None = None, quality_summits: bool = False,
              buddy_step: bool = False, programme: bool = False) -> list[Due]:
    """Every calendar step a regime entered on `entry` has opened by the end of `today`, if nobody has acted on
    any of them: the entry steps, then each tracked month's duties from its 1st (the dates the rules give,
    before any move off a bank holiday). `placed_on` is the day the service took the regime on, by default
    `today`; `lead_days` is CalendarRules.first_return_lead_days (None: the rule before it); `quality_summits`
    is Placement.quality_summits (the entry Quality Summit), `buddy_step` Placement.buddy_appointment, `programme`
    Placement.programme (the scheduled steps of issue 15, without their plan's actions)."""
    out = entry_steps(entry)
    summit = entry_summit(entry, placed_on or today) if quality_summits else None
    out += [summit] if summit else []
    buddy = buddy_appointment(entry, placed_on or today) if buddy_step else None
    out += [buddy] if buddy else []
    if programme:  # scheduled when placed (only those still due then), opened on their day
        out += [d for d in programme_steps(entry, dates.add_months(entry, REINSPECTION_MONTHS))
                if d.due >= (placed_on or today) and d.opens is not None and d.opens <= today]
    month = first_tracked_month(entry, placed_on or today, lead_days)
    while month <= today:
        out += monthly_steps(month, meetings)
        month = dates.add_months(month, 1)
    return out


def quarter_dates(plan_agreed_on: date, n: int) -> tuple[date, date]:
    """A buddy partnership's quarter `n` (from 1): three calendar months from the support plan's agreement,
    each starting the day after the previous one ends."""
    start = dates.add_months(plan_agreed_on, 3 * (n - 1))
    end = dates.add_months(plan_agreed_on, 3 * n) - timedelta(days=1)
    return start, end
