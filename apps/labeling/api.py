from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from apps.accounts.models import Role
from apps.core.api import JobOut
from apps.projects.views import JobCancelView, JobDetailView, JobListCreateView, ProjectScopedView
from apps.labeling.selectors import round_get, rounds_for_project, task_get
from apps.labeling.services import (annotation_submit, round_create, task_lease_next, task_prediction_refresh,
                                     task_skip)
from apps.samples.api import content_url
from ml.selection.constraints import CONSTRAINT_KEYS
from ml.slices import PREDICATE_OPERATORS


class SliceQuotaIn(serializers.Serializer):
    name = serializers.CharField(max_length=60)
    where = serializers.DictField(help_text='metadata predicate: {"time_of_day": "night"}, {"camera": ["a", "b"]}, '
                                            '{"speed": {"gte": 50, "lt": 90}} '
                                            f'({", ".join(PREDICATE_OPERATORS)})')
    min = serializers.IntegerField(min_value=0, required=False, default=0, help_text="at least this many picks")
    max = serializers.IntegerField(min_value=0, required=False, allow_null=True, default=None,
                                   help_text="at most this many picks")


class ClassQuotaIn(serializers.Serializer):
    label = serializers.CharField(help_text="by the deployed model's predicted class")
    min = serializers.IntegerField(min_value=0, required=False, default=0)
    max = serializers.IntegerField(min_value=0, required=False, allow_null=True, default=None)


class CostIn(serializers.Serializer):
    metadata_key = serializers.CharField(max_length=100, help_text="metadata field with each sample's labeling cost "
                                                                    "(e.g. seconds of audio); missing or not a positive number: "
                                                                    "the pool's median")
    max_total = serializers.FloatField(required=False, allow_null=True, default=None)


class RoundIn(serializers.Serializer):
    budget = serializers.IntegerField(min_value=1)
    strategy = serializers.CharField(default="auto", max_length=40)
    # batch constraints on the train split's picks (val/test picks stay random)
    slices = SliceQuotaIn(many=True, required=False)
    classes = ClassQuotaIn(many=True, required=False)
    cost = CostIn(required=False)
    exclude_near_duplicates = serializers.FloatField(required=False, min_value=0.0, max_value=1.0,
                                                     help_text="skip pool samples this similar (cosine) to a labeled or queued one")

    def to_service(self) -> dict:
        data = dict(self.validated_data)
        # the fields' types are checked here (400); the grammar by ml.selection.RoundConstraints in round_create
        constraints = {k: data.pop(k) for k in CONSTRAINT_KEYS if k in data}
        return {**data, "constraints": constraints}


class RoundOut(JobOut):
    id = serializers.IntegerField()
    project = serializers.IntegerField(source="project_id")
    number = serializers.IntegerField()
    strategy = serializers.CharField()
    strategy_used = serializers.CharField()
    budget = serializers.IntegerField()
    constraints = serializers.DictField()
    selected = serializers.IntegerField()
    model_version = serializers.IntegerField(source="model_version_id", allow_null=True)
    details = serializers.DictField()


class RoundItemOut(serializers.Serializer):
    sample = serializers.IntegerField(source="sample_id")
    rank = serializers.IntegerField()
    score = serializers.FloatField()
    split = serializers.CharField(source="sample.split")
    low_confidence = serializers.BooleanField(source="sample.low_confidence")
    state = serializers.CharField()


class RoundListCreate(JobListCreateView):
    out, payload, scope, create_role = RoundOut, RoundIn, "rounds", Role.LEAD
    list_summary = "Selection rounds, newest first"
    create_summary = "Start a selection round under a budget (leads); runs as a job"

    def jobs(self, project):
        return rounds_for_project(project=project)

    def create(self, *, project, user, payload):
        return round_create(project=project, user=user, **payload.to_service())

    def created(self, job) -> dict:
        return RoundOut(job).data


class RoundDetail(JobDetailView):
    out = RoundOut
    summary = "A round with each chosen sample's score and rank"
    def load(self, pk):
        return round_get(round_id=pk)

    def detail(self, job) -> dict:
        data = RoundOut(job).data
        data["items"] = RoundItemOut(job.tasks.select_related("sample").order_by("rank"), many=True).data
        return data


class RoundCancel(JobCancelView):
    out = RoundOut
    load = RoundDetail.load
    summary = "Cancel a round (leads): queued ends now, running stops at its next progress point"


class TaskSampleOut(serializers.Serializer):
    id = serializers.IntegerField()
    external_id = serializers.CharField()
    metadata = serializers.DictField()
    content_url = serializers.SerializerMethodField()

    def get_content_url(self, obj) -> str:
        return content_url(obj)


class TaskOut(serializers.Serializer):
    id = serializers.IntegerField()
    project = serializers.IntegerField(source="project_id")
    round = serializers.IntegerField(source="round_id", allow_null=True)
    sample = TaskSampleOut()
    prediction = serializers.DictField(allow_null=True)
    lease_expires_at = serializers.DateTimeField()


class TaskNext(ProjectScopedView):
    @extend_schema(request=None, responses={200: TaskOut, 204: None},
                   summary="Lease the next task (204 when nothing is open for you)")
    def post(self, request, project_id):
        project = self.project(request, project_id)
        task = task_lease_next(project=project, user=request.user)
        if task is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(TaskOut(task_prediction_refresh(task=task)).data)


class TaskSkip(ProjectScopedView):
    @extend_schema(request=None, responses={204: None}, summary="Skip a leased task: it goes back to the queue for others")
    def post(self, request, task_id):
        task = task_get(task_id=task_id)
        self.check_object_project(request, task)
        task_skip(task=task, user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class AnnotationIn(serializers.Serializer):
    result = serializers.JSONField()
    active_seconds = serializers.FloatField(required=False, allow_null=True)


class AnnotationOut(serializers.Serializer):
    id = serializers.IntegerField()
    task = serializers.IntegerField(source="task_id")
    sample = serializers.IntegerField(source="sample_id")
    annotator = serializers.CharField(source="annotator.username")
    result = serializers.JSONField()
    lease_to_submit_s = serializers.FloatField(allow_null=True)
    active_seconds = serializers.FloatField(allow_null=True)
    created_at = serializers.DateTimeField()


class AnnotationCreate(ProjectScopedView):
    @extend_schema(
        request=AnnotationIn, summary="Submit an annotation for a leased task",
        description="Accepted while the task is still yours: leased to you, or your lease ran out and nobody has "
                    "claimed the task since. Refused with 409 and nothing stored otherwise: `task_taken` (another "
                    "annotator holds it now), `task_done` (it has all its annotations), `not_leased` (it is not yours).",
        responses={201: AnnotationOut, 409: OpenApiResponse(description="task_taken, task_done or not_leased")})
    def post(self, request, task_id):
        task = task_get(task_id=task_id)
        self.check_object_project(request, task)
        payload = AnnotationIn(data=request.data)
        payload.is_valid(raise_exception=True)
        annotation = annotation_submit(task=task, user=request.user, **payload.validated_data)
        return Response(AnnotationOut(annotation).data, status=status.HTTP_201_CREATED)
