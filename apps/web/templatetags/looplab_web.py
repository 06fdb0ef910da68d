"""Small display filters for the pages."""
from __future__ import annotations

from django import template

register = template.Library()


DASH = "—"  # what a page shows for a missing or unreadable number


def _float(value) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


@register.filter
def pct(value, digits: int = 1) -> str:
    """0.9312 → '93.1%'; None → '—'."""
    x = _float(value)
    return DASH if x is None else f"{100.0 * x:.{int(digits)}f}%"


@register.filter
def signed_pct(value, digits: int = 1) -> str:
    """A difference of fractions as signed percentage points: 0.012 → '+1.2 pt'."""
    x = _float(value)
    return DASH if x is None else f"{100.0 * x:+.{int(digits)}f} pt"


@register.filter
def duration(seconds) -> str:
    """Seconds as a short human duration: 42.3 → '42.3 s', 125 → '2 min 5 s', 7300 → '2 h 1 min'."""
    s = _float(seconds)
    if s is None:
        return DASH
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60)} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60)} min"


@register.filter
def number(value, digits: int = 3) -> str:
    x = _float(value)
    return DASH if x is None else f"{x:.{int(digits)}f}"


@register.filter
def get(mapping, key):
    try:
        return mapping.get(key)
    except AttributeError:
        return None
