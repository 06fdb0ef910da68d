"""Detection metrics: COCO mAP by pycocotools, per class and per slice, and a per-image F1 for paired tests.

``evaluate_detection(results, targets, labels, slices, *, score_threshold=0.3, iou_threshold=0.5)``:

- ``results[i]``: ``{"boxes": [{"label", "x", "y", "w", "h", "score"}]}`` (normalised 0-1, ``x``/``y`` top-left);
  ``targets[i]``: the annotation shape, ``boxes`` and/or ``polygons`` (a polygon counts as its bounding box).
- ``metrics``: ``map50`` (COCO AP at IoU 0.5, mean over the classes that have ground truth; the primary figure),
  ``map`` (AP averaged over IoU 0.50:0.05:0.95), ``map75``, and ``f1`` (the mean per-image F1 below). Computed by
  pycocotools' ``COCOeval`` on in-memory COCO dicts, boxes scaled to a nominal :data:`NOMINAL_SIZE` pixel square
  (IoU is scale-free; the scale only keeps COCO's area ranges meaningful), ``maxDets`` 100, area range ``all``.
- ``per_class``: label -> ``ap50``, ``ap``, ``n_gt`` for every label with ground truth in the data (labels without
  ground truth have no AP in COCO and are left out, like the mean).
- ``per_slice``: slice -> the same metrics on the slice's images, plus ``n``.
- ``per_sample``: per image F1 at IoU ``iou_threshold`` of the predictions scoring at least ``score_threshold``
  against the ground truth: greedy matching, best score first, each prediction to the unmatched ground-truth box of
  the same label with the highest IoU (>= the threshold); ``F1 = 2 TP / (n_pred + n_gt)``, 1.0 for an image with
  neither predictions nor ground truth.

When no image has ground truth, the mAPs are 0.0 (nothing to find) and ``per_class`` is empty.
"""
from __future__ import annotations

import contextlib
import io
from typing import Any, Mapping, Sequence

import numpy as np

from ml.errors import InvalidInput
from ml.learners.base import EvalReport

__all__ = ["NOMINAL_SIZE", "evaluate_detection", "coco_ap", "image_f1"]

NOMINAL_SIZE = 1000.0


def _gt_boxes(target: Mapping[str, Any], lookup: Mapping[str, int], i: int) -> list[tuple[int, list[float]]]:
    if not isinstance(target, Mapping):
        raise InvalidInput("a detection target must be an object with boxes and/or polygons",
                           details={"index": i})
    out = []
    shapes = list(target.get("boxes") or [])
    for poly in target.get("polygons") or []:
        pts = np.asarray(poly.get("points", []), dtype=np.float64).reshape(-1, 2)
        if len(pts):
            shapes.append({"label": poly.get("label"), "x": pts[:, 0].min(), "y": pts[:, 1].min(),
                           "w": np.ptp(pts[:, 0]), "h": np.ptp(pts[:, 1])})
    for b in shapes:
        if b.get("label") not in lookup:
            raise InvalidInput(f"unknown label {b.get('label')!r} in target {i}", details={"index": i})
        out.append((lookup[b["label"]], [float(b["x"]), float(b["y"]), float(b["w"]), float(b["h"])]))
    return out


def _pred_boxes(result: Mapping[str, Any], lookup: Mapping[str, int], i: int) -> list[tuple[int, list[float], float]]:
    if not isinstance(result, Mapping):
        raise InvalidInput("a detection result must be an object with boxes", details={"index": i})
    out = []
    for b in result.get("boxes") or []:
        if b.get("label") not in lookup:
            raise InvalidInput(f"unknown label {b.get('label')!r} in result {i}", details={"index": i})
        out.append((lookup[b["label"]], [float(b["x"]), float(b["y"]), float(b["w"]), float(b["h"])],
                    float(b.get("score", 1.0))))
    return out


def coco_ap(preds: Sequence[list], gts: Sequence[list], n_classes: int) -> tuple[dict, dict]:
    """COCOeval over parsed boxes -> (``{"map50", "map", "map75"}``, ``{class index: {"ap50", "ap", "n_gt"}}``)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    s = NOMINAL_SIZE
    images = [{"id": i + 1, "width": int(s), "height": int(s)} for i in range(len(gts))]
    anns, dets = [], []
    for i, boxes in enumerate(gts):
        for c, (x, y, w, h) in boxes:
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": c + 1,
                         "bbox": [x * s, y * s, w * s, h * s], "area": w * h * s * s, "iscrowd": 0})
    for i, boxes in enumerate(preds):
        for c, (x, y, w, h), score in boxes:
            dets.append({"id": len(dets) + 1, "image_id": i + 1, "category_id": c + 1,
                         "bbox": [x * s, y * s, w * s, h * s], "area": w * h * s * s, "score": score, "iscrowd": 0})
    n_gt = np.bincount([a["category_id"] - 1 for a in anns], minlength=n_classes)
    present = [c for c in range(n_classes) if n_gt[c] > 0]
    if not present:
        return {"map50": 0.0, "map": 0.0, "map75": 0.0}, {}
    if not dets:
        return ({"map50": 0.0, "map": 0.0, "map75": 0.0},
                {c: {"ap50": 0.0, "ap": 0.0, "n_gt": int(n_gt[c])} for c in present})
    categories = [{"id": c + 1, "name": str(c)} for c in range(n_classes)]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": anns, "categories": categories}
        gt.createIndex()
        dt = COCO()
        dt.dataset = {"images": images, "annotations": dets, "categories": categories}
        dt.createIndex()
        ev = COCOeval(gt, dt, iouType="bbox")
        ev.evaluate()
        ev.accumulate()
    # precision: [T IoUs, R recall points, K classes, A area ranges, M maxDets]; area "all" = 0, maxDets 100 = -1
    prec = ev.eval["precision"][:, :, :, 0, -1]
    iou_thrs = ev.params.iouThrs

    def ap(c: int, t: slice | int) -> float:
        p = prec[t, :, c]
        p = p[p > -1]
        return float(p.mean()) if p.size else 0.0

    t50 = int(np.argmin(np.abs(iou_thrs - 0.5)))
    t75 = int(np.argmin(np.abs(iou_thrs - 0.75)))
    per_class = {c: {"ap50": ap(c, t50), "ap": ap(c, slice(None)), "n_gt": int(n_gt[c])} for c in present}
    metrics = {"map50": float(np.mean([per_class[c]["ap50"] for c in present])),
               "map": float(np.mean([per_class[c]["ap"] for c in present])),
               "map75": float(np.mean([ap(c, t75) for c in present]))}
    return metrics, per_class


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def image_f1(pred: list, gt: list, *, score_threshold: float = 0.3, iou_threshold: float = 0.5) -> float:
    """One image's F1 at ``iou_threshold`` (see the module docstring)."""
    kept = sorted([p for p in pred if p[2] >= score_threshold], key=lambda p: -p[2])
    if not kept and not gt:
        return 1.0
    used = [False] * len(gt)
    tp = 0
    for c, box, _ in kept:
        best, best_j = iou_threshold, -1
        for j, (gc, gbox) in enumerate(gt):
            if not used[j] and gc == c:
                v = _iou(box, gbox)
                if v >= best:
                    best, best_j = v, j
        if best_j >= 0:
            used[best_j] = True
            tp += 1
    return 2.0 * tp / (len(kept) + len(gt))


def evaluate_detection(results: Sequence[Mapping[str, Any]], targets: Sequence[Mapping[str, Any]],
                       labels: Sequence[str], slices: Mapping[str, np.ndarray] | None = None, *,
                       score_threshold: float = 0.3, iou_threshold: float = 0.5) -> EvalReport:
    """COCO mAP@0.5 (primary) and mAP@[.5:.95] overall, per class and per slice, and per-image F1 (see the module
    docstring)."""
    labels = tuple(labels)
    if len(results) != len(targets):
        raise InvalidInput(f"{len(results)} results but {len(targets)} targets")
    lookup = {name: i for i, name in enumerate(labels)}
    gts = [_gt_boxes(t, lookup, i) for i, t in enumerate(targets)]
    preds = [_pred_boxes(r, lookup, i) for i, r in enumerate(results)]
    per_sample = np.asarray([image_f1(p, g, score_threshold=score_threshold, iou_threshold=iou_threshold)
                             for p, g in zip(preds, gts)], dtype=np.float64)

    def figures(idx: np.ndarray) -> tuple[dict, dict]:
        m, pc = coco_ap([preds[i] for i in idx], [gts[i] for i in idx], len(labels))
        m["f1"] = float(per_sample[idx].mean()) if idx.size else 0.0
        return m, pc

    metrics, per_class = figures(np.arange(len(results)))
    per_slice = {}
    for name, mask in (slices or {}).items():
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (len(results),):
            raise InvalidInput(f"slice {name!r} must be a boolean mask of length {len(results)}")
        m, _ = figures(np.flatnonzero(mask))
        per_slice[name] = {**m, "n": int(mask.sum())}
    return EvalReport(task_type="detection", primary="map50", metrics=metrics,
                      per_class={labels[c]: v for c, v in per_class.items()}, per_slice=per_slice,
                      per_sample=per_sample, n=len(results))
