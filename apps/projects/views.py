"""The project access rule for API views: a view scoped to a project (non-member 404, low role 403), and the
views every kind of background job (rounds, training runs, label checks, drift checks, exports) is served by:
list and create (202) under the project, detail and cancel by id."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.models import Role
from apps.core.api import IDEMPOTENCY_KEY, idempotent_response
from apps.core.errors import Conflict, ErrorCode
from apps.core.jobs import job_cancel
from apps.projects.selectors import project_get_for_user, require_object_role


class ProjectScopedView(APIView):
    """Resolves ``project_id`` from the URL with the access rule (non-member 404, low role 403)."""

    min_role = Role.ANNOTATOR

    def project(self, request, project_id, min_role: str | None = None):
        return project_get_for_user(user=request.user, project_id=project_id, min_role=min_role or self.min_role)

    def check_object_project(self, request, obj, min_role: str | None = None, *, project=None) -> str:
        """The access rule for an object of a project, given the object itself (not its project): a
        non-member gets the same 404 as for an id that does not exist ("Sample not found.")."""
        return require_object_role(obj=obj, user=request.user, min_role=min_role or self.min_role, project=project)


# (Comments, not docstrings: drf-spectacular takes a view's docstring, inherited ones included, as its
# operations' description, and the job views' descriptions stay those of ProjectScopedView.)
# ``GET <project>/<jobs>/``: the project's jobs of one kind, newest first; ``POST``: queue one (202, the
# job's row), once per caller and ``Idempotency-Key``. Subclasses set ``out`` (the row), ``payload`` (the
# input), ``scope`` (the idempotency scope's prefix) and ``create_role`` (the role POST needs, default the
# view's ``min_role``), ``list_summary`` and ``create_summary`` (the operations' summaries in the schema, whose
# request and responses follow from ``payload`` and ``out``), and implement ``jobs(project)`` and
# ``create(project=, user=, payload=)``.
class JobListCreateView(ProjectScopedView):

    out: type[serializers.Serializer]
    payload: type[serializers.Serializer]
    scope: str
    create_role: str | None = None
    list_summary: str
    create_summary: str

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        extend_schema_view(
            get=extend_schema(responses=cls.out(many=True), summary=cls.list_summary),
            post=extend_schema(request=cls.payload, responses={202: cls.out}, parameters=[IDEMPOTENCY_KEY],
                               summary=cls.create_summary),
        )(cls)

    def jobs(self, project):  # pragma: no cover - each subclass lists its own kind
        raise NotImplementedError

    def create(self, *, project, user, payload):  # pragma: no cover - each subclass creates its own kind
        raise NotImplementedError

    def created(self, job) -> dict:
        """The 202's body: the job's row as stored now."""
        job.refresh_from_db()
        return self.out(job).data

    def list_headers(self, project) -> dict:
        return {}

    def list_response(self, request, project_id) -> Response:
        project = self.project(request, project_id)
        return Response(self.out(self.jobs(project), many=True).data, headers=self.list_headers(project))

    def create_response(self, request, project_id) -> Response:
        project = self.project(request, project_id, self.create_role)

        def call():
            payload = self.payload(data=request.data)
            payload.is_valid(raise_exception=True)
            job = self.create(project=project, user=request.user, payload=payload)
            return status.HTTP_202_ACCEPTED, self.created(job)

        return idempotent_response(request, scope=f"{self.scope}:{project.pk}", call=call)

    def get(self, request, project_id):
        return self.list_response(request, project_id)

    def post(self, request, project_id):
        return self.create_response(request, project_id)


def _url_id(url: dict) -> int:
    """The one id of a job URL (``<jobs>/<int:round_id>/...``), whatever the URL names it."""
    (pk,) = url.values()
    return pk


# ``GET <jobs>/{id}/``: one job, for a member of its project (others get the missing id's 404).
# Subclasses set ``out`` (the body's serializer) and ``summary``, implement ``load(pk)``, and may shape the
# body in ``detail(job)``.
class JobDetailView(ProjectScopedView):

    out: type[serializers.Serializer]
    summary: str

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        extend_schema_view(get=extend_schema(responses=cls.out, summary=cls.summary))(cls)

    def load(self, pk):  # pragma: no cover - each subclass loads its own kind
        raise NotImplementedError

    def detail(self, job) -> dict:
        return self.out(job).data

    def detail_response(self, request, pk) -> Response:
        job = self.load(pk)
        self.check_object_project(request, job)
        return Response(self.detail(job))

    def get(self, request, **url):
        return self.detail_response(request, _url_id(url))


class JobCancelView(ProjectScopedView):
    """``POST <job>/{id}/cancel/`` (leads): a queued job ends ``cancelled`` now (200); a running one is asked
    to stop and ends ``cancelled`` at its next progress point (202, ``cancel_requested`` true); a job that
    has ended already is a 409 ``job_finished``. Subclasses set ``load(pk)``, ``cancel(job)`` and ``out``."""

    # (This docstring is the cancel operations' description in the schema.) Subclasses also set ``summary``;
    # ``cancel(job)`` defaults to the job runner's cancel.

    min_role = Role.LEAD
    out: type[serializers.Serializer]
    summary: str

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        extend_schema_view(post=extend_schema(request=None, responses={200: cls.out, 202: cls.out},
                                              summary=cls.summary))(cls)

    def load(self, pk):  # pragma: no cover - each subclass loads its own kind
        raise NotImplementedError

    def cancel(self, job):
        if not job_cancel(job):
            raise Conflict(f"This job has already ended ({job.status}); there is nothing to cancel.",
                           code=ErrorCode.JOB_FINISHED, details={"status": job.status})
        return job

    def post(self, request, **url):
        pk = _url_id(url)
        job = self.load(pk)
        self.check_object_project(request, job)
        job = self.cancel(job)
        job = self.load(pk)
        return Response(self.out(job).data,
                        status=status.HTTP_202_ACCEPTED if job.status == "running" else status.HTTP_200_OK)
