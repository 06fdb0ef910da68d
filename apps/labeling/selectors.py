from __future__ import annotations

from apps.core.ids import get_by_id
from apps.labeling.models import Annotation, LabelCheck, ReviewStatus, Round, Task, TaskState


def budget_summary(*, project) -> dict:
    """Labels bought so far: tasks selected, of which labeled; queued or running rounds hold their budget."""
    from django.db.models import Sum

    selected = Task.objects.filter(project=project).count()
    labeled = Task.objects.filter(project=project, state=TaskState.DONE).count()
    reserved = (Round.objects.filter(project=project, status__in=("queued", "running"))
                .aggregate(n=Sum("budget"))["n"] or 0)
    return {"total": project.label_budget, "selected": selected, "labeled": labeled, "reserved": reserved,
            "remaining": max(0, project.label_budget - selected - reserved)}


def annotation_chosen(annotations: list[Annotation]) -> Annotation | None:
    """The annotation a done task stands for: the latest correction, else the latest accepted, else the earliest
    counted (not rejected) one; None when all were rejected."""
    counted = [a for a in annotations if a.review_status != ReviewStatus.REJECTED]
    for status in (ReviewStatus.CORRECTED, ReviewStatus.ACCEPTED):
        reviewed = [a for a in counted if a.review_status == status]
        if reviewed:
            return max(reviewed, key=lambda a: (a.reviewed_at, a.pk))
    return counted[0] if counted else None


def annotations_final(*, project, reviewed_only: bool = False) -> list[Annotation]:
    """One annotation per done task of the project (:func:`annotation_chosen`), with its sample, in sample id
    order; ``reviewed_only`` leaves out tasks whose chosen annotation is still pending review."""
    by_task: dict[int, list[Annotation]] = {}
    qs = (Annotation.objects.filter(task__project=project, task__state=TaskState.DONE)
          .select_related("sample").order_by("task_id", "id"))
    for ann in qs.iterator(chunk_size=500):
        by_task.setdefault(ann.task_id, []).append(ann)
    chosen = []
    for anns in by_task.values():
        ann = annotation_chosen(anns)
        if ann is None or (reviewed_only and ann.review_status == ReviewStatus.PENDING):
            continue
        chosen.append(ann)
    chosen.sort(key=lambda a: a.sample_id)
    return chosen


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
    return {"annotations": agg["n"], "mean_active_seconds": agg["active"], "mean_lease_to_submit_s": agg["lease"],
            "preannotation": preannotation_stats(project=project)}


def preannotation_stats(*, project) -> dict:
    """How much of the model's pre-annotations annotators kept, and what it saved them.

    Totals over the project's annotations that recorded a comparison (Annotation.preannotation, counted by
    ml.preannotation): ``annotations``, ``kind`` (shapes, points or label: the unit counted), ``n_predicted``,
    ``kept``, ``edited``, ``deleted``, ``added`` and the rates of the first three over ``n_predicted`` (None
    when nothing was predicted). ``with_prediction`` / ``without_prediction``: the mean active seconds of
    annotations whose task opened with a model prediction / without one, and ``n`` (annotations with an
    active time) for each.
    """
    from django.db.models import Avg, Count

    totals = {"n_predicted": 0, "kept": 0, "edited": 0, "deleted": 0, "added": 0}
    kinds: dict[str, int] = {}
    n = 0
    rows = (Annotation.objects.filter(task__project=project, preannotation__isnull=False)
            .values_list("preannotation", flat=True))
    for row in rows.iterator(chunk_size=2000):
        if not isinstance(row, dict):
            continue
        n += 1
        kinds[row.get("kind", "shapes")] = kinds.get(row.get("kind", "shapes"), 0) + 1
        for key in totals:
            totals[key] += int(row.get(key) or 0)
    rates = {f"{key}_rate": (totals[key] / totals["n_predicted"] if totals["n_predicted"] else None)
             for key in ("kept", "edited", "deleted")}
    timed = Annotation.objects.filter(task__project=project, active_seconds__isnull=False)
    times = {}
    for name, has in (("with_prediction", False), ("without_prediction", True)):
        agg = timed.filter(task__prediction__isnull=has).aggregate(n=Count("id"), mean=Avg("active_seconds"))
        times[name] = {"mean_active_seconds": agg["mean"], "n": agg["n"]}
    return {"annotations": n, "kind": max(kinds, key=kinds.get) if kinds else None, **totals, **rates, **times}


def round_constraints_summary(*, rnd: Round) -> list[str]:
    """One line per batch constraint of a round, with what it did once the round ran (and why a quota fell short)."""
    spec, done = rnd.constraints or {}, (rnd.details or {}).get("constraints") or {}
    counts = done.get("constraints") or {}
    quotas = sum(c["min"] for group in ("slices", "classes") for c in spec.get(group, []))

    def line(name, lo, hi, got, in_pool):
        want = " and ".join(x for x in (f"at least {lo}" if lo else "", f"at most {hi}" if hi is not None else "") if x)
        if got is None:
            return f"{name}: {want}"
        short = ""
        if got["shortfall"]:
            if in_pool is not None and in_pool < lo:
                why = f"only {in_pool} in the train pool"
            elif quotas > done.get("train_budget", quotas):
                why = f"the quotas ask for {quotas}, the train share of the budget is {done['train_budget']}"
            else:
                why = "other limits (caps, cost) came first"
            short = f" ({got['shortfall']} short: {why})"
        return f"{name}: {want} → {got['count']}{short}"

    out = [line(sl["name"], sl["min"], sl["max"], counts.get(f"slice:{sl['name']}"),
                (done.get("slice_pool") or {}).get(sl["name"])) for sl in spec.get("slices", [])]
    out += [line(f"predicted {cl['label']}", cl["min"], cl["max"], counts.get(f"class:{cl['label']}"),
                 (done.get("class_pool") or {}).get(cl["label"])) for cl in spec.get("classes", [])]
    if spec.get("cost"):
        cost = spec["cost"]
        bound = f" ≤ {cost['max_total']:g}" if cost.get("max_total") is not None else ""
        spent = f" → {done['total_cost']:g}" if "total_cost" in done else ""
        out.append(f"cost ({cost['metadata_key']}){bound}{spent}")
    if "exclude_near_duplicates" in spec:
        n = done.get("excluded_near_duplicates")
        out.append(f"near-duplicates of labeled or queued samples skipped (cosine ≥ {spec['exclude_near_duplicates']:g})"
                   + (f": {n}" if n is not None else ""))
    if "not_applied" in done:
        out.append(f"not applied: {done['not_applied']}")
    return out


# -- label checks -----------------------------------------------------------------------------------

def label_check_get(*, check_id) -> LabelCheck:
    return get_by_id(LabelCheck.objects.select_related("project"), check_id, "Label check")


def label_checks_for_project(*, project):
    return LabelCheck.objects.filter(project=project).order_by("-id")


def label_check_findings(*, check) -> list[dict]:
    """The check's findings, each with the current ``review_status`` of its annotation (a lead may have
    rejected or corrected it since the check ran; null when there is no annotation)."""
    ids = [f["annotation"] for f in check.findings if f.get("annotation")]
    status = dict(Annotation.objects.filter(pk__in=ids).values_list("id", "review_status"))
    return [{**f, "review_status": status.get(f.get("annotation"))} for f in check.findings]
