"""The report of a simulation: each regime's timeline (milestones, escalations, ratings, buddy payments, the runs
of its history), the scenario's expectations checked against it, and the tables `regime simulate` prints."""

from __future__ import annotations

import sys
import time
from datetime import date, datetime, timedelta
from typing import Any

from domain import dates
from domain.ledger import BUDDY_STEPS
from domain.steps import CATALOGUE
from tools.scenario import RegimeSpec
from tools.simulate.funding import FundingWork, funding_expectations
from tools.simulate.programme import ProgrammeWork
from tools.simulate.session import RegimeRun
from tools.simulate.watchlist import WatchListWork, watch_list_expectations


class Timeline(ProgrammeWork, FundingWork, WatchListWork):
    """A regime's timeline, read back from the API and from Temporal once it has run."""

    # ------------------------------------------------------------------ timeline
    async def timeline(self, run: RegimeRun) -> dict[str, Any]:
        await self.stack.settle(run.regime_id)
        st = await self.state(run.regime_id)
        e = run.entry

        def day_of(d: date | str | None) -> int | None:
            if d is None:
                return None
            d = date.fromisoformat(d) if isinstance(d, str) else d
            return (d - e).days

        def ldate(ts: str | None) -> str | None:
            return dates.london_date(datetime.fromisoformat(ts)).isoformat() if ts else None

        milestones = []
        for s in sorted(st["steps"].values(), key=lambda s: (s["opened_at"], s["id"])):
            done = ldate(s["completed_at"]) if s["status"] == "done" else None
            milestones.append({
                "step": s["id"], "kind": s["kind"], "title": s["title"], "role": s["role"],
                "opened": ldate(s["opened_at"]), "due": s["due"], "due_day": day_of(s["due"]),
                "status": s["status"], "outcome": s["outcome"], "done": done, "done_day": day_of(done),
                "late": s["late"], "by": s["completed_by"], "amended": len(s["amendments"]),
            })
        escalations = [{"step": x["step_id"], "title": x["step_title"], "rung": x["rung"], "level": x["level"],
                        "date": ldate(x["at"]), "day": day_of(ldate(x["at"])), "due": x["due"],
                        "notified": x["notified"], "reason": x["reason"]} for x in st["escalations"]]
        entry_r = st["placement"].get("entry_ratings")
        rating_rows = []
        if entry_r:
            rating_rows.append({"reference": "entry", "day": 0, "date": e.isoformat(), "status": "entry",
                                **entry_r, "core_inadequate": [], "exit_rule_met": None, "reasons": []})
        for i in st["inspections"]:
            o = i["outcome"]
            rating_rows.append({
                "reference": o["reference"], "day": day_of(ldate(i["received_at"])), "date": ldate(i["received_at"]),
                "inspected": o["inspection_end"], "status": i["status"], "kind": o["kind"], **o["ratings"],
                "core_inadequate": [f"{c['service']} at {c['site']}" for c in o["core_services"]
                                    if c["rating"] == "inadequate"],
                "exit_rule_met": (i["verdict"] or {}).get("met"), "reasons": (i["verdict"] or {}).get("reasons", []),
            })
        payments = []
        for pid, b in st["buddies"].items():
            bs, ledger = await self._partner_record(run, pid)
            key = (bs or {}).get("p", {}).get("key", pid)
            for x in (bs or {}).get("steps", {}).values():
                done = ldate(x["completed_at"]) if x["status"] == "done" else None
                milestones.append({
                    "step": x["id"], "kind": x["kind"], "title": x["title"], "role": x["role"],
                    "opened": ldate(x["opened_at"]), "due": x["due"], "due_day": day_of(x["due"]),
                    "status": x["status"], "outcome": x["outcome"], "done": done, "done_day": day_of(done),
                    "late": x["late"], "by": x["completed_by"], "amended": len(x["amendments"]), "partnership": key})
            escalations += [{"step": x["step_id"], "title": x["step_title"], "rung": x["rung"], "level": x["level"],
                             "date": ldate(x["at"]), "day": day_of(ldate(x["at"])), "due": x["due"],
                             "notified": x["notified"], "reason": x["reason"], "partnership": key}
                            for x in (bs or {}).get("escalations", [])]
            quarters = [{"quarter": q["number"], "start": q["start"], "end": q["end"],
                         "forecast_pence": q["forecast_pence"], "authorised_pence": q["authorised_pence"],
                         "paid_pence": q["paid_pence"], "paid_on": ldate(q["authorised_at"]) if q["payment_id"]
                         else None, "paid_day": day_of(ldate(q["authorised_at"])) if q["payment_id"] else None,
                         "declined": q["declined"]} for q in (ledger or {}).get("quarters", [])]
            payments.append({"partnership": pid, "key": key, "buddy": b["buddy_name"], "buddy_ods": b["buddy_ods"],
                             "scope": b["scope"], "stage": (bs or {}).get("stage", b["stage"]),
                             "agreed_level_pence": b["agreed_level_pence"],
                             "paid_pence": (ledger or {}).get("recorded_paid_pence", b["paid_pence"]),
                             "remaining_pence": ((ledger or {}).get("totals") or {}).get("remaining_pence"),
                             "ended": b["ended"], "quarters": quarters,
                             "recorded_payments": len((ledger or {}).get("payments", []))})
        escalations.sort(key=lambda x: (x["date"] or "", x["step"]))
        runs = await self.history_runs(run.regime_id)
        final = {
            "phase": st["phase"], "segment": st["segment"], "finished": st["finished"], "day": run.day,
            "date": (e + timedelta(days=run.day)).isoformat(), "exit_date": st["exit_date"],
            "exit_day": day_of(st["exit_date"]), "extensions": st["extensions"], "decisions": st["decisions"],
            "continued_support": st["continued_support"], "closure": st["closure"],
            "sos_letter": st["sos_letter"], "enforcement": st["enforcement"], "runs": st["runs"],
            "history": runs, "history_events": sum(r["events"] for r in runs),
            "previous_regime_id": st["placement"].get("previous_regime_id"),
        }
        tl = {"regime_id": run.regime_id, "entry_date": e.isoformat(), "milestones": milestones,
              "escalations": escalations, "ratings": rating_rows, "payments": payments, "final": final,
              "programme": await self.programme_timeline(run, st),
              "actions": run.actions, "wall_seconds": round(time.monotonic() - run.started, 1)}
        tl["funding"], tl["costs"] = await self.funding_timeline(run)
        tl["phases"] = await self.phase_changes(run)
        if self.sc.watch_list is not None and run.base == ():
            tl["watch_list"] = await self.watch_list_timeline(run)
        tl["expectations"] = check_expectations(run.spec, tl)
        return tl

    async def phase_changes(self, run: RegimeRun) -> list[dict[str, Any]]:
        """The regime's phases as they changed, with the segment each left it in (from its audit log)."""
        r = await self.call("GET", f"/regimes/{run.regime_id}/audit?limit=5000", role="operations")
        if r.status_code != 200:
            return []
        e = run.entry
        return [{"day": (dates.london_date(datetime.fromisoformat(a["at"])) - e).days,
                 "from": a["detail"].get("from"), "to": a["detail"].get("to"), "segment": a["detail"].get("segment")}
                for a in r.json()["items"] if a["event"] == "phase_changed"]

    async def _partner_record(self, run: RegimeRun, pid: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        r = await self.call("GET", f"/regimes/{run.regime_id}/buddies/{pid}", role="operations")
        if r.status_code != 200:
            return None, None
        led = await self.call("GET", f"/regimes/{run.regime_id}/buddies/{pid}/ledger", role="operations")
        return r.json(), led.json() if led.status_code == 200 else None

    async def history_runs(self, workflow_id: str) -> list[dict[str, Any]]:
        """Every run of the continue-as-new chain, walked back from the latest through the predecessor
        each run's first event names (visibility lists runs too, but lags a run that just started)."""
        out = []
        run_id: str | None = None
        while True:
            h = self.stack.client.get_workflow_handle(workflow_id, run_id=run_id)
            d = await h.describe()
            out.append({"run_id": d.run_id, "status": d.status.name if d.status else None,
                        "events": d.raw_description.workflow_execution_info.history_length,
                        "started": d.start_time.isoformat()})
            first = None
            async for ev in self.stack.client.get_workflow_handle(workflow_id, run_id=d.run_id).fetch_history_events(
                    page_size=1):
                first = ev
                break
            run_id = first.workflow_execution_started_event_attributes.continued_execution_run_id if first else None
            if not run_id:
                break
        return sorted(out, key=lambda r: r["started"])


def check_expectations(spec: RegimeSpec, tl: dict[str, Any]) -> list[dict[str, Any]]:
    x = spec.expect
    f = tl["final"]
    out: list[dict[str, Any]] = []

    def add(name: str, expected: Any, actual: Any) -> None:
        out.append({"check": name, "expected": expected, "actual": actual, "ok": expected == actual})

    for k in ("phase", "segment", "finished"):
        if getattr(x, k) is not None:
            add(k, getattr(x, k), f[k])
    if x.extensions is not None:
        add("extensions", x.extensions, len(f["extensions"]))
    if x.runs_at_least is not None:
        out.append({"check": "runs_at_least", "expected": x.runs_at_least, "actual": f["runs"],
                    "ok": f["runs"] >= x.runs_at_least})
    if x.late is not None:
        add("late", sorted(x.late), sorted(m["step"] for m in tl["milestones"] if m["late"]))
    for step, rungs in x.escalations.items():
        add(f"escalations[{step}]", rungs, [e["rung"] for e in tl["escalations"] if e["step"] == step])
    for step, day in x.due_days.items():
        add(f"due_days[{step}]", day, next((m["due_day"] for m in tl["milestones"] if m["step"] == step), None))
    if x.only_reminders is not None:
        beyond = [f"{e['step']}:{e['rung']}" for e in tl["escalations"] if e["rung"] != "reminder"]
        out.append({"check": "only_reminders", "expected": x.only_reminders, "actual": beyond,
                    "ok": (not beyond) == x.only_reminders})
    if x.follows_previous is not None:
        add("follows_previous", x.follows_previous, f["previous_regime_id"] is not None)
    if x.buddies is not None:
        add("buddies", x.buddies, len(tl["payments"]))
    for suffix, pence in x.paid_pence.items():
        paid = [p["paid_pence"] for p in tl["payments"] if p["partnership"].endswith(suffix)]
        add(f"paid_pence[{suffix}]", pence, paid[0] if len(paid) == 1 else paid)
    for step, day in x.done_days.items():
        add(f"done_days[{step}]", day, next((m["done_day"] for m in tl["milestones"] if m["step"] == step), None))
    for step, outcome in x.outcomes.items():
        add(f"outcomes[{step}]", outcome, next((m["outcome"] for m in tl["milestones"] if m["step"] == step), None))
    if x.programme is not None:
        out += _programme_expectations(x.programme, tl.get("programme") or {})
    return out + funding_expectations(spec, tl) + watch_list_expectations(spec, tl)


def _programme_expectations(x: Any, p: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(name: str, expected: Any, actual: Any) -> None:
        out.append({"check": f"programme.{name}", "expected": expected, "actual": actual, "ok": expected == actual})

    months = {m["month"]: m for m in p.get("months", [])}
    if x.actions is not None:
        add("actions", x.actions, p.get("actions"))
    if x.versions is not None:
        add("versions", x.versions, len(p.get("versions", [])))
    if x.flagged is not None:
        add("flagged", sorted(x.flagged), p.get("flagged"))
    if x.overdue is not None:
        add("overdue", sorted(x.overdue), p.get("overdue"))
    for theme, by_month in x.themes.items():
        for n, status in sorted(by_month.items()):
            add(f"themes[{theme}][{n}]", status, (months.get(n) or {}).get("themes", {}).get(theme))
    for n, on in sorted(x.on_trajectory.items()):
        add(f"on_trajectory[{n}]", on, (months.get(n) or {}).get("on_trajectory"))
    if x.evidence_items is not None:
        add("evidence_items", x.evidence_items, p.get("evidence_items"))
    if x.evidence_files_checked is not None:
        add("evidence_files_checked", sorted(x.evidence_files_checked), p.get("evidence_files_checked"))
    return out


# ---------------------------------------------------------------------------- output
def render(results: list[dict[str, Any]], all_rows: bool = False) -> None:
    from rich.console import Console

    con = Console() if sys.stdout.isatty() else Console(width=160)
    for res in results:
        con.rule(f"[bold]{res['scenario']}[/]  {res['trust']['name']} ({res['trust']['ods_code']}"
                 f"{', multi-site' if res['trust']['multi_site'] else ''})  {res['wall_seconds']} s")
        for reg in res["regimes"]:
            f = reg["final"]
            con.print(f"[bold]{reg['regime_id']}[/]  entered {reg['entry_date']} (day 0)"
                      + (f", follows {f['previous_regime_id']}" if f["previous_regime_id"] else ""))
            con.print(_milestones_table(reg["milestones"], all_rows))
            if reg["escalations"]:
                con.print(_escalations_table(reg["escalations"]))
            con.print(_ratings_table(reg["ratings"]))
            if reg["payments"]:
                con.print(_payments_table(reg["payments"]))
            if reg.get("programme"):
                _print_programme(con, reg["programme"])
            if (reg.get("funding") or {}).get("drawdowns") or (reg.get("costs") or {}).get("total_pence"):
                _print_funding(con, reg["funding"], reg["costs"])
            if reg.get("watch_list"):
                w = reg["watch_list"]
                con.print(f"[bold]Watch list:[/] {w['entry_id']} {w['status']}"
                          + (f", linked to {w['regime_id']}" if w["linked"] else ", not linked")
                          + f"; {w['drawdowns_paid']} drawdown(s) paid, {_money(w['paid_pence'])}"
                          + ("; confidential" if w["confidential"] else
                             "; [red]NOT confidential:[/] " + ", ".join(k for k, v in w["checks"].items() if not v)))
            _print_final(con, f, reg["expectations"])


def _recurs(kind: str) -> bool:
    """A kind with a step every month or quarter (its catalogue entry's `recurs`)."""
    spec = CATALOGUE.get(kind) or BUDDY_STEPS.get(kind)
    return spec is not None and spec.recurs is not None


def _milestones_table(milestones: list[dict[str, Any]], all_rows: bool) -> Any:
    """Every milestone; the steps of recurring kinds (monthly returns and meetings, buddy quarters) as one summary
    row unless `all_rows` or late."""
    from rich.table import Table

    t = Table("step", "who", "opened", "due (day)", "done (day)", "outcome", "late", title="Milestones",
              title_justify="left")
    recurring = [m for m in milestones if _recurs(m["kind"])]
    for m in milestones:
        if m in recurring and not all_rows and not m["late"]:
            continue
        t.add_row(m["step"], m["role"], m["opened"], f"{m['due']} ({m['due_day']})",
                  f"{m['done']} ({m['done_day']})" if m["done"] else "-", m["outcome"] or m["status"],
                  "[red]late[/]" if m["late"] else "")
    if recurring and not all_rows:
        on_time = sum(1 for m in recurring if m["status"] == "done" and not m["late"])
        t.add_row(f"monthly returns and meetings, buddy quarters ({len(recurring)} steps; --all lists them)", "", "",
                  "", "", f"{on_time} done on time", "", style="dim")
    return t


def _escalations_table(escalations: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    t = Table("day", "date", "step", "rung", "level", "notified", title="Escalations", title_justify="left")
    for x in escalations:
        t.add_row(str(x["day"]), x["date"], x["step"], x["rung"], str(x["level"]), ", ".join(x["notified"]),
                  style="dim" if x["rung"] == "reminder" else None)
    return t


def _ratings_table(ratings: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    t = Table("ref", "day", "safe", "effective", "caring", "responsive", "well-led", "overall",
              "inadequate core services", "exit rule", title="Ratings", title_justify="left")
    for r in ratings:
        t.add_row(r["reference"] + ("" if r["status"] in ("entry", "current") else f" ({r['status']})"),
                  str(r["day"]), *(_SHORT.get(r[k], r[k]) for k in
                                   ("safe", "effective", "caring", "responsive", "well_led", "overall")),
                  "; ".join(r["core_inadequate"]),
                  "" if r["exit_rule_met"] is None else ("met" if r["exit_rule_met"] else "not met"))
    return t


def _payments_table(payments: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    t = Table("partnership", "quarter", "forecast", "authorised", "paid on (day)", "paid",
              title="Buddy payments", title_justify="left")
    for p in payments:
        for q in p["quarters"]:
            t.add_row(p["key"], f"Q{q['quarter']} {q['start']}..{q['end']}", _money(q["forecast_pence"]),
                      _money(q["authorised_pence"]),
                      f"{q['paid_on']} ({q['paid_day']})" if q["paid_on"] else (q["declined"] or "-"),
                      _money(q["paid_pence"]))
        t.add_row(f"[bold]{p['key']}[/]", p["stage"] + (", ended" if p["ended"] and p["stage"] != "ended" else ""),
                  f"agreed {_money(p['agreed_level_pence'])}", "", "", f"[bold]{_money(p['paid_pence'])}[/]")
    return t


def _print_programme(con: Any, p: dict[str, Any]) -> None:
    """The plan month by month: each month's report, the worst status of each theme, flagged and overdue actions,
    the plan's answer to the Integrated Delivery Meeting."""
    from rich.table import Table

    themes = list(p["themes"])
    t = Table("month", "day", "done", "on", "at risk", "off", *themes, "flagged", "overdue", "trajectory",
              title="Improvement plan, month by month (month N: the trust's N-th monthly return; a theme shows its "
                    "worst status)", title_justify="left")
    short = {"off_track": "[red]off track[/]", "at_risk": "[yellow]at risk[/]", "done": "[green]done[/]",
             "on_track": "on track", "not_started": "not started"}
    for m in p["months"]:
        c = m["counts"]
        t.add_row(f"{m['month']} {m['tag']}", str(m["day"]), str(c["done"]), str(c["on_track"]), str(c["at_risk"]),
                  str(c["off_track"]), *(short.get(s or "", "-") for s in (m["themes"].get(n) for n in themes)),
                  " ".join(m["flagged"]), " ".join(m["overdue"]), "on" if m["on_trajectory"] else "[red]off[/]")
    con.print(t)
    versions = ", ".join(f"v{v['n']} {v['source']} day {v['agreed_day']} ({v['actions']} actions)"
                         for v in p["versions"])
    flags = ", ".join(f"{f['action']} (month {f['month']})" for f in p["flags"]) or "none"
    con.print(f"[bold]Plan:[/] {p['actions']} actions in {len(themes)} themes; versions: {versions}; flagged off "
              f"track two months running: {flags}; overdue: {', '.join(p['overdue']) or 'none'}; "
              f"{p['evidence_items']} evidence item(s); evidence files checked: "
              f"{', '.join(p['evidence_files_checked']) or 'none'}; summary in the workflow's state "
              f"{p['state_bytes']:,} bytes (at most {p['max_state_bytes']:,})")


def _print_funding(con: Any, f: dict[str, Any], c: dict[str, Any]) -> None:
    """Central funding (the agreement, each drawdown and its payment, the refused requests) and the cost of the
    interventions by quarter."""
    from rich.table import Table

    t = Table("drawdown", "requested (day)", "against", "amount", "status", "authorised (day)", "payments",
              title=f"Central funding: ceiling {_money(f['ceiling_pence'])}"
                    + (f", agreed day {f['agreed_day']}" if f["agreed"] else ", not agreed")
                    + f"; areas: {', '.join(f['areas']) or '-'}", title_justify="left")
    for d in f["drawdowns"]:
        t.add_row(str(d["n"]), str(d["requested_day"]), " ".join(d["against"]), _money(d["amount_pence"]),
                  d["status"] + (f": {d['refused_reason']}" if d["refused_reason"] else ""),
                  "-" if d["authorised_day"] is None else str(d["authorised_day"]), str(d["payments"]))
    for x in f["requests_refused"]:
        t.add_row("-", str(x["day"]), " ".join(x["against"]), _money(x["amount_pence"]),
                  f"[red]refused {x['status_code']}[/]: {x['refused']}", "-", "0", style="dim")
    t.add_row("[bold]paid[/]", "", "", f"[bold]{_money(f['paid_pence'])}[/]",
              f"{f['drawdowns_paid']} paid, {_money(f['remaining_pence'])} left", "", str(f["recorded_payments"]))
    con.print(t)
    q = Table("quarter", "buddy paid", "central funding", "director days", "director time", "total",
              title="The cost of the interventions", title_justify="left")
    for x in c.get("quarters", []):
        q.add_row(x["quarter"], _money(x["buddy_paid_pence"]), _money(x["direct_funding_pence"]),
                  f"{x['director_days']:g}", _money(x["director_time_pence"]), _money(x["total_pence"]))
    q.add_row("[bold]total[/]", _money(c.get("buddy_paid_pence")), _money(c.get("direct_funding_pence")),
              f"{c.get('director_days', 0):g}", _money(c.get("director_time_pence")),
              f"[bold]{_money(c.get('total_pence'))}[/]")
    con.print(q)


def _print_final(con: Any, f: dict[str, Any], expectations: list[dict[str, Any]]) -> None:
    from rich.markup import escape

    runs = f["history"]
    con.print(f"[bold]Final:[/] {f['phase']} (segment {f['segment']}) on day {f['day']} ({f['date']})"
              + (f"; exit on day {f['exit_day']}" if f["exit_day"] is not None else "")
              + (f"; {len(f['extensions'])} extension(s)" if f["extensions"] else "")
              + ("; letter to the Secretary of State" if f["sos_letter"] else "")
              + (f"; closed by {f['closure']['solution']}" if f["closure"] else "")
              + ("; finished" if f["finished"] else "; still running")
              + f"; {len(runs)} run(s), {f['history_events']} history events")
    for c in expectations:
        mark = "[green]ok[/]" if c["ok"] else "[red]FAILED[/]"
        con.print(f"  expect {escape(c['check'])}: {mark}" + (
            "" if c["ok"] else escape(f" expected {c['expected']!r}, got {c['actual']!r}")))


_SHORT = {"requires_improvement": "req. improvement"}


def _money(pence: int | None) -> str:
    return "-" if pence is None else f"£{pence / 100:,.2f}"
