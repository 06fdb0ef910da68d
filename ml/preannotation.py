"""How much of a model's pre-annotation an annotator kept: the prediction a task opened with against the result
the annotator submitted, in the task type's result shape (apps/labeling/results.py).

Every task type answers with the same counts (:class:`PreannotationComparison`): of the ``n_predicted`` predicted
units, ``kept`` unchanged, ``edited`` changed, ``deleted`` gone; ``added`` units the annotator made that the
model did not propose. ``kept + edited + deleted == n_predicted``. The unit and its matching rules per task type:

- shapes (detection boxes and polygons, audio regions, cuboids): one predicted shape. Boxes are matched with
  boxes and polygons with polygons, by IoU (2-D area; polygons rasterised on a grid; regions by temporal IoU,
  the overlap of [start, end] over their union; cuboids by 3-D IoU, ml.geometry.cuboid_iou). Pairs are matched
  one to one, greedily by IoU, in three passes over what is still unmatched:
  1. IoU >= ``kept_iou`` (0.95) and the same label: **kept**;
  2. IoU >= ``edited_iou`` (0.3), any label (moved, resized, relabelled): **edited**;
  3. the same label and any overlap (IoU > 0; moved further): **edited**.
  Predicted shapes left unmatched were **deleted**; result shapes left unmatched were **added**.
- point segmentation: one point the model labelled (index >= 0). Its label unchanged: kept; another label:
  edited; set to -1 (unlabelled): deleted. Points the model left at -1 that the annotator labelled: added.
- classification (and an audio clip's label): the one predicted label; the same label: kept, else edited.

Pure numpy; the labeling app stores the counts on each annotation of a pre-annotated task.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

from ml.errors import InvalidInput

__all__ = ["PreannotationComparison", "compare_preannotation", "match_shapes", "box_iou", "polygon_iou",
           "interval_iou", "KEPT_IOU", "EDITED_IOU", "TASK_TYPES"]

KEPT_IOU = 0.95
EDITED_IOU = 0.3
POLYGON_GRID = 256  # raster cells per side of the two polygons' joint bounding box
TASK_TYPES = ("classification", "detection", "audio_regions", "point_segmentation", "cuboids")


@dataclass(frozen=True)
class PreannotationComparison:
    """Counts of one pre-annotated task; ``kind`` is "shapes", "points" or "label" (what one unit is)."""

    kind: str
    n_predicted: int
    kept: int
    edited: int
    deleted: int
    added: int
    label_kept: bool | None = None  # audio regions: the clip label, when the prediction had one

    def as_dict(self) -> dict:
        out = asdict(self)
        if out["label_kept"] is None:
            del out["label_kept"]
        return out


def box_iou(a: Mapping, b: Mapping) -> float:
    """IoU of two boxes {x, y, w, h} (any consistent units)."""
    ix = max(0.0, min(a["x"] + a["w"], b["x"] + b["w"]) - max(a["x"], b["x"]))
    iy = max(0.0, min(a["y"] + a["h"], b["y"] + b["h"]) - max(a["y"], b["y"]))
    inter = ix * iy
    union = a["w"] * a["h"] + b["w"] * b["h"] - inter
    return float(inter / union) if union > 0 else 0.0


def interval_iou(a: Mapping, b: Mapping) -> float:
    """Temporal IoU of two regions {start, end}."""
    inter = max(0.0, min(a["end"], b["end"]) - max(a["start"], b["start"]))
    union = (a["end"] - a["start"]) + (b["end"] - b["start"]) - inter
    return float(inter / union) if union > 0 else 0.0


def _inside(points: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Even-odd rule: which of ``points`` (N, 2) lie inside the polygon (k, 2)."""
    x, y = points[:, 0][:, None], points[:, 1][:, None]
    x0, y0 = poly[:, 0][None, :], poly[:, 1][None, :]
    x1, y1 = np.roll(poly[:, 0], -1)[None, :], np.roll(poly[:, 1], -1)[None, :]
    crosses = (y0 > y) != (y1 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        xs = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
    return np.count_nonzero(crosses & (x < xs), axis=1) % 2 == 1


def polygon_iou(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]], *, grid: int = POLYGON_GRID) -> float:
    """IoU of two simple polygons (lists of [x, y]), on a ``grid`` x ``grid`` raster of their joint bounding box.
    Identical polygons give exactly 1."""
    pa, pb = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(pa) < 3 or len(pb) < 3:
        return 0.0
    if pa.shape == pb.shape and np.array_equal(pa, pb):
        return 1.0
    lo = np.minimum(pa.min(axis=0), pb.min(axis=0))
    hi = np.maximum(pa.max(axis=0), pb.max(axis=0))
    span = np.maximum(hi - lo, 1e-12)
    centers = (np.arange(grid) + 0.5) / grid
    gx, gy = np.meshgrid(lo[0] + centers * span[0], lo[1] + centers * span[1])
    cells = np.stack([gx.ravel(), gy.ravel()], axis=1)
    ina, inb = _inside(cells, pa), _inside(cells, pb)
    union = np.count_nonzero(ina | inb)
    return float(np.count_nonzero(ina & inb) / union) if union else 0.0


def match_shapes(iou: np.ndarray, same_label: np.ndarray, *, kept_iou: float = KEPT_IOU,
                 edited_iou: float = EDITED_IOU) -> tuple[int, int, int, int]:
    """(kept, edited, deleted, added) from the (predicted x result) IoU matrix and same-label mask, by the three
    greedy passes of the module docstring."""
    iou, same = np.asarray(iou, dtype=np.float64), np.asarray(same_label, dtype=bool)
    if iou.ndim != 2 or iou.shape != same.shape:
        raise InvalidInput("iou and same_label must be (predicted, result) matrices of one shape.",
                           code="invalid_preannotation",
                           details={"iou": list(iou.shape), "same_label": list(same.shape)})
    n_pred, n_res = iou.shape
    free_p, free_r = np.ones(n_pred, dtype=bool), np.ones(n_res, dtype=bool)

    def greedy(allowed: np.ndarray) -> int:
        pairs = np.argwhere(allowed & free_p[:, None] & free_r[None, :])
        order = np.argsort(-iou[pairs[:, 0], pairs[:, 1]], kind="stable") if len(pairs) else []
        n = 0
        for i, j in pairs[order]:
            if free_p[i] and free_r[j]:
                free_p[i] = free_r[j] = False
                n += 1
        return n

    kept = greedy((iou >= kept_iou) & same)
    edited = greedy(iou >= edited_iou)
    edited += greedy((iou > 0) & same)
    return kept, edited, int(free_p.sum()), int(free_r.sum())


def _box_matrix(pred: list, res: list) -> np.ndarray:
    """IoU of every predicted box with every result box, (P, R), vectorised."""
    a = np.array([[b["x"], b["y"], b["w"], b["h"]] for b in pred], dtype=np.float64).reshape(-1, 4)
    b = np.array([[r["x"], r["y"], r["w"], r["h"]] for r in res], dtype=np.float64).reshape(-1, 4)
    ix = np.clip(np.minimum(a[:, None, 0] + a[:, None, 2], b[None, :, 0] + b[None, :, 2])
                 - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 1] + a[:, None, 3], b[None, :, 1] + b[None, :, 3])
                 - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _interval_matrix(pred: list, res: list) -> np.ndarray:
    a = np.array([[r["start"], r["end"]] for r in pred], dtype=np.float64).reshape(-1, 2)
    b = np.array([[r["start"], r["end"]] for r in res], dtype=np.float64).reshape(-1, 2)
    inter = np.clip(np.minimum(a[:, None, 1], b[None, :, 1]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    union = (a[:, 1] - a[:, 0])[:, None] + (b[:, 1] - b[:, 0])[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _bounds_matrix(pred: list, res: list, bounds: Callable[[Mapping], np.ndarray],
                   iou: Callable[[Mapping, Mapping], float]) -> np.ndarray:
    """IoU (P, R) by an exact but costly ``iou``, computed only where the shapes' axis-aligned ``bounds``
    ([lo..., hi...]) overlap (elsewhere it is 0)."""
    out = np.zeros((len(pred), len(res)), dtype=np.float64)
    if not len(pred) or not len(res):
        return out
    a, b = np.array([bounds(p) for p in pred]), np.array([bounds(r) for r in res])
    d = a.shape[1] // 2
    touch = np.all((a[:, None, :d] <= b[None, :, d:]) & (b[None, :, :d] <= a[:, None, d:]), axis=2)
    for i, j in np.argwhere(touch):
        out[i, j] = iou(pred[i], res[j])
    return out


def _polygon_bounds(p: Mapping) -> np.ndarray:
    pts = np.asarray(p["points"], dtype=np.float64).reshape(-1, 2)
    return np.concatenate([pts.min(axis=0), pts.max(axis=0)])


def _cuboid_bounds(c: Mapping) -> np.ndarray:
    center, size = np.asarray(c["center"], dtype=np.float64), np.asarray(c["size"], dtype=np.float64)
    radius = np.array([np.hypot(size[0], size[1]) / 2] * 2 + [size[2] / 2])  # any yaw fits in this
    return np.concatenate([center - radius, center + radius])


def _pairs(pred: list, res: list, matrix: Callable[[list, list], np.ndarray], **kw) -> tuple[int, int, int, int]:
    m = matrix(pred, res).reshape(len(pred), len(res))
    codes: dict = {}
    lp = np.array([codes.setdefault(p.get("label"), len(codes)) for p in pred], dtype=np.int64)
    lr = np.array([codes.setdefault(r.get("label"), len(codes)) for r in res], dtype=np.int64)
    same = lp[:, None] == lr[None, :]
    return match_shapes(m, same, **kw)


def _shapes(predicted: Mapping, key: str) -> list:
    value = predicted.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        raise InvalidInput(f"{key} must be a list of objects.", code="invalid_preannotation", details={"key": key})
    return list(value)


def compare_preannotation(task_type: str, predicted: Mapping, result: Mapping, *, kept_iou: float = KEPT_IOU,
                          edited_iou: float = EDITED_IOU) -> PreannotationComparison:
    """Compare a task's ``predicted`` pre-annotation with the annotator's ``result`` (both in ``task_type``'s
    result shape; the prediction's extra keys such as ``model`` or ``confidence`` are ignored)."""
    if task_type not in TASK_TYPES:
        raise InvalidInput(f"Unknown task type {task_type!r}.", code="invalid_task_type",
                           details={"task_type": task_type, "known": list(TASK_TYPES)})
    if not isinstance(predicted, Mapping) or not isinstance(result, Mapping):
        raise InvalidInput("predicted and result must be objects.", code="invalid_preannotation")
    kw = {"kept_iou": kept_iou, "edited_iou": edited_iou}
    if task_type == "classification":
        kept = predicted.get("label") == result.get("label")
        return PreannotationComparison("label", 1, int(kept), int(not kept), 0, 0)
    if task_type == "point_segmentation":
        p = np.asarray(predicted.get("point_labels") or [], dtype=np.int64)
        r = np.asarray(result.get("point_labels") or [], dtype=np.int64)
        if p.shape != r.shape:
            raise InvalidInput(f"the prediction labels {p.size} points, the result {r.size}.",
                               code="invalid_preannotation", details={"predicted": int(p.size), "result": int(r.size)})
        labelled = p >= 0
        return PreannotationComparison(
            "points", int(labelled.sum()), int((labelled & (p == r)).sum()),
            int((labelled & (r >= 0) & (p != r)).sum()), int((labelled & (r < 0)).sum()),
            int((~labelled & (r >= 0)).sum()))
    if task_type == "detection":
        polygons = lambda p, r: _bounds_matrix(  # noqa: E731
            p, r, _polygon_bounds, lambda a, b: polygon_iou(a["points"], b["points"]))
        counts = np.add(_pairs(_shapes(predicted, "boxes"), _shapes(result, "boxes"), _box_matrix, **kw),
                        _pairs(_shapes(predicted, "polygons"), _shapes(result, "polygons"), polygons, **kw))
        n = len(_shapes(predicted, "boxes")) + len(_shapes(predicted, "polygons"))
        return PreannotationComparison("shapes", n, *(int(c) for c in counts))
    if task_type == "audio_regions":
        pred = _shapes(predicted, "regions")
        counts = _pairs(pred, _shapes(result, "regions"), _interval_matrix, **kw)
        label_kept = predicted.get("label") == result.get("label") if predicted.get("label") is not None else None
        return PreannotationComparison("shapes", len(pred), *counts, label_kept=label_kept)
    from ml.geometry import cuboid_iou

    pred = _shapes(predicted, "cuboids")
    cuboids = lambda p, r: _bounds_matrix(p, r, _cuboid_bounds, cuboid_iou)  # noqa: E731
    return PreannotationComparison("shapes", len(pred), *_pairs(pred, _shapes(result, "cuboids"), cuboids, **kw))
