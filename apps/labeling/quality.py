"""Label-quality findings for a project (label issues, outliers, near-duplicates) via ml.quality.

Two ways in: :func:`label_issues_find` answers in the request (v1 ``GET label-issues/``, fine for a
few thousand labels), and a label check (:func:`label_check_create` → the Celery job
:func:`label_check_run`) does the same work in the background with progress, for the project page
and for projects too large to check within a request.
"""
from __future__ import annotations

from collections import Counter
from typing import Callable

import numpy as np
from django.db import transaction

from apps.core.errors import ErrorCode, ValidationFailed
from apps.core.jobs import JobContext, job_enqueue
from apps.labeling.models import Annotation, LabelCheck, ReviewStatus
from apps.labeling.tasks import run_label_check
from apps.samples.models import Sample

MIN_LABELED = 20
MAX_LIMIT = 1000


def _require_classification(project) -> None:
    if project.task_type != "classification":
        raise ValidationFailed("Label-quality checks compare each sample's class label with what its neighbours "
                               f"say; this is a {project.task_type} project.", code=ErrorCode.UNSUPPORTED_TASK_TYPE,
                               details={"task_type": project.task_type})


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
    """Queue a label-quality check of the project's labeled samples (a job with progress)."""
    _require_classification(project)
    if not 1 <= int(limit) <= MAX_LIMIT:
        raise ValidationFailed(f"limit must be between 1 and {MAX_LIMIT}.", code=ErrorCode.INVALID_LIMIT)
    n = Sample.objects.filter(project=project, label__in=list(project.labels)).exclude(embedding_space="").count()
    if n < MIN_LABELED:  # the cheap part of the validation, before anything is queued
        raise _not_enough_labels(n)
    with transaction.atomic():
        check = LabelCheck.objects.create(project=project, created_by=user, limit=int(limit), message="queued")

        job_enqueue(check, run_label_check, check.pk)
    return check


def label_check_run(*, check: LabelCheck, job: JobContext) -> None:
    """The check's job (claimed by the job runner): load the embeddings, cross-validate, rank."""
    result = _findings(check.project, limit=check.limit, progress=lambda f, m: job.progress(5 + 90 * f, m))
    n = sum(result["counts"].values())
    job.succeed(f"{n} findings in {result['n_checked']} labeled samples", space=result["space"],
                n_checked=result["n_checked"], counts=result["counts"], findings=result["findings"])
