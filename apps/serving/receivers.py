"""Receivers of the registry's signals (the registry is below serving and cannot call it)."""
from __future__ import annotations

from apps.serving.services import prediction_logs_create


def predictions_log(sender, *, project, model_id, results, latency_ms, sample_ids, **kwargs) -> None:
    """``apps.registry.signals.predictions_made``: log each prediction."""
    prediction_logs_create(project=project, model_id=model_id, results=results, latency_ms=latency_ms,
                           sample_ids=sample_ids)
