"""The project API (POST/GET projects/, GET/PATCH projects/{id}/). Its body aggregates over the apps: the
project's own fields, its drift settings (the drift monitor's, read and written through this app's selectors
and services), and, in the detail, counts by split (samples), the budget (labeling), the current deployment
(serving) and drift monitoring at a glance. Monitoring is the lowest app that sees all of them, so the views
live here; apps.projects keeps the project's own fields and rules (project_create, project_update)."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.models import Role
from apps.labeling.selectors import budget_summary
from apps.monitoring.selectors import drift_monitor_get, drift_status
from apps.monitoring.services import project_settings_update
from apps.projects.models import Modality, TaskType
from apps.projects.selectors import project_role, projects_for_user
from apps.projects.services import project_create
from apps.projects.views import ProjectScopedView
from apps.samples.selectors import sample_counts
from apps.registry.selectors import current_deployment


MAX_LABEL_BUDGET = 2**31 - 1  # Project.label_budget is a 32-bit integer column on PostgreSQL


class ProjectIn(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    modality = serializers.ChoiceField(choices=Modality.choices)
    task_type = serializers.ChoiceField(choices=TaskType.choices, default=TaskType.CLASSIFICATION)
    labels = serializers.ListField(child=serializers.CharField(max_length=100), min_length=1, max_length=1000)
    split_ratios = serializers.DictField(child=serializers.FloatField(), required=False)
    label_budget = serializers.IntegerField(min_value=0, max_value=MAX_LABEL_BUDGET, default=1000)
    confidence_threshold = serializers.FloatField(min_value=0.0, max_value=1.0, default=0.6)
    auto_deploy = serializers.BooleanField(default=False)
    annotations_per_task = serializers.IntegerField(min_value=1, max_value=10, default=1)


class ProjectPatchIn(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False)
    label_budget = serializers.IntegerField(min_value=0, max_value=MAX_LABEL_BUDGET, required=False)
    confidence_threshold = serializers.FloatField(min_value=0.0, max_value=1.0, required=False)
    auto_deploy = serializers.BooleanField(required=False)
    annotations_per_task = serializers.IntegerField(min_value=1, max_value=10, required=False)
    drift_check_hours = serializers.IntegerField(required=False, allow_null=True,
                                                 help_text="check production for drift every N hours (1..2160); "
                                                           "null turns the schedule off")
    drift_auto_flag = serializers.BooleanField(required=False, help_text="send a drifted check's witnesses back "
                                                                         "to labeling without asking")
    drift_webhook_url = serializers.CharField(required=False, allow_blank=True, max_length=500,
                                              help_text="POST a JSON alert here when a check finds drift "
                                                        "(empty: no alerts)")


class ProjectOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    modality = serializers.CharField()
    task_type = serializers.CharField()
    labels = serializers.ListField(child=serializers.CharField())
    split_ratios = serializers.DictField(child=serializers.FloatField())
    label_budget = serializers.IntegerField()
    confidence_threshold = serializers.FloatField()
    auto_deploy = serializers.BooleanField()
    annotations_per_task = serializers.IntegerField()
    drift_check_hours = serializers.IntegerField(allow_null=True)
    drift_auto_flag = serializers.BooleanField()
    drift_webhook_url = serializers.CharField(help_text="shown to leads and admins only")
    drift_webhook_secret = serializers.CharField(help_text="HMAC-SHA256 key of the alerts' X-Looplab-Signature "
                                                           "header; shown to leads and admins only")
    drift_webhook_secret_rotated_at = serializers.DateTimeField(
        allow_null=True, help_text="when the secret was last replaced (POST .../drift-webhook-secret/rotate/)")
    created_at = serializers.DateTimeField()


def _project_out(project, role) -> dict:
    monitor = drift_monitor_get(project=project)  # the drift_* fields are the project's drift monitor's
    data = ProjectOut({name: getattr(monitor if name.startswith("drift_") else project, name)
                       for name in ProjectOut().fields}).data
    if role == Role.ANNOTATOR:  # a webhook URL is a credential (Slack and the like): leads only
        data["drift_webhook_url"] = data["drift_webhook_secret"] = ""
    return data


def project_detail(project, user) -> dict:
    role = project_role(project=project, user=user)
    data = _project_out(project, role)
    deployment = current_deployment(project=project)
    data.update(role=role, budget=budget_summary(project=project),
                counts=sample_counts(project=project),
                deployment=({"id": deployment.pk, "model": deployment.model_version_id, "created_at": deployment.created_at,
                             "label_to_serving_s": deployment.label_to_serving_s} if deployment else None),
                drift=drift_status(project=project))
    return data


class ProjectListCreate(APIView):
    @extend_schema(responses=ProjectOut(many=True), summary="List the projects you are a member of")
    def get(self, request):
        return Response([_project_out(p, project_role(project=p, user=request.user))
                         for p in projects_for_user(user=request.user).select_related("drift_monitor")])

    @extend_schema(request=ProjectIn, responses={201: ProjectOut}, summary="Create a project (leads and admins)")
    def post(self, request):
        payload = ProjectIn(data=request.data)
        payload.is_valid(raise_exception=True)
        project = project_create(user=request.user, **payload.validated_data)
        return Response(project_detail(project, request.user), status=status.HTTP_201_CREATED)


class ProjectDetail(ProjectScopedView):
    @extend_schema(responses=ProjectOut, summary="A project with counts by split, budget and current deployment")
    def get(self, request, project_id):
        return Response(project_detail(self.project(request, project_id), request.user))

    @extend_schema(request=ProjectPatchIn, responses=ProjectOut, summary="Change budget, threshold, gate, drift schedule or name (leads)")
    def patch(self, request, project_id):
        project = self.project(request, project_id, Role.LEAD)
        payload = ProjectPatchIn(data=request.data)
        payload.is_valid(raise_exception=True)
        project = project_settings_update(project=project, **payload.validated_data)
        return Response(project_detail(project, request.user))
