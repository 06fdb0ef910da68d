"""Reads for the server-rendered pages. The API's selectors are reused; this only shapes rows for templates."""
from __future__ import annotations

from apps.accounts.models import ROLE_RANK, Role
from apps.labeling.selectors import annotation_stats, budget_summary, round_constraints_summary, rounds_for_project
from apps.monitoring.selectors import drift_last_check
from apps.projects.selectors import project_role, projects_for_user
from apps.registry.models import ModelVersion
from apps.registry.selectors import current_deployment
from apps.samples.selectors import sample_counts
from apps.training.models import TrainingRun
from apps.web.charts import CurvePoint, learning_curve_svg


def can_lead(role: str | None) -> bool:
    return role is not None and ROLE_RANK[Role(role)] >= ROLE_RANK[Role.LEAD]


def _totals(counts: dict) -> dict:
    keys = ("total", "labeled", "unlabeled", "low_confidence")
    return {key: sum(split[key] for split in counts.values()) for key in keys}


def project_rows_for_user(*, user) -> list[dict]:
    rows = []
    for project in projects_for_user(user=user).order_by("name", "id"):
        counts = sample_counts(project=project)
        last = drift_last_check(project=project)  # the list needs the verdict, not the schedule
        rows.append({"project": project, "role": project_role(project=project, user=user),
                     "totals": _totals(counts), "budget": budget_summary(project=project),
                     "drift": last if last and last["drifted"] else None})
    return rows


# display names of the task types' metrics (ml.metrics), in the order the model card lists them
METRIC_NAMES = {
    "accuracy": "Accuracy", "macro_f1": "Macro-F1", "ece": "ECE",
    "map50": "mAP@0.5", "map": "mAP@[.5:.95]", "map75": "mAP@0.75", "f1": "F1",
    "event_f1": "Event F1", "event_precision": "Event precision", "event_recall": "Event recall",
    "event_f1_macro": "Event F1 (macro)", "onset_f1": "Onset F1",
    "miou": "mIoU", "ap50": "AP@0.5 (3-D IoU)", "ap25": "AP@0.25 (3-D IoU)",
    "ap": "AP", "iou": "IoU", "precision": "precision", "recall": "recall", "support": "support", "n_gt": "objects",
    "tp": "TP", "n_ref": "labeled", "n_sys": "predicted",
}
COUNT_FIGURES = {"support", "n_gt", "tp", "n_ref", "n_sys", "n"}


def _figures(values: dict, keys: list[str] | None = None) -> list[dict]:
    keys = keys if keys is not None else [k for k in METRIC_NAMES if k in values] + sorted(set(values) - set(METRIC_NAMES))
    return [{"key": k, "name": METRIC_NAMES.get(k, k), "value": values.get(k), "count": k in COUNT_FIGURES}
            for k in keys if k != "n"]


def weights_line(weights: dict | None) -> str:
    """The training weights a run used, in words ("Trained with weights: 7 ×2, light=dark ×3"); "" for none."""
    if not weights:
        return ""
    parts = [f"class {label} ×{w:g}" for label, w in (weights.get("classes") or {}).items()]
    for rule in weights.get("slices") or []:
        where = ", ".join(f"{k}={v}" for k, v in rule["where"].items())
        parts.append(f"{where} ×{rule['weight']:g}")
    return "Trained with weights: " + "; ".join(parts)


def _learner_row(mv, report: dict) -> dict:
    """The model card of a learner's version (any task type): its task type's figures, per class and slice, and
    the paired comparison with the deployed model."""
    metrics = report.get("metrics") or {}
    primary = report.get("primary")
    per_class = report.get("per_class") or {}
    class_keys = sorted({k for c in per_class.values() for k in c}, key=lambda k: (k in COUNT_FIGURES, k))
    per_slice = report.get("per_slice") or {}
    slice_keys = [k for k in ([primary] if primary else []) + [k for k in metrics if k != primary][:2]
                  if any(k in v for v in per_slice.values())]
    comparison = mv.comparison or None
    return {
        "learner": mv.learner, "task_type": mv.task_type, "primary": primary,
        "primary_name": METRIC_NAMES.get(primary, primary), "primary_value": metrics.get(primary),
        "metrics": _figures(metrics),
        "class_columns": [METRIC_NAMES.get(k, k) for k in class_keys],
        "class_rows": [(name, _figures(c, class_keys)) for name, c in sorted(per_class.items())],
        "slice_columns": [METRIC_NAMES.get(k, k) for k in slice_keys],
        "slice_rows": [(name, v.get("n"), _figures(v, slice_keys)) for name, v in sorted(per_slice.items())],
        "paired": comparison if comparison and "test" in comparison else None,
    }


def _model_row(mv, deployed_id: int | None) -> dict:
    report = mv.eval_report or {}
    comparison = mv.comparison or None
    learned = _learner_row(mv, report) if mv.learner else None
    return {
        "learned": learned,
        "weights_line": weights_line((mv.training_run.config or {}).get("weights")),
        "model": mv,
        "accuracy": report.get("accuracy"),
        "macro_f1": report.get("macro_f1"),
        "ece": report.get("ece"),
        "n_test": report.get("n"),
        "slices": sorted((report.get("slices") or {}).items()),
        "per_class": sorted((report.get("per_class") or {}).items()),
        "exported": bool(mv.onnx),
        "runtime": mv.runtime,
        "runtime_reason": ((mv.runtime_report or {}).get("decision") or {}).get("reason"),
        "int8_speedup": ((mv.runtime_report or {}).get("decision") or {}).get("speedup"),
        "confusion_url": f"/api/v1/models/{mv.pk}/confusion.png" if mv.confusion_png else None,
        "comparison": comparison,
        "baseline_version": mv.baseline_model.version if mv.baseline_model_id else None,
        "is_deployed": mv.pk == deployed_id,
        # the first-model choice of the built-in pipeline (network vs linear probe) and why, when it made one
        "selection": ((mv.training_run.config or {}).get("selection") if mv.training_run_id else None),
    }


def learning_curve(*, project, deployed_id: int | None) -> tuple[str, str]:
    """The project's learning curve as SVG, and its caption.

    From the newest evaluated version that re-scored the earlier ones on its own test split
    (``ModelVersion.curve``): every point on one test set. Otherwise (models from before that) each
    version's accuracy on the test split of its own dataset version."""
    newest = (ModelVersion.objects.filter(project=project, curve__isnull=False).order_by("-version").first())
    if newest is not None and newest.curve.get("metric"):  # a learner's curve: its task type's primary metric
        metric = newest.curve["metric"]
        name = METRIC_NAMES.get(metric, metric)
        points = [CurvePoint(labels=int(p["labels"]), accuracy=float(p[metric] or 0.0), macro_f1=float(p[metric] or 0.0),
                             version=int(p["version"]), deployed=p["model"] == deployed_id)
                  for p in newest.curve["points"]]
        return learning_curve_svg(points, metric=name), (
            f"Learning curve: {name} of each model version against the labeled samples it was trained on, all "
            f"scored on the test split of v{newest.version} ({newest.curve['n_test']} samples).")
    if newest is not None:
        points = [CurvePoint(labels=int(p["labels"]), accuracy=float(p["accuracy"]), macro_f1=float(p["macro_f1"]),
                             version=int(p["version"]), deployed=p["model"] == deployed_id)
                  for p in newest.curve["points"]]
        return learning_curve_svg(points), (
            f"Learning curve: accuracy and macro-F1 of each model version against the labeled samples it was trained "
            f"on, all scored on the test split of v{newest.version} ({newest.curve['n_test']} samples).")
    points = []
    for mv in (ModelVersion.objects.filter(project=project, eval_report__isnull=False)
               .select_related("training_run__dataset_version").order_by("id")[:200]):
        report = mv.eval_report or {}
        if report.get("accuracy") is None or report.get("macro_f1") is None:
            continue
        points.append(CurvePoint(labels=mv.training_run.dataset_version.n_labeled, accuracy=float(report["accuracy"]),
                                 macro_f1=float(report["macro_f1"]), version=mv.version,
                                 deployed=mv.pk == deployed_id))
    return learning_curve_svg(points), (
        "Learning curve: each model version's accuracy and macro-F1 on the test split of the dataset version it was "
        "trained on (the test split grows with the labels), against that version's labeled samples.")


UNITS = {"detection": "boxes and polygons", "audio_regions": "regions", "cuboids": "cuboids"}  # else: shapes


def _pct(rate) -> str:
    return f"{100 * rate:.0f}%"


def _seconds(stats: dict) -> str:
    mean = stats["mean_active_seconds"]
    return f"{mean:.1f} s" if mean is not None else "—"


def preannotation_lines(*, stats: dict, task_type: str) -> list[str]:
    """The project page's plain-words summary of annotation_stats' ``preannotation``: what annotators kept of the
    model's pre-annotations, and active time with vs without one; [] when no task has had a prediction."""
    with_p, without_p = stats["with_prediction"], stats["without_prediction"]
    if not stats["annotations"] and not with_p["n"]:
        return []
    over = f"(over {stats['annotations']} annotations)"
    lines = []
    if not stats["n_predicted"]:
        if stats["annotations"]:
            lines.append(f"Pre-annotations: the model proposed nothing; {stats['added']} added {over}.")
    elif stats["kind"] == "label":
        lines.append(f"Pre-annotations: {_pct(stats['kept_rate'])} of predicted labels accepted, "
                     f"{_pct(stats['edited_rate'])} changed {over}.")
    elif stats["kind"] == "points":
        lines.append(f"Pre-annotations: {_pct(stats['kept_rate'])} of predicted points kept their label, "
                     f"{_pct(stats['edited_rate'])} relabelled, {_pct(stats['deleted_rate'])} unlabelled, "
                     f"{stats['added']} more labelled {over}.")
    else:
        lines.append(f"Pre-annotations: {_pct(stats['kept_rate'])} of predicted {UNITS.get(task_type, 'shapes')} "
                     f"kept unchanged, {_pct(stats['edited_rate'])} edited, {_pct(stats['deleted_rate'])} deleted, "
                     f"{stats['added']} added {over}.")
    lines.append(f"Active time: {_seconds(with_p)} per task with a pre-annotation (n={with_p['n']}), "
                 f"{_seconds(without_p)} without (n={without_p['n']}).")
    return lines


def project_page_data(*, project, user) -> dict:
    """Everything the project page shows, read through the apps' selectors."""
    from ml.selection import STRATEGIES

    role = project_role(project=project, user=user)
    counts = sample_counts(project=project)
    budget = budget_summary(project=project)
    deployment = current_deployment(project=project)
    deployed_id = deployment.model_version_id if deployment else None
    models = [_model_row(mv, deployed_id) for mv in
              ModelVersion.objects.filter(project=project).select_related("baseline_model", "training_run")
              .order_by("-id")[:20]]
    runs = list(TrainingRun.objects.filter(project=project).select_related("dataset_version", "model")
                .prefetch_related("steps").order_by("-id")[:20])
    rounds = list(rounds_for_project(project=project).select_related("project")[:20])
    for rnd in rounds:
        rnd.constraint_lines = round_constraints_summary(rnd=rnd)
    active = any(job.status in ("queued", "running") for job in [*runs, *rounds])
    deployment_row = None
    if deployment is not None:
        deployment_row = {"deployment": deployment, **_model_row(deployment.model_version, deployed_id)}
    curve_svg, curve_caption = learning_curve(project=project, deployed_id=deployed_id)
    stats = annotation_stats(project=project)
    return {
        "project": project,
        "role": role,
        "is_lead": can_lead(role),
        "counts": counts,
        "totals": _totals(counts),
        "budget": budget,
        "budget_pct": (100.0 * budget["selected"] / budget["total"]) if budget["total"] else 0.0,
        "rounds": rounds,
        "runs": runs,
        "models": models,
        "learning_curve": curve_svg,
        "learning_curve_caption": curve_caption,
        "deployment": deployment_row,
        "stats": stats,
        "preannotation_lines": preannotation_lines(stats=stats["preannotation"], task_type=project.task_type),
        "strategies": list(STRATEGIES),
        "active": active,
        "page_config": {"project": project.pk, "active": active, "isLead": can_lead(role)},
    }
