"""The drift API: a project's drift checks (jobs), their witnesses sent back to labeling, and the signing
secret of the drift alerts. The project's drift settings are part of the project body (project_api)."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from apps.accounts.models import Role
from apps.core.api import JobOut
from apps.monitoring.drift import drift_check_create, drift_check_flag
from apps.monitoring.selectors import drift_check_get, drift_check_witnesses, drift_checks_for_project
from apps.monitoring.services import WEBHOOK_SECRET_OVERLAP, drift_monitor_webhook_secret_rotate
from apps.projects.views import JobCancelView, JobDetailView, JobListCreateView, ProjectScopedView


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
    list_summary = "A project's drift checks, newest first (leads)"
    create_summary = "Compare the last hours of production with the serving model's training data (a job)"

    def jobs(self, project):
        return drift_checks_for_project(project=project)[:50]

    def create(self, *, project, user, payload):
        return drift_check_create(project=project, user=user, **payload.validated_data)


class DriftCheckDetail(JobDetailView):
    min_role = Role.LEAD
    out = DriftCheckDetailOut
    summary = "A drift check: status, progress, report and witnesses"

    def load(self, pk):
        return drift_check_get(check_id=pk)

    def detail(self, job) -> dict:
        job.witnesses = drift_check_witnesses(check=job)
        return DriftCheckDetailOut(job).data


class DriftCheckCancel(JobCancelView):
    out = DriftCheckOut
    load = DriftCheckDetail.load
    summary = "Cancel a drift check (leads): queued ends now, running stops at its next progress point"


class DriftCheckFlagOut(serializers.Serializer):
    flagged = serializers.IntegerField(help_text="samples flagged by this call (0 when repeated)")
    check = DriftCheckOut()


class DriftCheckFlag(ProjectScopedView):
    min_role = Role.LEAD

    @extend_schema(request=None, responses=DriftCheckFlagOut,
                   summary="Send the check's witnesses back to labeling: the next round takes them first")
    def post(self, request, check_id):
        check = drift_check_get(check_id=check_id)
        self.check_object_project(request, check)
        n = drift_check_flag(check=check)
        return Response({"flagged": n, "check": DriftCheckOut(check).data})


class WebhookSecretOut(serializers.Serializer):
    drift_webhook_secret = serializers.CharField(help_text="the new HMAC-SHA256 key of X-Looplab-Signature")
    drift_webhook_secret_rotated_at = serializers.DateTimeField()
    previous_signed_until = serializers.DateTimeField(
        help_text="until then alerts also carry X-Looplab-Signature-Previous, made with the old secret")


class ProjectWebhookSecretRotate(ProjectScopedView):
    @extend_schema(request=None, responses=WebhookSecretOut,
                   summary="Replace the drift alerts' signing secret; the old one still signs for a day (leads)")
    def post(self, request, project_id):
        monitor = drift_monitor_webhook_secret_rotate(project=self.project(request, project_id, Role.LEAD))
        return Response(WebhookSecretOut({
            "drift_webhook_secret": monitor.drift_webhook_secret,
            "drift_webhook_secret_rotated_at": monitor.drift_webhook_secret_rotated_at,
            "previous_signed_until": monitor.drift_webhook_secret_rotated_at + WEBHOOK_SECRET_OVERLAP}).data)
