"""Review of submitted annotations by a project's leads: accept, reject with a comment, or correct.

Reject: the annotation stops counting toward the task's ``annotations_per_task``, so a done task goes
back to the queue (state pending) for annotators. Correct: the lead's result is validated like any
submission and stored next to the annotator's (``corrected_result``); for classification the
sample's label follows the correction. The annotator's own ``result`` is never overwritten, so
agreement keeps measuring what annotators did.
"""
from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from apps.accounts.models import Role
from apps.core.errors import ErrorCode, ValidationFailed
from apps.core.ids import get_by_id, is_id
from apps.labeling.models import Annotation, ReviewStatus, Task
from apps.labeling.results import validate_result
from apps.labeling.services import task_settle
from apps.projects.selectors import require_role

ACTIONS = {"accept": ReviewStatus.ACCEPTED, "reject": ReviewStatus.REJECTED, "correct": ReviewStatus.CORRECTED}
MAX_COMMENT = 5000


def annotation_get(*, annotation_id) -> Annotation:
    return get_by_id(Annotation.objects.select_related("task__project", "sample", "annotator", "reviewer"),
                     annotation_id, "Annotation")


def annotations_for_review(*, project, review_status: str | None = None, annotator: str | None = None,
                           task_id=None, sample_id=None):
    """Submitted annotations of a project, filterable by review status, annotator (username or id) and task."""
    qs = (Annotation.objects.filter(task__project=project)
          .select_related("annotator", "reviewer", "sample", "task").order_by("id"))
    if review_status:
        statuses = [s for s in str(review_status).split(",") if s]
        bad = [s for s in statuses if s not in ReviewStatus.values]
        if bad:
            raise ValidationFailed(f"review_status must be among {ReviewStatus.values}; got {bad}.",
                                   code=ErrorCode.INVALID_REVIEW_STATUS, details={"review_status": bad})
        qs = qs.filter(review_status__in=statuses)
    if annotator:
        if "\x00" in str(annotator):
            raise ValidationFailed("annotator cannot contain NUL characters.", code=ErrorCode.INVALID_FILTER)
        qs = qs.filter(annotator_id=int(annotator)) if is_id(annotator) else qs.filter(annotator__username=annotator)
    for name, value in (("task_id", task_id), ("sample_id", sample_id)):
        if value not in (None, ""):
            if not is_id(value):
                raise ValidationFailed(f"{name[:-3]} must be an integer id.", code=ErrorCode.INVALID_FILTER,
                                       details={name[:-3]: value})
            qs = qs.filter(**{name: int(value)})
    return qs


def annotation_review(*, annotation: Annotation, user, action: str, comment: str = "", result=None) -> Annotation:
    """Accept, reject (with a comment) or correct an annotation. Leads and admins of the project only."""
    project = annotation.task.project
    require_role(project=project, user=user, min_role=Role.LEAD)
    if action not in ACTIONS:
        raise ValidationFailed(f"action must be one of {list(ACTIONS)}; got {action!r}.", code=ErrorCode.INVALID_ACTION,
                               details={"actions": list(ACTIONS)})
    comment = (comment or "").strip()
    if len(comment) > MAX_COMMENT:
        raise ValidationFailed(f"comment: at most {MAX_COMMENT} characters.", code=ErrorCode.INVALID_COMMENT)
    if action == "reject" and not comment:
        raise ValidationFailed("A rejection needs a comment that tells the annotator what was wrong.",
                               code=ErrorCode.COMMENT_REQUIRED)
    corrected = None
    if action == "correct":
        if result is None:
            raise ValidationFailed('A correction needs the corrected "result".', code=ErrorCode.RESULT_REQUIRED)
        corrected = validate_result(project=project, sample=annotation.sample, result=result)
    elif result is not None:
        raise ValidationFailed('"result" is only for the "correct" action.', code=ErrorCode.UNEXPECTED_RESULT)
    with transaction.atomic():
        task = Task.objects.select_for_update().select_related("project").get(pk=annotation.task_id)
        now = timezone.now()
        Annotation.objects.filter(pk=annotation.pk).update(
            review_status=ACTIONS[action], reviewer=user, review_comment=comment, reviewed_at=now,
            corrected_result=corrected)
        task_settle(task=task, now=now)
    return annotation_get(annotation_id=annotation.pk)


def review_summary(*, project) -> dict:
    from django.db.models import Count

    rows = Annotation.objects.filter(task__project=project).values("review_status").annotate(n=Count("id"))
    counts = {status: 0 for status in ReviewStatus.values}
    counts.update({row["review_status"]: row["n"] for row in rows})
    return counts
