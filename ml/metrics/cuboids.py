"""Cuboid metrics: average precision per class at 3D IoU with yaw (:func:`ml.geometry.cuboid_iou`).

As in the 3D detection benchmarks (SUN RGB-D / ScanNet's mAP@0.25 and @0.5): per class, the predicted cuboids of
all clouds are ranked by score; each is a true positive when its best-overlapping not yet matched target cuboid
of the same class and cloud reaches the IoU threshold, else a false positive; AP is the area under the
precision-recall curve with precision made monotone (all-point interpolation, as VOC 2010+ and ScanNet).

- ``metrics``: ``ap50`` (primary: the mean AP over the classes with target cuboids at IoU 0.5 — fitted boxes
  around surface points are tight, so 0.5 separates a good box from a sloppy one) and ``ap25``;
- ``per_class``: label → ``ap25``, ``ap50``, ``support`` (target cuboids), for classes with targets;
- ``per_slice``: slice → ``ap25``, ``ap50`` on its clouds, plus ``n``;
- ``per_sample``: each cloud's F1 of its cuboids at the primary threshold (greedy matching by score within the
  class); a cloud with no target and no predicted cuboid scores 1.

``evaluate_cuboids(..., primary="ap25")`` makes the looser figure primary (and the per-sample F1 use 0.25).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ml.errors import InvalidInput
from ml.learners.base import EvalReport

__all__ = ["evaluate_cuboids", "average_precision", "match"]

THRESHOLDS = {"ap25": 0.25, "ap50": 0.5}


def _cuboids(item: Mapping, i: int, labels: Sequence[str], *, scored: bool) -> list[dict]:
    out = []
    for j, c in enumerate(item.get("cuboids", [])):
        if c.get("label") not in labels:
            raise InvalidInput(f"sample {i}: cuboid {j} has an unknown label {c.get('label')!r}",
                               details={"index": i, "cuboid": j})
        out.append(dict(c, score=float(c.get("score", 1.0))) if scored else c)
    return out


def match(preds: Sequence[Mapping], gts: Sequence[Mapping], threshold: float) -> list[bool]:
    """Greedy matching in score order: per prediction, True when it takes a not yet matched target of its label
    with the highest IoU >= ``threshold`` (predictions given best first)."""
    from ml.geometry import cuboid_iou

    used = [False] * len(gts)
    hits = []
    for p in preds:
        best, best_j = threshold, -1
        for j, g in enumerate(gts):
            if used[j] or g["label"] != p["label"]:
                continue
            iou = cuboid_iou(p, g)
            if iou >= best:
                best, best_j = iou, j
        if best_j >= 0:
            used[best_j] = True
        hits.append(best_j >= 0)
    return hits


def average_precision(hits: Sequence[bool], n_targets: int) -> float:
    """All-point interpolated AP of a ranked list of hits against ``n_targets`` targets."""
    if n_targets == 0:
        return float("nan")
    h = np.asarray(hits, dtype=np.float64)
    if h.size == 0:
        return 0.0
    tp = np.cumsum(h)
    recall = np.concatenate([[0.0], tp / n_targets, [1.0]])
    precision = np.concatenate([[1.0], tp / np.arange(1, len(h) + 1), [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.flatnonzero(recall[1:] != recall[:-1])
    return float(np.sum((recall[steps + 1] - recall[steps]) * precision[steps + 1]))


def _aps(preds: list[list[dict]], gts: list[list[dict]], idx: Sequence[int], labels: Sequence[str]
         ) -> dict[str, dict[str, float]]:
    out = {}
    for label in labels:
        n_targets = sum(1 for i in idx for g in gts[i] if g["label"] == label)
        if n_targets == 0:
            continue
        figures = {"support": float(n_targets)}
        for key, t in THRESHOLDS.items():
            ranked = []  # (score, hit) over the clouds
            for i in idx:
                ps = sorted((p for p in preds[i] if p["label"] == label), key=lambda p: -p["score"])
                ranked += zip((p["score"] for p in ps), match(ps, gts[i], t))
            ranked.sort(key=lambda r: -r[0])  # stable: ties keep cloud order
            figures[key] = average_precision([h for _, h in ranked], n_targets)
        out[label] = figures
    return out


def _means(per_class: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    return {k: float(np.mean([v[k] for v in per_class.values()])) if per_class else 0.0 for k in THRESHOLDS}


def evaluate_cuboids(results: Sequence[Mapping[str, Any]], targets: Sequence[Mapping[str, Any]],
                     labels: tuple[str, ...], slices: Mapping[str, np.ndarray], *, primary: str = "ap50"
                     ) -> EvalReport:
    if primary not in THRESHOLDS:
        raise InvalidInput(f"primary must be one of {sorted(THRESHOLDS)}", details={"primary": primary})
    preds = [_cuboids(r, i, labels, scored=True) for i, r in enumerate(results)]
    gts = [_cuboids(t, i, labels, scored=False) for i, t in enumerate(targets)]
    everything = range(len(preds))
    per_class = _aps(preds, gts, everything, labels)
    per_sample = []
    for p, g in zip(preds, gts):
        if not p and not g:
            per_sample.append(1.0)
            continue
        tp = sum(match(sorted(p, key=lambda c: -c["score"]), g, THRESHOLDS[primary]))
        per_sample.append(2.0 * tp / (len(p) + len(g)))
    per_slice = {}
    for name, mask in slices.items():
        idx = np.flatnonzero(np.asarray(mask, dtype=bool))
        per_slice[name] = {**_means(_aps(preds, gts, idx, labels)), "n": float(len(idx))}
    return EvalReport(task_type="cuboids", primary=primary, metrics=_means(per_class), per_class=per_class,
                      per_slice=per_slice, per_sample=np.asarray(per_sample, dtype=np.float64), n=len(preds))
