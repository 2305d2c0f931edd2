"""Charts as inline SVG, drawn on the server: no scripts, no external assets, every text escaped.

    line_chart("Acceptance", ["05-01", "05-02"], {"v3": [0.8, 0.85]}, unit="%")   # '<svg …>…</svg>'
    hbar_chart("Suggestions per label", [("billing_dispute", 31), ("claim_status", 12)])

A value of None is a gap (no data that day), never a zero. A chart with nothing to draw says so.
"""

from __future__ import annotations

import math
from html import escape

# Colour-blind-safe (Okabe–Ito), in the order series are given.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 28, 40
TIME_STEPS = (15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 3 * 3600, 6 * 3600, 12 * 3600, 86400)
LEGEND = 20  # the bottom strip a legend takes (inside BOTTOM on charts with an x axis)


def fmt(value: float | None, unit: str = "") -> str:
    """A number as an axis or tooltip shows it: '42%' for unit '%' (value 0.42), '1.2 s', '4.5 min', '3,400'."""
    if value is None:
        return "–"
    if unit == "%":
        return f"{100 * value:.0f}%"
    if unit == "s":
        if value >= 3600:
            return f"{value / 3600:.2g} h"
        return f"{value / 60:.2g} min" if value >= 120 else f"{value:.2g} s" if value < 10 else f"{value:.0f} s"
    if unit == "ms":
        return f"{value:,.0f} ms" if value < 1000 else f"{value / 1000:.3g} s"
    return f"{value:,.0f}" if float(value).is_integer() or abs(value) >= 100 else f"{value:.2g}"


def axis(top: float, unit: str = "") -> tuple[float, int]:
    """(step, intervals) of a y axis from 0 past top: a round step (1, 2, 2.5 or 5 times a power of ten), at
    most 4 intervals; ratios always run to 100%."""
    if unit == "%":
        return 0.25, 4
    if top <= 0:
        return 0.25, 4
    raw = top / 4
    if unit == "s" and raw > 10:  # steps a clock reads: 15 s, 2 min, 30 min, 6 h, 1 d ...
        step = next((t for t in TIME_STEPS if t >= raw), 86400 * math.ceil(raw / 86400))
    else:
        power = 10 ** math.floor(math.log10(raw))
        step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    return step, max(1, math.ceil(top / step - 1e-9))


def nice_max(top: float, unit: str = "") -> float:
    """The axis' upper end for data up to top."""
    step, intervals = axis(top, unit)
    return step * intervals


def _frame(title: str, body: list[str], width: int, height: int, legend: list[tuple[str, str]]) -> str:
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}" role="img" aria-label="{escape(title)}">',
             f"<title>{escape(title)}</title>",
             f'<text x="{LEFT}" y="16" class="chart-title">{escape(title)}</text>']
    x = LEFT  # the legend runs along the bottom edge, under the x labels, where no title can collide with it
    for name, colour in legend:
        parts.append(f'<rect x="{x}" y="{height - 15}" width="10" height="10" fill="{colour}"/>'
                     f'<text x="{x + 14}" y="{height - 6}" class="chart-legend">{escape(name)}</text>')
        x += 30 + 7 * len(name)
    return "\n".join(parts + body + ["</svg>"])


def _empty(title: str, width: int, height: int) -> str:
    return _frame(title, [f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" class="chart-empty">'
                          "no data yet</text>"], width, height, [])


def _y_axis(top: float, unit: str, width: int, height: int) -> list[str]:
    out = []
    step, intervals = axis(top, unit)
    for i in range(intervals + 1):
        value = step * i
        y = height - BOTTOM - (height - TOP - BOTTOM) * value / top
        out.append(f'<line x1="{LEFT}" x2="{width - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                   f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{escape(fmt(value, unit))}'
                   "</text>")
    return out


def _x_labels(labels: list[str], xs: list[float], height: int) -> list[str]:
    # At most ~10 labels fit under a 640-pixel chart; show every n-th, counted back from the newest.
    step = max(1, math.ceil(len(labels) / 10))
    last = len(labels) - 1
    return [f'<text x="{x:.1f}" y="{height - BOTTOM + 16}" text-anchor="middle" class="tick">{escape(label)}</text>'
            for i, (label, x) in enumerate(zip(labels, xs)) if (last - i) % step == 0]


def line_chart(title: str, x_labels: list[str], series: dict[str, list[float | None]], *, unit: str = "",
               refs: dict[str, float | None] | None = None, width: int = WIDTH, height: int = HEIGHT) -> str:
    """One line per series over shared x labels (days, weeks); None leaves a gap; a lone point is a dot.

    refs: named horizontal reference lines (e.g. the holdout's 5th percentile), drawn dashed."""
    values = [v for points in series.values() for v in points if v is not None]
    if not x_labels or not values:
        return _empty(title, width, height)
    refs = {name: v for name, v in (refs or {}).items() if v is not None}
    top = nice_max(max(values + list(refs.values())), unit)
    plot_w, plot_h = width - LEFT - RIGHT, height - TOP - BOTTOM
    xs = [LEFT + plot_w * (i + 0.5) / len(x_labels) for i in range(len(x_labels))]

    def y(v: float) -> float:
        return height - BOTTOM - plot_h * min(v, top) / top

    body = _y_axis(top, unit, width, height) + _x_labels(x_labels, xs, height)
    for name, v in refs.items():
        body.append(f'<line x1="{LEFT}" x2="{width - RIGHT}" y1="{y(v):.1f}" y2="{y(v):.1f}" class="ref"/>'
                    f'<text x="{width - RIGHT - 4}" y="{y(v) - 4:.1f}" text-anchor="end" class="ref-label">'
                    f"{escape(name)} {escape(fmt(v, unit))}</text>")
    legend = []
    for n, (name, points) in enumerate(series.items()):
        colour = PALETTE[n % len(PALETTE)]
        legend.append((name, colour))
        runs: list[list[tuple[float, float, float]]] = [[]]
        for x, v in zip(xs, points):
            if v is None:
                runs.append([])
            else:
                runs[-1].append((x, y(v), v))
        for run in runs:
            if len(run) > 1:
                d = " ".join(f"{'M' if i == 0 else 'L'}{px:.1f},{py:.1f}" for i, (px, py, _) in enumerate(run))
                body.append(f'<path d="{d}" fill="none" stroke="{colour}" stroke-width="2" class="series"/>')
            for px, py, v in run:
                body.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{colour}">'
                            f"<title>{escape(name)}: {escape(fmt(v, unit))}</title></circle>")
    return _frame(title, body, width, height, legend if len(series) > 1 else [])


def stacked_bars(title: str, x_labels: list[str], stacks: dict[str, list[float | None]], *, unit: str = "",
                 width: int = WIDTH, height: int = HEIGHT, colours: tuple[str, ...] = PALETTE) -> str:
    """One bar per x label, each split into the named parts (e.g. accepted / changed / rejected per day)."""
    totals = [sum(v or 0 for v in column) for column in zip(*stacks.values())] if stacks else []
    if not x_labels or not any(totals):
        return _empty(title, width, height)
    top = nice_max(max(totals), unit)
    plot_w, plot_h = width - LEFT - RIGHT, height - TOP - BOTTOM
    slot = plot_w / len(x_labels)
    bar_w = max(2.0, slot * 0.7)
    xs = [LEFT + slot * (i + 0.5) for i in range(len(x_labels))]
    body = _y_axis(top, unit, width, height) + _x_labels(x_labels, xs, height)
    base = [0.0] * len(x_labels)
    legend = []
    for n, (name, values) in enumerate(stacks.items()):
        colour = colours[n % len(colours)]
        legend.append((name, colour))
        for i, v in enumerate(values):
            if not v:
                continue
            h = plot_h * v / top
            y = height - BOTTOM - plot_h * base[i] / top - h
            tip = f"{x_labels[i]}{' ' + name if name else ''}: {fmt(v, unit)}"
            body.append(f'<rect x="{xs[i] - bar_w / 2:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                        f'fill="{colour}" class="bar"><title>{escape(tip)}</title></rect>')
            base[i] += v
    return _frame(title, body, width, height, [item for item in legend if item[0]])


def hbar_chart(title: str, bars: list[tuple[str, float | None]], *, unit: str = "", width: int = WIDTH) -> str:
    """Horizontal bars for long category names (labels, terms): one row each, its value written at its end."""
    return hbars(title, [name for name, _ in bars], {"": [v for _, v in bars]}, unit=unit, width=width)


def hbars(title: str, names: list[str], series: dict[str, list[float | None]], *, unit: str = "",
          stacked: bool = False, width: int = WIDTH, colours: tuple[str, ...] = PALETTE) -> str:
    """One row per name; several series side by side (grouped) or, with stacked, end to end."""
    columns = list(zip(*series.values())) if series else []
    totals = [sum(v or 0 for v in column) if stacked else max((v or 0 for v in column), default=0)
              for column in columns]
    if not names or not any(totals):
        return _empty(title, width, 80)
    lanes = 1 if stacked else len(series)
    lane, gap = 14, 6
    row = lane * lanes + gap
    label_w = min(220, 10 + 7 * max(len(name) for name in names))
    height = TOP + row * len(names) + 8 + (LEGEND if any(series) else 0)
    top = nice_max(max(totals), unit)
    plot_w = width - label_w - RIGHT - 56
    body, legend = [], []
    for n, (name, values) in enumerate(series.items()):
        legend.append((name, colours[n % len(colours)]))
    for i, name in enumerate(names):
        y0 = TOP + row * i
        body.append(f'<text x="{label_w - 6}" y="{y0 + (row - gap) / 2 + 4:.1f}" text-anchor="end" class="tick">'
                    f"{escape(name)}</text>")
        x = float(label_w)
        for n, (part, values) in enumerate(series.items()):
            v = values[i]
            if v is None:
                continue
            w = plot_w * min(v, top) / top
            y = y0 if stacked else y0 + lane * n
            left = x if stacked else label_w
            tip = f"{name}{' ' + part if part else ''}: {fmt(v, unit)}"
            if w > 0:
                body.append(f'<rect x="{left:.1f}" y="{y:.1f}" width="{max(w, 1.0):.1f}" height="{lane - 2}" '
                            f'fill="{colours[n % len(colours)]}" class="bar"><title>{escape(tip)}</title></rect>')
            if stacked:
                x += w
            else:
                body.append(f'<text x="{left + w + 4:.1f}" y="{y + lane - 4:.1f}" class="tick">'
                            f"{escape(fmt(v, unit))}</text>")
        if stacked:
            total = sum(v or 0 for v in columns[i])
            body.append(f'<text x="{x + 4:.1f}" y="{y0 + lane - 4:.1f}" class="tick">{escape(fmt(total, unit))}</text>')
    return _frame(title, body, width, height, [item for item in legend if item[0]])
