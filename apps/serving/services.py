from __future__ import annotations

from apps.core.errors import Conflict, ErrorCode
from apps.projects.models import Project
from apps.registry.runtime import predict_contents
from apps.samples import content as content_io
from apps.serving.models import PredictionLog


def predict_one(*, project: Project, data: bytes) -> dict:
    content_io.validate_content(project.modality, data)  # typed 4xx before the model sees it
    results = predict_contents(project=project, blobs=[data])
    if results is None:
        raise Conflict("No model is deployed for this project yet.", code=ErrorCode.NO_DEPLOYMENT)
    return results[0]


def prediction_logs_create(*, project: Project, model_id: int, results: list[dict], latency_ms: float,
                           sample_ids: list[int | None] | None = None) -> list[PredictionLog]:
    """One PredictionLog row per prediction of the deployed model (label, confidence, per-item latency)."""
    logs = [PredictionLog(project=project, model_version_id=model_id, label=r["label"], confidence=r["confidence"],
                          latency_ms=latency_ms, sample_id=sample_ids[i] if sample_ids else None)
            for i, r in enumerate(results)]
    return PredictionLog.objects.bulk_create(logs)
