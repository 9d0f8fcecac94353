"""Read models for the pages: the regimes list, one regime's clock and relatives, and the cohort."""

from __future__ import annotations

import asyncio
import statistics
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import asyncpg
from temporalio.client import Client
from temporalio.service import RPCError

from api.auth import User
from api.evaluation import COST_COLUMNS
from api.web import labels
from domain import ladder as escalation
from domain.vocab import ACTIVE_PHASES
from settings import Settings

SORTS = ("trust", "phase", "months", "next_due", "overdue", "escalation", "buddies")


@dataclass
class Clock:
    """A regime's 'now'. Under the dev server's time skipping a workflow runs ahead of the wall clock;
    the page must judge its deadlines by the workflow's time, as the workflow itself does."""

    now: datetime
    skipped: bool = False
    status: str | None = None
    run_id: str | None = None
    history_length: int | None = None

    @property
    def today(self) -> date:
        return labels.london_today(self.now)


async def clock(client: Client, workflow_id: str) -> Clock:
    wall = datetime.now(UTC)
    try:
        desc = await client.get_workflow_handle(workflow_id).describe()
    except RPCError:
        return Clock(now=wall)
    ext = desc.raw_description.workflow_extended_info
    status = desc.status.name.lower().replace("_", " ") if desc.status else None
    c = Clock(now=wall, status=status, run_id=desc.run_id, history_length=desc.history_length)
    if ext.HasField("time_skipping_info"):
        virtual = ext.time_skipping_info.current_time.ToDatetime().replace(tzinfo=UTC)
        if virtual > wall:
            c.now, c.skipped = virtual, True
    return c


async def clocks(client: Client | None, settings: Settings, workflow_ids: list[str]) -> dict[str, Clock]:
    """Clocks for many regimes. Only the local dev server skips time, so elsewhere the wall clock is the
    regimes' clock and no describe call is made per row."""
    wall = Clock(now=datetime.now(UTC))
    if client is None or settings.environment != "local" or not workflow_ids:
        return {w: wall for w in workflow_ids}
    sem = asyncio.Semaphore(8)

    async def one(w: str) -> tuple[str, Clock]:
        async with sem:
            return w, await clock(client, w)

    return dict(await asyncio.gather(*(one(w) for w in workflow_ids)))


def late_rungs(settings: Settings) -> list[str]:
    return [r["name"] for r in settings.ladder if int(r["offset_days"]) >= 0]


def first_late_level(settings: Settings) -> int:
    return escalation.first_late_level(settings.ladder)


def escalation_label(settings: Settings, level: int) -> str:
    if level <= 0:
        return "None"
    ladder = settings.ladder
    name = ladder[min(level, len(ladder)) - 1]["name"]
    return labels.rung_label(name)


def scope_clause(user: User, args: list[Any], column: str = "ods_code") -> str:
    """The regimes `user` may read, as SQL: `User.readable_trusts`, the rule every read checks too."""
    trusts = user.readable_trusts()
    if trusts is None:
        return "TRUE"
    args.append(trusts)
    return f"{column} = ANY(${len(args)})"


@dataclass
class Filters:
    q: str = ""
    phase: str = ""
    overdue_only: bool = False
    escalated_only: bool = False
    sort: str = "next_due"
    direction: str = "asc"
    page: int = 1

    def query(self, **change: Any) -> str:
        """The list's query string with some values changed; page 1 and empty values are left out."""
        from urllib.parse import urlencode

        d = {"q": self.q, "phase": self.phase, "overdue_only": "1" if self.overdue_only else "",
             "escalated_only": "1" if self.escalated_only else "", "sort": self.sort, "dir": self.direction,
             "page": self.page}
        d.update({k: v for k, v in change.items()})
        if str(d["page"]) in ("", "1"):
            d["page"] = ""
        return urlencode({k: v for k, v in d.items() if v})


PAGE_SIZE = 50


def page_number(raw: str | None) -> int:
    """The `page` query parameter, 1-based. Anything but a whole number is page 1; a number too long to be
    a page is past the end (the caller shows the last page)."""
    raw = (raw or "").strip()
    if not (raw.isascii() and raw.isdigit()):
        return 1
    return 10**9 if len(raw) > 9 else max(int(raw), 1)


@dataclass
class RegimePage:
    """One page of the regimes list: its rows and where it sits in the whole filtered list."""

    rows: list[dict[str, Any]]
    total: int
    page: int
    size: int = PAGE_SIZE

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.size))

    @property
    def first(self) -> int:
        return (self.page - 1) * self.size + 1 if self.rows else 0

    @property
    def last(self) -> int:
        return self.first + len(self.rows) - 1 if self.rows else 0


def _humanised_phase_sql(column: str) -> str:
    """labels.humanise in SQL, for a phase with no label in labels.PHASES."""
    s = f"btrim(replace(replace({column}, '_', ' '), '.', ': '))"
    return f"upper(left({s}, 1)) || substr({s}, 2)"


def order_by(f: Filters, args: list[Any]) -> str:
    """ORDER BY for the list, the same order the page used to sort in Python: each sort key's columns, then
    the trust's name; descending reverses all of them (so regimes with no deadline open come last ascending
    and first descending). regime_id last makes the order total, so pages neither repeat nor skip a regime.
    Text is compared by code point (COLLATE "C"), as Python compared strings, whatever the database's locale."""
    name = 'lower(trust_name) COLLATE "C"'
    if f.sort == "phase":
        whens = []
        for phase, (label, _colour) in labels.PHASES.items():
            args.extend([phase, label])
            whens.append(f"WHEN ${len(args) - 1} THEN ${len(args)}::text")
        label_sql = f"(CASE phase {' '.join(whens)} ELSE {_humanised_phase_sql('phase')} END) COLLATE \"C\""
        keys = [label_sql, name]
    elif f.sort == "months":
        # labels.months: whole days to the exit (or today, London time) over 30.4375, to one decimal place.
        args.append(labels.london_today(datetime.now(UTC)))
        keys = [f"round((COALESCE(exit_date, ${len(args)}::date) - entry_date) / 30.4375, 1)", name]
    elif f.sort == "trust":
        keys = [name, "entry_date"]
    elif f.sort == "overdue":
        keys = ["overdue", "escalation_level", name]
    elif f.sort == "escalation":
        keys = ["escalation_level", "overdue", name]
    elif f.sort == "buddies":
        keys = ["buddy_count", name]
    else:  # next_due
        keys = ["next_due", name]
    direction = "DESC" if f.direction == "desc" else "ASC"
    nulls = "NULLS FIRST" if direction == "DESC" else "NULLS LAST"
    return ", ".join(f"{k} {direction} {nulls}" for k in [*keys, "regime_id"])


def list_where(user: User, settings: Settings, f: Filters, args: list[Any]) -> str:
    clauses = [scope_clause(user, args)]
    if f.phase:
        args.append(f.phase)
        clauses.append(f"phase = ${len(args)}")
    if f.q:
        args.append(f"%{f.q}%")
        clauses.append(f"(trust_name ILIKE ${len(args)} OR ods_code ILIKE ${len(args)})")
    if f.overdue_only:
        clauses.append("overdue > 0")
    if f.escalated_only:
        args.append(first_late_level(settings))
        clauses.append(f"escalation_level >= ${len(args)}")
    return " AND ".join(clauses)


async def regime_rows(pool: asyncpg.Pool, client: Client | None, settings: Settings, user: User,
                      f: Filters) -> RegimePage:
    """One page of the regimes the user may see that match the filters, sorted and paged by PostgreSQL.
    A page past the end is the last page. Only the page's running regimes have their clocks read."""
    args: list[Any] = []
    where = list_where(user, settings, f, args)
    # The count and the page from one snapshot, so "Showing 51 to 100 of N" agrees with the rows shown.
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        total = await conn.fetchval(f"SELECT count(*) FROM regimes WHERE {where}", *args)
        pages = max(1, -(-total // PAGE_SIZE))
        page = min(max(f.page, 1), pages)
        order = order_by(f, args)
        args.extend([PAGE_SIZE, (page - 1) * PAGE_SIZE])
        rows = await conn.fetch(f"SELECT * FROM regimes WHERE {where} ORDER BY {order} "
                                f"LIMIT ${len(args) - 1} OFFSET ${len(args)}", *args)
    cl = await clocks(client, settings, [r["workflow_id"] for r in rows if not r["closed"]])
    wall = Clock(now=datetime.now(UTC))
    return RegimePage(rows=[row_view(r, cl.get(r["workflow_id"], wall), settings) for r in rows], total=total,
                      page=page)


def row_view(r: Any, c: Clock, settings: Settings) -> dict[str, Any]:
    today = c.today
    end = r["exit_date"] or today
    days_left = (r["next_due"] - today).days if r["next_due"] else None
    return {
        "regime_id": r["regime_id"], "workflow_id": r["workflow_id"], "trust_name": r["trust_name"],
        "ods_code": r["ods_code"], "phase": r["phase"], "phase_label": labels.phase_label(r["phase"]),
        "phase_colour": labels.phase_colour(r["phase"]), "entry_date": r["entry_date"],
        "months": labels.months(r["entry_date"], end), "next_due": r["next_due"], "days_left": days_left,
        "days_phrase": labels.days_phrase(days_left) if days_left is not None else "",
        "overdue": r["overdue"], "escalation_level": r["escalation_level"],
        "escalation_label": escalation_label(settings, r["escalation_level"]),
        "escalated": escalation.is_escalated(r["escalation_level"], settings.ladder),
        "buddy_count": r["buddy_count"], "extensions": r["extensions"], "exit_date": r["exit_date"],
        "sos_letter": r["sos_letter"], "closed": r["closed"], "previous_regime_id": r["previous_regime_id"],
        "today": today, "skipped": c.skipped,
    }


async def relatives(pool: asyncpg.Pool, user: User, row: Any) -> list[dict[str, Any]]:
    """Every regime of the same trust, oldest first, marked earlier / this / later."""
    rows = await pool.fetch("SELECT regime_id, entry_date, exit_date, phase, previous_regime_id, measures, segment "
                            "FROM regimes "
                            "WHERE ods_code = $1 OR regime_id = $2 OR previous_regime_id = $3 "
                            "ORDER BY entry_date, regime_id", row["ods_code"], row["previous_regime_id"],
                            row["regime_id"])
    out = []
    for r in rows:
        rel = ("this" if r["regime_id"] == row["regime_id"] else
               "earlier" if r["entry_date"] < row["entry_date"] or r["regime_id"] == row["previous_regime_id"]
               else "later")
        out.append({**dict(r), "relation": rel, "phase_label": labels.phase_label(r["phase"]),
                    "measures_label": {"quality": "quality", "finance": "finance",
                                       "combined": "quality and finance"}.get(r["measures"], r["measures"]),
                    "active": r["phase"] in ACTIVE_PHASES,
                    "direct": r["regime_id"] == row["previous_regime_id"] or
                    r["previous_regime_id"] == row["regime_id"]})
    return out


async def cohort(pool: asyncpg.Pool, client: Client | None, settings: Settings, user: User) -> dict[str, Any]:
    args: list[Any] = [late_rungs(settings)]
    scope = scope_clause(user, args, "r.ods_code")
    rows = await pool.fetch(
        f"""
        WITH late AS (
            SELECT DISTINCT workflow_id, step_id FROM audit_log
            WHERE event = 'escalation' AND detail->>'rung' = ANY($1)
        )
        SELECT r.*,
          (SELECT count(*) FROM audit_log a WHERE a.regime_id = r.regime_id AND a.event = 'escalation'
              AND a.detail->>'rung' = ANY($1)) AS escalations,
          (SELECT max(a.at) FROM audit_log a WHERE a.regime_id = r.regime_id AND a.event = 'regime_closed')
              AS closed_at,
          (SELECT count(*) FROM tasks t WHERE t.regime_id = r.regime_id AND t.state = 'done'
              AND NOT EXISTS (SELECT 1 FROM late l WHERE l.workflow_id = t.workflow_id AND l.step_id = t.step_id))
              AS met,
          (SELECT count(*) FROM tasks t WHERE t.regime_id = r.regime_id AND (t.state = 'done' OR (t.state = 'open'
              AND EXISTS (SELECT 1 FROM late l WHERE l.workflow_id = t.workflow_id AND l.step_id = t.step_id))))
              AS fell_due,
          {COST_COLUMNS}
        FROM regimes r WHERE {scope} ORDER BY r.entry_date, r.regime_id
        """, *args)
    cl = await clocks(client, settings, [r["workflow_id"] for r in rows if not r["closed"]])
    wall = Clock(now=datetime.now(UTC))
    items = []
    for r in rows:
        c = cl.get(r["workflow_id"], wall)
        if r["exit_date"]:
            end, outcome = r["exit_date"], "exited"
        elif r["phase"] == "closed_structural" and r["closed_at"]:
            # A merger or an acquisition: the trust left special measures by becoming part of another
            # organisation (domain.md, "Who the trust becomes"), counted apart from exits and other closures.
            merged = r["closure_solution"] in ("merger", "acquisition")
            end, outcome = labels.london_today(r["closed_at"]), "merged" if merged else "closed"
        else:
            end, outcome = c.today, "ongoing"
        items.append({
            "regime_id": r["regime_id"], "trust_name": r["trust_name"], "ods_code": r["ods_code"],
            "entry_date": r["entry_date"], "end": end, "outcome": outcome, "phase": r["phase"],
            "successor_ods_code": r["successor_ods_code"],
            "phase_label": labels.phase_label(r["phase"]), "phase_colour": labels.phase_colour(r["phase"]),
            "months": labels.months(r["entry_date"], end), "extensions": r["extensions"],
            "sos_letter": r["sos_letter"], "escalations": r["escalations"], "met": r["met"],
            "fell_due": r["fell_due"], "on_time_share": (r["met"] / r["fell_due"]) if r["fell_due"] else None,
            # The cost of the interventions (issue 16 item 2): buddy payments, central funding, the director's time.
            "cost_pence": r["buddy_paid_pence"] + r["funding_paid_pence"] + r["director_time_pence"],
        })
    all_months = [i["months"] for i in items]
    done_months = [i["months"] for i in items if i["outcome"] != "ongoing"]
    met = sum(i["met"] for i in items)
    fell_due = sum(i["fell_due"] for i in items)
    trusts: dict[str, dict[str, Any]] = {}
    for i in items:
        t = trusts.setdefault(i["ods_code"], {"ods_code": i["ods_code"], "trust_name": i["trust_name"],
                                              "regimes": 0, "months": 0.0})
        t["regimes"] += 1
        t["months"] = round(t["months"] + i["months"], 1)
        t["trust_name"] = i["trust_name"]
    return {
        "regimes": items,
        "trusts": sorted(trusts.values(), key=lambda t: -t["months"]),
        "count": len(items),
        "ongoing": sum(1 for i in items if i["outcome"] == "ongoing"),
        "exits": sum(1 for i in items if i["outcome"] == "exited"),
        "closed": sum(1 for i in items if i["outcome"] == "closed"),
        "merged": sum(1 for i in items if i["outcome"] == "merged"),
        "extensions": sum(i["extensions"] for i in items),
        "regimes_extended": sum(1 for i in items if i["extensions"]),
        "sos_letters": sum(1 for i in items if i["sos_letter"]),
        "median": round(statistics.median(all_months), 1) if all_months else None,
        "mean": round(statistics.fmean(all_months), 1) if all_months else None,
        "median_done": round(statistics.median(done_months), 1) if done_months else None,
        "mean_done": round(statistics.fmean(done_months), 1) if done_months else None,
        "met": met, "fell_due": fell_due, "on_time_share": (met / fell_due) if fell_due else None,
        "cost_pence": sum(i["cost_pence"] for i in items),
        "escalations_per_regime": round(sum(i["escalations"] for i in items) / len(items), 1) if items else None,
    }
