"""The serving path: onnxruntime only. torch is never imported here."""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from django.core.files.storage import default_storage

from apps.serving.models import Deployment

_CACHE: "OrderedDict[int, ModelRunner]" = OrderedDict()
_LOCK = threading.Lock()
_CACHE_SIZE = 8


@dataclass
class ModelRunner:
    model_id: int
    labels: list[str]
    session: object  # ml.export.OnnxClassifier

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.session.predict_proba(X)

    def embed(self, X: np.ndarray) -> np.ndarray:
        return self.session.embed(X)


def current_deployment(*, project) -> Deployment | None:
    return Deployment.objects.filter(project=project).select_related("model_version").order_by("-id").first()


def model_runner(*, model_version) -> ModelRunner:
    """An ONNX session for the model version, cached per process (LRU)."""
    with _LOCK:
        runner = _CACHE.get(model_version.pk)
        if runner is not None:
            _CACHE.move_to_end(model_version.pk)
            return runner
    from ml.export import OnnxClassifier

    with default_storage.open(model_version.onnx.name, "rb") as fh:
        session = OnnxClassifier(fh.read())
    runner = ModelRunner(model_id=model_version.pk, labels=list(model_version.labels), session=session)
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


def drift_check_get(*, check_id):
    from apps.core.ids import get_by_id
    from apps.serving.models import DriftCheck

    return get_by_id(DriftCheck.objects.select_related("project", "model_version"), check_id, "Drift check")


def drift_checks_for_project(*, project):
    from apps.serving.models import DriftCheck

    return DriftCheck.objects.filter(project=project).select_related("model_version").order_by("-id")


def drift_check_witnesses(*, check) -> list[dict]:
    """The witnesses with what a lead needs to look at them, and their state now (labeled, flagged)."""
    from apps.samples.models import Sample

    found = Sample.objects.in_bulk([w["sample"] for w in check.witnesses])
    out = []
    for w in check.witnesses:
        s = found.get(w["sample"])
        if s is None:  # deleted since
            continue
        out.append({"sample": s.pk, "score": w["score"], "external_id": s.external_id,
                    "content_url": f"/api/v1/samples/{s.pk}/content/", "predicted_label": s.predicted_label,
                    "confidence": s.confidence, "labeled": s.label is not None, "drift_flagged": s.drift_flagged})
    return out
