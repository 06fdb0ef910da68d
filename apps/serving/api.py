from __future__ import annotations

import base64
import binascii

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.response import Response

from apps.accounts.models import Role
from apps.core.api import IDEMPOTENCY_KEY, JobOut
from apps.projects.views import JobCancelView, JobDetailView, JobListCreateView, ProjectScopedView
from apps.core.errors import NotFound, ValidationFailed
from apps.registry.models import ModelVersion
from apps.registry.selectors import current_deployment
from apps.registry.services import deployment_create
from apps.serving.services import predict_one


class DeployIn(serializers.Serializer):
    model = serializers.IntegerField()


class DeploymentOut(serializers.Serializer):
    id = serializers.IntegerField()
    project = serializers.IntegerField(source="project_id")
    model = serializers.IntegerField(source="model_version_id")
    model_version = serializers.IntegerField(source="model_version.version")
    reason = serializers.CharField()
    deployed_by = serializers.CharField(source="deployed_by.username", allow_null=True, default=None)
    label_to_serving_s = serializers.FloatField(allow_null=True)
    created_at = serializers.DateTimeField()


class Deployments(ProjectScopedView):
    @extend_schema(responses=DeploymentOut, summary="The current deployment (404 no_deployment when none)")
    def get(self, request, project_id):
        project = self.project(request, project_id)
        deployment = current_deployment(project=project)
        if deployment is None:
            raise NotFound("No model is deployed for this project yet.", code="no_deployment")
        return Response(DeploymentOut(deployment).data)

    @extend_schema(request=DeployIn, responses={201: DeploymentOut}, summary="Deploy a model version (leads)")
    def post(self, request, project_id):
        project = self.project(request, project_id, Role.LEAD)
        payload = DeployIn(data=request.data)
        payload.is_valid(raise_exception=True)
        mv = ModelVersion.objects.filter(pk=payload.validated_data["model"], project=project).first()
        if mv is None:
            raise ValidationFailed("No such model in this project.", code="invalid_model")
        deployment = deployment_create(project=project, model_version=mv, user=request.user)
        return Response(DeploymentOut(deployment).data, status=status.HTTP_201_CREATED)


class PredictIn(serializers.Serializer):
    content = serializers.CharField(help_text="base64 of the file")


class PredictOut(serializers.Serializer):
    label = serializers.CharField()
    scores = serializers.DictField(child=serializers.FloatField())
    confidence = serializers.FloatField()
    model = serializers.IntegerField()
    latency_ms = serializers.FloatField()


class Predict(ProjectScopedView):
    parser_classes = [JSONParser, MultiPartParser]

    @extend_schema(request={"application/json": PredictIn,
                            "multipart/form-data": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}},
                   responses=PredictOut, summary="Predict with the deployed model (onnxruntime)")
    def post(self, request, project_id):
        project = self.project(request, project_id, Role.LEAD)
        if request.content_type.startswith("multipart/"):
            upload = request.FILES.get("file")
            if upload is None:
                raise ValidationFailed("A multipart predict needs a 'file' part.", code="invalid_body")
            data = upload.read()
        else:
            payload = PredictIn(data=request.data)
            payload.is_valid(raise_exception=True)
            try:
                data = base64.b64decode(payload.validated_data["content"], validate=True)
            except (binascii.Error, ValueError):
                raise ValidationFailed("content is not valid base64.", code="invalid_base64")
        return Response(PredictOut(predict_one(project=project, data=data)).data)


class DriftCheckIn(serializers.Serializer):
    window_hours = serializers.FloatField(required=False, help_text="production: samples pushed in the last N hours "
                                                                    "(default 24)")
    since = serializers.DateTimeField(required=False, help_text="or: samples pushed since this time")


class DriftCheckOut(JobOut):
    id = serializers.IntegerField()
    project = serializers.IntegerField(source="project_id")
    model = serializers.IntegerField(source="model_version_id")
    model_version = serializers.IntegerField(source="model_version.version")
    trigger = serializers.CharField(help_text="manual (a lead asked) or schedule (the project's drift_check_hours)")
    window_start = serializers.DateTimeField()
    window_end = serializers.DateTimeField()
    drifted = serializers.SerializerMethodField()
    p_value = serializers.SerializerMethodField()
    flagged = serializers.IntegerField()
    flagged_at = serializers.DateTimeField(allow_null=True)
    alert_status = serializers.CharField(help_text='webhook alert: "" (none), "sending", "sent" or "failed"')
    alert_attempts = serializers.IntegerField()
    alert_error = serializers.CharField()
    alert_sent_at = serializers.DateTimeField(allow_null=True)

    def get_drifted(self, obj) -> bool | None:
        return (obj.report or {}).get("drifted")

    def get_p_value(self, obj) -> float | None:
        return (obj.report or {}).get("p_value")


class WitnessOut(serializers.Serializer):
    sample = serializers.IntegerField()
    score = serializers.FloatField(help_text="how unlike the reference: the MMD witness value (how much more production "
                                             "has here), or, when the report's statistic is novelty, the distance "
                                             "to the nearest reference sample")
    external_id = serializers.CharField()
    content_url = serializers.CharField()
    predicted_label = serializers.CharField(allow_null=True)
    confidence = serializers.FloatField(allow_null=True)
    labeled = serializers.BooleanField()
    drift_flagged = serializers.BooleanField()


class DriftCheckDetailOut(DriftCheckOut):
    report = serializers.DictField(allow_null=True, help_text="ml.drift.DriftReport: MMD and novelty test, PSI, slices")
    witnesses = WitnessOut(many=True)


class DriftCheckListCreate(JobListCreateView):
    min_role = Role.LEAD
    out, payload, scope = DriftCheckOut, DriftCheckIn, "drift-checks"

    def jobs(self, project):
        from apps.serving.selectors import drift_checks_for_project

        return drift_checks_for_project(project=project)[:50]

    def create(self, *, project, user, payload):
        from apps.serving.drift import drift_check_create

        return drift_check_create(project=project, user=user, **payload.validated_data)

    @extend_schema(responses=DriftCheckOut(many=True), summary="A project's drift checks, newest first (leads)")
    def get(self, request, project_id):
        return self.list_response(request, project_id)

    @extend_schema(request=DriftCheckIn, responses={202: DriftCheckOut}, parameters=[IDEMPOTENCY_KEY],
                   summary="Compare the last hours of production with the serving model's training data (a job)")
    def post(self, request, project_id):
        return self.create_response(request, project_id)


class DriftCheckDetail(JobDetailView):
    min_role = Role.LEAD

    def load(self, pk):
        from apps.serving.selectors import drift_check_get

        return drift_check_get(check_id=pk)

    def detail(self, job) -> dict:
        from apps.serving.selectors import drift_check_witnesses

        job.witnesses = drift_check_witnesses(check=job)
        return DriftCheckDetailOut(job).data

    @extend_schema(responses=DriftCheckDetailOut, summary="A drift check: status, progress, report and witnesses")
    def get(self, request, check_id):
        return self.detail_response(request, check_id)


class DriftCheckCancel(JobCancelView):
    out = DriftCheckOut

    def load(self, pk):
        from apps.serving.selectors import drift_check_get

        return drift_check_get(check_id=pk)

    @extend_schema(request=None, responses={200: DriftCheckOut, 202: DriftCheckOut},
                   summary="Cancel a drift check (leads): queued ends now, running stops at its next progress point")
    def post(self, request, check_id):
        return super().post(request, check_id)


class DriftCheckFlagOut(serializers.Serializer):
    flagged = serializers.IntegerField(help_text="samples flagged by this call (0 when repeated)")
    check = DriftCheckOut()


class DriftCheckFlag(ProjectScopedView):
    min_role = Role.LEAD

    @extend_schema(request=None, responses=DriftCheckFlagOut,
                   summary="Send the check's witnesses back to labeling: the next round takes them first")
    def post(self, request, check_id):
        from apps.serving.drift import drift_check_flag
        from apps.serving.selectors import drift_check_get

        check = drift_check_get(check_id=check_id)
        self.check_object_project(request, check)
        n = drift_check_flag(check=check)
        return Response({"flagged": n, "check": DriftCheckOut(check).data})
