"""Label-quality findings for a project (label issues, outliers, near-duplicates) via ml.quality.

Two ways in: :func:`label_issues_find` answers in the request (v1 ``GET label-issues/``, fine for a
few thousand labels), and a label check (:func:`label_check_create` → the Celery job
:func:`label_check_run`) does the same work in the background with progress, for the project page
and for projects too large to check within a request.
"""
from __future__ import annotations

import inspect
from collections import Counter
from typing import Callable

import numpy as np
from django.db import transaction

from apps.core.errors import ErrorCode, ValidationFailed
from apps.core.jobs import JobContext, job_enqueue
from apps.labeling.models import Annotation, LabelCheck, ReviewStatus
from apps.labeling.selectors import annotations_final
from apps.labeling.tasks import run_label_check
from apps.registry.selectors import current_deployment
from apps.samples import content as content_io
from apps.samples.models import Sample

MIN_LABELED = 20
MAX_LIMIT = 1000


MIN_SHAPE_LABELED = 10  # boxes, regions, points, cuboids: labeled samples a cross-validated check needs
SHAPE_FOLDS = 2
# a prediction at or above this score counts as the model "seeing" a shape (overlooked, swapped); cleanlab's 0.95
# suits calibrated probabilities, our learners' box/region/cuboid scores rarely reach it
SHAPE_CONFIDENT = 0.7


def _require_classification(project) -> None:
    if project.task_type != "classification":
        raise ValidationFailed("Label-issues now (in the request) compares each sample's class label with what its "
                               f"neighbours say; for a {project.task_type} project, start a label check "
                               "(POST label-checks/): it cross-validates the project's learner in the background.",
                               code=ErrorCode.UNSUPPORTED_TASK_TYPE, details={"task_type": project.task_type})


def _not_enough_labels(n: int) -> ValidationFailed:
    return ValidationFailed(f"Label-quality checks need at least {MIN_LABELED} labeled, embedded samples; "
                            f"this project has {n}.", code=ErrorCode.NOT_ENOUGH_LABELS,
                            details={"labeled": n, "needed": MIN_LABELED})


def _labeled_rows(project) -> tuple[str, list[tuple]]:
    """(space, rows of (id, label, embedding bytes)) of the labeled samples in the most common embedding space."""
    rows = list(Sample.objects.filter(project=project, label__isnull=False).exclude(embedding_space="")
                .values_list("id", "label", "embedding", "embedding_space"))
    if not rows:
        raise _not_enough_labels(0)
    space = Counter(r[3] for r in rows).most_common(1)[0][0]
    known = set(project.labels)
    rows = [r[:3] for r in rows if r[3] == space and r[1] in known]
    if len(rows) < MIN_LABELED:
        raise _not_enough_labels(len(rows))
    return space, rows


def _findings(project, *, limit: int, progress: Callable[[float, str], None] | None = None) -> dict:
    from ml.quality import find_label_issues

    space, rows = _labeled_rows(project)
    index = project.label_index
    ids = [r[0] for r in rows]
    X = np.stack([np.frombuffer(r[2], dtype=np.float32) for r in rows])
    y = np.array([index[r[1]] for r in rows])
    findings = find_label_issues(X, y, n_classes=len(project.labels), label_names=list(project.labels),
                                 progress=progress)
    top = findings[:limit]
    samples = Sample.objects.in_bulk([ids[f.index] for f in top])
    annotations = _latest_annotations([ids[f.index] for f in top])
    out = []
    for finding in top:
        sample = samples[ids[finding.index]]
        suggested = finding.suggested_label
        out.append({
            "sample": sample.pk, "external_id": sample.external_id,
            "content_url": f"/api/v1/samples/{sample.pk}/content/",
            "annotation": annotations.get(sample.pk),
            "kind": finding.kind, "score": float(finding.score), "reason": finding.reason,
            "label": rows[finding.index][1],
            "suggested_label": project.labels[suggested] if isinstance(suggested, (int, np.integer)) else suggested,
            "related": ids[finding.related] if finding.related is not None else None,
        })
    counts = dict(Counter(f.kind for f in findings))
    return {"space": space, "n_checked": len(rows), "counts": counts, "findings": out}


def _latest_annotations(sample_ids: list[int]) -> dict[int, int]:
    """The annotation a lead would review for each sample: its latest one that still counts (not rejected)."""
    latest: dict[int, int] = {}
    for sample_id, annotation_id in (Annotation.objects.filter(sample_id__in=sample_ids)
                                     .exclude(review_status=ReviewStatus.REJECTED)
                                     .order_by("sample_id", "id").values_list("sample_id", "id")):
        latest[sample_id] = annotation_id
    return latest


def label_issues_find(*, project, limit: int = 100) -> dict:
    """Rank labeled samples whose label looks wrong, plus outliers and near-duplicates, now (in the request).

    Uses the cached embeddings of the labeled samples (in the project's most common embedding space)
    and out-of-sample probabilities from cross-validation; cleanlab is the optional 'quality' extra.
    """
    _require_classification(project)
    return _findings(project, limit=limit)


def label_check_create(*, project, user, limit: int = 200) -> LabelCheck:
    """Queue a label-quality check of the project's labeled samples (a job with progress).

    Classification: cross-validated probabilities on the samples' embeddings (:mod:`ml.quality`). Every other task
    type: the project's learner (the deployed version's, with its run's parameters; else the default one) is fitted
    on all but one of ``SHAPE_FOLDS`` folds and predicts the held-out one, and :func:`ml.quality_shapes.label_issues`
    compares each sample's labeled shapes with those out-of-sample predictions (cleanlab's object detection and
    segmentation scores for boxes and points; IoU matching for regions and cuboids)."""
    if not 1 <= int(limit) <= MAX_LIMIT:
        raise ValidationFailed(f"limit must be between 1 and {MAX_LIMIT}.", code=ErrorCode.INVALID_LIMIT)
    if project.task_type == "classification":
        n = Sample.objects.filter(project=project, label__in=list(project.labels)).exclude(embedding_space="").count()
        if n < MIN_LABELED:  # the cheap part of the validation, before anything is queued
            raise _not_enough_labels(n)
    else:
        _shape_learner(project)  # a learner exists for the task type
        n = len(annotations_final(project=project))
        if n < MIN_SHAPE_LABELED:
            raise ValidationFailed(f"A label check of a {project.task_type} project needs at least {MIN_SHAPE_LABELED} "
                                   f"labeled samples; this project has {n}.", code=ErrorCode.NOT_ENOUGH_LABELS,
                                   details={"labeled": n, "needed": MIN_SHAPE_LABELED})
    with transaction.atomic():
        check = LabelCheck.objects.create(project=project, created_by=user, limit=int(limit), message="queued")

        job_enqueue(check, run_label_check, check.pk)
    return check


def label_check_run(*, check: LabelCheck, job: JobContext) -> None:
    """The check's job (claimed by the job runner): load the embeddings (or the contents), cross-validate, rank."""
    finder = _findings if check.project.task_type == "classification" else _shape_findings
    result = finder(check.project, limit=check.limit, progress=lambda f, m: job.progress(5 + 90 * f, m))
    n = sum(result["counts"].values())
    job.succeed(f"{n} findings in {result['n_checked']} labeled samples", space=result["space"],
                n_checked=result["n_checked"], counts=result["counts"], findings=result["findings"])


# -- boxes, regions, points, cuboids ----------------------------------------------------------------------------------

def _shape_learner(project) -> tuple[type, dict, str]:
    """(learner class, its constructor arguments, its name): the deployed learner version's, with the parameters of
    the run that made it, else the task type's default learner with its defaults."""
    from ml.learners import get

    deployment = current_deployment(project=project)
    mv = deployment.model_version if deployment is not None else None
    if mv is not None and mv.learner and mv.learner != "upload":
        config = mv.training_run.config or {}
        params = dict(config.get("params") or {})
        if config.get("epochs"):
            params["epochs"] = config["epochs"]
        return get(project.modality, project.task_type, mv.learner), params, mv.learner
    cls = get(project.modality, project.task_type)
    return cls, {}, cls.name


def _shape_findings(project, *, limit: int, progress: Callable[[float, str], None] | None = None) -> dict:
    from ml.learners import Dataset
    from ml.quality_shapes import label_issues

    progress = progress or (lambda f, m: None)
    cls, params, name = _shape_learner(project)
    chosen, contents = [], []
    for ann in annotations_final(project=project):
        try:
            contents.append(content_io.read_content(ann.sample))
            chosen.append(ann)
        except content_io.ContentUnavailable:
            continue
    if len(chosen) < MIN_SHAPE_LABELED:
        raise ValidationFailed(f"A label check needs at least {MIN_SHAPE_LABELED} readable labeled samples; "
                               f"this project has {len(chosen)}.", code=ErrorCode.NOT_ENOUGH_LABELS,
                               details={"labeled": len(chosen), "needed": MIN_SHAPE_LABELED})
    labels = tuple(project.labels)
    targets = [a.final_result for a in chosen]
    data = Dataset(contents=contents, targets=targets, labels=labels, ids=[a.sample_id for a in chosen])
    folds = np.random.default_rng(project.pk).permutation(len(chosen)) % SHAPE_FOLDS
    results: list = [None] * len(chosen)
    point_proba: list = [None] * len(chosen)
    for k in range(SHAPE_FOLDS):
        held, fit_on = np.flatnonzero(folds == k), np.flatnonzero(folds != k)

        def fold_progress(p, m, k=k):
            progress((k + p / 100.0) / (SHAPE_FOLDS + 0.2), f"fold {k + 1} of {SHAPE_FOLDS}: {m}")

        kwargs = dict(params)
        if "random_state" in inspect.signature(cls.__init__).parameters:
            kwargs.setdefault("random_state", k)
        learner = cls(**kwargs)
        learner.fit(data.subset(fit_on), progress=fold_progress)
        predictions = learner.predict([contents[i] for i in held])
        proba = predictions.extra.get("point_proba")
        for j, i in enumerate(held):
            results[i] = predictions.results[j]
            if proba is not None:
                point_proba[i] = proba[j]
    progress(SHAPE_FOLDS / (SHAPE_FOLDS + 0.2), "comparing the labels with the out-of-sample predictions")
    findings = label_issues(project.task_type, results, targets, labels,
                            point_proba=point_proba if all(p is not None for p in point_proba) else None,
                            high_probability_threshold=SHAPE_CONFIDENT)
    listed = [f for f in findings if f.flagged or f.issues]
    out = []
    for f in listed[:limit]:
        ann = chosen[f.index]
        first = f.issues[0] if f.issues else None
        out.append({
            "sample": ann.sample_id, "external_id": ann.sample.external_id,
            "content_url": f"/api/v1/samples/{ann.sample_id}/content/", "annotation": ann.pk,
            "kind": "label_issue", "score": float(f.score), "reason": f.reason,
            "label": (first.label or "") if first else "", "suggested_label": first.suggested_label if first else None,
            "related": None, "issues": [i.to_dict() for i in f.issues],
        })
    return {"space": f"cross-validated {name} ({SHAPE_FOLDS} folds)", "n_checked": len(chosen),
            "counts": {"label_issue": sum(1 for f in findings if f.flagged)}, "findings": out}
