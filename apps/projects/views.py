"""The project access rule for API views: a view scoped to a project (non-member 404, low role 403) and the
cancel view every kind of job uses."""
from __future__ import annotations

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
