"""Label checks for the task types with shapes: boxes, audio regions, point segmentation, cuboids.

:func:`label_issues` compares a learner's **out-of-sample** predictions (``Predictions.results``, the shapes of
:mod:`ml.learners.base`; e.g. from cross-validation, so no sample is scored by a model that saw its label) with the
given labels (the annotation API's shapes) and returns one :class:`ShapeFinding` per sample, ranked worst first:
a label quality in [0, 1] (1 = the label looks right), the issue kinds found and the shapes concerned.

By task type:

- ``detection``: cleanlab's ObjectLab (``cleanlab.object_detection``). Per given box a *swap* score (a confident
  prediction of another class sits on it) and a *badly located* score (the best overlapping prediction of its class
  is offset), per confident predicted box an *overlooked* score (no given box overlaps it); the image's quality is
  cleanlab's (softmin pool of each kind over the boxes, geometric mean of the three; equal to
  ``get_label_quality_scores`` at the default thresholds) and ``flagged`` is cleanlab's ``find_label_issues`` (per
  box thresholds from the per-class AP) or any box below ``issue_threshold``. 0-1 coordinates are scaled by
  ``pixels`` first: cleanlab's distance term is tuned for pixel units.
- ``point_segmentation``: ``cleanlab.segmentation``. All labeled points of all clouds are one ``(1, 1, T)``
  "image" for ``find_label_issues`` (confident-learning thresholds over the whole batch, per class), and each
  cloud's quality is ``get_label_quality_scores`` (softmin of p(given label) over its points) on its own
  ``(1, 1, P)``. Unlabeled points (-1) are left out. Probabilities come from ``point_proba`` (``(P, C)`` per
  cloud, ``Predictions.extra["point_proba"]``) or, without it, from ``point_labels``/``point_scores`` (the score
  on the predicted class, the rest spread evenly). Issues: ``mislabeled_points``, one per (given, predicted) class
  pair with at least ``min_issue_points`` flagged points, with the point indices.
- ``audio_regions`` and ``cuboids``: the same idea as ObjectLab written out simply, with temporal IoU (regions) or
  3-D IoU (:func:`ml.geometry.cuboid_iou`). Per given shape of class k: ``badly_located`` with quality = the best
  IoU with a prediction of class k (score > ``low_probability_threshold``) that overlaps it; ``swapped`` with
  quality = 1 - IoU of the best-overlapping confident (score >= ``high_probability_threshold``) prediction of
  another class, when it overlaps more than any prediction of class k; ``spurious`` (the model sees nothing there:
  no prediction with score > ``low_probability_threshold`` overlaps it) with quality m / (m + ``extra_label_rate``),
  m the share of given shapes in the batch that nothing overlaps (a model that misses many shapes makes an
  unmatched one weak evidence; one that finds nearly all makes it strong; ``extra_label_rate`` is the prior rate of
  labels drawn where there is nothing). Per confident prediction that overlaps no given shape: ``overlooked``
  with quality 1 - its score. The sample's quality is the lowest of its shapes' (1 when it has none).

A shape is listed as an issue when its quality is at most ``issue_threshold``; ``score`` = 1 - quality ranks the
findings (ties by index). cleanlab is AGPL-3.0 and optional: it is imported inside the functions that use it
(detection, point segmentation), and its absence raises :class:`ml.errors.MissingDependency`; regions and cuboids
need numpy only.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ml.errors import InvalidInput, require

__all__ = ["ShapeIssue", "ShapeFinding", "ISSUE_KINDS", "TASK_TYPES", "label_issues", "interval_iou"]

INSTALL_HINT = "pip install 'looplab[quality]'"
TASK_TYPES = ("detection", "audio_regions", "point_segmentation", "cuboids")
ISSUE_KINDS: dict[str, tuple[str, ...]] = {
    "detection": ("overlooked", "swapped", "badly_located"),
    "audio_regions": ("overlooked", "swapped", "badly_located", "spurious"),
    "cuboids": ("overlooked", "swapped", "badly_located", "spurious"),
    "point_segmentation": ("mislabeled_points",),
}
_KEY = {"detection": "boxes", "audio_regions": "regions", "cuboids": "cuboids", "point_segmentation": "point_labels"}


@dataclass(frozen=True)
class ShapeIssue:
    """One suspicious shape. ``quality`` 0..1 (lower = more likely wrong); ``label_index`` the shape's position in
    the given annotation's list (None for an overlooked one, which only the model has); ``label`` the given class,
    ``suggested_label`` the model's; ``shape`` the given shape and ``predicted`` the model's shape concerned (with
    its score); ``points`` the point indices (point segmentation)."""

    kind: str
    quality: float
    label_index: int | None = None
    label: str | None = None
    suggested_label: str | None = None
    shape: dict | None = None
    predicted: dict | None = None
    points: tuple[int, ...] | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["points"] = list(self.points) if self.points is not None else None
        return d


@dataclass(frozen=True)
class ShapeFinding:
    """A sample's label check. ``index`` its position in the lists passed in; ``quality`` 0..1 (1 = looks right);
    ``score`` = 1 - quality (findings are ranked by it, ``rank`` 0 = most suspicious); ``flagged`` whether it has a
    label issue; ``kinds`` the issue kinds of ``issues`` (worst first); ``kind`` "label_issue" as in
    :class:`ml.quality.Finding`."""

    index: int
    quality: float
    score: float
    rank: int
    flagged: bool
    kinds: tuple[str, ...]
    issues: tuple[ShapeIssue, ...]
    reason: str
    kind: str = "label_issue"

    def to_dict(self) -> dict:
        return {"index": self.index, "kind": self.kind, "quality": self.quality, "score": self.score,
                "rank": self.rank, "flagged": self.flagged, "kinds": list(self.kinds),
                "issues": [i.to_dict() for i in self.issues], "reason": self.reason}


# ---------------------------------------------------------------------------------------------------- checks


def _check_lists(task_type: str, results, targets, labels) -> tuple[str, ...]:
    if task_type not in TASK_TYPES:
        raise InvalidInput(f"no label check for task type {task_type!r}", code="invalid_input",
                           details={"task_type": task_type, "known": list(TASK_TYPES)})
    if len(results) != len(targets):
        raise InvalidInput(f"{len(results)} predictions but {len(targets)} labels", code="invalid_input")
    if len(targets) == 0:
        raise InvalidInput("no samples to check", code="empty_data")
    labels = tuple(str(x) for x in labels)
    if not labels or len(set(labels)) != len(labels):
        raise InvalidInput("labels must be a non-empty list of distinct names", code="invalid_input")
    key = _KEY[task_type]
    for i, (r, t) in enumerate(zip(results, targets)):
        for what, d in (("prediction", r), ("label", t)):
            if not isinstance(d, Mapping) or not isinstance(d.get(key, None), (list, tuple)):
                raise InvalidInput(f"{what} {i} has no {key!r} list", code="invalid_input", details={"index": i})
        if task_type != "point_segmentation":
            known = set(labels)
            for what, d in (("prediction", r), ("label", t)):
                for s in d[key]:
                    if s.get("label") not in known:
                        raise InvalidInput(f"{what} {i} has a shape with unknown label {s.get('label')!r}",
                                           code="invalid_input", details={"index": i, "labels": list(labels)})
    return labels


def _score(s: Mapping) -> float:
    return float(s.get("score", 1.0))


def _finish(raw: list[tuple[float, bool, list[ShapeIssue], str]]) -> list[ShapeFinding]:
    """(quality, flagged, issues, reason) per sample → ranked findings."""
    order = sorted(range(len(raw)), key=lambda i: (raw[i][0], i))
    out = [None] * len(raw)
    for rank, i in enumerate(order):
        q, flagged, issues, reason = raw[i]
        q = float(min(1.0, max(0.0, q)))
        issues = sorted(issues, key=lambda s: s.quality)
        kinds = tuple(dict.fromkeys(s.kind for s in issues))
        out[rank] = ShapeFinding(index=i, quality=q, score=1.0 - q, rank=rank, flagged=bool(flagged or issues),
                                 kinds=kinds, issues=tuple(issues), reason=reason)
    return out


def _reason(issues: Sequence[ShapeIssue], quality: float, issue_threshold: float = 0.5) -> str:
    if not issues:
        if quality > issue_threshold:
            return f"label looks right (quality {quality:.2f})"
        return f"low label quality ({quality:.2f}) but no shape stands out as a mistake"
    parts = []
    for s in sorted(issues, key=lambda s: s.quality)[:3]:
        if s.kind == "overlooked":
            parts.append(f"model sees a {s.suggested_label} that no label has (quality {s.quality:.2f})")
        elif s.kind == "swapped":
            parts.append(f"{s.label} #{s.label_index} looks like a {s.suggested_label} (quality {s.quality:.2f})")
        elif s.kind == "badly_located":
            parts.append(f"{s.label} #{s.label_index} is badly located (quality {s.quality:.2f})")
        elif s.kind == "spurious":
            parts.append(f"model sees nothing at {s.label} #{s.label_index} (quality {s.quality:.2f})")
        else:
            parts.append(f"{len(s.points or ())} points labelled {s.label}, model says {s.suggested_label}")
    more = f"; +{len(issues) - 3} more" if len(issues) > 3 else ""
    return "; ".join(parts) + more


# ------------------------------------------------------------------------------------------------ detection


def _xyxy(b: Mapping, pixels: float) -> list[float]:
    x, y, w, h = (float(b[k]) for k in ("x", "y", "w", "h"))
    return [x * pixels, y * pixels, (x + w) * pixels, (y + h) * pixels]


def _detection(results, targets, labels, *, pixels: float, low: float, high: float, issue_threshold: float,
               use_filter: bool) -> list:
    rank = require("cleanlab.object_detection.rank", "label checks of boxes need cleanlab, an optional dependency "
                   "(AGPL-3.0)", install=INSTALL_HINT, package="cleanlab")
    index = {name: k for k, name in enumerate(labels)}
    K = len(labels)
    cl_labels, cl_preds, pred_boxes = [], [], []
    for r, t in zip(results, targets):
        gb = t["boxes"]
        cl_labels.append({"bboxes": np.array([_xyxy(b, pixels) for b in gb], dtype=np.float64).reshape(-1, 4),
                          "labels": np.array([index[b["label"]] for b in gb], dtype=np.int64)})
        per_class = [[] for _ in range(K)]
        boxes_by_class = [[] for _ in range(K)]
        for b in r["boxes"]:
            per_class[index[b["label"]]].append(_xyxy(b, pixels) + [_score(b)])
            boxes_by_class[index[b["label"]]].append(b)
        cl_preds.append([np.array(p, dtype=np.float64).reshape(-1, 5) for p in per_class])
        pred_boxes.append([b for c in boxes_by_class for b in c])  # cleanlab's order: by class, then as given

    from cleanlab.internal.constants import ALPHA, TEMPERATURE  # noqa: PLC0415

    kw = dict(labels=cl_labels, predictions=cl_preds, alpha=ALPHA)
    overlooked = rank.compute_overlooked_box_scores(high_probability_threshold=high, **kw)
    badloc = rank.compute_badloc_box_scores(low_probability_threshold=low, **kw)
    swap = rank.compute_swap_box_scores(high_probability_threshold=high, **kw)
    pooled = [rank.pool_box_scores_per_image(s, temperature=TEMPERATURE) for s in (overlooked, badloc, swap)]
    quality = np.exp(sum(np.log(1e-100 + p) for p in pooled) / 3.0)  # cleanlab's equal-weight aggregation
    flagged = np.zeros(len(targets), bool)
    if use_filter:
        flt = require("cleanlab.object_detection.filter", "label checks of boxes need cleanlab", install=INSTALL_HINT,
                      package="cleanlab")
        try:
            flagged = np.asarray(flt.find_label_issues(cl_labels, cl_preds), dtype=bool)
        except AssertionError:
            # its per-class AP runs in a multiprocessing.Pool, which a daemonic process (a Celery prefork worker)
            # may not start: flag by the per-box threshold alone there
            flagged = np.zeros(len(targets), bool)

    raw = []
    for i, t in enumerate(targets):
        gb, pb = t["boxes"], pred_boxes[i]
        lab_k = cl_labels[i]["labels"]
        issues: list[ShapeIssue] = []
        for j, q in enumerate(np.nan_to_num(overlooked[i], nan=1.0)):
            if q <= issue_threshold:
                issues.append(ShapeIssue("overlooked", float(q), suggested_label=pb[j]["label"], predicted=dict(pb[j])))
        best_other = _best_other(cl_labels[i]["bboxes"], lab_k, cl_preds[i], high)
        for j, q in enumerate(swap[i]):
            if q <= issue_threshold:
                m = best_other[j]
                issues.append(ShapeIssue("swapped", float(q), j, gb[j]["label"],
                                         pb[m]["label"] if m is not None else None, dict(gb[j]),
                                         dict(pb[m]) if m is not None else None))
        best_same = _best_same(cl_labels[i]["bboxes"], lab_k, cl_preds[i], low)
        for j, q in enumerate(badloc[i]):
            if q <= issue_threshold:
                m = best_same[j]
                issues.append(ShapeIssue("badly_located", float(q), j, gb[j]["label"], gb[j]["label"], dict(gb[j]),
                                         dict(pb[m]) if m is not None else None))
        if flagged[i] and not issues:  # cleanlab's per-class threshold caught it: name its worst box
            cands = [(float(q), "overlooked", j) for j, q in enumerate(np.nan_to_num(overlooked[i], nan=1.0))]
            cands += [(float(q), "swapped", j) for j, q in enumerate(swap[i])]
            cands += [(float(q), "badly_located", j) for j, q in enumerate(badloc[i])]
            if cands:
                q, kind, j = min(cands)
                if kind == "overlooked":
                    issues.append(ShapeIssue(kind, q, suggested_label=pb[j]["label"], predicted=dict(pb[j])))
                else:
                    issues.append(ShapeIssue(kind, q, j, gb[j]["label"], None, dict(gb[j])))
        q = float(quality[i])
        raw.append((q, bool(flagged[i]), issues, _reason(issues, q, issue_threshold)))
    return raw


def _box_iou(a, B: np.ndarray) -> np.ndarray:
    if len(B) == 0:
        return np.zeros(0)
    x0, y0 = np.maximum(a[0], B[:, 0]), np.maximum(a[1], B[:, 1])
    x1, y1 = np.minimum(a[2], B[:, 2]), np.minimum(a[3], B[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (B[:, 2] - B[:, 0]) * (B[:, 3] - B[:, 1]) - inter
    return inter / np.maximum(union, 1e-12)


def _flat(pred: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    rows = np.concatenate(pred, axis=0) if pred else np.zeros((0, 5))
    cls = np.concatenate([np.full(len(p), k) for k, p in enumerate(pred)]) if pred else np.zeros(0, int)
    return rows, cls


def _best_other(lab_boxes, lab_k, pred, high) -> list[int | None]:
    rows, cls = _flat(pred)
    out = []
    for a, k in zip(lab_boxes, lab_k):
        iou = _box_iou(a, rows[:, :4])
        iou[(cls == k) | (rows[:, 4] <= high)] = -1
        out.append(int(iou.argmax()) if len(iou) and iou.max() > 0 else None)
    return out


def _best_same(lab_boxes, lab_k, pred, low) -> list[int | None]:
    rows, cls = _flat(pred)
    out = []
    for a, k in zip(lab_boxes, lab_k):
        iou = _box_iou(a, rows[:, :4])
        iou[(cls != k) | (rows[:, 4] <= low)] = -1
        out.append(int(iou.argmax()) if len(iou) and iou.max() > 0 else None)
    return out


# ------------------------------------------------------------------------------------------- regions, cuboids


def interval_iou(a: Mapping, b: Mapping) -> float:
    """Temporal IoU of two regions ``{"start", "end"}`` (seconds)."""
    inter = max(0.0, min(float(a["end"]), float(b["end"])) - max(float(a["start"]), float(b["start"])))
    union = (float(a["end"]) - float(a["start"])) + (float(b["end"]) - float(b["start"])) - inter
    return inter / union if union > 0 else 0.0


def _matching(results, targets, key: str, iou: Callable[[Mapping, Mapping], float], *, low: float, high: float,
              issue_threshold: float, extra_label_rate: float) -> list:
    ious = []
    n_given = n_unmatched = 0
    for r, t in zip(results, targets):
        given, pred = list(t[key]), list(r[key])
        M = np.array([[iou(g, p) for p in pred] for g in given], dtype=np.float64).reshape(len(given), len(pred))
        p_score = np.array([_score(p) for p in pred], dtype=np.float64)
        ious.append((M, p_score))
        n_given += len(given)
        n_unmatched += int(np.sum(~np.any((M > 0) & (p_score > low)[None, :], axis=1)))
    miss = n_unmatched / n_given if n_given else 0.0
    unmatched_quality = miss / (miss + extra_label_rate) if miss + extra_label_rate > 0 else 1.0
    raw = []
    for (r, t), (M, p_score) in zip(zip(results, targets), ious):
        given, pred = list(t[key]), list(r[key])
        p_label = [p["label"] for p in pred]
        qualities, issues = [], []
        for j, g in enumerate(given):
            same = np.array([lab == g["label"] for lab in p_label], bool)
            row = M[j]
            considered = (p_score > low) & (row > 0)
            best_same = float(row[same & considered].max()) if np.any(same & considered) else 0.0
            others = (~same) & (p_score >= high) & (row > 0)
            if not np.any(considered) and not np.any(others):
                q = float(unmatched_quality)
                qualities.append(q)
                if q <= issue_threshold:
                    issues.append(ShapeIssue("spurious", q, j, g["label"], None, dict(g)))
                continue
            if np.any(others):
                m = int(np.flatnonzero(others)[row[others].argmax()])
                if row[m] > best_same:
                    q = 1.0 - float(row[m])
                    qualities.append(q)
                    if q <= issue_threshold:
                        issues.append(ShapeIssue("swapped", q, j, g["label"], p_label[m], dict(g), dict(pred[m])))
                    continue
            if np.any(same & considered):
                m = int(np.flatnonzero(same & considered)[row[same & considered].argmax()])
                q = best_same
                qualities.append(q)
                if q <= issue_threshold:
                    issues.append(ShapeIssue("badly_located", q, j, g["label"], g["label"], dict(g), dict(pred[m])))
        for m, p in enumerate(pred):
            if p_score[m] >= high and not np.any(M[:, m] > 0):
                q = 1.0 - float(p_score[m])
                qualities.append(q)
                if q <= issue_threshold:
                    issues.append(ShapeIssue("overlooked", q, suggested_label=p["label"], predicted=dict(p)))
        quality = min(qualities) if qualities else 1.0
        raw.append((quality, bool(issues), issues, _reason(issues, quality, issue_threshold)))
    return raw


def _cuboid_iou(a: Mapping, b: Mapping) -> float:
    from ml.geometry import cuboid_iou  # noqa: PLC0415

    # cheap reject: centres further apart than the sum of the half-diagonals
    d = math.dist(a["center"], b["center"])
    if d > 0.5 * (math.hypot(*a["size"]) + math.hypot(*b["size"])):
        return 0.0
    return cuboid_iou(a, b)


# ------------------------------------------------------------------------------------------ point segmentation


def _proba(i: int, r: Mapping, n_points: int, K: int, point_proba) -> np.ndarray:
    if point_proba is not None:
        P = np.asarray(point_proba[i], dtype=np.float64)
        if P.shape != (n_points, K):
            raise InvalidInput(f"point_proba[{i}] must be ({n_points}, {K}); got {list(P.shape)}",
                               code="invalid_input", details={"index": i})
    else:
        lab = np.asarray(r["point_labels"], dtype=np.int64)
        sc = np.asarray(r.get("point_scores", np.ones(len(lab))), dtype=np.float64)
        if lab.shape != (n_points,) or sc.shape != (n_points,):
            raise InvalidInput(f"prediction {i} has {len(lab)} points, its label {n_points}", code="invalid_input",
                               details={"index": i})
        if lab.min(initial=0) < 0 or lab.max(initial=0) >= K:
            raise InvalidInput(f"prediction {i} has point labels outside [0, {K})", code="invalid_input")
        sc = np.clip(sc, 1.0 / K, 1.0)
        P = np.repeat(((1.0 - sc) / max(K - 1, 1))[:, None], K, axis=1)
        P[np.arange(n_points), lab] = sc
    if not np.all(np.isfinite(P)):
        raise InvalidInput(f"point_proba[{i}] has NaN or infinite values", code="invalid_input")
    P = np.clip(P, 1e-9, None)
    return P / P.sum(axis=1, keepdims=True)


def _segmentation(results, targets, labels, *, point_proba, issue_threshold: float, min_issue_points: int) -> list:
    seg_filter = require("cleanlab.segmentation.filter", "label checks of point segmentation need cleanlab, an "
                         "optional dependency (AGPL-3.0)", install=INSTALL_HINT, package="cleanlab")
    from cleanlab.segmentation.rank import get_label_quality_scores  # noqa: PLC0415

    K = len(labels)
    if point_proba is not None and len(point_proba) != len(targets):
        raise InvalidInput(f"{len(point_proba)} point_proba arrays for {len(targets)} samples", code="invalid_input")
    given, probs, keep = [], [], []
    for i, (r, t) in enumerate(zip(results, targets)):
        y = np.asarray(t["point_labels"], dtype=np.int64)
        if y.size and (y.min() < -1 or y.max() >= K):
            raise InvalidInput(f"label {i} has point labels outside [-1, {K})", code="invalid_input",
                               details={"index": i})
        P = _proba(i, r, len(y), K, point_proba)
        k = np.flatnonzero(y >= 0)
        given.append(y[k])
        probs.append(P[k])
        keep.append(k)
    sizes = [len(y) for y in given]
    if sum(sizes) == 0:
        return [(1.0, False, [], "no labeled points") for _ in targets]
    Y = np.concatenate(given)
    PP = np.concatenate(probs)
    mask = np.asarray(seg_filter.find_label_issues(Y[None, None, :], PP.T[None, :, None, :], n_jobs=1,
                                                   verbose=False)).reshape(-1)
    bounds = np.cumsum([0] + sizes)
    raw = []
    for i in range(len(targets)):
        y, P, k = given[i], probs[i], keep[i]
        if len(y) == 0:
            raw.append((1.0, False, [], "no labeled points"))
            continue
        img, _ = get_label_quality_scores(y[None, None, :], P.T[None, :, None, :], verbose=False)
        quality = float(img[0])
        bad = np.flatnonzero(mask[bounds[i]: bounds[i + 1]])
        issues = []
        if len(bad):
            pred = P[bad].argmax(axis=1)
            for g, s in sorted({(int(y[b]), int(p)) for b, p in zip(bad, pred)}):
                sel = bad[(y[bad] == g) & (pred == s)]
                q = float(P[sel, g].mean())
                if q <= issue_threshold and len(sel) >= min_issue_points:
                    issues.append(ShapeIssue("mislabeled_points", q, label=labels[g], suggested_label=labels[s],
                                             points=tuple(int(x) for x in k[sel])))
        raw.append((quality, bool(issues), issues, _reason(issues, quality, issue_threshold)))
    return raw


# ------------------------------------------------------------------------------------------------------ entry


def label_issues(
    task_type: str,
    results: Sequence[Mapping[str, Any]],
    targets: Sequence[Mapping[str, Any]],
    labels: Sequence[str],
    *,
    point_proba: Sequence[np.ndarray] | None = None,
    low_probability_threshold: float = 0.5,
    high_probability_threshold: float = 0.95,
    issue_threshold: float = 0.5,
    extra_label_rate: float = 0.02,
    pixels: float = 100.0,
    min_issue_points: int = 5,
    use_cleanlab_filter: bool = True,
) -> list[ShapeFinding]:
    """One :class:`ShapeFinding` per sample, ranked most suspicious first (see the module docstring).

    ``results[i]``: the learner's out-of-sample prediction for sample i (``Predictions.results`` shape, with
    ``score``); ``targets[i]``: its given label (annotation shape); ``labels``: the project's label names in index
    order (point labels are indices into it). ``point_proba``: per cloud ``(P, C)`` probabilities
    (``Predictions.extra["point_proba"]``), point segmentation only. Predictions with score above
    ``low_probability_threshold`` count for location, those at or above ``high_probability_threshold`` for
    overlooked and swapped shapes (cleanlab's defaults; lower it for a learner whose scores are rarely that high).
    ``issue_threshold``: a shape whose quality is at most this is listed. ``extra_label_rate``: the prior rate of
    given regions/cuboids drawn where there is nothing (sets the quality of one no prediction overlaps).
    ``pixels``: the scale of 0-1 box coordinates for cleanlab.
    ``min_issue_points``: a (given, predicted) class pair with fewer flagged points than this in a cloud is
    not listed (scattered boundary points are the model's doubt, not a labeling mistake). ``use_cleanlab_filter``:
    detection's ``flagged`` also uses cleanlab's ``find_label_issues`` (a few seconds per thousand images;
    it starts a ``multiprocessing.Pool``, so inside a daemonic process such as a Celery prefork worker it is
    skipped and only ``issue_threshold`` flags).

    Raises :class:`ml.errors.InvalidInput` on shapes that do not fit and :class:`ml.errors.MissingDependency` when
    cleanlab is needed (detection, point segmentation) and not installed.
    """
    labels = _check_lists(task_type, results, targets, labels)
    low, high = float(low_probability_threshold), float(high_probability_threshold)
    if not 0.0 <= low <= high <= 1.0:
        raise InvalidInput("need 0 <= low_probability_threshold <= high_probability_threshold <= 1",
                           code="invalid_input", details={"low": low, "high": high})
    if task_type == "detection":
        raw = _detection(results, targets, labels, pixels=float(pixels), low=low, high=high,
                         issue_threshold=issue_threshold, use_filter=use_cleanlab_filter)
    elif task_type == "point_segmentation":
        raw = _segmentation(results, targets, labels, point_proba=point_proba, issue_threshold=issue_threshold,
                            min_issue_points=int(min_issue_points))
    elif task_type == "audio_regions":
        raw = _matching(results, targets, "regions", interval_iou, low=low, high=high,
                        issue_threshold=issue_threshold, extra_label_rate=float(extra_label_rate))
    else:
        raw = _matching(results, targets, "cuboids", _cuboid_iou, low=low, high=high,
                        issue_threshold=issue_threshold, extra_label_rate=float(extra_label_rate))
    return _finish(raw)
