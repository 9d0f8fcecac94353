"""The pages' SVG charts: the cohort's time in special measures per regime (horizontal bars), the improvement plan's
statuses by month, and the evaluation's survival curve (a step chart) and bars."""

from __future__ import annotations

from typing import Any

from markupsafe import Markup, escape

INK = "#212b32"
OUTCOME_COLOURS = {"exited": "#007f3b", "merged": "#330072", "closed": "#768692", "ongoing": "#005eb8"}
PROGRAMME_AVERAGE = 23  # months: the real special measures programme's average stay (domain brief)


def months_chart(items: list[dict[str, Any]], mean: float | None) -> Markup:
    w, label_w, bar_h, gap, top = 1000, 340, 22, 8, 58
    x0, x1 = label_w, w - 70
    top_months = max([12.0, PROGRAMME_AVERAGE + 2.0] + [i["months"] for i in items])
    scale_max = (int(top_months) // 6 + 1) * 6
    rows = sorted(items, key=lambda i: -i["months"])
    height = top + len(rows) * (bar_h + gap) + 30

    def x(m: float) -> float:
        return round(x0 + (x1 - x0) * m / scale_max, 1)

    out = [f'<svg class="sm-cohort-chart" viewBox="0 0 {w} {height}" width="100%" role="img" '
           f'aria-labelledby="cohort-chart-title cohort-chart-desc" xmlns="http://www.w3.org/2000/svg" '
           f'font-family="Arial, sans-serif" font-size="13">',
           '<title id="cohort-chart-title">Months in special measures, per regime</title>',
           f'<desc id="cohort-chart-desc">{len(rows)} regimes; longest first. Green: exited; blue: still in '
           f'special measures; grey: closed by a structural solution. The table below gives the same '
           f'figures.</desc>']
    for m in range(0, scale_max + 1, 6):
        out.append(f'<line x1="{x(m)}" y1="{top - 6}" x2="{x(m)}" y2="{height - 26}" stroke="#d8dde0"/>'
                   f'<text x="{x(m)}" y="{height - 8}" text-anchor="middle" fill="#4c6272" font-size="12">'
                   f'{m} months</text>')
    for n, i in enumerate(rows):
        y = top + n * (bar_h + gap)
        colour = OUTCOME_COLOURS.get(i["outcome"], "#005eb8")
        label = f'{i["trust_name"]} ({i["entry_date"].year})'
        out.append(f'<g class="sm-cohort-bar"><title>{escape(label)}: {i["months"]} months, {escape(i["outcome"])}'
                   f'</title><text x="{label_w - 10}" y="{y + 16}" text-anchor="end" fill="{INK}">'
                   f'{escape(label if len(label) <= 50 else label[:48] + "…")}</text><rect x="{x0}" y="{y}" width="{max(x(i["months"]) - x0, 2)}" '
                   f'height="{bar_h}" fill="{colour}"/><text x="{x(i["months"]) + 6}" y="{y + 16}" fill="{INK}">'
                   f'{i["months"]}</text></g>')
    refs = ((12, "Re-inspection due (12 months)", "2 3", 14),
            (PROGRAMME_AVERAGE, f"Programme average (about {PROGRAMME_AVERAGE} months)", "6 3", 30),
            (mean, f"Mean here ({mean} months)", "", 46))
    for value, label, dash, y_text in refs:
        if value is None:
            continue
        lx = x(value)
        anchor = "end" if lx > w - 260 else "start"
        tx = lx - 4 if anchor == "end" else lx + 4
        out.append(f'<line x1="{lx}" y1="{top - 8}" x2="{lx}" y2="{height - 26}" stroke="{INK}" stroke-width="1.5"'
                   + (f' stroke-dasharray="{dash}"' if dash else "") + "/>"
                   f'<text x="{tx}" y="{y_text}" text-anchor="{anchor}" fill="{INK}" font-size="12">{escape(label)}'
                   f'</text>')
    out.append("</svg>")
    return Markup("".join(out))


# ------------------------------------------------------------------ the improvement plan, theme by theme
# Each status has a colour and a texture of its own, so no status is told by colour alone: done is dotted, at
# risk striped, off track cross-hatched, on track and not started plain (dark and light), an action absent from a
# month's report an empty dashed box. Stacked from the bottom in this order.
PLAN_STACK = ("done", "on_track", "at_risk", "off_track", "not_started", "not_reported")
NOT_REPORTED = "Not in that month's report"


def _plan_fill(status: str, pid: str) -> tuple[str, str]:
    """(the <pattern> defining the status's texture, or "", and the fill that uses it) for pattern ids `pid`-…"""
    pat = f"{pid}-{status}"
    if status == "done":
        return (f'<pattern id="{pat}" width="7" height="7" patternUnits="userSpaceOnUse"><rect width="7" height="7" '
                f'fill="#007f3b"/><circle cx="3.5" cy="3.5" r="1.4" fill="#ffffff"/></pattern>', f"url(#{pat})")
    if status == "at_risk":
        return (f'<pattern id="{pat}" width="6" height="6" patternUnits="userSpaceOnUse" '
                f'patternTransform="rotate(45)"><rect width="6" height="6" fill="#ffb81c"/>'
                f'<line x1="0" y1="0" x2="0" y2="6" stroke="{INK}" stroke-width="2"/></pattern>', f"url(#{pat})")
    if status == "off_track":
        return (f'<pattern id="{pat}" width="8" height="8" patternUnits="userSpaceOnUse" '
                f'patternTransform="rotate(45)"><rect width="8" height="8" fill="#d5281b"/>'
                f'<path d="M4 0V8M0 4H8" stroke="#ffffff" stroke-width="1.5"/></pattern>', f"url(#{pat})")
    return "", {"on_track": "#005eb8", "not_started": "#d8dde0", "not_reported": "#ffffff"}[status]


def _plan_status_words(status: str) -> str:
    from api.web.labels import plan_status_label

    return NOT_REPORTED if status == "not_reported" else plan_status_label(status)


def plan_month_counts(theme: dict[str, Any]) -> list[dict[str, Any]]:
    """Each reported month's counts for a theme (plan_view's `by_month`), with the theme's actions that month's
    report did not mention as `not_reported`, so every bar stands for all the theme's actions."""
    total = len(theme["actions"])
    out = []
    for m in theme["by_month"]:
        counts = dict(m["counts"])
        counts["not_reported"] = max(total - sum(counts.values()), 0)
        out.append({"month": m["month"], "counts": counts})
    return out


def plan_legend() -> Markup:
    """The statuses' swatches, for the list that explains the charts (each swatch its own pattern ids)."""
    items = []
    for status in PLAN_STACK:
        defs, fill = _plan_fill(status, "plan-legend")
        dash = ' stroke-dasharray="3 2"' if status == "not_reported" else ""
        items.append(f'<li data-status="{status}"><svg class="sm-swatch sm-swatch--plan" viewBox="0 0 16 16" '
                     f'aria-hidden="true" focusable="false">{f"<defs>{defs}</defs>" if defs else ""}'
                     f'<rect x="0.5" y="0.5" width="15" height="15" fill="{fill}" stroke="{INK}"{dash}/></svg>'
                     f'{escape(_plan_status_words(status))}</li>')
    return Markup('<ul class="sm-legend" aria-label="Statuses in the charts">' + "".join(items) + "</ul>")


def plan_theme_chart(theme: dict[str, Any], n: int) -> Markup:
    """A stacked bar per reported month: how many of the theme's actions that month's report gave in each status.
    `n` makes the chart's ids unique on the page."""
    from api.web.labels import fmt_month

    months = plan_month_counts(theme)
    total = max(len(theme["actions"]), 1)
    left, slot, bar_w, top, plot_h = 44, 86, 50, 14, 170
    w = max(left + slot * len(months) + 16, 260)
    h = top + plot_h + 40
    pid = f"plan-chart-{n}"

    def y(v: float) -> float:
        return round(top + plot_h - plot_h * v / total, 1)

    said = []
    for m in months:
        parts = [f"{c} {_plan_status_words(s).lower()}" for s in PLAN_STACK if (c := m["counts"].get(s, 0))]
        said.append(f"{fmt_month(m['month'])}: {', '.join(parts) or 'none'}")
    name = escape(theme["name"])
    out = [f'<svg class="sm-plan-chart" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" '
           f'aria-labelledby="{pid}-title {pid}-desc" xmlns="http://www.w3.org/2000/svg" '
           f'font-family="Arial, sans-serif" font-size="13">',
           f'<title id="{pid}-title">{name}: its {len(theme["actions"])} actions by status, month by month</title>',
           f'<desc id="{pid}-desc">One bar per monthly report. {escape(". ".join(said))}. The table below gives '
           f'the same figures.</desc>']
    defs = [d for s in PLAN_STACK if (d := _plan_fill(s, pid)[0])]
    out.append("<defs>" + "".join(defs) + "</defs>")
    step = 1 if total <= 6 else 2 if total <= 12 else 5 if total <= 30 else 10 if total <= 60 else 50
    ticks = list(range(0, total + 1, step))
    if ticks[-1] != total and (total - ticks[-1]) * plot_h / total >= 14:
        ticks.append(total)  # the top of the scale: all the theme's actions
    for v in ticks:
        out.append(f'<line x1="{left}" y1="{y(v)}" x2="{w - 8}" y2="{y(v)}" stroke="#d8dde0"/>'
                   f'<text x="{left - 8}" y="{y(v) + 4}" text-anchor="end" fill="#4c6272" font-size="12">{v}</text>')
    for i, m in enumerate(months):
        x = left + 18 + i * slot
        label = fmt_month(m["month"])
        out.append(f'<g class="sm-plan-bar" data-month="{escape(m["month"])}">')
        base = 0
        for status in PLAN_STACK:
            c = m["counts"].get(status, 0)
            if not c:
                continue
            y0, y1 = y(base + c), y(base)
            fill = _plan_fill(status, pid)[1]
            dash = ' stroke-dasharray="4 3"' if status == "not_reported" else ""
            words = escape(_plan_status_words(status).lower())
            out.append(f'<rect class="sm-plan-seg" data-status="{status}" data-count="{c}" x="{x}" y="{y0}" '
                       f'width="{bar_w}" height="{round(y1 - y0, 1)}" fill="{fill}" stroke="{INK}"{dash}>'
                       f'<title>{escape(label)}: {c} {words}</title></rect>')
            if y1 - y0 >= 18:  # the count on a white label, legible on every texture
                cy = round((y0 + y1) / 2, 1)
                out.append(f'<rect x="{x + bar_w / 2 - 11}" y="{cy - 8}" width="22" height="16" rx="3" '
                           f'fill="#ffffff" stroke="{INK}" stroke-width="0.5"/>'
                           f'<text x="{x + bar_w / 2}" y="{cy + 4.5}" text-anchor="middle" fill="{INK}" '
                           f'font-weight="bold" font-size="12">{c}</text>')
            base += c
        out.append(f'<text x="{x + bar_w / 2}" y="{top + plot_h + 20}" text-anchor="middle" fill="{INK}">'
                   f'{escape(label)}</text></g>')
    out.append(f'<line x1="{left}" y1="{y(0)}" x2="{w - 8}" y2="{y(0)}" stroke="{INK}"/>')
    out.append(f'<text x="{left - 34}" y="{top + plot_h + 36}" fill="#4c6272" font-size="12">actions</text>')
    out.append("</svg>")
    return Markup("".join(out))


# ------------------------------------------------------------------ the evaluation view
def survival_chart(points: list[dict[str, Any]], median_days: float | None, censored_days: list[int]) -> Markup:
    """The Kaplan-Meier curve as a step chart: the share of regimes still in special measures against months since
    entry, a tick on the curve where a regime still running (or closed on an unrecorded date) is censored, and a
    dashed line at the median. The page's table gives the same figures."""
    w, h, left, right, top, bottom = 900, 380, 64, 24, 20, 52
    x1, y1 = w - right, h - bottom
    last = max([p["time_days"] for p in points] + censored_days + [365])
    scale_months = (int(last / 30.4375) // 6 + 1) * 6

    def x(days: float) -> float:
        return round(left + (x1 - left) * (days / 30.4375) / scale_months, 1)

    def y(s: float) -> float:
        return round(top + (y1 - top) * (1 - s), 1)

    median_words = (f"The median is {round(median_days / 30.4375, 1)} months ({int(median_days)} days)."
                    if median_days is not None else "The curve never falls below one half: no median yet.")
    out = [f'<svg class="sm-survival-chart" viewBox="0 0 {w} {h}" width="100%" role="img" '
           f'aria-labelledby="survival-chart-title survival-chart-desc" xmlns="http://www.w3.org/2000/svg" '
           f'font-family="Arial, sans-serif" font-size="13">',
           '<title id="survival-chart-title">Share of regimes still in special measures, by months since entry '
           '(Kaplan-Meier)</title>',
           f'<desc id="survival-chart-desc">A step curve falling from 100% at entry each time regimes end. '
           f'{len(censored_days)} regimes still running or without a recorded end are censored (ticks on the curve). '
           f'{median_words} The table below gives the same figures.</desc>']
    for pct in range(0, 101, 25):
        out.append(f'<line x1="{left}" y1="{y(pct / 100)}" x2="{x1}" y2="{y(pct / 100)}" stroke="#d8dde0"/>'
                   f'<text x="{left - 8}" y="{y(pct / 100) + 4}" text-anchor="end" fill="#4c6272" '
                   f'font-size="12">{pct}%</text>')
    step = 6 if scale_months <= 60 else 12
    for m in range(0, scale_months + 1, step):
        out.append(f'<line x1="{x(m * 30.4375)}" y1="{top}" x2="{x(m * 30.4375)}" y2="{y1}" stroke="#eef0f1"/>'
                   f'<text x="{x(m * 30.4375)}" y="{y1 + 18}" text-anchor="middle" fill="#4c6272" '
                   f'font-size="12">{m}</text>')
    out.append(f'<text x="{(left + x1) / 2}" y="{h - 10}" text-anchor="middle" fill="{INK}">Months since entry</text>')
    if points:
        d = [f"M{x(points[0]['time_days'])},{y(points[0]['survival'])}"]
        for p in points[1:]:
            d.append(f"H{x(p['time_days'])}V{y(p['survival'])}")
        end_days = max([points[-1]["time_days"]] + censored_days)
        d.append(f"H{x(end_days)}")
        out.append(f'<path class="sm-survival-line" d="{"".join(d)}" fill="none" stroke="#005eb8" stroke-width="2.5"/>')

        def at(days: int) -> float:
            s = 1.0
            for p in points:
                if p["time_days"] <= days:
                    s = p["survival"]
            return s

        for c in censored_days:
            out.append(f'<line class="sm-survival-censor" x1="{x(c)}" y1="{y(at(c)) - 6}" x2="{x(c)}" '
                       f'y2="{y(at(c)) + 6}" stroke="{INK}" stroke-width="1.5"/>')
    out.append(f'<line x1="{left}" y1="{y(0.5)}" x2="{x1}" y2="{y(0.5)}" stroke="{INK}" stroke-dasharray="2 3"/>')
    if median_days is not None:
        mx = x(median_days)
        anchor = "end" if mx > w - 220 else "start"
        out.append(f'<line class="sm-survival-median" x1="{mx}" y1="{y(0.5)}" x2="{mx}" y2="{y1}" stroke="{INK}" '
                   f'stroke-width="1.5" stroke-dasharray="6 3"/><text x="{mx + (-6 if anchor == "end" else 6)}" '
                   f'y="{y(0.5) - 8}" text-anchor="{anchor}" fill="{INK}" font-size="12">Median '
                   f'{round(median_days / 30.4375, 1)} months</text>')
    out.append(f'<line x1="{left}" y1="{y1}" x2="{x1}" y2="{y1}" stroke="{INK}"/>'
               f'<line x1="{left}" y1="{top}" x2="{left}" y2="{y1}" stroke="{INK}"/>')
    out.append("</svg>")
    return Markup("".join(out))


def bar_chart(cid: str, title: str, bars: list[dict[str, Any]], unit: str) -> Markup:
    """Horizontal bars, one per item of `bars` ({"label", "value", "text"}: the value drawn and the words beside
    it); `cid` makes the ids unique on the page. The page's table gives the same figures."""
    w, label_w, bar_h, gap, top = 900, 300, 20, 8, 10
    x0, x1 = label_w, w - 150
    top_value = max([b["value"] or 0 for b in bars] + [1])
    height = top + len(bars) * (bar_h + gap) + 10
    said = "; ".join(f'{b["label"]}: {b["text"]}' for b in bars[:60])
    out = [f'<svg class="sm-bar-chart" data-chart="{escape(cid)}" viewBox="0 0 {w} {height}" width="100%" role="img" '
           f'aria-labelledby="{cid}-title {cid}-desc" xmlns="http://www.w3.org/2000/svg" '
           f'font-family="Arial, sans-serif" font-size="13">',
           f'<title id="{cid}-title">{escape(title)}</title>',
           f'<desc id="{cid}-desc">{escape(unit)}. {escape(said)}. The table below gives the same figures.</desc>']
    for n, b in enumerate(bars):
        yy = top + n * (bar_h + gap)
        bw = max((x1 - x0) * (b["value"] or 0) / top_value, 0 if not b["value"] else 2)
        label = b["label"] if len(b["label"]) <= 44 else b["label"][:42] + "…"
        out.append(f'<g class="sm-bar"><title>{escape(b["label"])}: {escape(b["text"])}</title>'
                   f'<text x="{label_w - 10}" y="{yy + 15}" text-anchor="end" fill="{INK}">{escape(label)}</text>'
                   f'<rect x="{x0}" y="{yy}" width="{round(bw, 1)}" height="{bar_h}" fill="#005eb8"/>'
                   f'<text x="{round(x0 + bw + 6, 1)}" y="{yy + 15}" fill="{INK}">{escape(b["text"])}</text></g>')
    out.append(f'<line x1="{x0}" y1="{top - 4}" x2="{x0}" y2="{height - 6}" stroke="{INK}"/>')
    out.append("</svg>")
    return Markup("".join(out))
