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
    """One PredictionLog row per prediction of the deployed model (label, confidence, per-item latency). A result
    without one label (boxes, regions, points, cuboids) logs label "" and, as confidence, its shapes' top score
    (the mean point score for point segmentation; 0 when it found nothing)."""
    logs = [PredictionLog(project=project, model_version_id=model_id, label=r.get("label", ""),
                          confidence=_confidence(r), latency_ms=latency_ms,
                          sample_id=sample_ids[i] if sample_ids else None)
            for i, r in enumerate(results)]
    return PredictionLog.objects.bulk_create(logs)


def _confidence(result: dict) -> float:
    if "confidence" in result:
        return float(result["confidence"])
    if result.get("point_scores"):
        scores = result["point_scores"]
        return float(sum(scores) / len(scores))
    shapes = [s for key in ("boxes", "polygons", "regions", "cuboids") for s in result.get(key) or []]
    return float(max((s.get("score", 0.0) for s in shapes), default=0.0))
