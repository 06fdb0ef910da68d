"""Loaded models: the per-process LRU of ONNX sessions and running the deployed model on contents.

The serving path is onnxruntime only; torch is never imported here. What needs the torch network itself
(evaluation, export, MC dropout) loads the checkpoint with :func:`apps.registry.selectors.model_checkpoint_load`.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.core.files.storage import default_storage

from apps.core.limits import content_limits
from apps.projects.models import Project
from apps.registry.models import ModelVersion
from apps.registry.selectors import current_deployment
from apps.registry.signals import predictions_made

_CACHE: "OrderedDict[int, ModelRunner]" = OrderedDict()
_LOCK = threading.Lock()
_CACHE_SIZE = 8


@dataclass
class ModelRunner:
    """A loaded model version. The built-in classification pipeline's versions run on model inputs
    (:func:`load_batch` arrays: ``predict_proba``, ``embed``); a learner's version (``ModelVersion.learner``)
    runs on the stored contents through its manifest's runner (``predict`` → :class:`ml.learners.Predictions`)."""

    model_id: int
    labels: list[str]
    session: object = None  # ml.export.OnnxClassifier (built-in classification)
    runner: object = None  # ml.learners.base.OnnxRunner (a learner's version)
    task_type: str = "classification"

    @property
    def is_learner(self) -> bool:
        return self.runner is not None

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.session.predict_proba(X)

    def embed(self, X: np.ndarray) -> np.ndarray:
        return self.session.embed(X)

    def predict(self, blobs: list[bytes]):
        """The learner's predictions for stored contents (results in the task type's shape, uncertainty, embedding)."""
        return self.runner.predict(blobs)


def serving_file(*, model_version):
    """The ONNX file serving runs: the int8 one when export chose int8, unless it was quantized with
    full-range weights (on a CPU with VNNI) and this CPU has no VNNI, where onnxruntime's int8 kernels
    saturate and predictions drift from fp32; then the fp32 file."""
    if model_version.runtime != "int8" or not model_version.onnx_int8:
        return model_version.onnx
    from ml.export import cpu_has_vnni

    int8 = (model_version.runtime_report or {}).get("int8") or {}
    if not int8.get("reduce_range") and cpu_has_vnni() is False:
        return model_version.onnx
    return model_version.onnx_int8


def model_runner(*, model_version, cache: bool = True) -> ModelRunner:
    """An ONNX session for the model version (its int8 file when export chose int8), cached per process (LRU).
    ``cache=False`` (one-off scoring of old versions) neither fills nor evicts the cache."""
    with _LOCK:
        runner = _CACHE.get(model_version.pk)
        if runner is not None:
            _CACHE.move_to_end(model_version.pk)
            return runner
    with default_storage.open(serving_file(model_version=model_version).name, "rb") as fh:
        data = fh.read()
    if model_version.manifest:
        from ml.learners.runners import onnx_runner

        runner = ModelRunner(model_id=model_version.pk, labels=list(model_version.labels),
                             runner=onnx_runner(data, model_version.manifest), task_type=model_version.task_type)
    else:
        from ml.export import OnnxClassifier

        runner = ModelRunner(model_id=model_version.pk, labels=list(model_version.labels), session=OnnxClassifier(data))
    if not cache:
        return runner
    with _LOCK:
        _CACHE[model_version.pk] = runner
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return runner


def current_model_runner(*, project) -> ModelRunner | None:
    deployment = current_deployment(project=project)
    if deployment is None:
        return None
    return model_runner(model_version=deployment.model_version)


def load_batch(modality: str, blobs: list[bytes]) -> np.ndarray:
    """Model input for a batch of validated contents (shapes per ml/ contract). The same caps as at
    ingest apply (a file:// sample was never validated); long audio is read in blocks."""
    # Long recordings (region projects) are cut to their loudest window for the model.
    from ml import modalities

    return modalities.get(modality).load_batch(
        blobs, content_limits(max_duration_s=settings.LOOPLAB["MAX_LONG_AUDIO_SECONDS"]))


def predict_contents(*, project: Project, blobs: list[bytes], sample_ids: list[int | None] | None = None) -> list[dict] | None:
    """Predict with the deployed model; None when nothing is deployed. Every prediction is logged (the
    ``predictions_made`` signal, which the serving app turns into PredictionLog rows)."""
    runner = current_model_runner(project=project)
    if runner is None:
        return None
    started = time.perf_counter()
    if runner.is_learner:
        results = learner_results(runner.predict(blobs), task_type=runner.task_type)
        latency_ms = (time.perf_counter() - started) * 1000.0 / max(1, len(blobs))
        for result in results:
            result.update(model=runner.model_id, latency_ms=round(latency_ms, 3))
        predictions_made.send(sender=ModelVersion, project=project, model_id=runner.model_id, results=results,
                              latency_ms=latency_ms, sample_ids=sample_ids)
        return results
    X = load_batch(project.modality, blobs)
    probs = runner.predict_proba(X)
    latency_ms = (time.perf_counter() - started) * 1000.0 / max(1, len(blobs))
    results = []
    for row in np.asarray(probs, dtype=np.float64):
        top = int(row.argmax())
        results.append({"label": runner.labels[top],
                        "scores": {name: round(float(p), 6) for name, p in zip(runner.labels, row)},
                        "confidence": float(row[top]), "model": runner.model_id, "latency_ms": round(latency_ms, 3)})
    predictions_made.send(sender=ModelVersion, project=project, model_id=runner.model_id, results=results,
                          latency_ms=latency_ms, sample_ids=sample_ids)
    return results


def learner_results(predictions, *, task_type: str) -> list[dict]:
    """A learner's results as the API returns them: the task type's shape with scores, ``uncertainty`` (higher =
    more worth labeling) and, for classification, ``confidence`` (the top score)."""
    out = []
    for result, uncertainty in zip(predictions.results, np.asarray(predictions.uncertainty, dtype=np.float64)):
        result = dict(result)
        if task_type == "classification" and result.get("scores"):
            result["confidence"] = float(max(result["scores"].values()))
        result["uncertainty"] = round(float(uncertainty), 6)
        out.append(result)
    return out
