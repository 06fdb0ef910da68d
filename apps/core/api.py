"""Shared API plumbing: base view and helpers for the error shape and content endpoints."""
from __future__ import annotations

from rest_framework import serializers
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
