from __future__ import annotations

from apps.core.errors import NotFound
from apps.core.ids import is_id
from apps.labeling.models import Annotation, Round, Task, TaskState


def budget_summary(*, project) -> dict:
    """Labels bought so far: tasks selected, of which labeled; queued or running rounds hold their budget."""
    from django.db.models import Sum

    selected = Task.objects.filter(project=project).count()
    labeled = Task.objects.filter(project=project, state=TaskState.DONE).count()
    reserved = (Round.objects.filter(project=project, status__in=("queued", "running"))
                .aggregate(n=Sum("budget"))["n"] or 0)
    return {"total": project.label_budget, "selected": selected, "labeled": labeled, "reserved": reserved,
            "remaining": max(0, project.label_budget - selected - reserved)}


def task_get(*, task_id) -> Task:
    task = Task.objects.select_related("project", "sample").filter(pk=task_id).first() if is_id(task_id) else None
    if task is None:
        raise NotFound("Task not found.")
    return task


def rounds_for_project(*, project):
    return Round.objects.filter(project=project).order_by("-number")


def round_get(*, round_id) -> Round:
    rnd = Round.objects.select_related("project").filter(pk=round_id).first() if is_id(round_id) else None
    if rnd is None:
        raise NotFound("Round not found.")
    return rnd


def annotation_stats(*, project) -> dict:
    from django.db.models import Avg, Count

    agg = Annotation.objects.filter(task__project=project).aggregate(
        n=Count("id"), active=Avg("active_seconds"), lease=Avg("lease_to_submit_s"))
    return {"annotations": agg["n"], "mean_active_seconds": agg["active"], "mean_lease_to_submit_s": agg["lease"]}
