from __future__ import annotations

from apps.core.ids import get_by_id
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
    return get_by_id(Task.objects.select_related("project", "sample"), task_id, "Task")


def rounds_for_project(*, project):
    return Round.objects.filter(project=project).order_by("-number")


def round_get(*, round_id) -> Round:
    return get_by_id(Round.objects.select_related("project"), round_id, "Round")


def annotation_stats(*, project) -> dict:
    from django.db.models import Avg, Count

    agg = Annotation.objects.filter(task__project=project).aggregate(
        n=Count("id"), active=Avg("active_seconds"), lease=Avg("lease_to_submit_s"))
    return {"annotations": agg["n"], "mean_active_seconds": agg["active"], "mean_lease_to_submit_s": agg["lease"]}
