from __future__ import annotations

from django.db import transaction

from apps.accounts.models import Role
from apps.accounts.services import account_role
from apps.core.errors import Conflict, ErrorCode, Forbidden, NotFound, ValidationFailed
from apps.projects.models import TASK_TYPES_BY_MODALITY, Membership, Modality, Project, TaskType, default_split_ratios


def _validate_labels(labels) -> list[str]:
    if not isinstance(labels, list) or not labels:
        raise ValidationFailed("labels must be a non-empty list of strings.", code=ErrorCode.INVALID_LABELS)
    clean = [str(label).strip() for label in labels]
    if any(not label for label in clean) or any(len(label) > 100 for label in clean):
        raise ValidationFailed("Each label must be 1-100 characters.", code=ErrorCode.INVALID_LABELS)
    if len(set(clean)) != len(clean):
        raise ValidationFailed("labels must be unique.", code=ErrorCode.INVALID_LABELS)
    if len(clean) > 1000:
        raise ValidationFailed("At most 1000 labels.", code=ErrorCode.INVALID_LABELS)
    return clean


def _validate_ratios(ratios) -> dict:
    if ratios is None:
        return default_split_ratios()
    try:
        clean = {name: float(ratios.get(name, 0.0)) for name in ("train", "val", "test")}
    except (TypeError, ValueError, AttributeError):
        raise ValidationFailed("split_ratios must map train/val/test to numbers.", code=ErrorCode.INVALID_SPLIT_RATIOS)
    if set(ratios) - set(clean) or any(v < 0 for v in clean.values()) or abs(sum(clean.values()) - 1.0) > 1e-6 or clean["train"] <= 0:
        raise ValidationFailed("split_ratios must be train/val/test fractions summing to 1 with train > 0.",
                               code=ErrorCode.INVALID_SPLIT_RATIOS, details={"split_ratios": ratios})
    return clean


def project_create(*, user, name: str, modality: str, labels: list, task_type: str = TaskType.CLASSIFICATION,
                   split_ratios: dict | None = None, label_budget: int = 1000,
                   confidence_threshold: float = 0.6, auto_deploy: bool = False,
                   annotations_per_task: int = 1) -> Project:
    if account_role(user) == Role.ANNOTATOR:
        raise Forbidden("Annotators cannot create projects; ask a lead.")
    if modality not in Modality.values:
        raise ValidationFailed(f"modality must be one of {Modality.values}.", code=ErrorCode.INVALID_MODALITY)
    if task_type not in TASK_TYPES_BY_MODALITY[modality]:
        raise ValidationFailed(f"A {modality} project supports the task types {list(TASK_TYPES_BY_MODALITY[modality])}.",
                               code=ErrorCode.INVALID_TASK_TYPE)
    if not 1 <= annotations_per_task <= 10:
        raise ValidationFailed("annotations_per_task must be within 1..10.",
                               code=ErrorCode.INVALID_ANNOTATIONS_PER_TASK)
    if not 0.0 <= confidence_threshold <= 1.0:
        raise ValidationFailed("confidence_threshold must be within 0..1.", code=ErrorCode.INVALID_THRESHOLD)
    with transaction.atomic():
        project = Project.objects.create(
            name=name, modality=modality, task_type=task_type, labels=_validate_labels(labels),
            split_ratios=_validate_ratios(split_ratios), label_budget=label_budget,
            confidence_threshold=confidence_threshold, auto_deploy=auto_deploy,
            annotations_per_task=annotations_per_task, created_by=user)
        Membership.objects.create(project=project, user=user, role=Role.ADMIN)
    return project


def project_update(*, project: Project, **fields) -> Project:
    allowed = {"name", "label_budget", "confidence_threshold", "auto_deploy", "annotations_per_task"}
    unknown = set(fields) - allowed
    if unknown:
        raise ValidationFailed(f"These fields cannot be changed: {sorted(unknown)}.", code=ErrorCode.READ_ONLY_FIELDS)
    if "confidence_threshold" in fields and not 0.0 <= fields["confidence_threshold"] <= 1.0:
        raise ValidationFailed("confidence_threshold must be within 0..1.", code=ErrorCode.INVALID_THRESHOLD)
    if "annotations_per_task" in fields and not 1 <= fields["annotations_per_task"] <= 10:
        raise ValidationFailed("annotations_per_task must be within 1..10.",
                               code=ErrorCode.INVALID_ANNOTATIONS_PER_TASK)
    for key, value in fields.items():
        setattr(project, key, value)
    project.save(update_fields=list(fields) or None)
    return project


class LastAdmin(Conflict):
    """The change would leave the project without an admin: nobody could manage its members any more."""

    code = ErrorCode.LAST_ADMIN


def _lock_memberships(project: Project) -> None:
    """Serialise membership changes of one project (two admins demoting each other at once must not both
    succeed): lock the project's row until the transaction ends."""
    Project.objects.select_for_update().filter(pk=project.pk).values_list("pk", flat=True).first()


def _refuse_last_admin(*, project: Project, user, change: str) -> None:
    """LastAdmin when ``user`` is the project's only active admin (the role that manages members)."""
    others = (Membership.objects.filter(project=project, role=Role.ADMIN, user__is_active=True)
              .exclude(user=user).exists())
    if not others:
        raise LastAdmin(f"{user.username} is the project's last admin and cannot {change}: make another member "
                        "admin first.", details={"username": user.username})


def membership_set(*, project: Project, user, role: str) -> Membership:
    """Add ``user`` to the project with ``role``, or change their role. A project always keeps an admin:
    demoting its last admin is refused (LastAdmin, 409)."""
    if role not in Role.values:
        raise ValidationFailed(f"role must be one of {Role.values}.", code=ErrorCode.INVALID_ROLE)
    with transaction.atomic():
        _lock_memberships(project)
        current = Membership.objects.filter(project=project, user=user).first()
        if current is not None and current.role == Role.ADMIN and role != Role.ADMIN:
            _refuse_last_admin(project=project, user=user, change=f"become {role}")
        membership, _ = Membership.objects.update_or_create(project=project, user=user, defaults={"role": role})
    return membership


def membership_remove(*, project: Project, user) -> None:
    """Take ``user`` out of the project (an admin removing a member, or a member leaving). A project always
    keeps an admin: its last admin cannot leave or be removed (LastAdmin, 409)."""
    with transaction.atomic():
        _lock_memberships(project)
        current = Membership.objects.filter(project=project, user=user).first()
        if current is None:
            raise NotFound(f"{user.username} is not a member of this project.", code=ErrorCode.MEMBER_NOT_FOUND)
        if current.role == Role.ADMIN:
            _refuse_last_admin(project=project, user=user, change="leave")
        current.delete()


def _user_by_username(username: str):
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise NotFound(f"No user {username!r}.", code=ErrorCode.USER_NOT_FOUND)
    return user


def membership_set_by_username(*, project: Project, username: str, role: str) -> Membership:
    return membership_set(project=project, user=_user_by_username(username), role=role)


def membership_remove_by_username(*, project: Project, username: str) -> None:
    membership_remove(project=project, user=_user_by_username(username))
