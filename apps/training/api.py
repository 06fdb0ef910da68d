from __future__ import annotations

import hashlib
import json

from django.core.files.storage import default_storage
from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response

from apps.accounts.models import Role
from apps.core.api import IDEMPOTENCY_KEY, JobOut
from apps.core.errors import ErrorCode, PayloadTooLarge, ValidationFailed
from apps.core.services import idempotent_call, request_fingerprint
from apps.projects.views import JobCancelView, JobDetailView, JobListCreateView, ProjectScopedView
from apps.core.errors import NotFound
from apps.core.ids import get_by_id
from apps.registry.models import ModelVersion
from apps.training.models import TrainingRun
from apps.training.services import training_run_cancel, training_run_create
from apps.training.upload import max_upload_bytes, model_upload_create, upload_size_check


class TrainingRunIn(serializers.Serializer):
    epochs = serializers.IntegerField(min_value=1, max_value=500, required=False,
                                      help_text="default: the settings' for built-in classification, the learner's own otherwise")
    seed = serializers.IntegerField(min_value=0, default=0)
    learner = serializers.CharField(max_length=64, required=False,
                                    help_text="a learner registered for the project's modality and task type (e.g. an "
                                              "installed plug-in); default: the built-in one (see GET .../learners/)")
    params = serializers.DictField(required=False, help_text="the learner's constructor arguments")
    weights = serializers.DictField(
        required=False, help_text='training weights: {"classes": {label: w}, "slices": [{"where": {metadata '
                                  'predicate}, "weight": w}]}, e.g. night images x3; recorded on the model card')


class StepOut(JobOut):
    kind = serializers.CharField()
    result = serializers.JSONField()


class TrainingRunOut(JobOut):
    id = serializers.IntegerField()
    project = serializers.IntegerField(source="project_id")
    number = serializers.IntegerField()
    stage = serializers.CharField()
    model = serializers.IntegerField(source="model_id", allow_null=True)
    dataset_version = serializers.SerializerMethodField()
    config = serializers.DictField()
    steps = StepOut(many=True)

    def get_dataset_version(self, obj) -> dict:
        dv = obj.dataset_version
        return {"id": dv.pk, "number": dv.number, "digest": dv.digest, "counts": dv.counts,
                "last_label_at": dv.last_label_at}


class ModelOut(serializers.Serializer):
    id = serializers.IntegerField()
    project = serializers.IntegerField(source="project_id")
    version = serializers.IntegerField()
    task_type = serializers.CharField()
    learner = serializers.CharField(help_text='the learner that made it; "" for the built-in classification pipeline')
    manifest = serializers.JSONField(allow_null=True, help_text="what the ONNX file needs to run: task type, labels, "
                                                                "preprocessing, decoding")
    training_run = serializers.IntegerField(source="training_run_id")
    labels = serializers.ListField(child=serializers.CharField())
    history = serializers.JSONField()
    eval_report = serializers.JSONField(allow_null=True)
    baseline_model = serializers.IntegerField(source="baseline_model_id", allow_null=True)
    baseline_report = serializers.JSONField(allow_null=True)
    comparison = serializers.JSONField(allow_null=True)
    parity = serializers.JSONField(allow_null=True)
    runtime = serializers.CharField(help_text="what serving runs: fp32, or int8 when >= 1.2x faster with <= 1 point lost")
    runtime_report = serializers.JSONField(allow_null=True, help_text="fp32 vs int8: accuracy, agreement, latency "
                                                                      "at batch 1 and 64, and the decision's reason")
    curve = serializers.JSONField(allow_null=True, help_text="learning curve: this and earlier versions scored on "
                                                             "this version's test split")
    exported = serializers.SerializerMethodField()
    confusion_url = serializers.SerializerMethodField()
    selection = serializers.SerializerMethodField(help_text="the built-in pipeline's model choice on a small training "
                                                            "set: {chosen: probe|cnn, why, accuracies, method}")
    created_at = serializers.DateTimeField()

    def get_selection(self, obj) -> dict | None:
        return (obj.training_run.config or {}).get("selection") if obj.training_run_id else None

    def get_exported(self, obj) -> bool:
        return bool(obj.onnx)

    def get_confusion_url(self, obj) -> str | None:
        return f"/api/v1/models/{obj.pk}/confusion.png" if obj.confusion_png else None


def _runs(qs):
    return qs.select_related("dataset_version").prefetch_related("steps")


class TrainingRunListCreate(JobListCreateView):
    out, payload, scope, create_role = TrainingRunOut, TrainingRunIn, "training-runs", Role.LEAD
    list_summary = "Training runs, newest first"
    create_summary = "Freeze a dataset version and train → evaluate → export (→ deploy if the gate is on)"

    def jobs(self, project):
        return _runs(TrainingRun.objects.filter(project=project).order_by("-id"))[:50]

    def create(self, *, project, user, payload):
        return training_run_create(project=project, user=user, **payload.validated_data)

    def created(self, job) -> dict:
        return TrainingRunOut(_runs(TrainingRun.objects.filter(pk=job.pk)).get()).data


class TrainingRunDetail(JobDetailView):
    out = TrainingRunOut
    summary = "Follow a training run: status, progress, steps, model"

    def load(self, pk):
        return get_by_id(_runs(TrainingRun.objects), pk, "Training run")


class TrainingRunCancel(JobCancelView):
    out = TrainingRunOut
    load = TrainingRunDetail.load
    summary = "Cancel a training run (leads): the running step stops at its next progress point"

    def cancel(self, job):
        return training_run_cancel(run=job)



class LearnerOut(serializers.Serializer):
    name = serializers.CharField()
    default = serializers.BooleanField(help_text="the registry's default for the modality and task type")
    source = serializers.CharField(help_text="module:Class (a plug-in's package, or ml.learners for the built-ins)")
    params = serializers.DictField(help_text="constructor parameters and their defaults (pass changes as params)")


class LearnersOut(serializers.Serializer):
    task_type = serializers.CharField()
    modality = serializers.CharField()
    run_default = serializers.CharField(allow_null=True, help_text="what a run without 'learner' trains: a learner's "
                                        "name, or null for the built-in classification pipeline")
    learners = LearnerOut(many=True)


class LearnerList(ProjectScopedView):
    @extend_schema(responses=LearnersOut, summary="The learners a training run of this project can name "
                                                  "(built-in and installed plug-ins)")
    def get(self, request, project_id):
        from ml.learners import describe

        project = self.project(request, project_id)
        learners = describe(project.modality, project.task_type)
        run_default = None if project.task_type == "classification" else next(
            (entry["name"] for entry in learners if entry["default"]), None)
        return Response(LearnersOut({"task_type": project.task_type, "modality": project.modality,
                                     "run_default": run_default, "learners": learners}).data)


def _model(model_id) -> ModelVersion:
    return get_by_id(ModelVersion.objects.select_related("project"), model_id, "Model")


class ModelList(ProjectScopedView):
    @extend_schema(responses=ModelOut(many=True), summary="Model versions with their evaluation reports")
    def get(self, request, project_id):
        project = self.project(request, project_id)
        return Response(ModelOut(ModelVersion.objects.filter(project=project).order_by("-id"), many=True).data)


class ModelDetail(ProjectScopedView):
    @extend_schema(responses=ModelOut, summary="One model version: evaluation, comparison with the deployed model, parity")
    def get(self, request, model_id):
        mv = _model(model_id)
        self.check_object_project(request, mv)
        return Response(ModelOut(mv).data)


class ModelConfusion(ProjectScopedView):
    @extend_schema(responses={(200, "image/png"): bytes}, summary="The confusion matrix as a picture")
    def get(self, request, model_id):
        mv = _model(model_id)
        self.check_object_project(request, mv)
        if not mv.confusion_png:
            raise NotFound("This model has no evaluation picture.")
        with default_storage.open(mv.confusion_png.name, "rb") as fh:
            return HttpResponse(fh.read(), content_type="image/png")


MANIFEST_SLACK_BYTES = 2 * 1024 * 1024  # the manifest part (at most 1 M characters) and the multipart framing


class ModelUploadOut(serializers.Serializer):
    model = ModelOut()
    training_run = TrainingRunOut()


class ModelUpload(ProjectScopedView):
    """Bring your own model: a multipart POST of ``file`` (the .onnx) and ``manifest`` (a JSON object as a string:
    task_type, labels, preprocessing, decoding; see the README's "Bring your own model"). The file is checked in
    the request (size, parse and checker, no external data, opset allow-list, the manifest against the project's
    task type and labels, graph inputs/outputs, a test inference on a few of the project's samples): 202 with the
    model version and its run (evaluation on the test split queued, then the deploy gate), or 413 ``onnx_too_large``
    / 422 ``onnx_*`` with the reason, and nothing stored."""

    parser_classes = [MultiPartParser]

    @extend_schema(
        request={"multipart/form-data": {"type": "object", "required": ["file", "manifest"], "properties": {
            "file": {"type": "string", "format": "binary", "description": "the ONNX model (no external data)"},
            "manifest": {"type": "string", "description": "JSON object: task_type, labels (the project's, in the "
                                                         "order of the model's class axis), preprocessing/input, "
                                                         "decoding/params per task type"}}}},
        parameters=[IDEMPOTENCY_KEY], responses={202: ModelUploadOut},
        summary="Upload an ONNX model with its manifest (leads): validated now, then evaluated and gated")
    def post(self, request, project_id):
        project = self.project(request, project_id, Role.LEAD)
        declared = request.META.get("CONTENT_LENGTH")
        limit = max_upload_bytes()
        if declared and declared.isdigit() and int(declared) > limit + MANIFEST_SLACK_BYTES:
            # refused before the body is read: the file alone cannot fit
            raise PayloadTooLarge(f"the request is {int(declared):,} bytes; an ONNX file of at most {limit:,} bytes "
                                  f"is accepted (LOOPLAB_MAX_MODEL_UPLOAD_BYTES)", code=ErrorCode.ONNX_TOO_LARGE,
                                  details={"check": "onnx_too_large", "content_length": int(declared),
                                           "max_bytes": limit})
        upload = request.FILES.get("file")
        if upload is None:
            raise ValidationFailed("A model upload is multipart with a 'file' part (the .onnx) and a 'manifest' "
                                   "part (JSON).", code=ErrorCode.INVALID_BODY, details={"field": "file"})
        upload_size_check(upload.size)  # the parser spooled it to disk past FILE_UPLOAD_MAX_MEMORY_SIZE
        raw = request.data.get("manifest")
        if not isinstance(raw, str) or not raw.strip():
            raise ValidationFailed("The 'manifest' part (a JSON object) is missing.", code=ErrorCode.ONNX_MANIFEST,
                                   details={"check": "onnx_manifest", "path": "manifest"})
        try:
            manifest = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise ValidationFailed(f"manifest: not valid JSON: {str(exc)[:200]}", code=ErrorCode.ONNX_MANIFEST,
                                   details={"check": "onnx_manifest", "path": "manifest"}) from None
        model = upload.read()
        digest = hashlib.sha256(model).hexdigest()

        def call():
            run = model_upload_create(project=project, user=request.user, model=model, manifest=manifest,
                                      filename=upload.name or "model.onnx")
            run = _runs(TrainingRun.objects.filter(pk=run.pk)).get()
            return status.HTTP_202_ACCEPTED, {"model": ModelOut(ModelVersion.objects.get(pk=run.model_id)).data,
                                              "training_run": TrainingRunOut(run).data}

        code, body, replayed = idempotent_call(
            user=request.user, scope=f"model-upload:{project.pk}", key=request.headers.get("Idempotency-Key"),
            fingerprint=request_fingerprint(digest.encode() + raw.encode()), call=call)
        response = Response(body, status=code)
        if replayed:
            response["Idempotent-Replayed"] = "true"
        return response
