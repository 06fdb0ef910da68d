"""Reads of the registry: which deployment serves, and a model version's torch checkpoint."""
from __future__ import annotations

from django.core.files.storage import default_storage

from apps.registry.models import Deployment, ModelVersion


def current_deployment(*, project) -> Deployment | None:
    return Deployment.objects.filter(project=project).select_related("model_version").order_by("-id").first()


def model_checkpoint_load(*, model_version: ModelVersion, device: str = "cpu"):
    """The model version's torch checkpoint as an ``ml.training.TrainedModel`` (``weights_only=True`` load).

    For what needs the torch network itself rather than its ONNX export: evaluation, export, and MC dropout
    (ONNX drops dropout at export)."""
    from ml.training import TrainedModel

    with default_storage.open(model_version.checkpoint.name, "rb") as fh:
        return TrainedModel.from_bytes(fh.read(), device=device)
