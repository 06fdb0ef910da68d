"""Review API: list submitted annotations, review one (accept / reject / correct), and agreement.

Leads and admins of the project only: annotators get 403, non-members 404.
"""
from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from apps.accounts.models import Role
from apps.projects.views import ProjectScopedView
from apps.core.pagination import Pagination
from apps.labeling.agreement import project_agreement
from apps.labeling.review import annotation_get, annotation_review, annotations_for_review
from apps.samples.api import content_url


class ReviewedAnnotationOut(serializers.Serializer):
    id = serializers.IntegerField()
    task = serializers.IntegerField(source="task_id")
    task_state = serializers.CharField(source="task.state")
    sample = serializers.IntegerField(source="sample_id")
    external_id = serializers.CharField(source="sample.external_id")
    content_url = serializers.SerializerMethodField()
    content_info = serializers.DictField(source="sample.content_info")
    annotator = serializers.CharField(source="annotator.username", allow_null=True, default=None)
    result = serializers.JSONField()
    corrected_result = serializers.JSONField(allow_null=True)
    final_result = serializers.JSONField()
    active_seconds = serializers.FloatField(allow_null=True)
    created_at = serializers.DateTimeField()
    review_status = serializers.CharField()
    reviewer = serializers.CharField(source="reviewer.username", allow_null=True, default=None)
    review_comment = serializers.CharField()
    reviewed_at = serializers.DateTimeField(allow_null=True)

    def get_content_url(self, obj) -> str:
        return content_url(obj.sample)


class ReviewIn(serializers.Serializer):
    action = serializers.ChoiceField(choices=["accept", "reject", "correct"])
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=5000)
    result = serializers.JSONField(required=False, default=None)


class AnnotationList(ProjectScopedView):
    min_role = Role.LEAD

    @extend_schema(parameters=[
        OpenApiParameter("review_status", str, description="pending|accepted|rejected|corrected (comma-separated)"),
        OpenApiParameter("annotator", str, description="username or user id"),
        OpenApiParameter("task", int), OpenApiParameter("sample", int),
        OpenApiParameter("page", int), OpenApiParameter("page_size", int)],
        responses=ReviewedAnnotationOut(many=True), summary="Submitted annotations for review (leads), paginated")
    def get(self, request, project_id):
        project = self.project(request, project_id)
        q = request.query_params
        qs = annotations_for_review(project=project, review_status=q.get("review_status"), annotator=q.get("annotator"),
                                    task_id=q.get("task"), sample_id=q.get("sample"))
        paginator = Pagination()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(ReviewedAnnotationOut(page, many=True).data)


class AnnotationReview(ProjectScopedView):
    min_role = Role.LEAD

    @extend_schema(request=ReviewIn, responses=ReviewedAnnotationOut,
                   summary="Accept, reject (with a comment: the task goes back to the queue) or correct an annotation")
    def post(self, request, annotation_id):
        annotation = annotation_get(annotation_id=annotation_id)
        self.check_object_project(request, annotation, project=annotation.task.project)
        payload = ReviewIn(data=request.data)
        payload.is_valid(raise_exception=True)
        reviewed = annotation_review(annotation=annotation, user=request.user, **payload.validated_data)
        return Response(ReviewedAnnotationOut(reviewed).data)


class Agreement(ProjectScopedView):
    min_role = Role.LEAD

    @extend_schema(responses=dict, summary="Agreement between annotators per task, per annotator and overall")
    def get(self, request, project_id):
        project = self.project(request, project_id)
        return Response(project_agreement(project=project))
