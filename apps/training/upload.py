"""Bring your own model: an ONNX file a team trained elsewhere, with a small manifest, becomes a model version.

:func:`model_upload_create` validates the file and the manifest in the request (:func:`ml.learners.upload.
validate_upload`: size, parse and checker, no external data, opset allow-list, the manifest against the project's
task type and labels, the graph's inputs and outputs against the task type's runner, and a test inference on up to
``SAMPLE_CONTENTS`` of the project's own readable samples, made-up ones when it has none). A refusal is the ml
error, answered 413 (``onnx_too_large``) or 422 with its code and reason, and nothing is stored.

A file that passes becomes, in one transaction, a training run (``config["learner"] == "upload"``, the project's
labels frozen as for any run) whose train and export steps are recorded as done ("uploaded": training stays with the
team), and its model version (``learner="upload"``, the ONNX file and the normalised manifest, no checkpoint). Its
evaluate step is queued: the version is scored on the test split through its ONNX runner and compared with the
deployed model like any learner's (:func:`apps.training.learning.learner_evaluate`), then the gate decides. From
there it serves, pre-annotates, scores rounds by its uncertainty and embeds for drift like any learner version.
"""
from __future__ import annotations

import logging

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from apps.core.errors import ErrorCode, PayloadTooLarge, ValidationFailed
from apps.core.files import file_put
from apps.core.models import JobStatus
from apps.projects.models import Project
from apps.registry.services import model_version_create, model_version_update
from apps.samples import content as content_io
from apps.samples.models import Sample
from apps.training.learning import UPLOAD
from apps.training.models import PipelineStep, StepKind, TrainingRun
from apps.training.services import _enqueue, dataset_version_freeze

log = logging.getLogger(__name__)

SAMPLE_CONTENTS = 4  # the test inference runs on at most this many of the project's own samples
SAMPLE_CANDIDATES = 16  # samples tried to find them (one that cannot be read or decoded is skipped)


def max_upload_bytes() -> int:
    return int(settings.LOOPLAB["MAX_MODEL_UPLOAD_BYTES"])


def upload_size_check(size: int | None) -> None:
    """413 ``onnx_too_large`` for a file over LOOPLAB_MAX_MODEL_UPLOAD_BYTES, from its declared size, before
    anything reads it."""
    limit = max_upload_bytes()
    if size is not None and size > limit:
        raise PayloadTooLarge(f"the ONNX file is {size:,} bytes; at most {limit:,} are accepted "
                              f"(LOOPLAB_MAX_MODEL_UPLOAD_BYTES)", code=ErrorCode.ONNX_TOO_LARGE,
                              details={"check": "onnx_too_large", "size_bytes": int(size), "max_bytes": limit})


def upload_sample_contents(*, project: Project) -> list[bytes] | None:
    """Up to SAMPLE_CONTENTS of the project's stored samples that can be read and decoded (test split first, then
    the others, oldest first), for the upload's test inference; None when there are none."""
    from ml import modalities
    from ml.errors import MLError

    mod = modalities.get(project.modality)
    candidates = []
    for split in ("test", "val", "train"):
        candidates += list(Sample.objects.filter(project=project, split=split).order_by("id")
                           [:SAMPLE_CANDIDATES - len(candidates)])
        if len(candidates) >= SAMPLE_CANDIDATES:
            break
    out = []
    for sample in candidates:
        try:
            data = content_io.read_content(sample)
            mod.validate(data)
        except (content_io.ContentUnavailable, MLError) as exc:
            log.info("model upload: sample %s not used for the test inference: %s", sample.pk, exc)
            continue
        out.append(data)
        if len(out) == SAMPLE_CONTENTS:
            break
    return out or None


def upload_validate(*, project: Project, model: bytes, manifest):
    """The ml checks against this project: the manifest's task type and modality must be the project's and its
    labels the project's labels in the project's order (the model's class axis); the test inference runs on the
    project's samples. Returns :class:`ml.learners.upload.ValidatedUpload`; raises the ml error otherwise."""
    from ml.errors import InvalidInput
    from ml.learners.upload import validate_upload

    upload_size_check(len(model))
    if not isinstance(manifest, dict):
        raise ValidationFailed("The manifest must be a JSON object.", code=ErrorCode.ONNX_MANIFEST,
                               details={"check": "onnx_manifest", "path": "manifest"})
    task_type = manifest.get("task_type")
    if task_type != project.task_type:
        raise InvalidInput(f"manifest.task_type: the project's task type is {project.task_type!r}, the manifest "
                           f"says {str(task_type)[:40]!r}", code="onnx_manifest",
                           details={"check": "onnx_manifest", "path": "manifest.task_type",
                                    "expected": project.task_type})
    from ml.learners.upload import validate_manifest

    norm = validate_manifest(manifest, labels=list(project.labels))  # cheap: refuse before the file is parsed
    if list(norm["labels"]) != list(project.labels):
        # the model's class axis must be the project's label order: predictions, point labels, metrics, quotas
        # and the gate's comparison all index labels by position
        raise InvalidInput(f"manifest.labels: the model's classes must be in the project's order {list(project.labels)}"
                           f"; the manifest lists {list(norm['labels'])} (export the model with its outputs in the "
                           "project's order)", code="onnx_manifest",
                           details={"check": "onnx_manifest", "path": "manifest.labels",
                                    "expected": list(project.labels)})
    if norm.get("modality") != project.modality:
        raise InvalidInput(f"manifest: the model reads {norm.get('modality')!r} contents; the project holds "
                           f"{project.modality!r}", code="onnx_manifest",
                           details={"check": "onnx_manifest", "path": "manifest.preprocessing.modality",
                                    "expected": project.modality})
    return validate_upload(model, manifest, max_bytes=max_upload_bytes(),
                           sample_contents=upload_sample_contents(project=project), labels=list(project.labels))


def model_upload_create(*, project: Project, user, model: bytes, manifest, filename: str = "model.onnx") -> TrainingRun:
    """Validate an uploaded ONNX model and, when it passes, make its run and model version and queue its
    evaluation (module doc). Nothing is stored when a check fails."""
    checked = upload_validate(project=project, model=model, manifest=manifest)
    upload = {"sha256": checked.sha256, "filename": str(filename or "model.onnx")[:200], "size": checked.size_bytes}
    validation = {k: v for k, v in checked.to_dict().items() if k != "manifest"}
    name = None
    try:
        with transaction.atomic():
            Project.objects.select_for_update().filter(pk=project.pk).first()  # serialise run numbers
            dataset = dataset_version_freeze(project=project)
            number = (TrainingRun.objects.filter(project=project).aggregate(n=Max("number"))["n"] or 0) + 1
            now = timezone.now()
            run = TrainingRun.objects.create(
                project=project, number=number, dataset_version=dataset, created_by=user, stage=StepKind.EVALUATE,
                message="uploaded; evaluation queued", config={"learner": UPLOAD, "upload": upload})
            done = {"status": JobStatus.SUCCEEDED, "progress": 100.0, "started_at": now, "finished_at": now}
            PipelineStep.objects.bulk_create([
                PipelineStep(training_run=run, kind=StepKind.TRAIN, message="uploaded: trained by the team", **done,
                             result={"uploaded": True, **upload}),
                PipelineStep(training_run=run, kind=StepKind.EVALUATE),
                PipelineStep(training_run=run, kind=StepKind.EXPORT, message="uploaded: the team's ONNX file", **done,
                             result={"uploaded": True, "validation": validation}),
                PipelineStep(training_run=run, kind=StepKind.DEPLOY),
            ])
            name = file_put(name=f"models/{project.pk}/run{run.pk}/model.onnx", content=ContentFile(model))
            mv = model_version_create(project=project, training_run=run, labels=list(checked.manifest["labels"]),
                                      checkpoint="", history=[])
            model_version_update(model_version=mv, task_type=checked.task_type, learner=UPLOAD, onnx=name,
                                 manifest=dict(checked.manifest), runtime="fp32",
                                 runtime_report={"decision": {"runtime": "fp32", "reason": "an uploaded model "
                                                              "serves as uploaded"}, "validation": validation})
            TrainingRun.objects.filter(pk=run.pk).update(model=mv)
            _enqueue(run, StepKind.EVALUATE)
    except BaseException:
        if name is not None and default_storage.exists(name):
            default_storage.delete(name)  # the transaction rolled back: leave no file behind
        raise
    run.refresh_from_db()
    return run
