"""Issue 14, item 11: every deadline carries its basis (a statutory clock with its seed section, a service default
with the setting that changes it, or the regulator's amendment), in the API (the regime view, the task inbox, the
partnership view), on the regime page, and in docs/regime.md's table, which the catalogues generate."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

from api.contract import deadline_basis, deadlines_markdown, step_kinds
from api.web import labels
from tests.test_api import today
from tests.test_web import OPS, get, place
from tools.polling import eventually

ROOT = Path(__file__).resolve().parent.parent


def test_docs_table_is_the_catalogue():
    text = (ROOT / "docs/regime.md").read_text()
    m = re.search(r"<!-- deadlines:begin -->\n(.*?)\n<!-- deadlines:end -->", text, re.S)
    assert m, "docs/regime.md needs the deadline table between <!-- deadlines:begin --> and <!-- deadlines:end -->"
    assert m.group(1) == deadlines_markdown(), (
        "docs/regime.md's deadline table differs from the catalogues: paste "
        "`python -c 'from api.contract import deadlines_markdown; print(deadlines_markdown())'`")
    rows = [ln for ln in m.group(1).splitlines()[2:]]
    assert len(rows) == len(step_kinds())
    assert any("| statutory |" in r for r in rows) and any("| service default |" in r for r in rows)


def test_basis_from_the_kind_and_its_amendments():
    assert deadline_basis("improvement_plan") == {
        "kind": "statutory", "source": "seed 000 §4a(iv)",
        "rule": "28 days after entry (14 days after it is returned, if later)"}
    assert deadline_basis("plan_review")["kind"] == "service_default"
    assert deadline_basis("plan_review")["source"] == "domain.steps.REVIEW_DAYS"
    assert deadline_basis("buddy_sign_trust")["source"] == "seed 000 §3"
    assert deadline_basis("buddy_authorise")["source"] == "domain.ledger.AUTHORISE_DAYS"
    assert deadline_basis("no_such_kind") is None and deadline_basis(None) is None
    paused = [{"at": "2027-02-01T10:00:00+00:00", "by": "reg-1", "reason": "inquiry",
               "old": {"due": "2027-02-10", "paused": False}, "new": {"due": "2027-02-10", "paused": True}}]
    assert deadline_basis("improvement_plan", paused)["kind"] == "statutory"
    moved = [*paused, {"at": "2027-02-03T10:00:00+00:00", "by": "reg-2", "reason": "new chair starts",
                       "old": {"due": "2027-02-10", "paused": True}, "new": {"due": "2027-03-10", "paused": True}}]
    b = deadline_basis("improvement_plan", moved)
    assert b["kind"] == "amended" and b["rule"].startswith("28 days after entry")
    assert "2027-03-10" in b["source"] and "reg-2" in b["source"] and "new chair starts" in b["source"]
    assert b["amended_from"] == {"rule": b["rule"], "basis": "statutory", "source": "seed 000 §4a(iv)"}
    # The pages' words for it.
    assert labels.step_basis({"kind": "plan_review"})["label"] == "Service default"
    assert labels.step_basis({"kind": "improvement_plan", "amendments": moved})["label"] == "Moved by the regulator"


async def test_the_regime_view_the_inbox_and_the_page_carry_each_deadlines_basis(stack):
    rid = await place(stack, "RDB", name="Basis NHS Trust")
    await stack.settle(rid)
    ops = stack.auth(*OPS)
    st = (await stack.http.get(f"/regimes/{rid}", headers=ops)).json()
    assert st["steps"] and all(s["deadline_basis"] is not None for s in st["steps"].values())
    assert all(s["deadline_basis"] == st["steps"][s["id"]]["deadline_basis"] for s in st["open_steps"])
    plan = st["steps"]["improvement_plan"]["deadline_basis"]
    assert plan["kind"] == "statutory" and plan["source"] == "seed 000 §4a(iv)"
    assert "deadline_basis" not in str(st["placement"])  # computed by the API, not workflow state

    # The regulator moves the plan's due date: amended, with who and why.
    new_due = today() + timedelta(days=45)
    r = await stack.http.post(f"/regimes/{rid}/steps/improvement_plan/deadline",
                              json={"new_due": new_due.isoformat(), "reason": "the trust's new board starts"},
                              headers=stack.auth("reg-1", "regulator"))
    assert r.status_code == 200, r.text
    await stack.settle(rid)
    st = (await stack.http.get(f"/regimes/{rid}", headers=ops)).json()
    moved = st["steps"]["improvement_plan"]["deadline_basis"]
    assert moved["kind"] == "amended" and "the trust's new board starts" in moved["source"]
    assert moved["amended_from"]["source"] == "seed 000 §4a(iv)"

    # The inbox: the trust's tasks, each with its basis; the amended one says so (from the audit log).
    trust = stack.auth("trust-RDB", "trust", trusts=["RDB"])
    tasks = await eventually(lambda: _tasks(stack, trust, rid), what="the trust's tasks", timeout=10)
    assert all(t["deadline_basis"] is not None for t in tasks)
    by_step = {t["step_id"]: t["deadline_basis"] for t in tasks}
    assert by_step["improvement_plan"]["kind"] == "amended"
    assert by_step["improvement_plan"]["source"] == moved["source"]
    others = [b for s, b in by_step.items() if s != "improvement_plan"]
    assert all(b["kind"] in ("statutory", "service_default") for b in others)

    # The page: the timeline table and the open tasks show the label, the source in the table and on hover.
    html = (await get(stack, f"/web/regimes/{rid}", *OPS)).text
    table = html.split('id="timeline-table"')[1].split("</table>")[0]
    assert "Deadline basis" in table
    row = re.search(r'<tr data-step="improvement_plan".*?</tr>', table, re.S).group(0)
    assert 'data-basis="amended"' in row and "Moved by the regulator" in row
    monthly = re.search(r'<tr data-step="monthly_return-[^"]*".*?</tr>', table, re.S).group(0)
    assert 'data-basis="statutory"' in monthly and "seed 000 §4a(v)" in monthly
    tasks_html = html.split('id="tasks"')[1].split('id="escalations"')[0]
    assert 'data-basis="amended"' in tasks_html
    summary = html.split('id="summary"')[1].split('id="timeline"')[0]
    assert "sm-basis" in summary  # the next deadline says where it comes from


async def _tasks(stack, headers, rid: str) -> list[dict]:
    r = await stack.http.get("/tasks", headers=headers)
    assert r.status_code == 200, r.text
    return [t for t in r.json()["items"] if t["regime_id"] == rid]


async def test_partnership_steps_carry_their_basis(stack):
    rid = await place(stack, "RDC")
    await stack.settle(rid)
    r = await stack.http.post(f"/regimes/{rid}/buddies", json={"buddy": {"ods_code": "RBD", "name": "Buddy FT"}},
                              headers=stack.auth("reg-1", "regulator"))
    assert r.status_code == 201, r.text
    pid = r.json()["partnership_id"]

    async def view() -> dict | None:
        got = await stack.http.get(f"/regimes/{rid}/buddies/{pid}", headers=stack.auth(*OPS))
        return got.json() if got.status_code == 200 and got.json()["open_steps"] else None

    p = await eventually(view, what="the partnership's first step", timeout=15)
    assert p["open_steps"] and all(s["deadline_basis"] is not None for s in p["steps"].values())
    first = p["open_steps"][0]["deadline_basis"]
    assert first["kind"] == "service_default" and first["source"] == "domain.ledger.AIP_DAYS"
