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
    from ml.export import OnnxClassifier

    with default_storage.open(serving_file(model_version=model_version).name, "rb") as fh:
        session = OnnxClassifier(fh.read())
    runner = ModelRunner(model_id=model_version.pk, labels=list(model_version.labels), session=session)
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

