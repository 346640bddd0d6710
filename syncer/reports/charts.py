"""The report's SVG charts, drawn here (no plotting library, nothing fetched): grouped bars,
the queue draining hour by hour, a histogram of price moves. Pure: strings in, SVG out."""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import Decimal
from itertools import pairwise
from typing import TYPE_CHECKING, Final

from syncer.core.offers import visible
from syncer.reports.page import escape

if TYPE_CHECKING:
    pass



# A kind of change or outcome keeps its colour in every chart.
KIND_COLOURS: Final = {"create": "#2b7bb9", "created": "#2b7bb9", "update": "#e3a21a",
                       "updated": "#e3a21a", "zero": "#555555", "zeroed": "#555555",
                       "retry": "#7d5ba6", "retried": "#7d5ba6", "failed": "#c0392b",
                       "queued": "#95a5a6"}
COLOURS: Final = ("#2b7bb9", "#e3a21a", "#c0392b", "#7d5ba6", "#3a9d5d", "#7f8c8d",
                  "#d35400", "#16a085")
# Price moves in percent: the lower edges of the histogram's bins (the last bin is open).
PRICE_BINS: Final = tuple(Decimal(x) for x in
                          ("-50", "-20", "-10", "-5", "-1", "0", "1", "5", "10", "20", "50"))
HOURS_SHOWN: Final = 72  # the queue chart's longest x axis; a longer drain is summarised


# --- SVG charts, drawn here -----------------------------------------------------------------------

def bar_chart(groups: Sequence[tuple[str, Sequence[int]]], kinds: Sequence[str],
              label: str) -> str:
    """Grouped bars: one group per store, one bar per kind."""
    width, height, left, bottom, top = 520, 240, 44, 44, 14
    peak = max((v for _, values in groups for v in values), default=0)
    scale = _nice(peak)
    inner_w, inner_h = width - left - 10, height - bottom - top
    parts = [_svg_open(width, height, label), _axis_y(scale, left, top, inner_h, width)]
    slot = inner_w / max(1, len(groups))
    bar = max(2.0, min(28.0, (slot - 12) / max(1, len(kinds))))
    for g, (name, values) in enumerate(groups):
        x0 = left + g * slot + (slot - bar * len(kinds)) / 2
        for k, value in enumerate(values):
            h = inner_h * value / scale if scale else 0
            parts.append(
                f'<rect class="bar" x="{x0 + k * bar:.1f}" y="{top + inner_h - h:.1f}" '
                f'width="{bar - 1:.1f}" height="{h:.1f}" fill="{_colour(kinds, k)}">'
                f"<title>{escape(name)}: {value} {escape(kinds[k])}</title></rect>")
        parts.append(f'<text x="{left + g * slot + slot / 2:.1f}" y="{top + inner_h + 16}" '
                     f'text-anchor="middle">{escape(name)}</text>')
    parts.append(_legend(kinds, left, height - 12, [_colour(kinds, k) for k in range(len(kinds))]))
    parts.append("</svg>")
    return "".join(parts)


def _colour(kinds: Sequence[str], index: int) -> str:
    return KIND_COLOURS.get(kinds[index], COLOURS[index % len(COLOURS)])


def queue_chart(series: Sequence[tuple[str, Sequence[int]]], label: str) -> str:
    """Lines waiting after each hour's run, one step line per store, from now (hour 0)."""
    width, height, left, bottom, top = 520, 240, 52, 44, 14
    longest = max((len(v) for _, v in series), default=1)
    hours = min(max(longest, 2), HOURS_SHOWN + 1)
    peak = max((v[0] if v else 0 for _, v in series), default=0)
    peak = max([peak] + [max(v, default=0) for _, v in series])
    inner_w, inner_h = width - left - 14, height - bottom - top
    parts = [_svg_open(width, height, label)]
    if peak == 0:
        parts.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle">'
                     "nothing waits: everything fits this run's budget</text></svg>")
        return "".join(parts)
    scale = _nice(peak)
    parts.append(_axis_y(scale, left, top, inner_h, width))
    step = inner_w / (hours - 1)
    tick = max(1, math.ceil((hours - 1) / 8))
    for h in range(0, hours, tick):
        parts.append(f'<text x="{left + h * step:.1f}" y="{top + inner_h + 16}" '
                     f'text-anchor="middle">{"now" if h == 0 else f"+{h} h"}</text>')
    for s, (name, waiting) in enumerate(series):
        points: list[str] = []
        last_y = 0.0
        for h in range(hours):
            value = waiting[h] if h < len(waiting) else 0
            y = top + inner_h - inner_h * value / scale
            x = left + h * step
            if points:  # a step: the level holds until the next hour's run
                points.append(f"{x:.1f},{last_y:.1f}")
            points.append(f"{x:.1f},{y:.1f}")
            last_y = y
        colour = COLOURS[s % len(COLOURS)]
        parts.append(f'<polyline class="queue" fill="none" stroke="{colour}" stroke-width="2" '
                     f'points="{" ".join(points)}"><title>{escape(name)}: '
                     f"{waiting[0] if waiting else 0} waiting after this run, the last sent by "
                     f"{run_label(len(waiting) - 1)}</title></polyline>")
    if longest > hours:
        parts.append(f'<text x="{width - 14}" y="{top + 10}" text-anchor="end">'
                     f"the last sent by {run_label(longest - 1)} (first {HOURS_SHOWN} h "
                     "shown)</text>")
    parts.append(_legend([name for name, _ in series], left, height - 12))
    parts.append("</svg>")
    return "".join(parts)


def price_histogram(moves: Sequence[Decimal]) -> str:
    """How many prices moved by how much, in percent bins from ≤ -50 % to ≥ 50 %."""
    labels = ["< -50"] + [f"{a}…{b}" for a, b in pairwise(PRICE_BINS)] \
        + ["≥ 50"]
    counts = [0] * len(labels)
    for move in moves:
        index = sum(1 for edge in PRICE_BINS if move >= edge)
        counts[index] += 1
    width, height, left, bottom, top = 640, 240, 44, 44, 14
    inner_w, inner_h = width - left - 10, height - bottom - top
    parts = [_svg_open(width, height, "price moves in percent")]
    if not moves:
        parts.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle">'
                     "no price of a published offer changes</text></svg>")
        return "".join(parts)
    scale = _nice(max(counts))
    parts.append(_axis_y(scale, left, top, inner_h, width))
    slot = inner_w / len(labels)
    for i, count in enumerate(counts):
        h = inner_h * count / scale
        colour = COLOURS[2] if i < PRICE_BINS.index(Decimal(0)) + 1 else COLOURS[4]
        parts.append(f'<rect class="bin" x="{left + i * slot + 1:.1f}" '
                     f'y="{top + inner_h - h:.1f}" width="{slot - 2:.1f}" height="{h:.1f}" '
                     f'fill="{colour}"><title>{labels[i]} %: {count}</title></rect>')
        parts.append(f'<text x="{left + i * slot + slot / 2:.1f}" y="{top + inner_h + 14}" '
                     f'text-anchor="middle" class="small">{labels[i]}</text>')
    parts.append(f'<text x="{left + inner_w / 2:.1f}" y="{height - 8}" text-anchor="middle">'
                 "price move, % of the price published</text></svg>")
    return "".join(parts)


def _svg_open(width: int, height: int, label: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
            f'width="{width}" height="{height}" role="img" aria-label="{escape(label)}">')


def _axis_y(scale: int, left: int, top: int, inner_h: int, width: int) -> str:
    parts = []
    for i in range(5):
        value = scale * i // 4
        y = top + inner_h - inner_h * i / 4
        parts.append(f'<line x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" '
                     f'class="grid"/><text x="{left - 6}" y="{y + 4:.1f}" '
                     f'text-anchor="end">{value}</text>')
    return "".join(parts)


def _legend(names: Sequence[str], left: int, y: int,
            colours: Sequence[str] | None = None) -> str:
    parts, x = [], float(left)
    for i, name in enumerate(names):
        colour = colours[i] if colours else COLOURS[i % len(COLOURS)]
        parts.append(f'<rect x="{x:.1f}" y="{y - 9}" width="10" height="10" '
                     f'fill="{colour}"/><text x="{x + 14:.1f}" y="{y}">'
                     f"{escape(name)}</text>")
        x += 24 + 7 * len(visible(name))
    return "".join(parts)


def _nice(peak: int) -> int:
    """The y axis's top: the peak rounded up to 1, 2 or 5 times a power of ten (4 ticks)."""
    if peak <= 4:
        return 4
    power = int(10 ** (len(str(peak)) - 1))
    for factor in (1, 2, 4, 5, 8, 10):
        if factor * power >= peak and (factor * power) % 4 == 0:
            return factor * power
    return 10 * power


def run_label(hours: int) -> str:
    """The hourly run a chart's step stands for (the drain estimate in words is
    ``syncer.planning.queue``'s, on the sliding hour: these are the runs' steps)."""
    if hours <= 0:
        return "this run"
    return f"the run at +{hours} h" if hours < 48 else \
        f"the run at +{hours} h ({hours / 24:.1f} days)"
