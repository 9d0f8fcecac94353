"""The evaluation view (issue 16 item 5; seed 004): how long trusts stay in special measures, how soon they exit
by the year they entered, how often they come back, and what the interventions recorded so far cost.

Everything is computed from PostgreSQL: the `regimes` projection, the `regime_closed` audit entries (the date a
structural solution closed a regime: the projection keeps only `closed`) and the buddy payments paid.

Time in special measures runs from entry to the end of the regime:
- an exit (`exit_date`): an end;
- a closure by a structural solution (merger, acquisition, ...): an end, on the London date of the regime's
  `regime_closed` audit entry (or, failing it, of its `phase_changed` entry to `closed_structural`); a closed regime
  with neither is censored at the date its projection last changed (`closed_undated`), since when it ended is not
  recorded;
- a regime still running: censored at today (London).

The survival curve (Kaplan-Meier, right-censored) and its median are statsmodels' `SurvfuncRight`, imported
when a figure is first computed (not at API start-up: numpy, scipy and pandas come with it). Its median is the
first time the curve falls *below* one half (`quantile(0.5)`, as SAS computes it); None when it never does.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from datetime import UTC, date, datetime
from typing import Any

import asyncpg

from domain.dates import london_date

DAYS_PER_MONTH = 30.4375  # as domain.dates.months_between
TABLES = ("survival", "by-entry-year", "reentry", "cost")
# A spreadsheet runs a cell that starts with one of these as a formula (OWASP "CSV injection"), as api/routes/audit.py.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

# What a regime's interventions cost, as columns of a query over `regimes r` (the evaluation and the cohort page).
COST_COLUMNS = """
       (SELECT coalesce(sum(p.amount_pence), 0) FROM buddy_payments p WHERE p.regime_id = r.regime_id)::bigint
           AS buddy_paid_pence,
       (SELECT coalesce(sum(f.amount_pence), 0) FROM funding_payments f WHERE f.regime_id = r.regime_id)::bigint
           AS funding_paid_pence,
       -- The improvement director's time: each month's latest record (a correction replaces it), at its rate.
       (SELECT coalesce(sum((t.detail->>'cost_pence')::numeric), 0) FROM (
            SELECT DISTINCT ON (a.detail->>'month') a.detail FROM audit_log a
            WHERE a.regime_id = r.regime_id AND a.event = 'director_time_recorded'
            ORDER BY a.detail->>'month', a.seq DESC) t)::bigint AS director_time_pence"""

SQL = """
SELECT r.regime_id, r.ods_code, r.trust_name, r.entry_date, r.phase, r.exit_date, r.closed, r.closure_solution,
       r.previous_regime_id, r.extensions, r.updated_at,
       -- When the regime closed, as the workflow recorded it (the regimes row keeps no closure date): its
       -- regime_closed audit entry, else the phase change to closed_structural written with it (both at the
       -- workflow's time of the closure). Not updated_at: that is the database's clock when the row was last
       -- written (activities/effects.py), by any later batch too (a partnership ending after the closure, a batch
       -- written late after an outage, a simulation's skipped time), so it can be later than the closure.
       coalesce((SELECT max(a.at) FROM audit_log a WHERE a.regime_id = r.regime_id AND a.event = 'regime_closed'),
                (SELECT min(a.at) FROM audit_log a WHERE a.regime_id = r.regime_id AND a.event = 'phase_changed'
                   AND a.detail->>'to' = 'closed_structural')) AS closed_at,
       {COST_COLUMNS}
FROM regimes r ORDER BY r.entry_date, r.regime_id
""".replace("{COST_COLUMNS}", COST_COLUMNS.strip())


def today() -> date:
    return london_date(datetime.now(UTC))


async def rows(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    """Every regime, with its closure instant (if any) and what its interventions cost: buddy payments and central
    funding paid, the improvement director's recorded time."""
    return [dict(r) for r in await pool.fetch(SQL)]


def months(days: float) -> float:
    return round(days / DAYS_PER_MONTH, 1)


def _num(v: float) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def span(r: dict[str, Any], as_of: date) -> tuple[date, str, bool]:
    """(the date the regime's time in special measures ends or is censored, its outcome, ended?)"""
    if r["exit_date"] is not None:
        return r["exit_date"], "exited", True
    if r["closed"] or r["phase"] == "closed_structural":
        if r.get("closed_at") is not None:
            return london_date(r["closed_at"]), "closed", True
        # No closing event in the audit (a row not written by the workflow's effects): when it ended is not known,
        # so it is censored at the row's last change and counted apart (closed_undated).
        updated = r.get("updated_at")
        return (london_date(updated) if updated is not None else as_of), "closed_undated", False
    return as_of, "running", False


def durations(regimes: list[dict[str, Any]], as_of: date) -> list[dict[str, Any]]:
    """One item per regime: its end (or censoring) date, outcome, days in special measures and whether it ended."""
    out = []
    for r in regimes:
        end, outcome, ended = span(r, as_of)
        days = max((end - r["entry_date"]).days, 0)
        out.append({**r, "end_date": end, "outcome": outcome, "ended": ended, "days": days})
    return out


def kaplan_meier(days: list[int], ended: list[bool]) -> dict[str, Any]:
    """The Kaplan-Meier curve of time in special measures (statsmodels), from time 0, with the numbers at risk
    and the median. Each point: the curve's value from `time_days` until the next point, with the number at risk
    just before `time_days`, the ends at it, and the censored from it until the next point."""
    n = len(days)
    if n == 0:
        return {"points": [], "median_days": None}
    from statsmodels.duration.survfunc import SurvfuncRight

    sf = SurvfuncRight([float(d) for d in days], [1 if e else 0 for e in ended])
    times = [int(t) for t in sf.surv_times]
    probs = [float(p) for p in sf.surv_prob]
    at_risk = [int(k) for k in sf.n_risk]
    events = [int(k) for k in sf.n_events]
    points: list[dict[str, Any]] = []
    if not times or times[0] > 0:
        points.append({"time_days": 0, "survival": 1.0, "at_risk": n, "events": 0})
    points += [{"time_days": t, "survival": p, "at_risk": k, "events": e}
               for t, p, k, e in zip(times, probs, at_risk, events, strict=True)]
    for i, p in enumerate(points):
        nxt = points[i + 1]["time_days"] if i + 1 < len(points) else None
        p["censored"] = sum(1 for d, e in zip(days, ended, strict=True)
                            if not e and d >= p["time_days"] and (nxt is None or d < nxt))
        p["months"] = months(p["time_days"])
    median = _num(sf.quantile(0.5)) if times else None
    return {"points": points, "median_days": median}


def _median(values: list[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def compute(regimes: list[dict[str, Any]], as_of: date | None = None) -> dict[str, Any]:
    """The evaluation's figures (the shape of api.routes.evaluation.Evaluation) from the regimes' rows."""
    as_of = as_of or today()
    items = durations(regimes, as_of)
    km = kaplan_meier([i["days"] for i in items], [i["ended"] for i in items])

    by_year: dict[int, list[dict[str, Any]]] = {}
    for i in items:
        by_year.setdefault(i["entry_date"].year, []).append(i)
    years = []
    for year in sorted(by_year):
        group = by_year[year]
        k = kaplan_meier([i["days"] for i in group], [i["ended"] for i in group])
        years.append({"year": year, "regimes": len(group), **_outcomes(group), "median_days": k["median_days"],
                      "median_months": months(k["median_days"]) if k["median_days"] is not None else None})

    # Re-entry: of the regimes that ended in an exit, those a later regime names as its previous one.
    later = {i["previous_regime_id"]: i for i in items if i["previous_regime_id"]}
    exits = []
    for i in items:
        if i["outcome"] != "exited":
            continue
        nxt = later.get(i["regime_id"])
        gap = (nxt["entry_date"] - i["end_date"]).days if nxt else None
        exits.append({"regime_id": i["regime_id"], "trust_name": i["trust_name"], "ods_code": i["ods_code"],
                      "exit_date": i["end_date"], "reentered": nxt is not None,
                      "reentry_regime_id": nxt["regime_id"] if nxt else None,
                      "reentry_date": nxt["entry_date"] if nxt else None, "days_to_reentry": gap})
    gaps = [e["days_to_reentry"] for e in exits if e["days_to_reentry"] is not None]
    reentered = [e for e in exits if e["reentered"]]
    reentry = {
        "exits": len(exits), "reentered": len(reentered),
        "rate": len(reentered) / len(exits) if exits else None,
        "trusts_exited": len({e["ods_code"] for e in exits}),
        "trusts_reentered": len({e["ods_code"] for e in reentered}),
        "median_days_to_reentry": _median(gaps), "items": exits,
        # Re-entries whose previous regime did not end in an exit (a structural closure, or still recorded as
        # running): counted here, left out of the rate.
        "other_reentries": sum(1 for i in items if i["previous_regime_id"]) - len(reentered),
    }

    costs = []
    for i in items:
        buddy, funding = int(i["buddy_paid_pence"]), int(i.get("funding_paid_pence") or 0)
        director = int(i.get("director_time_pence") or 0)
        total = buddy + funding + director
        costs.append({"regime_id": i["regime_id"], "trust_name": i["trust_name"], "ods_code": i["ods_code"],
                      "entry_date": i["entry_date"], "end_date": i["end_date"], "outcome": i["outcome"],
                      "days": i["days"], "months": months(i["days"]), "buddy_paid_pence": buddy,
                      "buddy_per_month_pence": round(buddy / (i["days"] / DAYS_PER_MONTH)) if i["days"] else None,
                      "funding_paid_pence": funding, "director_time_pence": director, "total_pence": total,
                      "total_per_month_pence": round(total / (i["days"] / DAYS_PER_MONTH)) if i["days"] else None})
    paid = sum(c["buddy_paid_pence"] for c in costs)
    total = sum(c["total_pence"] for c in costs)
    total_days = sum(c["days"] for c in costs)
    cost = {
        "buddy_paid_pence": paid, "months": months(total_days),
        "buddy_per_month_pence": round(paid / (total_days / DAYS_PER_MONTH)) if total_days else None,
        "buddy_per_regime_pence": round(paid / len(costs)) if costs else None,
        "median_per_regime_pence": round(statistics.median([c["buddy_paid_pence"] for c in costs])) if costs else None,
        "regimes_with_payments": sum(1 for c in costs if c["buddy_paid_pence"]),
        "funding_paid_pence": sum(c["funding_paid_pence"] for c in costs),
        "director_time_pence": sum(c["director_time_pence"] for c in costs),
        "total_pence": total,
        "total_per_month_pence": round(total / (total_days / DAYS_PER_MONTH)) if total_days else None,
        "total_per_regime_pence": round(total / len(costs)) if costs else None,
        "items": costs,
    }
    return {
        "as_of": as_of, "regimes": len(items), **_outcomes(items),
        "median_days": km["median_days"],
        "median_months": months(km["median_days"]) if km["median_days"] is not None else None,
        "survival": km["points"], "by_entry_year": years, "reentry": reentry, "cost": cost,
    }


def _outcomes(items: list[dict[str, Any]]) -> dict[str, int]:
    return {"exited": sum(1 for i in items if i["outcome"] == "exited"),
            "closed": sum(1 for i in items if i["outcome"] == "closed"),
            "running": sum(1 for i in items if i["outcome"] == "running"),
            "closed_undated": sum(1 for i in items if i["outcome"] == "closed_undated")}


async def evaluate(pool: asyncpg.Pool, as_of: date | None = None) -> dict[str, Any]:
    return compute(await rows(pool), as_of)


# ------------------------------------------------------------------ the figures behind each chart, as CSV
def _pounds(pence: int | None) -> str | None:
    return None if pence is None else f"{pence / 100:.2f}"


def table(ev: dict[str, Any], name: str) -> tuple[list[str], list[dict[str, Any]]]:
    """(columns, rows) of one of TABLES."""
    if name == "survival":
        cols = ["time_days", "months", "survival", "at_risk", "events", "censored"]
        return cols, [{c: p[c] for c in cols} for p in ev["survival"]]
    if name == "by-entry-year":
        cols = ["year", "regimes", "exited", "closed", "running", "closed_undated", "median_days", "median_months"]
        return cols, [{c: y[c] for c in cols} for y in ev["by_entry_year"]]
    if name == "reentry":
        cols = ["regime_id", "trust_name", "ods_code", "exit_date", "reentered", "reentry_regime_id", "reentry_date",
                "days_to_reentry"]
        return cols, [{c: e[c] for c in cols} for e in ev["reentry"]["items"]]
    if name == "cost":
        cols = ["regime_id", "trust_name", "ods_code", "entry_date", "end_date", "outcome", "days", "months",
                "buddy_paid_pence", "buddy_paid_pounds", "buddy_per_month_pence", "buddy_per_month_pounds",
                "funding_paid_pence", "director_time_pence", "total_pence", "total_pounds", "total_per_month_pence"]
        out = []
        for c in ev["cost"]["items"]:
            out.append({**{k: c[k] for k in cols if k in c}, "buddy_paid_pounds": _pounds(c["buddy_paid_pence"]),
                        "buddy_per_month_pounds": _pounds(c["buddy_per_month_pence"]),
                        "total_pounds": _pounds(c["total_pence"])})
        return cols, out
    raise KeyError(name)


def _cell(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, date):
        return v.isoformat()
    return f"'{v}" if isinstance(v, str) and v.startswith(FORMULA_START) else v


def to_csv(ev: dict[str, Any], name: str) -> str:
    cols, data = table(ev, name)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for row in data:
        w.writerow({k: _cell(v) for k, v in row.items()})
    return buf.getvalue()
