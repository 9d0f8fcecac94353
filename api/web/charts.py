"""The cohort chart: time in special measures per regime, as horizontal SVG bars."""

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
