"""Small display filters for the pages."""
from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def pct(value, digits: int = 1) -> str:
    """0.9312 → '93.1%'; None → '—'."""
    if value is None or value == "":
        return "—"
    try:
        return f"{100.0 * float(value):.{int(digits)}f}%"
    except (TypeError, ValueError):
        return "—"


@register.filter
def signed_pct(value, digits: int = 1) -> str:
    """A difference of fractions as signed percentage points: 0.012 → '+1.2 pt'."""
    if value is None or value == "":
        return "—"
    try:
        return f"{100.0 * float(value):+.{int(digits)}f} pt"
    except (TypeError, ValueError):
        return "—"


@register.filter
def duration(seconds) -> str:
    """Seconds as a short human duration: 42.3 → '42.3 s', 125 → '2 min 5 s', 7300 → '2 h 1 min'."""
    if seconds is None or seconds == "":
        return "—"
    try:
        s = float(seconds)
    except (TypeError, ValueError):
        return "—"
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60)} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60)} min"


@register.filter
def number(value, digits: int = 3) -> str:
    if value is None or value == "":
        return "—"
    try:
        return f"{float(value):.{int(digits)}f}"
    except (TypeError, ValueError):
        return "—"


@register.filter
def get(mapping, key):
    try:
        return mapping.get(key)
    except AttributeError:
        return None
