"""The project's members. The project itself (create, list, get, change) is served by
apps.monitoring.project_api: its body aggregates apps above this one."""
from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from apps.accounts.models import Role
from apps.projects.services import membership_remove_by_username, membership_set_by_username
from apps.projects.views import ProjectScopedView


class MemberIn(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    role = serializers.ChoiceField(choices=Role.choices)


class MemberOut(serializers.Serializer):
    username = serializers.CharField(source="user.username")
    role = serializers.CharField()


class ProjectMembers(ProjectScopedView):
    @extend_schema(responses=MemberOut(many=True), summary="Project members and roles")
    def get(self, request, project_id):
        project = self.project(request, project_id)
        return Response(MemberOut(project.memberships.select_related("user").order_by("id"), many=True).data)

    @extend_schema(request=MemberIn, responses={201: MemberOut, 409: OpenApiResponse(description="last_admin")},
                   summary="Add a member or change a role (admins); the last admin cannot be demoted")
    def post(self, request, project_id):
        project = self.project(request, project_id, Role.ADMIN)
        payload = MemberIn(data=request.data)
        payload.is_valid(raise_exception=True)
        membership = membership_set_by_username(project=project, **payload.validated_data)
        return Response(MemberOut(membership).data, status=status.HTTP_201_CREATED)


class ProjectMember(ProjectScopedView):
    """One member of a project: an admin removes them, or they leave. The project's last admin can do neither
    (409 last_admin): make another member admin first."""

    @extend_schema(request=None, responses={204: None, 409: OpenApiResponse(description="last_admin")},
                   summary="Remove a member (admins), or leave the project (your own username); "
                           "the last admin cannot leave")
    def delete(self, request, project_id, username):
        own = username == request.user.username
        project = self.project(request, project_id, Role.ANNOTATOR if own else Role.ADMIN)
        membership_remove_by_username(project=project, username=username)
        return Response(status=status.HTTP_204_NO_CONTENT)
