"""Learner plug-ins: installed packages that register learners through the ``looplab.learners`` entry points.

A plug-in package declares, in its ``pyproject.toml``::

    [project.entry-points."looplab.learners"]
    sklearn-probe = "looplab_sklearn_probe:SklearnProbe"

The entry point names a learner class (the contract of :mod:`ml.learners.base`) with the class attributes
``name``, ``modality`` and ``task_type``; it registers under ``(modality, task_type)`` with the class's ``name``.
A plug-in never becomes the default learner of a pair unless its entry point asks for it with the ``default``
extra (``"pkg.mod:Class [default]"``), and it never replaces a built-in of the same name (it is skipped, with an
error recorded). A plug-in that fails to import or lacks the attributes is skipped too: :func:`plugin_errors` says
why, so one broken package cannot take the registry down.

:func:`load_plugins` runs once per process (``force=True`` re-reads the entry points); ``ml.learners.get`` and
``ml.learners.available`` call it before looking up.
"""
from __future__ import annotations

import logging
from importlib import metadata
from typing import Iterable

__all__ = ["GROUP", "load_plugins", "plugin_errors", "loaded_plugins"]

GROUP = "looplab.learners"
log = logging.getLogger(__name__)

_loaded: list[dict] | None = None
_errors: list[dict] = []


def _entry_points(group: str) -> Iterable[metadata.EntryPoint]:
    return metadata.entry_points(group=group)


def load_plugins(*, force: bool = False, group: str = GROUP) -> list[dict]:
    """Register every learner the installed packages declare; returns what was registered
    (``{"entry_point", "name", "modality", "task_type", "default", "target"}`` each)."""
    global _loaded
    if _loaded is not None and not force:
        return list(_loaded)
    import ml.learners as registry

    builtin = {(m, t, n) for m, t, n, _ in registry._BUILTIN}
    loaded: list[dict] = []
    errors: list[dict] = []
    _loaded = loaded  # set first: a plug-in that calls get() while importing must not recurse
    for ep in sorted(_entry_points(group), key=lambda e: e.name):
        where = f"{ep.name} = {ep.value}"
        try:
            cls = ep.load()
            name, modality, task_type = str(cls.name), str(cls.modality), str(cls.task_type)
        except Exception as exc:  # a broken plug-in is skipped, not fatal
            errors.append({"entry_point": where, "error": f"{type(exc).__name__}: {exc}"})
            continue
        missing = [m for m in ("fit", "predict", "evaluate", "export_onnx", "parity", "to_bytes", "from_bytes")
                   if not callable(getattr(cls, m, None))]
        if missing:
            errors.append({"entry_point": where, "error": f"not a learner: missing {', '.join(missing)}"})
            continue
        if (modality, task_type, name) in builtin:
            errors.append({"entry_point": where, "error": f"{name!r} is a built-in learner for "
                                                          f"{modality}/{task_type}; pick another name"})
            continue
        default = "default" in (ep.extras or [])
        try:
            registry.register(modality, task_type, name, cls, default=default)
        except Exception as exc:  # unknown task type
            errors.append({"entry_point": where, "error": f"{type(exc).__name__}: {exc}"})
            continue
        loaded.append({"entry_point": where, "name": name, "modality": modality, "task_type": task_type,
                       "default": default, "target": f"{cls.__module__}:{cls.__qualname__}"})
    for e in errors:
        log.warning("learner plug-in skipped: %(entry_point)s: %(error)s", e)
    _errors[:] = errors
    return list(loaded)


def plugin_errors() -> list[dict]:
    """The entry points the last :func:`load_plugins` skipped, with the reason."""
    return [dict(e) for e in _errors]


def loaded_plugins() -> list[dict]:
    return list(_loaded or [])
