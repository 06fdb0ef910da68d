"""Shared API plumbing: base view and helpers for the error shape and content endpoints."""
from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.models import Role
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


def query_bool(value: str | None, name: str = "parameter") -> bool | None:
    if value is None or value == "":
        return None
    lowered = value.lower()
    if lowered in ("1", "true", "yes"):
        return True
    if lowered in ("0", "false", "no"):
        return False
    from apps.core.errors import ValidationFailed

    raise ValidationFailed(f"{name} must be true or false; got {value!r}.", code="invalid_filter")


class JobOut(serializers.Serializer):
    """What every job row shows (apps.core.models.JobFields): status, progress, message, timings, error."""

    status = serializers.CharField()
    progress = serializers.FloatField()
    message = serializers.CharField()
    error = serializers.CharField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    duration_s = serializers.FloatField(allow_null=True)
    attempts = serializers.IntegerField(help_text="how often a worker claimed the job (more than 1: it was taken "
                                                  "over after a worker stopped)")
    cancel_requested = serializers.BooleanField()


IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key", str, OpenApiParameter.HEADER, required=False,
    description="same key + same body replays the first response (no second job); another body → 409")


def idempotent_response(request, *, scope: str, call) -> Response:
    """Run ``call`` (-> (status, body)) once per caller, ``scope`` and Idempotency-Key; a repeat replays the
    first response with ``Idempotent-Replayed: true`` (apps.core.services.idempotent_call)."""
    from apps.core.services import idempotent_call, request_fingerprint

    code, body, replayed = idempotent_call(user=request.user, scope=scope, key=request.headers.get("Idempotency-Key"),
                                           fingerprint=request_fingerprint(request.body), call=call)
    response = Response(body, status=code)
    if replayed:
        response["Idempotent-Replayed"] = "true"
    return response


class JobCancelView(ProjectScopedView):
    """``POST <job>/{id}/cancel/`` (leads): a queued job ends ``cancelled`` now (200); a running one is asked
    to stop and ends ``cancelled`` at its next progress point (202, ``cancel_requested`` true); a job that
    has ended already is a 409 ``job_finished``. Subclasses set ``load(pk)``, ``cancel(job)`` and ``out``."""

    min_role = Role.LEAD
    out: type[serializers.Serializer]

    def load(self, pk):  # pragma: no cover - each subclass loads its own kind
        raise NotImplementedError

    def cancel(self, job):
        from apps.core.errors import Conflict
        from apps.core.jobs import job_cancel

        if not job_cancel(job):
            raise Conflict(f"This job has already ended ({job.status}); there is nothing to cancel.",
                           code="job_finished", details={"status": job.status})
        return job

    def post(self, request, pk):
        job = self.load(pk)
        self.check_object_project(request, job)
        job = self.cancel(job)
        job = self.load(pk)
        return Response(self.out(job).data,
                        status=status.HTTP_202_ACCEPTED if job.status == "running" else status.HTTP_200_OK)
