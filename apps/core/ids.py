import re

from apps.core.errors import NotFound

_ID = re.compile(r"[0-9]{1,18}")


def is_id(value) -> bool:
    """True for a plain ASCII decimal id that fits a bigint ('²'.isdigit() is True, int('²') fails)."""
    return _ID.fullmatch(str(value)) is not None


def get_by_id(queryset, object_id, what: str):
    """The row of ``queryset`` with this id, else NotFound("<what> not found.") (404 in the error shape);
    ids that are not plain ASCII decimals are not found either, never a 500."""
    obj = queryset.filter(pk=object_id).first() if is_id(object_id) else None
    if obj is None:
        raise NotFound(f"{what} not found.")
    return obj
