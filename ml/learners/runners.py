"""An ONNX model and its manifest → the :class:`ml.learners.base.OnnxRunner` that predicts with it.

What a runner needs to know lives in the manifest an exported learner writes next to its graph (task type, labels,
preprocessing, decoding), so serving, rounds and drift run any model version through onnxruntime without torch and
without knowing which learner made it. The runner is chosen by the manifest's task type (and, for point clouds, the
decoding the learner class owns); a manifest whose task type has no runner is refused with ``unsupported_task_type``.
"""
from __future__ import annotations

from typing import Any, Mapping

from ml.errors import InvalidInput
from ml.learners.base import TASK_TYPES, OnnxRunner

__all__ = ["onnx_runner"]


def onnx_runner(model: bytes, manifest: Mapping[str, Any]) -> OnnxRunner:
    """A ready runner for ``model`` (the ONNX file's bytes) described by ``manifest`` (a learner's
    :attr:`OnnxExport.manifest`)."""
    task_type = manifest.get("task_type") if isinstance(manifest, Mapping) else None
    if task_type not in TASK_TYPES:
        raise InvalidInput(f"the manifest's task type {task_type!r} is not one of {', '.join(TASK_TYPES)}",
                           code="unsupported_task_type", details={"task_type": str(task_type)[:50]})
    if task_type == "classification":
        from ml.learners.classification import ClassificationRunner

        return ClassificationRunner(model, manifest)
    if task_type == "detection":
        from ml.learners.detection import OnnxDetectionRunner

        return OnnxDetectionRunner(model, manifest)
    if task_type == "audio_regions":
        from ml.learners.regions import RegionOnnxRunner

        return RegionOnnxRunner(model, manifest)
    from ml.learners._points import PointOnnxRunner

    if task_type == "point_segmentation":
        from ml.learners.segmentation import PointNetSegmentationLearner as decoder
    else:
        from ml.learners.cuboids import SegmentFitCuboidLearner as decoder
    return PointOnnxRunner(decoder, model, manifest)
