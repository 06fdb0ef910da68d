from __future__ import annotations

import base64
import binascii

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.response import Response

from apps.accounts.models import Role
from apps.projects.views import ProjectScopedView
from apps.core.errors import ErrorCode, NotFound, ValidationFailed
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
            raise NotFound("No model is deployed for this project yet.", code=ErrorCode.NO_DEPLOYMENT)
        return Response(DeploymentOut(deployment).data)

    @extend_schema(request=DeployIn, responses={201: DeploymentOut}, summary="Deploy a model version (leads)")
    def post(self, request, project_id):
        project = self.project(request, project_id, Role.LEAD)
        payload = DeployIn(data=request.data)
        payload.is_valid(raise_exception=True)
        mv = ModelVersion.objects.filter(pk=payload.validated_data["model"], project=project).first()
        if mv is None:
            raise ValidationFailed("No such model in this project.", code=ErrorCode.INVALID_MODEL)
        deployment = deployment_create(project=project, model_version=mv, user=request.user)
        return Response(DeploymentOut(deployment).data, status=status.HTTP_201_CREATED)


class PredictIn(serializers.Serializer):
    content = serializers.CharField(help_text="base64 of the file")


class PredictOut(serializers.Serializer):
    """The deployed model's result in the project's task type's shape (the annotation shapes plus scores)."""

    label = serializers.CharField(required=False, help_text="classification: the top label")
    scores = serializers.DictField(child=serializers.FloatField(), required=False,
                                   help_text="classification: label → probability")
    confidence = serializers.FloatField(required=False, help_text="classification: the top probability")
    boxes = serializers.ListField(child=serializers.DictField(), required=False,
                                  help_text="detection: {label, x, y, w, h, score}, coordinates 0-1")
    regions = serializers.ListField(child=serializers.DictField(), required=False,
                                    help_text="audio_regions: {label, start, end, score}, seconds")
    point_labels = serializers.ListField(child=serializers.IntegerField(), required=False,
                                         help_text="point_segmentation: the label index of every point")
    point_scores = serializers.ListField(child=serializers.FloatField(), required=False,
                                         help_text="point_segmentation: each point's probability of its label")
    cuboids = serializers.ListField(child=serializers.DictField(), required=False,
                                    help_text="cuboids: {label, center, size, yaw, score}")
    uncertainty = serializers.FloatField(required=False,
                                         help_text="a learner's per-sample uncertainty (higher = more worth labeling)")
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
                raise ValidationFailed("A multipart predict needs a 'file' part.", code=ErrorCode.INVALID_BODY)
            data = upload.read()
        else:
            payload = PredictIn(data=request.data)
            payload.is_valid(raise_exception=True)
            try:
                data = base64.b64decode(payload.validated_data["content"], validate=True)
            except (binascii.Error, ValueError):
                raise ValidationFailed("content is not valid base64.", code=ErrorCode.INVALID_BASE64)
        return Response(PredictOut(predict_one(project=project, data=data)).data)

