"""The regime's timeline as an SVG Gantt chart, with the same facts as rows for a table.

Each milestone is a row: its window (opened to due) as a bar, the due date as a diamond, the completion
as a circle, the time an open step has been overdue as a hatched bar, and escalations as triangles.
A recurring kind (the monthly returns and meetings: `recurs` in the catalogue) has one row for all its steps.
Extensions are shaded bands, CQC reports and the exit are vertical lines, and today is a solid line. Colour is
never the only signal: each row states its state in words at the right, and the table under the chart carries
everything the chart shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from markupsafe import Markup, escape

from api.web import labels
from domain import dates
from domain.models import RegimeState, Step

W, LABEL_W, STATE_W = 1040, 250, 150
CHART_X0, CHART_X1 = LABEL_W, W - STATE_W - 10
ROW_H, TOP = 32, 64
INK, GRID, BAND = "#212b32", "#d8dde0", "#fff9c4"


@dataclass
class Item:
    step_id: str
    start: date
    due: date
    done: date | None
    state: str
    escalations: list[tuple[date, str, int]] = field(default_factory=list)
    announced: date | None = None


@dataclass
class Row:
    label: str
    items: list[Item]
    role: str
    kind: str

    @property
    def state(self) -> str:
        """The row's state: the most pressing of its items."""
        order = ["overdue", "due_soon", "paused", "on_time", "done_late", "done", "cancelled"]
        return min((i.state for i in self.items), key=order.index)

    def state_text(self, today: date) -> str:
        if len(self.items) > 1:
            counts: dict[str, int] = {}
            for i in self.items:
                counts[i.state] = counts.get(i.state, 0) + 1
            order = ["overdue", "due_soon", "on_time", "paused", "done_late", "done", "cancelled"]
            return ", ".join(f"{counts[s]} {labels.state_label(s).lower()}" for s in order if s in counts)
        i = self.items[0]
        if i.state == "overdue":
            n = (today - i.due).days
            return f"Overdue {n} day{'s' if n != 1 else ''}"
        if i.state == "due_soon":
            return f"Due soon ({labels.days_phrase((i.due - today).days)})"
        return labels.state_label(i.state)


@dataclass
class Timeline:
    svg: Markup
    rows: list[Row]
    start: date
    end: date
    today: date
    counts: dict[str, int]
    markers: list[dict[str, Any]]


def _date(dt: Any) -> date:
    return dates.london_date(dt)


def build(state: RegimeState, today: date, soon_days: int = 7) -> Timeline:
    steps = sorted(state.steps.values(), key=lambda s: (s.opened_at, s.due, s.id))
    escalations: dict[str, list[tuple[date, str, int]]] = {}
    for e in state.escalations:
        escalations.setdefault(e.step_id, []).append((_date(e.at), e.rung, e.level))
    rows: list[Row] = []
    monthly: dict[str, Row] = {}
    for st in steps:
        item = _item(st, today, soon_days, escalations.get(st.id, []))
        spec = labels.step_spec(st.kind)
        if spec is not None and spec.recurs:  # one row for all the kind's months
            row = monthly.get(st.kind)
            if row is None:
                row = monthly[st.kind] = Row(labels.step_title(st.kind), [], st.role, st.kind)
                rows.append(row)
            row.items.append(item)
        else:
            rows.append(Row(labels.step_title(st.kind, st.id), [item], st.role, st.kind))

    entry = state.placement.entry_date
    markers: list[dict[str, Any]] = []
    for rec in state.inspections:
        o = rec.outcome
        if o.published >= entry and rec.status != "older_ignored":
            what = "" if o.special_measures_reinspection is not False else f" ({labels.inspection_label(o).lower()})"
            markers.append({"date": o.published, "label": f"CQC report {o.reference}{what}", "kind": "inspection",
                            "status": rec.status})
    if state.exit_date:
        markers.append({"date": state.exit_date, "label": "Exited special measures", "kind": "exit"})
    if state.closure and state.closure.get("on"):
        markers.append({"date": date.fromisoformat(state.closure["on"]), "label": "Closed", "kind": "exit"})
    bands = [{"start": date.fromisoformat(x["decided_on"]), "end": date.fromisoformat(x["ends"]),
              "label": f"Extension {x['number']} ({x['months']} months)"} for x in state.extensions]

    candidates = [entry, today] if not state.finished else [entry]
    for r in rows:
        for i in r.items:
            candidates += [i.start, i.due] + ([i.done] if i.done else [])
    candidates += [m["date"] for m in markers] + [b["end"] for b in bands]
    start = entry - timedelta(days=7)
    end = max(candidates) + timedelta(days=21)
    counts: dict[str, int] = {}
    for r in rows:
        for i in r.items:
            counts[i.state] = counts.get(i.state, 0) + 1
    svg = _render(rows, start, end, today if not state.finished else None, markers, bands, counts, entry)
    return Timeline(svg=svg, rows=rows, start=start, end=end, today=today, counts=counts, markers=markers)


def _item(st: Step, today: date, soon: int, escs: list[tuple[date, str, int]]) -> Item:
    done = _date(st.completed_at) if st.completed_at and st.status != "cancelled" else None
    announced = st.data.get("announced_date")
    return Item(step_id=st.id, start=min(_date(st.opened_at), st.due), due=st.due, done=done,
                state=labels.step_state(st.status, st.due, today, st.late, st.paused, soon),
                escalations=escs, announced=date.fromisoformat(announced) if announced else None)


def _render(rows: list[Row], start: date, end: date, today: date | None, markers: list[dict[str, Any]],
            bands: list[dict[str, Any]], counts: dict[str, int], entry: date) -> Markup:
    span = max((end - start).days, 1)

    def x(d: date) -> float:
        return round(CHART_X0 + (CHART_X1 - CHART_X0) * (d - start).days / span, 1)

    bottom = TOP + ROW_H * max(len(rows), 1)
    height = bottom + (44 if markers or bands else 12)
    summary = ", ".join(f"{n} {labels.state_label(s).lower()}" for s, n in counts.items()) or "no milestones"
    out: list[str] = [
        f'<svg class="sm-timeline" viewBox="0 0 {W} {height}" width="100%" role="img" '
        f'aria-labelledby="timeline-title timeline-desc" xmlns="http://www.w3.org/2000/svg" '
        f'font-family="Arial, sans-serif" font-size="14">',
        f'<title id="timeline-title">Timeline of the regime from {labels.fmt_date(entry)}</title>',
        f'<desc id="timeline-desc">{len(rows)} milestone rows: {escape(summary)}. '
        f'The table below the chart lists the same milestones.</desc>',
        '<defs><pattern id="hatch-overdue" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="6" height="6" fill="#f7d4d1"/>'
        '<line x1="0" y1="0" x2="0" y2="6" stroke="#d5281b" stroke-width="3"/></pattern></defs>',
    ]
    for n in range(0, len(rows), 2):
        out.append(f'<rect x="0" y="{TOP + n * ROW_H}" width="{W}" height="{ROW_H}" fill="#f0f4f5"/>')
    for b in bands:
        x0, x1 = x(max(b["start"], start)), x(min(b["end"], end))
        out.append(f'<g class="sm-band"><title>{escape(b["label"])}: {labels.fmt_date(b["start"])} to '
                   f'{labels.fmt_date(b["end"])}</title><rect x="{x0}" y="{TOP - 4}" width="{max(x1 - x0, 1)}" '
                   f'height="{bottom - TOP + 8}" fill="{BAND}" fill-opacity="0.75" stroke="#ffb81c"/>'
                   f'<text x="{x0 + 4}" y="{bottom + 34}" fill="{INK}" font-size="12">{escape(b["label"])}</text></g>')
    out.append(_months_axis(start, end, x, bottom))
    for n, row in enumerate(rows):
        y = TOP + n * ROW_H
        out.append(f'<text x="{LABEL_W - 10}" y="{y + 21}" text-anchor="end" fill="{INK}">{escape(row.label)}</text>')
        for item in row.items:
            out.append(_item_svg(row, item, x, y, today))
        colour = labels.STATES[row.state][1]
        out.append(f'<g class="sm-state"><rect x="{CHART_X1 + 14}" y="{y + 9}" width="11" height="11" '
                   f'fill="{colour}" stroke="{INK}" stroke-width="0.8"/>'
                   f'<text x="{CHART_X1 + 31}" y="{y + 20}" fill="{INK}" font-size="13">'
                   f'{escape(row.state_text(today or end))}</text></g>')
    for m in markers:
        mx = x(m["date"])
        colour = "#007f3b" if m["kind"] == "exit" else "#330072"
        dash = "" if m["kind"] == "exit" else ' stroke-dasharray="4 3"'
        out.append(f'<g class="sm-marker"><title>{escape(m["label"])} ({labels.fmt_date(m["date"])})</title>'
                   f'<line x1="{mx}" y1="{TOP - 6}" x2="{mx}" y2="{bottom + 6}" stroke="{colour}" stroke-width="2"{dash}/>'
                   f'<text x="{mx + 3}" y="{bottom + 16}" fill="{colour}" font-size="12">{escape(m["label"])}</text></g>')
    if today is not None and start <= today <= end:
        tx = x(today)
        out.append(f'<g class="sm-today"><title>Today, {labels.fmt_date(today)}</title>'
                   f'<line x1="{tx}" y1="{TOP - 12}" x2="{tx}" y2="{bottom}" stroke="{INK}" stroke-width="2.5"/>'
                   f'<rect x="{tx - 26}" y="{TOP - 30}" width="52" height="18" rx="3" fill="{INK}"/>'
                   f'<text x="{tx}" y="{TOP - 16}" text-anchor="middle" fill="#ffffff" font-size="12" '
                   f'font-weight="bold">Today</text></g>')
    out.append("</svg>")
    return Markup("".join(out))


def _months_axis(start: date, end: date, x: Any, bottom: float) -> str:
    span_months = (end.year - start.year) * 12 + end.month - start.month
    step = 1 if span_months <= 14 else 2 if span_months <= 28 else 3 if span_months <= 42 else 6
    out = []
    m = date(start.year, start.month, 1)
    i = 0
    year_shown = None
    while m <= end:
        if m >= start:
            mx = x(m)
            out.append(f'<line x1="{mx}" y1="{TOP - 4}" x2="{mx}" y2="{bottom}" stroke="{GRID}"/>')
            if i % step == 0:
                out.append(f'<text x="{mx + 3}" y="{TOP - 50}" fill="#4c6272" font-size="12">{m:%b}</text>')
                if m.year != year_shown:
                    year_shown = m.year
                    out.append(f'<text x="{mx + 3}" y="{TOP - 36}" fill="#4c6272" font-size="12">{m:%Y}</text>')
            i += 1
        m = dates.add_months(m, 1)
    return "".join(out)


def _item_svg(row: Row, i: Item, x: Any, y: float, today: date | None) -> str:
    colour = labels.STATES[i.state][1]
    mid = y + ROW_H / 2
    x0, xd = x(i.start), x(i.due)
    tip = [f"{row.label}: {labels.state_label(i.state)}", f"window {labels.fmt_date(i.start)} to "
           f"{labels.fmt_date(i.due)}"]
    if i.done:
        tip.append(f"done {labels.fmt_date(i.done)}")
    parts = [f'<g class="sm-item sm-{i.state}" data-step="{escape(i.step_id)}" data-state="{i.state}">']
    parts.append(f"<title>{escape('; '.join(tip))}</title>")
    parts.append(f'<rect x="{x0}" y="{mid - 6}" width="{max(xd - x0, 2)}" height="12" rx="2" fill="{colour}" '
                 f'fill-opacity="0.28" stroke="{colour}" stroke-width="1.2"/>')
    if i.state == "overdue" and today is not None and today > i.due:
        parts.append(f'<rect x="{xd}" y="{mid - 6}" width="{max(x(today) - xd, 2)}" height="12" '
                     f'fill="url(#hatch-overdue)" stroke="#d5281b"/>')
    if i.state == "done_late" and i.done and i.done > i.due:
        parts.append(f'<rect x="{xd}" y="{mid - 3}" width="{max(x(i.done) - xd, 2)}" height="6" fill="{colour}"/>')
    parts.append(f'<path d="M{xd} {mid - 8} L{xd + 7} {mid} L{xd} {mid + 8} L{xd - 7} {mid} Z" fill="{colour}" '
                 f'stroke="{INK}" stroke-width="1"/>')
    if i.announced:
        ax = x(i.announced)
        parts.append(f'<line x1="{ax}" y1="{mid - 9}" x2="{ax}" y2="{mid + 9}" stroke="{INK}" stroke-width="2"/>')
    if i.done:
        cx = x(i.done)
        parts.append(f'<circle cx="{cx}" cy="{mid}" r="6.5" fill="#ffffff" stroke="{colour}" stroke-width="2.5"/>'
                     f'<path d="M{cx - 3} {mid} l2 2.5 l4 -5" fill="none" stroke="{colour}" stroke-width="2"/>')
    for when, rung, level in i.escalations:
        ex = x(when)
        fill = "#d5281b" if rung != "reminder" else "#ffffff"
        parts.append(f'<path d="M{ex} {y + 2} l5 8 h-10 Z" fill="{fill}" stroke="#d5281b" stroke-width="1.2">'
                     f'<title>{escape(labels.rung_label(rung))} (level {level}) on {labels.fmt_date(when)}</title>'
                     f'</path>')
    parts.append("</g>")
    return "".join(parts)
