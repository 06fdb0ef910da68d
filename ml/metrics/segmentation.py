"""Point segmentation metrics: per-class IoU over points and their mean (mIoU), the field's reference figures.

Points whose target label is -1 (unlabeled) are ignored. Over a set of clouds the confusion is summed over all
labeled points (one pooled IoU per class, as in ShapeNet-part/S3DIS/ScanNet), and:

- ``metrics``: ``miou`` (primary; the mean IoU over the classes that occur in the targets or the predictions of
  the labeled points — a class predicted but absent has IoU 0) and ``accuracy`` (labeled points right);
- ``per_class``: label → ``iou``, ``support`` (labeled points of the class), for classes with a defined IoU;
- ``per_slice``: slice → the ``metrics`` computed on the slice's clouds, plus ``n``;
- ``per_sample``: each cloud's own mIoU (over the classes in its labeled points or its predictions on them);
  a cloud without a labeled point scores 1 (nothing to be wrong about).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ml.errors import InvalidInput
from ml.learners.base import EvalReport

__all__ = ["evaluate_segmentation", "confusion"]


def _pairs(results, targets, n_classes: int) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for i, (r, t) in enumerate(zip(results, targets)):
        y = np.asarray(t.get("point_labels", []), dtype=np.int64)
        p = np.asarray(r.get("point_labels", []), dtype=np.int64)
        if p.shape != y.shape:
            raise InvalidInput(f"sample {i}: {p.size} predicted point labels for {y.size} labeled points",
                               details={"index": i, "predicted": int(p.size), "target": int(y.size)})
        keep = y >= 0
        y, p = y[keep], p[keep]
        if y.size and (y.max() >= n_classes or p.min() < 0 or p.max() >= n_classes):
            raise InvalidInput(f"sample {i}: point labels outside 0..{n_classes - 1}", details={"index": i})
        out.append((y, p))
    return out


def confusion(y: np.ndarray, p: np.ndarray, n_classes: int) -> np.ndarray:
    """(C, C) counts: rows the target class, columns the predicted one."""
    return np.bincount(y * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def _ious(cm: np.ndarray) -> np.ndarray:
    tp = np.diag(cm).astype(np.float64)
    union = cm.sum(axis=0) + cm.sum(axis=1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / np.maximum(union, 1), np.nan)


def _figures(cm: np.ndarray) -> dict[str, float]:
    iou = _ious(cm)
    total = cm.sum()
    return {"miou": float(np.nanmean(iou)) if np.isfinite(iou).any() else 0.0,
            "accuracy": float(np.trace(cm) / total) if total else 0.0}


def evaluate_segmentation(results: Sequence[Mapping[str, Any]], targets: Sequence[Mapping[str, Any]],
                          labels: tuple[str, ...], slices: Mapping[str, np.ndarray]) -> EvalReport:
    c = len(labels)
    pairs = _pairs(results, targets, c)
    cms = [confusion(y, p, c) for y, p in pairs]
    total = np.sum(cms, axis=0) if cms else np.zeros((c, c), dtype=np.int64)
    iou = _ious(total)
    per_class = {labels[k]: {"iou": float(iou[k]), "support": float(total[k].sum())}
                 for k in range(c) if np.isfinite(iou[k])}
    per_sample = np.array([_figures(cm)["miou"] if cm.sum() else 1.0 for cm in cms], dtype=np.float64)
    per_slice = {}
    for name, mask in slices.items():
        idx = np.flatnonzero(np.asarray(mask, dtype=bool))
        sub = np.sum([cms[i] for i in idx], axis=0) if len(idx) else np.zeros((c, c), dtype=np.int64)
        per_slice[name] = {**_figures(sub), "n": float(len(idx))}
    return EvalReport(task_type="point_segmentation", primary="miou", metrics=_figures(total), per_class=per_class,
                      per_slice=per_slice, per_sample=per_sample, n=len(pairs))
