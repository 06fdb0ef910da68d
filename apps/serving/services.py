from __future__ import annotations

import time

import numpy as np
from django.db import transaction

from apps.core.errors import Conflict
from apps.projects.models import Project
from apps.samples import content as content_io
from apps.serving.models import Deployment, PredictionLog
from apps.serving.selectors import current_model_runner, model_runner


def deployment_create(*, project: Project, model_version, user=None, reason: str = "manual") -> Deployment:
    if model_version.project_id != project.pk:
        raise Conflict("That model belongs to another project.", code="model_not_in_project")
    if not model_version.onnx:
        raise Conflict("This model has no ONNX export yet; wait for its training run to finish.",
                       code="model_not_ready", details={"model": model_version.pk})
    model_runner(model_version=model_version)  # load (and check) the ONNX session before it takes traffic
    with transaction.atomic():
        deployment = Deployment.objects.create(project=project, model_version=model_version, deployed_by=user, reason=reason)
        last_label_at = model_version.training_run.dataset_version.last_label_at
        if last_label_at:
            deployment.label_to_serving_s = (deployment.created_at - last_label_at).total_seconds()
            deployment.save(update_fields=["label_to_serving_s"])
    return deployment


def predict_contents(*, project: Project, blobs: list[bytes], sample_ids: list[int | None] | None = None) -> list[dict] | None:
    """Predict with the deployed model; None when nothing is deployed. Every prediction is logged."""
    runner = current_model_runner(project=project)
    if runner is None:
        return None
    started = time.perf_counter()
    X = content_io.load_batch(project.modality, blobs)
    probs = runner.predict_proba(X)
    latency_ms = (time.perf_counter() - started) * 1000.0 / max(1, len(blobs))
    results, logs = [], []
    for i, row in enumerate(np.asarray(probs, dtype=np.float64)):
        top = int(row.argmax())
        label = runner.labels[top]
        results.append({"label": label, "scores": {name: round(float(p), 6) for name, p in zip(runner.labels, row)},
                        "confidence": float(row[top]), "model": runner.model_id, "latency_ms": round(latency_ms, 3)})
        logs.append(PredictionLog(project=project, model_version_id=runner.model_id, label=label,
                                  confidence=float(row[top]), latency_ms=latency_ms,
                                  sample_id=sample_ids[i] if sample_ids else None))
    PredictionLog.objects.bulk_create(logs)
    return results


def predict_one(*, project: Project, data: bytes) -> dict:
    content_io.validate_content(project.modality, data)  # typed 4xx before the model sees it
    results = predict_contents(project=project, blobs=[data])
    if results is None:
        raise Conflict("No model is deployed for this project yet.", code="no_deployment")
    return results[0]
