"""Reads, with the access rule in one place: a non-member gets 404, a member without the role 403."""
from __future__ import annotations

from apps.accounts.models import ROLE_RANK, Role
from apps.core.errors import Forbidden
from apps.core.ids import get_by_id, kind_of, not_found
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


def require_role(*, project: Project, user, min_role: str, what: str = "Project") -> str:
    """404 for a non-member, 403 for a member below min_role. The 404 is ``not_found(what)``, the very
    answer an id that does not exist gets: ``what`` is the kind of object the caller asked for (a sample
    of the project answers "Sample not found.", not "Project not found."), so nothing tells an outsider
    that the id exists."""
    role = project_role(project=project, user=user)
    if role is None:
        raise not_found(what)
    if ROLE_RANK[Role(role)] < ROLE_RANK[Role(min_role)]:
        raise Forbidden(f"This needs the {min_role} role in the project; you are {role}.",
                        details={"required_role": min_role, "your_role": role})
    return role


def require_object_role(*, obj, user, min_role: str, project: Project | None = None) -> str:
    """:func:`require_role` for an object of a project (a sample, a task, a check...) loaded with
    ``apps.core.ids.get_by_id``: an outsider gets the 404 a missing id of that kind gets. ``project`` is
    the object's project when it has no ``project`` field (an annotation's is its task's)."""
    if isinstance(obj, Project):  # a project, or the project get_by_id loaded with an object (it answers as that)
        return require_role(project=obj, user=user, min_role=min_role, what=kind_of(obj))
    return require_role(project=project or obj.project, user=user, min_role=min_role, what=kind_of(obj))


def split_for_hash(*, ratios: dict, content_hash: str) -> str:
    """Deterministic split from the content hash: the same sample is in the same split for everyone, forever."""
    position = int(content_hash[:8], 16) / 0x1_0000_0000
    edge = 0.0
    for name in ("train", "val", "test"):
        edge += float(ratios.get(name, 0.0))
        if position < edge:
            return name
    return "train"
