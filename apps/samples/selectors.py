from __future__ import annotations

import json
import math
from dataclasses import dataclass

from django.db.models import Case, FloatField, Q, When
from django.db.models.fields.json import KeyTextTransform, KeyTransform
from django.db.models.functions import Cast

from apps.core.errors import BadRequest, ErrorCode, ValidationFailed
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
            raise ValidationFailed("split must be train, val or test.", code=ErrorCode.INVALID_FILTER)
        qs = qs.filter(split=split)
    if labeled is not None:
        qs = qs.filter(label__isnull=not labeled)
    if low_confidence is not None:
        qs = qs.filter(low_confidence=low_confidence)
    if external_id:
        if "\x00" in external_id:
            raise ValidationFailed("external_id cannot contain NUL characters.", code=ErrorCode.INVALID_FILTER)
        qs = qs.filter(external_id=external_id)
    if metadata:
        qs = metadata_filter_apply(qs, metadata_filters_parse(metadata))
    return qs.order_by("id")


# Metadata filters. The query parameter ``metadata.<key>`` (equality) or ``metadata.<key>:<op>`` names a JSON
# key and an operator that this module parses itself: the key only ever reaches the database as a bound
# parameter of a JSON key transform, never as part of an ORM lookup path, so ``metadata.regex=`` is the key
# "regex" compared by equality. The operator follows the last ':'; a key that itself contains ':' is reachable
# with an explicit ``:eq``.
METADATA_OPERATORS = {
    "eq": "equal to the value (JSON number, true, false or null if it reads as one, else the text)",
    "gt": "a number greater than the value", "gte": "a number greater than or equal to the value",
    "lt": "a number less than the value", "lte": "a number less than or equal to the value",
    "in": "equal to one of the comma-separated values (each read as for eq)",
}
_RANGE = {"gt": "gt", "gte": "gte", "lt": "lt", "lte": "lte"}  # operator -> our ORM lookup
MAX_METADATA_FILTERS = 20
MAX_IN_VALUES = 100
MAX_KEY_CHARS = 200
# What a stored value must look like to be compared as a number: JSON numbers (and numeric strings) whose
# magnitude fits a double (at most 200 digits each side of the point and a two-digit exponent).
_NUMERIC_TEXT = r"^-?[0-9]{1,200}(\.[0-9]{1,200})?([eE][+-]?[0-9]{1,2})?$"


@dataclass(frozen=True)
class MetadataFilter:
    key: str
    op: str
    value: object  # eq: a JSON scalar; gt/gte/lt/lte: a float; in: a tuple of JSON scalars


def metadata_filters_parse(params: dict[str, str]) -> list[MetadataFilter]:
    """{"<key>[:<op>]": raw value} (the query parameters without their ``metadata.`` prefix) -> filters.
    Unknown operators are a 400 (``unknown_filter_operator``); bad keys or values a 422 (``invalid_filter``)."""
    if len(params) > MAX_METADATA_FILTERS:
        raise ValidationFailed(f"At most {MAX_METADATA_FILTERS} metadata filters per request.",
                               code=ErrorCode.INVALID_FILTER)
    return [_metadata_filter_parse(name, raw) for name, raw in params.items()]


def _metadata_filter_parse(name: str, raw: str) -> MetadataFilter:
    key, sep, op = name.rpartition(":")
    if not sep:
        key, op = name, "eq"
    if op not in METADATA_OPERATORS:
        raise BadRequest(f"Unknown metadata filter operator {op[:40]!r}: use one of {', '.join(METADATA_OPERATORS)} "
                         "(metadata.<key>:<op>=<value>; a key containing ':' needs an explicit ':eq').",
                         code=ErrorCode.UNKNOWN_FILTER_OPERATOR, details={"parameter": f"metadata.{name}"[:300]})
    _check_key(key)
    if "\x00" in raw:
        raise ValidationFailed("Filter values cannot contain NUL characters.", code=ErrorCode.INVALID_FILTER)
    if op == "eq":
        return MetadataFilter(key, op, _json_scalar(raw))
    if op == "in":
        values = raw.split(",")
        if len(values) > MAX_IN_VALUES:
            raise ValidationFailed(f"At most {MAX_IN_VALUES} values for ':in'.", code=ErrorCode.INVALID_FILTER)
        return MetadataFilter(key, op, tuple(_json_scalar(v) for v in values))
    try:
        number = float(raw)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise ValidationFailed(f"metadata.{key[:40]}:{op} takes a finite number; got {raw[:40]!r}.",
                               code=ErrorCode.INVALID_FILTER)
    return MetadataFilter(key, op, number)


def _check_key(key: str) -> None:
    if not key or len(key) > MAX_KEY_CHARS or any(ord(c) < 32 for c in key):
        raise ValidationFailed(f"A metadata key has 1 to {MAX_KEY_CHARS} characters and no control characters.",
                               code=ErrorCode.INVALID_FILTER)
    try:
        int(key)  # Django's JSON key transforms read such a key as an array index
    except ValueError:
        return
    raise ValidationFailed(f"Metadata key {key[:40]!r} reads as a number; keys that are numbers cannot be filtered on.",
                           code=ErrorCode.INVALID_FILTER)


def metadata_filter_apply(qs, filters: list[MetadataFilter]):
    """AND of the filters. The ORM names used are this function's own aliases (_meta0, _meta1...)."""
    for i, f in enumerate(filters):
        alias = f"_meta{i}"
        qs = qs.alias(**{alias: KeyTransform(f.key, "metadata")})
        if f.op in _RANGE:
            # The value as a number where its text reads as one; true/false are excluded by their JSON type
            # (SQLite's ->> gives 1 and 0 for them).
            qs = qs.alias(**{f"{alias}_text": KeyTextTransform(f.key, "metadata")})
            numeric = Q(**{f"{alias}_text__regex": _NUMERIC_TEXT}) & ~Q(**{alias: True}) & ~Q(**{alias: False})
            qs = qs.alias(**{f"{alias}_number": Case(When(numeric, then=Cast(f"{alias}_text", FloatField())),
                                                     default=None, output_field=FloatField())})
            qs = qs.filter(**{f"{alias}_number__{_RANGE[f.op]}": f.value})
        elif f.op == "in":
            qs = qs.filter(**{f"{alias}__in": list(f.value)})
        else:
            qs = qs.filter(**{alias: f.value})
    return qs


def _json_scalar(raw: str):
    """?metadata.speed=3 matches the number 3; other text matches as a string."""
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


def metadata_slices(*windows: list[dict]) -> dict[str, tuple]:
    """Slices "key=value" over windows of metadata dicts (:func:`ml.slices.value_slices`). Evaluation uses one
    window (the test set), drift checks two (training data, production)."""
    from ml.slices import value_slices

    return value_slices(*windows)
