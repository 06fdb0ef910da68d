"""Label-quality findings for a project (label issues, outliers, near-duplicates) via ml.quality."""
from __future__ import annotations

from collections import Counter

import numpy as np

from apps.core.errors import ValidationFailed
from apps.samples.models import Sample

MIN_LABELED = 20


def label_issues_find(*, project, limit: int = 100) -> dict:
    """Rank labeled samples whose label looks wrong, plus outliers and near-duplicates.

    Uses the cached embeddings of the labeled samples (in the project's most common embedding space)
    and out-of-sample probabilities from cross-validation; cleanlab is the optional 'quality' extra.
    """
    from ml.quality import find_label_issues

    rows = list(Sample.objects.filter(project=project, label__isnull=False).exclude(embedding_space="")
                .values_list("id", "label", "embedding", "embedding_space"))
    if not rows:
        raise ValidationFailed("No labeled samples with embeddings yet.", code="not_enough_labels")
    space = Counter(r[3] for r in rows).most_common(1)[0][0]
    index = {label: i for i, label in enumerate(project.labels)}
    rows = [r for r in rows if r[3] == space and r[1] in index]
    if len(rows) < MIN_LABELED:
        raise ValidationFailed(f"Label-quality checks need at least {MIN_LABELED} labeled, embedded samples; "
                               f"this project has {len(rows)}.", code="not_enough_labels")
    ids = [r[0] for r in rows]
    X = np.stack([np.frombuffer(r[2], dtype=np.float32) for r in rows])
    y = np.array([index[r[1]] for r in rows])
    findings = find_label_issues(X, y, n_classes=len(project.labels), label_names=list(project.labels))
    out = []
    for finding in findings[:limit]:
        suggested = finding.suggested_label
        out.append({"sample": ids[finding.index], "kind": finding.kind, "score": float(finding.score),
                    "reason": finding.reason, "label": rows[finding.index][1],
                    "suggested_label": project.labels[suggested] if isinstance(suggested, (int, np.integer)) else suggested})
    return {"space": space, "n_checked": len(rows), "findings": out}
