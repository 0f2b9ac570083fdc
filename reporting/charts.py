"""Inline SVG charts: no script, no external resource, readable when printed.

Every chart is one ``<svg>`` with ``role="img"``, a ``<title>`` (its accessible name), a
``data-chart`` attribute naming it, axis labels and tick numbers. Colours are the Okabe-Ito
palette (distinguishable with the common colour-vision deficiencies), and wherever colour tells
something a marker shape or a text label tells it too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

from contract_tests.timing import DEFAULT_TOLERANCE, Tolerance
from contract_tests.verdict import number_text

BLUE, ORANGE, GREEN, VERMILLION = "#0072B2", "#E69F00", "#009E73", "#D55E00"
SKY, PURPLE, GREY, INK = "#56B4E9", "#CC79A7", "#767676", "#1a1a1a"
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"
WIDTH, HEIGHT = 560, 290
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 70, 20, 44, 52

_ids = {"n": 0}


def _attr(value: object) -> str:
    return escape(str(value), quote=True)


def _f(value: float) -> str:
    """A coordinate: short and locale-free."""
    return f"{value:.1f}".rstrip("0").rstrip(".") if math.isfinite(value) else "0"


def fmt(value: float | None, unit: str = "") -> str:
    """A number for a label (as verdicts write numbers), or "–" when there is none."""
    if value is None or not math.isfinite(value):
        return "–"
    text = number_text(value)
    return f"{text} {unit}".rstrip() if unit else text


def nice_step(span: float, target_ticks: int = 5) -> float:
    if span <= 0 or not math.isfinite(span):
        return 1.0
    raw = span / max(1, target_ticks)
    power = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * power:
            return m * power
    return 10 * power


def ticks(lo: float, hi: float, target: int = 5) -> tuple[list[float], float, float]:
    """Nice tick values covering [lo, hi]; returns (ticks, new_lo, new_hi)."""
    if hi <= lo:
        hi = lo + 1
    step = nice_step(hi - lo, target)
    start = math.floor(lo / step) * step
    end = math.ceil(hi / step) * step
    count = int(round((end - start) / step))
    return [start + i * step for i in range(count + 1)], start, end


@dataclass
class Frame:
    """The plot area of one chart and its scales."""

    x0: float
    x1: float
    y0: float
    y1: float
    width: int = WIDTH
    height: int = HEIGHT
    left: int = MARGIN_LEFT
    right: int = MARGIN_RIGHT
    top: int = MARGIN_TOP
    bottom: int = MARGIN_BOTTOM
    parts: list[str] = field(default_factory=list)

    @property
    def plot_w(self) -> float:
        return self.width - self.left - self.right

    @property
    def plot_h(self) -> float:
        return self.height - self.top - self.bottom

    def x(self, value: float) -> float:
        span = (self.x1 - self.x0) or 1.0
        return self.left + (value - self.x0) / span * self.plot_w

    def y(self, value: float) -> float:
        span = (self.y1 - self.y0) or 1.0
        clamped = min(max(value, self.y0), self.y1)
        return self.top + self.plot_h - (clamped - self.y0) / span * self.plot_h

    def add(self, text: str) -> None:
        self.parts.append(text)


def _open(name: str, title: str, desc: str, frame: Frame, extra_attrs: dict[str, str] | None = None) -> str:
    _ids["n"] += 1
    ident = f"chart-{_ids['n']}"
    attrs = "".join(f' {k}="{_attr(v)}"' for k, v in (extra_attrs or {}).items())
    return (f'<svg class="chart" data-chart="{_attr(name)}"{attrs} '
            f'role="img" aria-labelledby="{ident}-t {ident}-d" viewBox="0 0 {frame.width} {frame.height}" '
            f'width="{frame.width}" height="{frame.height}" font-family="{_attr(FONT)}" font-size="12" '
            f'fill="{INK}">'
            f'<title id="{ident}-t">{escape(title)}</title><desc id="{ident}-d">{escape(desc)}</desc>'
            f'<rect x="0" y="0" width="{frame.width}" height="{frame.height}" fill="#fff"/>')


def _y_axis(frame: Frame, tick_values: Sequence[float], label: str) -> None:
    for value in tick_values:
        y = frame.y(value)
        frame.add(f'<line x1="{_f(frame.left)}" x2="{_f(frame.width - frame.right)}" y1="{_f(y)}" '
                  f'y2="{_f(y)}" stroke="#e3e3e3" stroke-width="1"/>')
        frame.add(f'<text x="{_f(frame.left - 6)}" y="{_f(y + 4)}" text-anchor="end">'
                  f"{escape(fmt(value))}</text>")
    frame.add(f'<line x1="{_f(frame.left)}" x2="{_f(frame.left)}" y1="{_f(frame.top)}" '
              f'y2="{_f(frame.top + frame.plot_h)}" stroke="{INK}"/>')
    cy = frame.top + frame.plot_h / 2
    frame.add(f'<text class="axis-label" x="16" y="{_f(cy)}" text-anchor="middle" font-weight="600" '
              f'transform="rotate(-90 16 {_f(cy)})">{escape(label)}</text>')


def _x_axis(frame: Frame, tick_values: Sequence[tuple[float, str]], label: str) -> None:
    base = frame.top + frame.plot_h
    frame.add(f'<line x1="{_f(frame.left)}" x2="{_f(frame.width - frame.right)}" y1="{_f(base)}" '
              f'y2="{_f(base)}" stroke="{INK}"/>')
    for value, text in tick_values:
        x = frame.x(value)
        frame.add(f'<line x1="{_f(x)}" x2="{_f(x)}" y1="{_f(base)}" y2="{_f(base + 4)}" stroke="{INK}"/>')
        frame.add(f'<text x="{_f(x)}" y="{_f(base + 17)}" text-anchor="middle">{escape(text)}</text>')
    frame.add(f'<text class="axis-label" x="{_f(frame.left + frame.plot_w / 2)}" y="{_f(frame.height - 10)}" '
              f'text-anchor="middle" font-weight="600">{escape(label)}</text>')


def _legend(frame: Frame, items: Sequence[tuple[str, str]]) -> None:
    """``items``: (swatch SVG drawn around (0, 0), label); laid out left to right above the plot,
    on a second row when the first is full."""
    x, y = float(frame.left), 14.0
    for swatch, label in items:
        width = 30 + 6.3 * len(label)
        if x + width > frame.width - frame.right and x > frame.left:
            x, y = float(frame.left), y + 16
        frame.add(f'<g transform="translate({_f(x + 8)} {_f(y - 4)})">{swatch}</g>')
        frame.add(f'<text x="{_f(x + 20)}" y="{_f(y)}">{escape(label)}</text>')
        x += width


def _marker(shape: str, x: float, y: float, colour: str, size: float = 5) -> str:
    if shape == "cross":
        d = size
        return (f'<path d="M{_f(x - d)} {_f(y - d)}L{_f(x + d)} {_f(y + d)}M{_f(x - d)} {_f(y + d)}'
                f'L{_f(x + d)} {_f(y - d)}" stroke="{colour}" stroke-width="2.6" fill="none"/>')
    if shape == "square":
        return (f'<rect x="{_f(x - size)}" y="{_f(y - size)}" width="{_f(2 * size)}" height="{_f(2 * size)}" '
                f'fill="{colour}"/>')
    if shape == "triangle":
        return (f'<path d="M{_f(x)} {_f(y - size - 1)}L{_f(x + size + 1)} {_f(y + size)}L{_f(x - size - 1)} '
                f'{_f(y + size)}Z" fill="{colour}"/>')
    return (f'<circle cx="{_f(x)}" cy="{_f(y)}" r="{_f(size)}" fill="{colour}" stroke="#fff" '
            f'stroke-width="1"/>')


def empty_chart(name: str, title: str, message: str) -> str:
    frame = Frame(0, 1, 0, 1, height=120)
    head = _open(name, title, message, frame)
    return (head + f'<text x="{frame.width / 2}" y="64" text-anchor="middle" fill="{GREY}">'
            f'{escape(message)}</text></svg>')


# -- reconnect: declared vs observed delay per attempt -------------------------------------------
@dataclass
class Attempt:
    index: int  # 1-based
    declared_ms: float | None  # None: beyond the schedule
    observed_ms: float | None  # None: the attempt never came
    manual: bool = False  # the manual restart after the schedule: a lower bound only
    low_ms: float | None = None  # tolerance band
    high_ms: float | None = None  # None with manual: no upper bound

    @property
    def ok(self) -> bool | None:
        if self.observed_ms is None:
            return None if self.declared_ms is None else False
        if self.declared_ms is None or self.low_ms is None:
            return False
        return self.observed_ms >= self.low_ms and (self.high_ms is None or self.observed_ms <= self.high_ms)


def reconnect_attempts(declared_ms: Sequence[float], observed_ms: Sequence[float], manual_ms: float | None,
                       tolerance: Tolerance = DEFAULT_TOLERANCE) -> list[Attempt]:
    """Pair each observed gap with its declared delay and the band the verdict's tolerance allows
    (by default the contract's "late by up to max(500 ms, 20 %), early by at most 50 ms")."""
    early_ms = tolerance.early_s * 1000

    def late_ms(want_ms: float) -> float:
        return tolerance.late_allowance(want_ms / 1000) * 1000

    attempts: list[Attempt] = []
    count = max(len(declared_ms), len(observed_ms))
    for i in range(count):
        observed = float(observed_ms[i]) if i < len(observed_ms) else None
        if i < len(declared_ms):
            want = float(declared_ms[i])
            attempts.append(Attempt(i + 1, want, observed, low_ms=max(0.0, want - early_ms),
                                    high_ms=want + late_ms(want)))
        elif i == len(declared_ms) and manual_ms is not None:
            attempts.append(Attempt(i + 1, float(manual_ms), observed, manual=True,
                                    low_ms=max(0.0, manual_ms - early_ms), high_ms=None))
        else:
            attempts.append(Attempt(i + 1, None, observed))
    return attempts


def reconnect_chart(subject: str, attempts: Sequence[Attempt]) -> str:
    title = f"Reconnect delays of {subject}: declared vs observed per attempt"
    if not attempts:
        return empty_chart("reconnect", title, "no attempts to draw")
    tops = [a.observed_ms or 0 for a in attempts]
    tops += [a.high_ms if a.high_ms is not None else (a.declared_ms or 0) for a in attempts]
    tick_values, _, top = ticks(0, max(tops) * 1.08 or 1000)
    n = len(attempts)
    frame = Frame(0, n, 0, top, top=50)
    band = frame.plot_w / n
    desc = "; ".join(
        f"attempt {a.index}: declared {fmt(a.declared_ms, 'ms') if a.declared_ms is not None else 'none'}"
        f"{' (manual restart, at least)' if a.manual else ''}, observed "
        f"{fmt(a.observed_ms, 'ms') if a.observed_ms is not None else 'none'}"
        f" ({'ok' if a.ok else 'missing' if a.observed_ms is None else 'out of tolerance'})"
        for a in attempts)
    head = _open("reconnect", title, desc, frame, {"data-subject": subject})
    _y_axis(frame, tick_values, "delay before attempt (ms)")
    labels = []
    for a in attempts:
        label = str(a.index)
        if a.manual:
            label += " manual"
        elif a.declared_ms is None:
            label += " extra"
        labels.append((a.index - 0.5, label))
    _x_axis(frame, labels, "attempt")
    for a in attempts:
        cx = frame.x(a.index - 0.5)
        bar_w = min(band * 0.5, 70)
        if a.declared_ms is not None:
            y = frame.y(a.declared_ms)
            base = frame.y(0)
            dash = ' stroke-dasharray="4 3"' if a.manual else ""
            frame.add(f'<rect x="{_f(cx - bar_w / 2)}" y="{_f(y)}" width="{_f(bar_w)}" '
                      f'height="{_f(max(base - y, 1.5))}" fill="#cfe2f3" stroke="{BLUE}"{dash}>'
                      f'<title>declared {escape(fmt(a.declared_ms, "ms"))}</title></rect>')
        if a.low_ms is not None:
            hi = a.high_ms if a.high_ms is not None else top
            y_hi, y_lo = frame.y(hi), frame.y(a.low_ms)
            w = bar_w + 16
            frame.add(f'<rect x="{_f(cx - w / 2)}" y="{_f(y_hi)}" width="{_f(w)}" '
                      f'height="{_f(max(y_lo - y_hi, 2))}" '
                      f'fill="{GREEN}" fill-opacity="0.16" stroke="{GREEN}" stroke-dasharray="3 2">'
                      f'<title>allowed: {escape(fmt(a.low_ms, "ms"))} to '
                      f'{escape(fmt(a.high_ms, "ms") if a.high_ms is not None else "no upper bound")}'
                      f'</title></rect>')
        if a.observed_ms is not None:
            y = frame.y(a.observed_ms)
            ok = a.ok
            frame.add(_marker("circle" if ok else "cross", cx, y, BLUE if ok else VERMILLION, 6))
            text_y = y - 10 if y - 10 > frame.top + 8 else y + 20
            frame.add(f'<text x="{_f(cx + 10)}" y="{_f(text_y)}" font-weight="600" '
                      f'fill="{BLUE if ok else VERMILLION}">{escape(fmt(a.observed_ms))}'
                      f'{"" if ok else " ✗"}</text>')
        elif a.declared_ms is not None:
            frame.add(f'<text x="{_f(cx)}" y="{_f(frame.y(0) - 6)}" text-anchor="middle" '
                      f'fill="{VERMILLION}" font-weight="600">missing</text>')
    _legend(frame, [
        (f'<rect x="-7" y="-6" width="14" height="12" fill="#cfe2f3" stroke="{BLUE}"/>', "declared delay"),
        (f'<rect x="-7" y="-6" width="14" height="12" fill="{GREEN}" fill-opacity="0.16" stroke="{GREEN}" '
         f'stroke-dasharray="3 2"/>', "allowed band"),
        (_marker("circle", 0, 0, BLUE, 5), "observed, ok"),
        (_marker("cross", 0, 0, VERMILLION, 5), "observed, out of tolerance"),
    ])
    return head + "".join(frame.parts) + "</svg>"


# -- histogram ----------------------------------------------------------------------------------
def histogram(name: str, title: str, values: Sequence[float], *, x_label: str = "latency (ms)",
              y_label: str = "samples", markers: Sequence[tuple[str, float]] = (),
              max_bins: int = 30) -> str:
    """Counts of ``values`` in equal bins from 0 (or the minimum) to about the 99th percentile;
    anything beyond goes into a last "≥" bin. ``markers``: (label, value) vertical lines."""
    finite = sorted(v for v in values if v is not None and math.isfinite(v))
    if not finite:
        return empty_chart(name, title, "no samples")
    lo = 0.0 if finite[0] >= 0 else finite[0]
    p99 = finite[min(len(finite) - 1, max(0, math.ceil(0.99 * len(finite)) - 1))]
    hi = finite[-1]
    overflow = hi > 1.5 * p99 and p99 > lo
    upper = p99 if overflow else hi
    bins = max(1, min(max_bins, int(math.sqrt(len(finite)) * 2) or 1))
    width = nice_step(max(upper - lo, 1e-9), bins)
    n_bins = max(1, math.ceil((upper - lo) / width + 1e-9))
    if lo + n_bins * width <= upper:
        n_bins += 1
    counts = [0] * (n_bins + (1 if overflow else 0))
    for v in finite:
        index = int((v - lo) // width)
        if index >= n_bins:
            index = n_bins if overflow else n_bins - 1
        counts[index] += 1
    x_hi = lo + len(counts) * width
    y_ticks, _, y_top = ticks(0, max(counts) * 1.1 or 1)
    y_ticks = [t for t in y_ticks if t == int(t)]
    frame = Frame(lo, x_hi, 0, y_top)
    desc = (f"{len(finite)} values from {fmt(finite[0])} to {fmt(hi)}; "
            + ", ".join(f"{label} {fmt(value)}" for label, value in markers))
    head = _open(name, title, desc, frame)
    _y_axis(frame, y_ticks, y_label)
    x_tick_values, _, _ = ticks(lo, lo + n_bins * width, 6)
    x_ticks = [(t, fmt(t)) for t in x_tick_values if lo <= t <= lo + n_bins * width + 1e-9]
    if overflow:
        x_ticks.append((x_hi - width / 2, "≥" + fmt(lo + n_bins * width)))
    _x_axis(frame, x_ticks, x_label)
    for i, count in enumerate(counts):
        if not count:
            continue
        x_a, x_b = frame.x(lo + i * width), frame.x(lo + (i + 1) * width)
        y = frame.y(count)
        colour = ORANGE if overflow and i == n_bins else BLUE
        start, end = lo + i * width, lo + (i + 1) * width
        what = f"≥ {fmt(start)}" if overflow and i == n_bins else f"{fmt(start)}–{fmt(end)}"
        frame.add(f'<rect x="{_f(x_a + 0.5)}" y="{_f(y)}" width="{_f(max(x_b - x_a - 1, 1))}" '
                  f'height="{_f(frame.y(0) - y)}" fill="{colour}"><title>{escape(what)}: {count}</title>'
                  "</rect>")
    legend = [(f'<rect x="-6" y="-6" width="12" height="12" fill="{BLUE}"/>', f"{y_label} per bin")]
    if overflow:
        legend.append((f'<rect x="-6" y="-6" width="12" height="12" fill="{ORANGE}"/>',
                       "beyond p99 (all in one bin)"))
    for j, (label, value) in enumerate(markers):
        x = frame.x(min(value, x_hi))
        colour, dash = ((VERMILLION, "5 3"), (INK, "2 2"), (PURPLE, "8 3"))[j % 3]
        frame.add(f'<line x1="{_f(x)}" x2="{_f(x)}" y1="{_f(frame.top)}" y2="{_f(frame.y(0))}" '
                  f'stroke="{colour}" stroke-width="1.6" stroke-dasharray="{dash}">'
                  f"<title>{escape(label)} {escape(fmt(value))}</title></line>")
        legend.append((f'<line x1="-8" x2="8" y1="0" y2="0" stroke="{colour}" stroke-width="2" '
                       f'stroke-dasharray="{dash}"/>', f"{label} {fmt(value)}"))
    _legend(frame, legend)
    return head + "".join(frame.parts) + "</svg>"


# -- line chart over time -----------------------------------------------------------------------
@dataclass
class Series:
    label: str
    points: list[tuple[float, float]]
    colour: str = BLUE
    dash: str | None = None
    marker: str = "circle"
    step: bool = False


def line_chart(name: str, title: str, series: Sequence[Series], *, x_label: str = "time since start (s)",
               y_label: str = "", events: Sequence[tuple[str, float]] = ()) -> str:
    """Lines over a numeric x axis; ``events``: (label, x) vertical markers (e.g. a storm)."""
    drawn = [s for s in series if s.points]
    if not drawn:
        return empty_chart(name, title, "no data points")
    xs = [x for s in drawn for x, _ in s.points] + [x for _, x in events]
    ys = [y for s in drawn for _, y in s.points]
    x_ticks, x_lo, x_hi = ticks(min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1, 8)
    y_ticks, _, y_top = ticks(0, max(max(ys) * 1.1, 1e-9) if max(ys) > 0 else 1)
    frame = Frame(x_lo, x_hi, 0, y_top)
    desc = "; ".join(f"{s.label}: {len(s.points)} points, max {fmt(max(y for _, y in s.points))}"
                     for s in drawn)
    head = _open(name, title, desc, frame)
    _y_axis(frame, y_ticks, y_label)
    _x_axis(frame, [(t, fmt(t)) for t in x_ticks], x_label)
    for label, x in events:
        px = frame.x(x)
        frame.add(f'<line x1="{_f(px)}" x2="{_f(px)}" y1="{_f(frame.top)}" y2="{_f(frame.y(0))}" '
                  f'stroke="{PURPLE}" stroke-width="2" stroke-dasharray="6 3"/>')
        frame.add(f'<text x="{_f(px + 4)}" y="{_f(frame.top + 12)}" fill="{PURPLE}" font-weight="600">'
                  f'{escape(label)}</text>')
    for s in drawn:
        pts = sorted(s.points)
        coords: list[str] = []
        for i, (x, y) in enumerate(pts):
            if s.step and i:
                coords.append(f"{_f(frame.x(x))},{_f(frame.y(pts[i - 1][1]))}")
            coords.append(f"{_f(frame.x(x))},{_f(frame.y(y))}")
        dash = f' stroke-dasharray="{s.dash}"' if s.dash else ""
        frame.add(f'<polyline points="{" ".join(coords)}" fill="none" stroke="{s.colour}" stroke-width="2.2" '
                  f'stroke-linejoin="round"{dash}><title>{escape(s.label)}</title></polyline>')
        if len(pts) <= 60:
            for x, y in pts:
                frame.add(_marker(s.marker, frame.x(x), frame.y(y), s.colour, 3.2))
    _legend(frame, [(f'<line x1="-8" x2="8" y1="0" y2="0" stroke="{s.colour}" stroke-width="2.5"'
                     f'{f" stroke-dasharray={chr(34)}{s.dash}{chr(34)}" if s.dash else ""}/>'
                     + _marker(s.marker, 0, 0, s.colour, 3.2), s.label) for s in drawn])
    return head + "".join(frame.parts) + "</svg>"


# -- horizontal bars (counts by category) -------------------------------------------------------
def bar_chart(name: str, title: str, items: Sequence[tuple[str, float]], *, x_label: str = "count",
              colours: Sequence[str] | None = None) -> str:
    if not items:
        return empty_chart(name, title, "nothing to count")
    row = 26
    label_w = min(240, 20 + 7 * max(len(label) for label, _ in items))
    height = MARGIN_TOP + MARGIN_BOTTOM + row * len(items) - 10
    x_ticks, _, x_top = ticks(0, max(v for _, v in items) * 1.1 or 1)
    frame = Frame(0, x_top, 0, len(items), height=height, left=label_w, top=20)
    desc = "; ".join(f"{label}: {fmt(value)}" for label, value in items)
    head = _open(name, title, desc, frame)
    _x_axis(frame, [(t, fmt(t)) for t in x_ticks], x_label)
    for i, (label, value) in enumerate(items):
        y = frame.top + i * row + 4
        colour = colours[i % len(colours)] if colours else BLUE
        w = frame.x(value) - frame.x(0)
        frame.add(f'<text x="{_f(frame.left - 8)}" y="{_f(y + row / 2)}" text-anchor="end">'
                  f"{escape(label)}</text>")
        frame.add(f'<rect x="{_f(frame.x(0))}" y="{_f(y + 3)}" width="{_f(max(w, 1))}" height="{row - 10}" '
                  f'fill="{colour}"/>')
        frame.add(f'<text x="{_f(frame.x(0) + w + 5)}" y="{_f(y + row / 2)}" font-weight="600">'
                  f'{escape(fmt(value))}</text>')
    return head + "".join(frame.parts) + "</svg>"
