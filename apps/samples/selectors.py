from __future__ import annotations

import json

from apps.core.errors import NotFound, ValidationFailed
from apps.samples.models import Sample


def samples_filter(*, project, split: str | None = None, labeled: bool | None = None,
                   low_confidence: bool | None = None, external_id: str | None = None,
                   metadata: dict | None = None):
    qs = Sample.objects.filter(project=project)
    if split:
        if split not in ("train", "val", "test"):
            raise ValidationFailed("split must be train, val or test.", code="invalid_filter")
        qs = qs.filter(split=split)
    if labeled is not None:
        qs = qs.filter(label__isnull=not labeled)
    if low_confidence is not None:
        qs = qs.filter(low_confidence=low_confidence)
    if external_id:
        qs = qs.filter(external_id=external_id)
    for key, value in (metadata or {}).items():
        if not key.replace("_", "").replace("-", "").isalnum():
            raise ValidationFailed(f"Bad metadata key {key!r}.", code="invalid_filter")
        qs = qs.filter(**{f"metadata__{key}": _json_scalar(value)})
    return qs.order_by("id")


def _json_scalar(raw: str):
    """?metadata.speed=3 matches 3 and "3"-as-number; strings match as strings."""
    try:
        value = json.loads(raw)
    except ValueError:
        return raw
    return value if isinstance(value, (int, float, bool)) or value is None else raw


def sample_get(*, sample_id) -> Sample:
    sample = Sample.objects.select_related("project").filter(pk=sample_id).first() if str(sample_id).isdigit() else None
    if sample is None:
        raise NotFound("Sample not found.")
    return sample


def sample_counts(*, project) -> dict:
    from django.db.models import Count, Q

    rows = (Sample.objects.filter(project=project).values("split")
            .annotate(total=Count("id"), labeled=Count("id", filter=Q(label__isnull=False)),
                      low_confidence=Count("id", filter=Q(low_confidence=True))))
    counts = {split: {"total": 0, "labeled": 0, "unlabeled": 0, "low_confidence": 0} for split in ("train", "val", "test")}
    for row in rows:
        counts[row["split"]] = {"total": row["total"], "labeled": row["labeled"],
                                "unlabeled": row["total"] - row["labeled"], "low_confidence": row["low_confidence"]}
    return counts
