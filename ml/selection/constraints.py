"""The round-constraint grammar: batch constraints on a selection round's picks, as JSON.

``{"slices": [{"name", "where": predicate, "min", "max"}], "classes": [{"label", "min", "max"}],
"cost": {"metadata_key", "max_total"}, "exclude_near_duplicates": cosine similarity}``, every key optional.
A slice's ``where`` is a predicate of :mod:`ml.slices`; a class is one of the project's labels (by the
deployed model's predicted class); each quota needs a min or a max, min <= max.

:meth:`RoundConstraints.parse` is the one check of this grammar; it raises :class:`InvalidConstraints`.
:meth:`RoundConstraints.to_dict` is the normalised form a round stores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ml.errors import InvalidInput
from ml.slices import PREDICATE_OPERATORS, predicate_problem

__all__ = ["InvalidConstraints", "RoundConstraints", "SliceQuota", "ClassQuota", "CostLimit", "CONSTRAINT_KEYS"]

CONSTRAINT_KEYS: tuple[str, ...] = ("slices", "classes", "cost", "exclude_near_duplicates")


class InvalidConstraints(InvalidInput):
    """A round's batch constraints break the grammar; ``details["field"]`` names the part, when there is one."""

    code = "invalid_constraints"


def _bad(message: str, **details) -> InvalidConstraints:
    return InvalidConstraints(message, details=details)


@dataclass(frozen=True)
class SliceQuota:
    name: str
    where: dict
    min: int
    max: int | None


@dataclass(frozen=True)
class ClassQuota:
    label: Any
    min: int
    max: int | None


@dataclass(frozen=True)
class CostLimit:
    metadata_key: str
    max_total: float | None


def _count(value, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _bad(f"{where} must be a whole number >= 0.", field=where)
    return value


def _bounds(item: dict, where: str) -> tuple[int, int | None]:
    lo, hi = _count(item.get("min", 0), f"{where}.min") or 0, _count(item.get("max"), f"{where}.max")
    if hi is not None and lo > hi:
        raise _bad(f"{where}: min ({lo}) is above max ({hi}).", field=where)
    if lo == 0 and hi is None:
        raise _bad(f"{where} needs a min or a max.", field=where)
    return lo, hi


def _items(raw, key: str) -> list[dict]:
    items = raw.get(key) or []
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise _bad(f"{key} must be a list of objects.", field=key)
    return items


@dataclass(frozen=True)
class RoundConstraints:
    """Checked batch constraints of a round (see the module's docstring)."""

    slices: tuple[SliceQuota, ...] = ()
    classes: tuple[ClassQuota, ...] = ()
    cost: CostLimit | None = None
    exclude_near_duplicates: float | None = None

    @classmethod
    def parse(cls, raw: dict | None, *, labels: Sequence,
              on_classes: Callable[[], None] | None = None) -> RoundConstraints:
        """Check ``raw`` against the grammar; ``labels`` are the project's labels (what ``classes`` may name).
        Raises :class:`InvalidConstraints` (code "invalid_constraints") with a message that names the part.
        ``on_classes`` is called once the class quotas are read, when there are any, before ``cost`` and
        ``exclude_near_duplicates`` are checked: the caller's check that class quotas can be counted (a
        deployed model) raises in that order."""
        if raw is not None and not isinstance(raw, dict):
            raise _bad("Constraints must be an object.")
        c = dict(raw or {})
        unknown = sorted(set(c) - set(CONSTRAINT_KEYS))
        if unknown:
            raise _bad(f"Unknown constraint(s): {', '.join(unknown)}.", unknown=unknown)
        slices, names = [], set()
        for i, sl in enumerate(_items(c, "slices")):
            where = sl.get("where")
            name = str(sl.get("name") or "").strip()
            if not name or name in names:
                raise _bad(f"slices[{i}] needs a name of its own.", field=f"slices[{i}].name")
            problem = predicate_problem(where)
            if problem is not None and problem[0] is None:
                raise _bad(f"slice {name!r}: 'where' must be a non-empty object of metadata key -> condition, "
                           'e.g. {"time_of_day": "night"} or {"speed": {"gte": 50}}.', field=f"slices[{i}].where")
            if problem is not None:
                key, reason = problem
                raise _bad(f"slice {name!r}, key {key!r}: {reason}.", field=f"slices[{i}].where",
                           operators=list(PREDICATE_OPERATORS))
            lo, hi = _bounds(sl, f"slices[{i}]")
            names.add(name)
            slices.append(SliceQuota(name=name, where=where, min=lo, max=hi))
        classes, seen = [], []
        for i, cl in enumerate(_items(c, "classes")):
            label = cl.get("label")
            if label not in labels or label in seen:
                raise _bad(f"classes[{i}]: {label!r} is not one of the project's labels (or is given twice).",
                           field=f"classes[{i}].label", labels=list(labels))
            lo, hi = _bounds(cl, f"classes[{i}]")
            seen.append(label)
            classes.append(ClassQuota(label=label, min=lo, max=hi))
        if classes and on_classes is not None:
            on_classes()
        cost = None
        raw_cost = c.get("cost")
        if raw_cost is not None:
            key, total = (raw_cost.get("metadata_key") if isinstance(raw_cost, dict) else None), None
            if not isinstance(key, str) or not key:
                raise _bad("cost.metadata_key must name the metadata field that holds each sample's labeling cost.",
                           field="cost.metadata_key")
            if raw_cost.get("max_total") is not None:
                total = raw_cost["max_total"]
                if isinstance(total, bool) or not isinstance(total, (int, float)) or not total > 0:
                    raise _bad("cost.max_total must be a number > 0.", field="cost.max_total")
            cost = CostLimit(metadata_key=key, max_total=total)
        dedup = c.get("exclude_near_duplicates")
        if dedup is not None:
            if isinstance(dedup, bool) or not isinstance(dedup, (int, float)) or not 0 < dedup <= 1:
                raise _bad("exclude_near_duplicates is a cosine similarity in (0, 1], e.g. 0.98.",
                           field="exclude_near_duplicates")
            dedup = float(dedup)
        return cls(slices=tuple(slices), classes=tuple(classes), cost=cost, exclude_near_duplicates=dedup)

    def to_dict(self) -> dict:
        """The normalised JSON form (only the kinds of constraint given; min 0 and max None spelled out)."""
        out: dict = {}
        if self.slices:
            out["slices"] = [{"name": s.name, "where": s.where, "min": s.min, "max": s.max} for s in self.slices]
        if self.classes:
            out["classes"] = [{"label": c.label, "min": c.min, "max": c.max} for c in self.classes]
        if self.cost is not None:
            out["cost"] = {"metadata_key": self.cost.metadata_key, "max_total": self.cost.max_total}
        if self.exclude_near_duplicates is not None:
            out["exclude_near_duplicates"] = self.exclude_near_duplicates
        return out
