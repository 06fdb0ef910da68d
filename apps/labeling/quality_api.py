"""Label-quality API: findings now (``label-issues/``) and label checks, the same work as a job with progress
(``label-checks/``: list, create, detail with findings and their review status now, cancel). Leads only."""
from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from apps.accounts.models import Role
from apps.core.api import JobOut
from apps.core.errors import ErrorCode, ValidationFailed
from apps.labeling.quality import label_check_create, label_issues_find
from apps.labeling.selectors import label_check_findings, label_check_get, label_checks_for_project
from apps.projects.views import JobCancelView, JobDetailView, JobListCreateView, ProjectScopedView


class FindingOut(serializers.Serializer):
    sample = serializers.IntegerField()
    external_id = serializers.CharField()
    content_url = serializers.CharField()
    annotation = serializers.IntegerField(allow_null=True, help_text="the annotation to review (reject or correct)")
    kind = serializers.ChoiceField(choices=["label_issue", "outlier", "near_duplicate"])
    score = serializers.FloatField()
    reason = serializers.CharField()
    label = serializers.CharField(allow_blank=True, help_text="the given label (of the first shape concerned for "
                                                             "boxes, regions, points, cuboids)")
    suggested_label = serializers.CharField(allow_null=True)
    related = serializers.IntegerField(allow_null=True, help_text="the other sample of a near-duplicate pair")
    issues = serializers.ListField(child=serializers.DictField(), required=False,
                                   help_text="boxes, regions, points, cuboids: each suspicious shape (kind: overlooked, "
                                             "swapped, badly_located, spurious, mislabeled_points), the given and the "
                                             "predicted one, its quality")


class LabelIssuesOut(serializers.Serializer):
    space = serializers.CharField()
    n_checked = serializers.IntegerField()
    counts = serializers.DictField(child=serializers.IntegerField(), help_text="findings by kind, before the limit")
    findings = FindingOut(many=True)


class LabelIssues(ProjectScopedView):
    @extend_schema(parameters=[OpenApiParameter("limit", int)], responses=LabelIssuesOut,
                   summary="Label-quality findings: likely wrong labels, outliers, near-duplicates (ranked, with reasons)")
    def get(self, request, project_id):
        project = self.project(request, project_id, Role.LEAD)
        try:
            limit = max(1, min(1000, int(request.query_params.get("limit", 100))))
        except ValueError:
            raise ValidationFailed("limit must be an integer.", code=ErrorCode.INVALID_LIMIT)
        return Response(label_issues_find(project=project, limit=limit))


class LabelCheckIn(serializers.Serializer):
    limit = serializers.IntegerField(default=200, help_text="how many of the ranked findings to keep (1-1000)")


class LabelCheckOut(JobOut):
    id = serializers.IntegerField()
    project = serializers.IntegerField(source="project_id")
    limit = serializers.IntegerField()
    space = serializers.CharField()
    n_checked = serializers.IntegerField(allow_null=True)
    counts = serializers.DictField(child=serializers.IntegerField())


class CheckFindingOut(FindingOut):
    review_status = serializers.CharField(allow_null=True, help_text="the annotation's review status now")


class LabelCheckDetailOut(LabelCheckOut):
    findings = CheckFindingOut(many=True)


class LabelCheckListCreate(JobListCreateView):
    min_role = Role.LEAD
    out, payload, scope = LabelCheckOut, LabelCheckIn, "label-checks"
    list_summary = "A project's label-quality checks, newest first (leads)"
    create_summary = ("Check the project's labels in the background (a job with progress): likely wrong labels, "
                      "outliers, near-duplicates")

    def jobs(self, project):
        return label_checks_for_project(project=project)[:50]

    def create(self, *, project, user, payload):
        return label_check_create(project=project, user=user, **payload.validated_data)


class LabelCheckDetail(JobDetailView):
    min_role = Role.LEAD
    out = LabelCheckDetailOut
    summary = "A label check: status, progress and its ranked findings"

    def load(self, pk):
        return label_check_get(check_id=pk)

    def detail(self, job) -> dict:
        job.findings = label_check_findings(check=job)
        return LabelCheckDetailOut(job).data


class LabelCheckCancel(JobCancelView):
    out = LabelCheckOut
    load = LabelCheckDetail.load
    summary = "Cancel a label check (leads): queued ends now, running stops at its next progress point"
