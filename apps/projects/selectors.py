"""Reads, with the access rule in one place: a non-member gets 404, a member without the role 403."""
from __future__ import annotations

from apps.accounts.models import ROLE_RANK, Role
from apps.core.errors import Forbidden, NotFound
from apps.core.ids import get_by_id
from apps.projects.models import Membership, Project


def projects_for_user(*, user):
    if user.is_superuser:
        return Project.objects.all()
    return Project.objects.filter(memberships__user=user).distinct()


def project_role(*, project: Project, user) -> str | None:
    if user.is_superuser:
        return Role.ADMIN
    membership = Membership.objects.filter(project=project, user=user).only("role").first()
    return membership.role if membership else None


def project_get_for_user(*, user, project_id, min_role: str = Role.ANNOTATOR) -> Project:
    project = get_by_id(Project.objects, project_id, "Project")
    require_role(project=project, user=user, min_role=min_role)
    return project


def require_role(*, project: Project, user, min_role: str) -> str:
    """404 for a non-member (no leak that the project exists), 403 for a member below min_role."""
    role = project_role(project=project, user=user)
    if role is None:
        raise NotFound("Project not found.")
    if ROLE_RANK[Role(role)] < ROLE_RANK[Role(min_role)]:
        raise Forbidden(f"This needs the {min_role} role in the project; you are {role}.",
                        details={"required_role": min_role, "your_role": role})
    return role


def split_for_hash(*, ratios: dict, content_hash: str) -> str:
    """Deterministic split from the content hash: the same sample is in the same split for everyone, forever."""
    position = int(content_hash[:8], 16) / 0x1_0000_0000
    edge = 0.0
    for name in ("train", "val", "test"):
        edge += float(ratios.get(name, 0.0))
        if position < edge:
            return name
    return "train"
