from __future__ import annotations

import json
import math
import re

from apps.core.errors import ValidationFailed
from apps.core.ids import get_by_id
from apps.samples.models import Sample


def label_free_space() -> str:
    """The embedding space tag of label-free features: versioned, so that embeddings stored by an older
    feature extractor are recomputed instead of being compared with new ones."""
    from ml.features import FEATURES_VERSION  # numpy-only module

    return f"label_free:v{FEATURES_VERSION}"


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
        if "\x00" in external_id:
            raise ValidationFailed("external_id cannot contain NUL characters.", code="invalid_filter")
        qs = qs.filter(external_id=external_id)
    for key, value in (metadata or {}).items():
        # Plain keys only: "__" would let a caller reach ORM lookups (metadata.n__regex=...).
        if not _METADATA_KEY.fullmatch(key):
            raise ValidationFailed(f"Bad metadata key {key!r}: letters, digits, '-' and single '_' only.",
                                   code="invalid_filter")
        qs = qs.filter(**{f"metadata__{key}": _json_scalar(value)})
    return qs.order_by("id")


_METADATA_KEY = re.compile(r"[A-Za-z0-9-]+(?:_[A-Za-z0-9-]+)*")


def _json_scalar(raw: str):
    """?metadata.speed=3 matches the number 3; other text matches as a string."""
    if "\x00" in raw:
        raise ValidationFailed("Filter values cannot contain NUL characters.", code="invalid_filter")
    try:
        value = json.loads(raw)
    except ValueError:
        return raw
    if isinstance(value, float) and not math.isfinite(value):
        return raw
    return value if isinstance(value, (int, float, bool)) or value is None else raw


def sample_get(*, sample_id) -> Sample:
    return get_by_id(Sample.objects.select_related("project"), sample_id, "Sample")


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


def label_check_get(*, check_id):
    from apps.samples.models import LabelCheck

    return get_by_id(LabelCheck.objects.select_related("project"), check_id, "Label check")


def label_checks_for_project(*, project):
    from apps.samples.models import LabelCheck

    return LabelCheck.objects.filter(project=project).order_by("-id")


def label_check_findings(*, check) -> list[dict]:
    """The check's findings, each with the current ``review_status`` of its annotation (a lead may have
    rejected or corrected it since the check ran; null when there is no annotation)."""
    from apps.labeling.models import Annotation

    ids = [f["annotation"] for f in check.findings if f.get("annotation")]
    status = dict(Annotation.objects.filter(pk__in=ids).values_list("id", "review_status"))
    return [{**f, "review_status": status.get(f.get("annotation"))} for f in check.findings]


def metadata_slices(*windows: list[dict]) -> dict[str, tuple]:
    """Slices "key=value" for the metadata keys that take 2 to 10 distinct scalar values (str, bool, int)
    across all the windows, each with one boolean mask per window. A window is a list of metadata dicts.
    Evaluation uses one window (the test set), drift checks two (training data, production)."""
    import numpy as np

    values: dict[str, set] = {}
    for window in windows:
        for meta in window:
            for key, value in (meta or {}).items():
                if isinstance(value, (str, bool, int)):
                    values.setdefault(key, set()).add(value)
    slices = {}
    for key, seen in sorted(values.items()):
        if 2 <= len(seen) <= 10:
            for value in sorted(seen, key=str):
                slices[f"{key}={value}"] = tuple(np.array([(m or {}).get(key) == value for m in window], bool)
                                                 for window in windows)
    return slices
