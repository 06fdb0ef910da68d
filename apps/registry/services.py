"""Writes of the registry: model versions (written by training) and deployments (by a lead or the gate)."""
from __future__ import annotations

from django.db import transaction
from django.db.models import Max

from apps.core.errors import Conflict, ErrorCode
from apps.projects.models import Project
from apps.registry.models import Deployment, ModelVersion
from apps.registry.runtime import model_runner


def model_version_create(*, project: Project, training_run, labels: list[str], checkpoint: str,
                         history: list) -> ModelVersion:
    """The model version a training run made: the next version number of the project (numbers are serialised
    on the project row), or the one an earlier attempt of the same run created, updated, so a rerun of the
    training step never makes a second version."""
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=project.pk).first()  # serialise version numbers
        mv = ModelVersion.objects.filter(training_run=training_run).first()
        if mv is None:
            version = (ModelVersion.objects.filter(project=project).aggregate(n=Max("version"))["n"] or 0) + 1
            mv = ModelVersion(project=project, training_run=training_run, version=version)
        mv.modality, mv.labels, mv.checkpoint, mv.history = project.modality, list(labels), checkpoint, history
        mv.save()
    return mv


def model_version_update(*, model_version: ModelVersion, **fields) -> ModelVersion:
    """Record what a later step learned about a model version (evaluation, export): only the fields given
    are written."""
    for name, value in fields.items():
        setattr(model_version, name, value)
    model_version.save(update_fields=list(fields))
    return model_version


def deployment_create(*, project: Project, model_version, user=None, reason: str = "manual") -> Deployment:
    if model_version.project_id != project.pk:
        raise Conflict("That model belongs to another project.", code=ErrorCode.MODEL_NOT_IN_PROJECT)
    if not model_version.onnx:
        raise Conflict("This model has no ONNX export yet; wait for its training run to finish.",
                       code=ErrorCode.MODEL_NOT_READY, details={"model": model_version.pk})
    model_runner(model_version=model_version)  # load (and check) the ONNX session before it takes traffic
    with transaction.atomic():
        deployment = Deployment.objects.create(project=project, model_version=model_version, deployed_by=user, reason=reason)
        last_label_at = model_version.training_run.dataset_version.last_label_at
        if last_label_at:
            deployment.label_to_serving_s = (deployment.created_at - last_label_at).total_seconds()
            deployment.save(update_fields=["label_to_serving_s"])
    return deployment
