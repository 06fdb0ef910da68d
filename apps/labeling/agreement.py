"""Agreement between annotators on tasks with two or more (not rejected) annotations.

Per pair of annotations of one task, a score in 0..1 by task type:
- classification: 1 if the labels are equal else 0; the project-level figure is Cohen's kappa when
  exactly two annotators labeled every multi-annotated task, else Fleiss' kappa (varying raters per
  task allowed: each task's agreement uses its own number of ratings).
- detection: boxes (and polygons, as their bounding boxes) are matched one-to-one within each label by
  the Hungarian algorithm on IoU (scipy.optimize.linear_sum_assignment); the score is the summed IoU of
  the matches divided by the larger shape count (unmatched shapes count 0). Both empty: 1.
- audio_regions: per label, IoU of the union of time spans (seconds covered by both / by either),
  averaged over the labels either annotator used; a clip label, when present, counts as one more
  term (1 equal, 0 not). Both empty: 1.
- point_segmentation: the fraction of points with the same label index (-1 included).
- cuboids: 3D IoU of yaw-rotated boxes (exact polygon intersection of the rotated bird's-eye-view
  rectangles times the overlap of the vertical extents; ml.geometry.cuboid_iou), matched within labels like boxes.
Per task: the mean over its annotation pairs. Per annotator: the mean over the pairs they are part of
(classification also gives Cohen's kappa of the annotator against the others on shared tasks).
"""
from __future__ import annotations

import itertools
from collections import defaultdict

import numpy as np

from apps.labeling.models import Annotation, ReviewStatus
from apps.labeling.results import shapes_as_boxes
from ml.geometry import cuboid_iou

# -- kappas ---------------------------------------------------------------------------------------


def cohen_kappa(a: list, b: list) -> float | None:
    """Cohen's kappa of two raters over the same items; None when undefined (no items)."""
    if len(a) != len(b) or not a:
        return None
    cats = sorted(set(a) | set(b), key=str)
    index = {c: i for i, c in enumerate(cats)}
    m = np.zeros((len(cats), len(cats)))
    for x, y in zip(a, b):
        m[index[x], index[y]] += 1
    n = m.sum()
    po = np.trace(m) / n
    pe = float((m.sum(axis=1) / n) @ (m.sum(axis=0) / n))
    if pe >= 1.0:
        return 1.0 if po >= 1.0 else 0.0
    return float((po - pe) / (1 - pe))


def fleiss_kappa(ratings: list[list]) -> float | None:
    """Fleiss' kappa over items, each a list of the labels its raters gave (>= 2 per item)."""
    items = [r for r in ratings if len(r) >= 2]
    if not items:
        return None
    cats = sorted({c for r in items for c in r}, key=str)
    index = {c: i for i, c in enumerate(cats)}
    counts = np.zeros((len(items), len(cats)))
    for i, r in enumerate(items):
        for c in r:
            counts[i, index[c]] += 1
    n_i = counts.sum(axis=1)
    p_i = ((counts ** 2).sum(axis=1) - n_i) / (n_i * (n_i - 1))
    p_bar = p_i.mean()
    p_j = counts.sum(axis=0) / counts.sum()
    pe = float((p_j ** 2).sum())
    if pe >= 1.0:
        return 1.0 if p_bar >= 1.0 else 0.0
    return float((p_bar - pe) / (1 - pe))


# -- pair scores per task type --------------------------------------------------------------------

def box_iou(a: dict, b: dict) -> float:
    ix = max(0.0, min(a["x"] + a["w"], b["x"] + b["w"]) - max(a["x"], b["x"]))
    iy = max(0.0, min(a["y"] + a["h"], b["y"] + b["h"]) - max(a["y"], b["y"]))
    inter = ix * iy
    union = a["w"] * a["h"] + b["w"] * b["h"] - inter
    return inter / union if union > 0 else 0.0


def matched_score(a: list, b: list, iou) -> float:
    """Hungarian matching within labels; summed IoU over the larger count. Both empty → 1."""
    if not a and not b:
        return 1.0
    from scipy.optimize import linear_sum_assignment

    total = 0.0
    for label in {s["label"] for s in a} | {s["label"] for s in b}:
        aa = [s for s in a if s["label"] == label]
        bb = [s for s in b if s["label"] == label]
        if not aa or not bb:
            continue
        m = np.array([[iou(x, y) for y in bb] for x in aa])
        rows, cols = linear_sum_assignment(-m)
        total += float(m[rows, cols].sum())
    return total / max(len(a), len(b))


def detection_pair(a: dict, b: dict) -> float:
    return matched_score(shapes_as_boxes(a), shapes_as_boxes(b), box_iou)


def _union_length(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[list[float]] = []
    for s, e in sorted(spans):
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    return [(s, e) for s, e in merged]


def _length(spans) -> float:
    return sum(e - s for s, e in spans)


def _intersection(a, b) -> float:
    total, i, j = 0.0, 0, 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        total += max(0.0, hi - lo)
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return total


def span_iou(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> float:
    ua, ub = _union_length(a), _union_length(b)
    inter = _intersection(ua, ub)
    union = _length(ua) + _length(ub) - inter
    return inter / union if union > 0 else 1.0


def regions_pair(a: dict, b: dict) -> float:
    ra, rb = a.get("regions", []), b.get("regions", [])
    terms = []
    for label in sorted({r["label"] for r in ra} | {r["label"] for r in rb}):
        terms.append(span_iou([(r["start"], r["end"]) for r in ra if r["label"] == label],
                              [(r["start"], r["end"]) for r in rb if r["label"] == label]))
    if "label" in a or "label" in b:
        terms.append(1.0 if a.get("label") == b.get("label") else 0.0)
    return float(np.mean(terms)) if terms else 1.0


def points_pair(a: dict, b: dict) -> float:
    la, lb = np.asarray(a["point_labels"]), np.asarray(b["point_labels"])
    if la.shape != lb.shape:
        return 0.0
    return float((la == lb).mean()) if la.size else 1.0


def cuboids_pair(a: dict, b: dict) -> float:
    return matched_score(a.get("cuboids", []), b.get("cuboids", []), cuboid_iou)


def classification_pair(a: dict, b: dict) -> float:
    return 1.0 if a.get("label") == b.get("label") else 0.0


PAIR_SCORES = {"classification": classification_pair, "detection": detection_pair, "audio_regions": regions_pair,
               "point_segmentation": points_pair, "cuboids": cuboids_pair}
METRICS = {"classification": "label agreement (kappa overall)", "detection": "mean IoU of matched shapes",
           "audio_regions": "time-span IoU per label", "point_segmentation": "fraction of points with equal labels",
           "cuboids": "3D IoU of yaw-rotated cuboids"}


# -- a project's agreement ------------------------------------------------------------------------

def agreement_compute(*, task_type: str, tasks: list[tuple[int, list[tuple[str, dict]]]]) -> dict:
    """``tasks``: [(task id, [(annotator, result), ...]), ...] → per_task, per_annotator, overall."""
    pair = PAIR_SCORES[task_type]
    per_task, by_annotator = [], defaultdict(list)
    cls_pairs = defaultdict(lambda: ([], []))  # annotator -> (their labels, the other's labels)
    ratings, raters = [], set()
    for task_id, anns in tasks:
        if len(anns) < 2:
            continue
        scores = []
        for (ua, ra), (ub, rb) in itertools.combinations(anns, 2):
            s = pair(ra, rb)
            scores.append(s)
            by_annotator[ua].append(s)
            by_annotator[ub].append(s)
            if task_type == "classification":
                cls_pairs[ua][0].append(ra["label"]); cls_pairs[ua][1].append(rb["label"])  # noqa: E702
                cls_pairs[ub][0].append(rb["label"]); cls_pairs[ub][1].append(ra["label"])  # noqa: E702
        row = {"task": task_id, "annotators": [u for u, _ in anns], "n": len(anns), "score": float(np.mean(scores))}
        if task_type == "classification":
            ratings.append([r["label"] for _, r in anns])
            raters.add(tuple(sorted(u for u, _ in anns)))
            row["labels"] = ratings[-1]
        per_task.append(row)
    per_annotator = []
    for user, scores in sorted(by_annotator.items()):
        row = {"annotator": user, "pairs": len(scores), "score": float(np.mean(scores))}
        if task_type == "classification":
            row["kappa"] = cohen_kappa(*cls_pairs[user])
        per_annotator.append(row)
    overall = {"metric": METRICS[task_type], "tasks": len(per_task),
               "score": float(np.mean([r["score"] for r in per_task])) if per_task else None}
    if task_type == "classification" and ratings:
        if len(raters) == 1 and len(next(iter(raters))) == 2:
            first, second = next(iter(raters))
            order = [dict((u, r["label"]) for u, r in anns) for _, anns in tasks if len(anns) >= 2]
            overall.update(kappa=cohen_kappa([o[first] for o in order], [o[second] for o in order]), kappa_kind="cohen")
        else:
            overall.update(kappa=fleiss_kappa(ratings), kappa_kind="fleiss")
    return {"per_task": per_task, "per_annotator": per_annotator, "overall": overall}


def project_agreement(*, project) -> dict:
    """Agreement over the project's tasks with >= 2 annotations that were not rejected in review."""
    grouped: dict[int, list] = defaultdict(list)
    rows = (Annotation.objects.filter(task__project=project).exclude(review_status=ReviewStatus.REJECTED)
            .select_related("annotator").order_by("task_id", "id"))
    for ann in rows.iterator(chunk_size=500):
        user = ann.annotator.username if ann.annotator else f"deleted-{ann.pk}"
        grouped[ann.task_id].append((user, ann.result))
    tasks = [(task_id, anns) for task_id, anns in grouped.items() if len(anns) >= 2]
    result = agreement_compute(task_type=project.task_type, tasks=tasks)
    result["task_type"] = project.task_type
    return result
