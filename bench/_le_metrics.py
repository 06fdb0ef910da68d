"""Pure metric helpers of the label-efficiency benchmark (no I/O, no ML)."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def labels_to_reach(ns: Sequence[float], accs: Sequence[float], target: float) -> float | None:
    """Labels needed for a learning curve to first reach ``target`` accuracy, interpolating linearly
    between the two curve points around the first crossing. None when the curve never reaches it."""
    ns = np.asarray(ns, dtype=float)
    accs = np.asarray(accs, dtype=float)
    hit = np.flatnonzero(accs >= target - 1e-12)
    if len(hit) == 0:
        return None
    i = int(hit[0])
    if i == 0:
        return float(ns[0])
    a0, a1 = accs[i - 1], accs[i]
    frac = (target - a0) / (a1 - a0) if a1 > a0 else 1.0
    return float(ns[i - 1] + min(max(frac, 0.0), 1.0) * (ns[i] - ns[i - 1]))


def labels_to_stay(ns: Sequence[float], accs: Sequence[float], target: float) -> float | None:
    """Stricter variant of :func:`labels_to_reach`: labels from which the curve stays >= ``target`` up to
    the end (interpolated at its last upward crossing). None when the last point is below ``target``."""
    ns = np.asarray(ns, dtype=float)
    accs = np.asarray(accs, dtype=float)
    below = np.flatnonzero(accs < target - 1e-12)
    if len(below) == 0:
        return float(ns[0])
    i = int(below[-1])
    if i == len(ns) - 1:
        return None
    a0, a1 = accs[i], accs[i + 1]
    frac = (target - a0) / (a1 - a0) if a1 > a0 else 1.0
    return float(ns[i] + min(max(frac, 0.0), 1.0) * (ns[i + 1] - ns[i]))


def normalised_auc(ns: Sequence[float], accs: Sequence[float]) -> float:
    """Area under the accuracy-vs-labels curve divided by the label range: the curve's mean accuracy."""
    ns = np.asarray(ns, dtype=float)
    accs = np.asarray(accs, dtype=float)
    if len(ns) < 2:
        return float(accs[0]) if len(accs) else float("nan")
    area = float(np.sum((accs[1:] + accs[:-1]) * np.diff(ns)) / 2.0)
    return area / float(ns[-1] - ns[0])


def pct_fewer(needed: float | None, budget: float) -> float | None:
    """Percent fewer labels than the full budget (100 * (1 - needed / budget)); None when not reached."""
    if needed is None:
        return None
    return 100.0 * (1.0 - needed / float(budget))


def mean_std(values: Sequence[float | None]) -> dict:
    """{"mean", "std", "min", "max", "n", "missing"} over the non-None values (mean/std None when all missing)."""
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    missing = len(values) - len(vals)
    if not vals:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0, "missing": missing}
    a = np.asarray(vals)
    return {"mean": float(a.mean()), "std": float(a.std()), "min": float(a.min()), "max": float(a.max()),
            "n": len(vals), "missing": missing}


def precision_recall(flagged: Sequence[int], truth: Sequence[int]) -> tuple[float, float]:
    """Precision and recall of a set of flagged positions against the true set (precision 0 when nothing
    is flagged, recall 1 when there is nothing to find)."""
    f, t = set(int(i) for i in flagged), set(int(i) for i in truth)
    tp = len(f & t)
    precision = tp / len(f) if f else 0.0
    recall = tp / len(t) if t else 1.0
    return precision, recall


def random_coverage_accuracy(pool_labels: Sequence[int], test_labels: Sequence[int], k: int) -> float:
    """Expected test accuracy of ``k`` labels drawn uniformly without replacement from the pool, if the
    features separated the classes perfectly: a test sample is right exactly when its class is among the
    labels drawn. ``sum over classes c of share_test(c) * (1 - C(N - n_c, k) / C(N, k))``, exact.

    ``100 * (1 - this)`` is the cold-start gap (in points) that a strategy scoring 100% would have over
    random with such features: the part of random's error that comes only from missing a class."""
    pool = np.asarray(pool_labels)
    test = np.asarray(test_labels)
    n, k = len(pool), int(k)
    if not 0 < k <= n:
        raise ValueError(f"k must be in 1..{n}, got {k}")
    total = math.comb(n, k)
    acc = 0.0
    for c, share in zip(*np.unique(test, return_counts=True)):
        n_c = int((pool == c).sum())
        acc += (share / len(test)) * (1.0 - math.comb(n - n_c, k) / total)
    return float(acc)
