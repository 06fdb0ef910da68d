import re

from apps.core.errors import NotFound

_ID = re.compile(r"[0-9]{1,18}")
_KIND = "_looplab_kind"  # what get_by_id looked the object up as ("Sample", "Training run", ...)


def is_id(value) -> bool:
    """True for a plain ASCII decimal id that fits a bigint ('²'.isdigit() is True, int('²') fails)."""
    return _ID.fullmatch(str(value)) is not None


def not_found(what: str) -> NotFound:
    """The one 404 for an object of kind ``what``: "<what> not found." in the error shape. The same body
    whether the object does not exist or lies in a project the caller is not a member of, so a 404 never
    tells an outsider that an id exists."""
    return NotFound(f"{what} not found.")


def get_by_id(queryset, object_id, what: str):
    """The row of ``queryset`` with this id, else ``not_found(what)`` (404 in the error shape); ids that
    are not plain ASCII decimals are not found either, never a 500. The row remembers ``what`` (see
    :func:`kind_of`), so the access check answers an outsider with the same 404."""
    obj = queryset.filter(pk=object_id).first() if is_id(object_id) else None
    if obj is None:
        raise not_found(what)
    setattr(obj, _KIND, what)
    # The project loaded with it (select_related) answers as the object too, so a view that checks access
    # with ``obj.project`` rather than ``obj`` gives the same 404.
    for path in (("project",), ("task", "project")):
        holder = obj
        for name in path:
            cache = getattr(getattr(holder, "_state", None), "fields_cache", {})
            holder = cache.get(name)
            if holder is None:
                break
        else:
            setattr(holder, _KIND, what)
    return obj


def kind_of(obj) -> str:
    """The kind a 404 about ``obj`` names: what :func:`get_by_id` looked it up as, else its model's name."""
    kind = getattr(obj, _KIND, None)
    if kind:
        return kind
    name = str(obj._meta.verbose_name)
    return name[:1].upper() + name[1:]
