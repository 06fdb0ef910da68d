"""Small server-rendered SVG charts for the pages (no chart library in the browser)."""
from __future__ import annotations

from dataclasses import dataclass
from html import escape


@dataclass(frozen=True)
class CurvePoint:
    labels: int  # labeled samples in the model's dataset version
    accuracy: float  # 0..1, on a test split (see apps.web.selectors.learning_curve)
    macro_f1: float
    version: int
    deployed: bool = False


def _nice_step(span: float, target_ticks: int = 5) -> float:
    raw = span / max(1, target_ticks)
    magnitude = 10 ** len(str(int(raw))) / 10 if raw >= 1 else 1.0
    for m in (1, 2, 2.5, 5, 10):
        if m * magnitude >= raw:
            return m * magnitude
    return 10 * magnitude


def learning_curve_svg(points: list[CurvePoint], *, width: int = 640, height: int = 240, metric: str | None = None) -> str:
    """Accuracy and macro-F1 against labeled samples, one marker per model version (the deployed one
    ringed); with ``metric`` (a task type's primary figure, e.g. "mAP@0.5", held in ``accuracy``) that one
    series. Returns an ``<svg>`` element; empty string when there is nothing to draw."""
    points = sorted(points, key=lambda p: (p.labels, p.version))
    if not points:
        return ""
    left, right, top, bottom = 52, 16, 30, 40
    pw, ph = width - left - right, height - top - bottom
    x_max = max(p.labels for p in points)
    x_step = _nice_step(max(x_max, 1))
    x_hi = x_step * (int(x_max / x_step) + 1)
    series = [("accuracy", "accuracy", metric)] if metric else [("accuracy", "accuracy", "accuracy"),
                                                               ("macro-f1", "macro_f1", "macro-F1")]
    y_values = [getattr(p, attr) for p in points for _, attr, _ in series]
    y_lo = max(0.0, min(0.9, (int(min(y_values) * 10) / 10.0)))  # down to a tenth, at most 0.9
    y_hi = 1.0

    def sx(v: float) -> float:
        return left + pw * (v / x_hi)

    def sy(v: float) -> float:
        return top + ph * (1.0 - (v - y_lo) / (y_hi - y_lo))

    out = [f'<svg class="curve" viewBox="0 0 {width} {height}" width="100%" role="img" '
           f'aria-label="Learning curve: test {escape(" and ".join(s[2] for s in series))} of {len(points)} model versions '
           f'against labeled samples" xmlns="http://www.w3.org/2000/svg">']
    # grid and axes
    y_step = 0.05 if y_hi - y_lo <= 0.3 else 0.1
    k = 0
    while y_lo + k * y_step <= y_hi + 1e-9:
        v = y_lo + k * y_step
        out.append(f'<line class="grid" x1="{left}" x2="{left + pw}" y1="{sy(v):.1f}" y2="{sy(v):.1f}"/>')
        out.append(f'<text class="tick" x="{left - 6}" y="{sy(v) + 4:.1f}" text-anchor="end">{100 * v:.0f}%</text>')
        k += 1
    k = 0
    while k * x_step <= x_hi + 1e-9:
        v = k * x_step
        out.append(f'<line class="grid" y1="{top}" y2="{top + ph}" x1="{sx(v):.1f}" x2="{sx(v):.1f}"/>')
        out.append(f'<text class="tick" x="{sx(v):.1f}" y="{top + ph + 16}" text-anchor="middle">{v:g}</text>')
        k += 1
    out.append(f'<text class="axis" x="{left + pw / 2:.1f}" y="{height - 6}" text-anchor="middle">labeled samples</text>')
    for css, attr, label in series:
        coords = " ".join(f"{sx(p.labels):.1f},{sy(getattr(p, attr)):.1f}" for p in points)
        out.append(f'<polyline class="line {css}" points="{coords}"/>')
        for p in points:
            value = getattr(p, attr)
            title = escape(f"v{p.version}: {100 * value:.1f}% {label} with {p.labels} labels"
                           + (" (serving)" if p.deployed else ""))
            cls = f"dot {css}" + (" deployed" if p.deployed else "")
            out.append(f'<circle class="{cls}" cx="{sx(p.labels):.1f}" cy="{sy(value):.1f}" r="{6 if p.deployed else 4}" '
                       f'data-version="{p.version}"><title>{title}</title></circle>')
    if metric:
        out.append(f'<g class="legend" transform="translate({left + pw - 236},{12})">'
                   f'<circle class="dot accuracy" cx="0" cy="0" r="4"/><text x="8" y="4">{escape(metric)}</text>'
                   '<circle class="dot accuracy deployed" cx="178" cy="0" r="6"/><text x="188" y="4">serving</text></g>')
    else:
        out.append(f'<g class="legend" transform="translate({left + pw - 236},{12})">'
                   '<circle class="dot accuracy" cx="0" cy="0" r="4"/><text x="8" y="4">accuracy</text>'
                   '<circle class="dot macro-f1" cx="84" cy="0" r="4"/><text x="92" y="4">macro-F1</text>'
                   '<circle class="dot accuracy deployed" cx="178" cy="0" r="6"/><text x="188" y="4">serving</text></g>')
    out.append("</svg>")
    return "".join(out)
