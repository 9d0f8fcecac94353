"""The history page's words for audit entries (api/web/history.py), from entries as the workflows write them."""

from __future__ import annotations

from api.web.history import describe_audit
from domain.steps import Kind


def test_a_step_opened_shows_its_due_date_from_the_entry_detail():
    kind, what = describe_audit("step_opened", Kind.improvement_plan, Kind.improvement_plan,
                                {"due": "2027-01-28"}, "due 2027-01-28")
    assert kind == "step" and what == "Improvement plan: opened, due 28 Jan 2027"
    # The detail is what is read: the reason is words for people, and may say anything.
    _, what = describe_audit("step_opened", Kind.improvement_plan, Kind.improvement_plan, {"due": "2027-02-01"},
                             "opened by the service")
    assert what.endswith("due 1 Feb 2027")


def test_entries_written_before_the_due_date_was_in_the_detail_still_show_it():
    _, what = describe_audit("step_opened", Kind.improvement_plan, Kind.improvement_plan, {}, "due 2027-01-28")
    assert what.endswith("due 28 Jan 2027")
    _, what = describe_audit("step_opened", Kind.improvement_plan, Kind.improvement_plan, {}, None)
    assert what.endswith("opened")
