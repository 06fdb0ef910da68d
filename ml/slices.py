"""The slice predicate language: which samples a metadata predicate selects.

One language for selection (slice quotas and caps of a round), evaluation (per-slice metrics) and drift
(per-slice shares and tests). A predicate is a dict ``{metadata key: condition}``; a sample is in the slice
when its metadata satisfy every condition:

- a value is equality: ``{"time_of_day": "night"}``;
- a list (tuple, set) is "one of": ``{"camera": ["a", "b"]}``;
- a dict holds operators: ``{"speed": {"gte": 50, "lt": 90}}`` (:data:`PREDICATE_OPERATORS`: eq, ne, in,
  not_in, gt, gte, lt, lte).

A missing key never matches, except under ``ne`` / ``not_in`` only. An incomparable value (``"fast" < 3``)
does not match.

:func:`slice_mask` evaluates a predicate; :func:`predicate_problem` says why a predicate that came as JSON
(to be stored and evaluated later) is malformed; :func:`value_slices` finds "key=value" slices in metadata.
Plain Python and numpy only.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ml.errors import InvalidInput

__all__ = ["PREDICATE_OPERATORS", "slice_mask", "predicate_problem", "condition_problem", "value_slices"]

_OPERATORS = {
    "eq": lambda v, c: v == c,
    "ne": lambda v, c: v != c,
    "in": lambda v, c: v in c,
    "not_in": lambda v, c: v not in c,
    "gt": lambda v, c: v is not None and v > c,
    "gte": lambda v, c: v is not None and v >= c,
    "lt": lambda v, c: v is not None and v < c,
    "lte": lambda v, c: v is not None and v <= c,
}
PREDICATE_OPERATORS: tuple[str, ...] = tuple(_OPERATORS)  # what a predicate's dict conditions may use
_LIST_OPERATORS = ("in", "not_in")  # their operand is a list of values

_MISSING = object()


def _match(value: Any, cond: Any) -> bool:
    if isinstance(cond, Mapping):
        for op, c in cond.items():
            if op not in _OPERATORS:
                raise InvalidInput(f"unknown predicate operator {op!r}", details={"operators": sorted(_OPERATORS)})
            try:
                if not _OPERATORS[op](value, c):
                    return False
            except TypeError:
                return False
        return True
    if isinstance(cond, (list, tuple, set, frozenset)):
        return value in cond
    return value == cond


def slice_mask(metadata: Sequence[Mapping], predicate: Mapping) -> np.ndarray:
    """Boolean mask (N,) of the samples whose metadata satisfy every condition of ``predicate``.

    ``metadata`` holds one dict (or None) per sample. An empty predicate selects every sample.
    Raises InvalidInput for a predicate that is not a dict, or an unknown operator.
    """
    if not isinstance(predicate, Mapping):
        raise InvalidInput("predicate must be a dict of metadata key -> condition")
    out = np.zeros(len(metadata), bool)
    for i, row in enumerate(metadata):
        row = row or {}
        ok = True
        for key, cond in predicate.items():
            value = row.get(key, _MISSING)
            if value is _MISSING:
                if isinstance(cond, Mapping) and set(cond) <= {"ne", "not_in"}:
                    continue
                ok = False
                break
            if not _match(value, cond):
                ok = False
                break
        out[i] = ok
    return out


# --------------------------------------------------------------------------- JSON predicates


def _scalar_problem(value) -> str | None:
    """Why ``value`` cannot be matched against stored metadata (None when it can): a JSON scalar that a
    database stores (no NaN/inf, no NUL in strings)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return None if np.isfinite(value) else "numbers must be finite"
    if isinstance(value, str):
        return None if "\x00" not in value else "text cannot hold a NUL character"
    return f"{type(value).__name__} is not a value metadata holds (text, number, true/false or null)"


def condition_problem(cond) -> str | None:
    """Why one JSON condition is malformed (None when it is fine): a value, a non-empty list of values
    ("one of"), or a non-empty object of operators (eq, ne, gt, gte, lt, lte: a value; in, not_in: a
    non-empty list of values)."""

    def values(items):
        if not isinstance(items, list) or not items:
            return "'in', 'not_in' and a list condition need a non-empty list of values"
        return next((p for p in map(_scalar_problem, items) if p), None)

    if isinstance(cond, list):
        return values(cond)
    if not isinstance(cond, dict):
        return _scalar_problem(cond)
    if not cond:
        return "an operator object needs at least one operator"
    unknown = sorted(set(cond) - set(PREDICATE_OPERATORS))
    if unknown:
        return f"unknown operator(s) {', '.join(unknown)}"
    for op, value in cond.items():
        problem = values(value) if op in _LIST_OPERATORS else _scalar_problem(value)
        if problem:
            return f"{op}: {problem}"
    return None


def predicate_problem(predicate) -> tuple[str | None, str] | None:
    """Why a JSON predicate is malformed, as ``(key or None, reason)``; None when :func:`slice_mask` can
    evaluate it and a database can store it. The predicate must be a non-empty object whose keys hold no
    NUL character and whose conditions pass :func:`condition_problem`."""
    if not isinstance(predicate, dict) or not predicate:
        return None, "must be a non-empty object of metadata key -> condition"
    for key, cond in predicate.items():
        problem = condition_problem(cond)
        if problem or "\x00" in key:
            return key, problem or "a key cannot hold a NUL character"
    return None


# --------------------------------------------------------------------------- slices found in metadata


def value_slices(*windows: Sequence[Mapping | None]) -> dict[str, tuple[np.ndarray, ...]]:
    """Slices "key=value" (the predicate ``{key: value}``) for the metadata keys that take 2 to 10 distinct
    scalar values (str, bool, int) across all the windows, each with one boolean mask per window. A window
    is a list of metadata dicts (or None). Evaluation uses one window (the test set), drift checks two
    (training data, production)."""
    values: dict[str, set] = {}
    for window in windows:
        for meta in window:
            for key, value in (meta or {}).items():
                if isinstance(value, (str, bool, int)):
                    values.setdefault(key, set()).add(value)
    slices = {}
    for key, seen in sorted(values.items()):
        if 2 <= len(seen) <= 10:
            for value in sorted(seen, key=str):
                slices[f"{key}={value}"] = tuple(np.array([(m or {}).get(key) == value for m in window], bool)
                                                 for window in windows)
    return slices
