"""The serving path: onnxruntime only. torch is never imported here."""
from __future__ import annotations

import datetime
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from django.core.files.storage import default_storage

from apps.serving.models import Deployment, DriftCheck

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


def drift_check_get(*, check_id):
    from apps.core.ids import get_by_id

    return get_by_id(DriftCheck.objects.select_related("project", "model_version"), check_id, "Drift check")


def drift_checks_for_project(*, project):
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


def drift_schedule_next(*, project, now=None) -> dict | None:
    """Where a project's scheduled checks stand: ``{"every_hours", "auto_flag", "window_start", "due_at"}``,
    or None when the project has no schedule. The next window starts where the last scheduled check's
    window ended (the first one looks back one interval) and is due once it is one interval long."""
    from django.utils import timezone

    from apps.serving.drift import MAX_WINDOW_HOURS  # noqa: PLC0415 (drift imports this module)

    if not project.drift_check_hours:
        return None
    now = now or timezone.now()
    every = datetime.timedelta(hours=project.drift_check_hours)
    last = (DriftCheck.objects.filter(project=project, trigger="schedule").order_by("-window_end")
            .values_list("window_end", flat=True).first())
    start = max(last or now - every, now - datetime.timedelta(hours=MAX_WINDOW_HOURS))
    return {"every_hours": project.drift_check_hours, "auto_flag": project.drift_auto_flag,
            "window_start": start, "due_at": start + every}


def drift_last_check(*, project) -> dict | None:
    """The latest finished check: id, window, trigger, drifted, p-value, flagged (None before the first)."""
    last = (DriftCheck.objects.filter(project=project, status="succeeded").order_by("-window_end", "-id").first())
    if last is None:
        return None
    return {"id": last.pk, "trigger": last.trigger, "window_start": last.window_start, "window_end": last.window_end,
            "drifted": (last.report or {}).get("drifted"), "p_value": (last.report or {}).get("p_value"),
            "flagged": last.flagged}


def drift_status(*, project) -> dict:
    """Drift monitoring at a glance: the latest finished check (``last``, :func:`drift_last_check`) and the
    schedule (:func:`drift_schedule_next`, None when off)."""
    return {"last": drift_last_check(project=project), "schedule": drift_schedule_next(project=project)}
