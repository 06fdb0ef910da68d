"""Each task type's reference metrics, shared by every learner of that task type (so two learners, or a learner
and an uploaded model, are compared on the same figures).

``evaluate(task_type, results, targets, labels, slices=None, **options)`` → :class:`ml.learners.base.EvalReport`.
``results`` are predicted results (the task type's shape with scores), ``targets`` the labels (the annotation
shape), both per sample in the same order. Task modules are imported on use:

- ``classification``: :mod:`ml.metrics.classification` (accuracy, macro-F1, per class; per sample: correct)
- ``detection``: :mod:`ml.metrics.detection` (COCO mAP@0.5 and @[.5:.95] per class by pycocotools)
- ``audio_regions``: :mod:`ml.metrics.regions` (event-based precision/recall/F1 with onset/offset tolerance)
- ``point_segmentation``: :mod:`ml.metrics.segmentation` (per-class IoU and mIoU over points)
- ``cuboids``: :mod:`ml.metrics.cuboids` (AP at 3D IoU with yaw)
"""
from __future__ import annotations

import importlib
from typing import Any, Mapping, Sequence

import numpy as np

from ml.errors import InvalidInput

__all__ = ["evaluate", "EVALUATORS", "class_masks"]

EVALUATORS = {
    "classification": "ml.metrics.classification:evaluate_classification",
    "detection": "ml.metrics.detection:evaluate_detection",
    "audio_regions": "ml.metrics.regions:evaluate_regions",
    "point_segmentation": "ml.metrics.segmentation:evaluate_segmentation",
    "cuboids": "ml.metrics.cuboids:evaluate_cuboids",
}


def evaluate(task_type: str, results: Sequence[Mapping[str, Any]], targets: Sequence[Mapping[str, Any]],
             labels: Sequence[str], slices: Mapping[str, np.ndarray] | None = None, **options):
    target = EVALUATORS.get(task_type)
    if target is None:
        raise InvalidInput(f"unknown task type {task_type!r}", code="invalid_task_type",
                           details={"task_type": task_type, "allowed": sorted(EVALUATORS)})
    if len(results) != len(targets):
        raise InvalidInput(f"{len(results)} results but {len(targets)} targets", code="invalid_input")
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)(results, targets, tuple(labels), dict(slices or {}),
                                                          **options)


_SHAPE_KEYS = {"detection": ("boxes", "polygons"), "audio_regions": ("regions",), "cuboids": ("cuboids",)}


def class_masks(task_type: str, targets: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> dict[str, np.ndarray]:
    """label → boolean mask of the samples whose target holds that class (a classification sample's label; a
    box, polygon, region or cuboid of that label; a point of that label): the per-class groups of
    :func:`ml.metrics.compare.compare_reports`."""
    if task_type == "classification":
        from ml.metrics.classification import class_masks as by_label

        return by_label(targets, labels)
    masks = {name: np.zeros(len(targets), dtype=bool) for name in labels}
    for i, target in enumerate(targets):
        if task_type == "point_segmentation":
            present = {int(v) for v in (target.get("point_labels") or []) if isinstance(v, int) and v >= 0}
            names = {labels[v] for v in present if v < len(labels)}
        else:
            names = {shape.get("label") for key in _SHAPE_KEYS.get(task_type, ()) for shape in target.get(key) or []
                     if isinstance(shape, Mapping)}
        for name in names & set(masks):
            masks[name][i] = True
    return masks
