"""Learners for every (modality, task type), behind one contract (:mod:`ml.learners.base`), and their registry.

``get(modality, task_type, name=None)`` returns the learner *class* registered for the pair (the default one when
``name`` is None); ``available(modality, task_type)`` lists the names. The built-in learners register here by
import path, so importing this package imports no torch; a plug-in registers with :func:`register` (or, later,
through the ``looplab.learners`` entry point group) in the same way. The apps never branch on a concrete learner.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

from ml.errors import InvalidInput
from ml.learners.base import (TASK_TYPES, Dataset, EvalReport, Learner, OnnxExport, OnnxRunner, ParityCheck,
                              Predictions, ProgressFn, check_dataset)

__all__ = ["TASK_TYPES", "Dataset", "EvalReport", "Learner", "OnnxExport", "OnnxRunner", "ParityCheck",
           "Predictions", "ProgressFn", "check_dataset", "UnknownLearner", "register", "get", "available", "describe"]


class UnknownLearner(InvalidInput):
    """No learner is registered for a (modality, task type[, name])."""

    code = "unsupported_task_type"


@dataclass(frozen=True)
class _Entry:
    name: str
    target: str | type  # "module:Class" (imported on use) or the class itself
    default: bool

    def load(self) -> type:
        if isinstance(self.target, type):
            return self.target
        module, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(module), attr)


_REGISTRY: dict[tuple[str, str], list[_Entry]] = {}


def register(modality: str, task_type: str, name: str, target: str | type, *, default: bool = False) -> None:
    """Register a learner class (or ``"module:Class"``) for ``(modality, task_type)`` under ``name``; a second
    registration of the same name replaces the first."""
    if task_type not in TASK_TYPES:
        raise InvalidInput(f"unknown task type {task_type!r}", code="invalid_task_type",
                           details={"task_type": task_type, "allowed": list(TASK_TYPES)})
    entries = [e for e in _REGISTRY.get((modality, task_type), []) if e.name != name]
    if default:
        entries = [_Entry(e.name, e.target, False) for e in entries]
    entries.append(_Entry(name, target, default or not entries))
    _REGISTRY[(modality, task_type)] = entries


def available(modality: str, task_type: str) -> list[str]:
    from ml.learners.plugins import load_plugins  # the looplab.learners entry points, read once per process

    load_plugins()
    return [e.name for e in _REGISTRY.get((modality, task_type), [])]


def describe(modality: str, task_type: str) -> list[dict]:
    """The learners registered for ``(modality, task_type)``: name, whether it is the default, where it comes from
    (``module:Class``) and its constructor parameters with their defaults (JSON scalars only)."""
    import inspect

    from ml.learners.plugins import load_plugins

    load_plugins()
    out = []
    for e in _REGISTRY.get((modality, task_type), []):
        cls = e.load()
        params = {}
        for pname, param in inspect.signature(cls.__init__).parameters.items():
            if pname == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            default = param.default
            if default is param.empty or isinstance(default, (str, int, float, bool, type(None))):
                params[pname] = None if default is param.empty else default
            elif isinstance(default, tuple):
                params[pname] = list(default)
        out.append({"name": e.name, "default": e.default, "source": f"{cls.__module__}:{cls.__qualname__}",
                    "params": params})
    return out


def get(modality: str, task_type: str, name: str | None = None) -> type:
    from ml.learners.plugins import load_plugins

    load_plugins()
    entries = _REGISTRY.get((modality, task_type), [])
    for e in entries:
        if (name is None and e.default) or e.name == name:
            return e.load()
    raise UnknownLearner(
        f"No learner for {task_type} on {modality}" + (f" named {name!r}" if name else "") + ".",
        details={"modality": modality, "task_type": task_type, "name": name,
                 "available": available(modality, task_type)})


# The built-in learners (import paths: nothing heavy is imported until a learner is asked for).
_BUILTIN = [
    ("image", "classification", "cnn", "ml.learners.classification:ImageClassifier"),
    ("audio", "classification", "cnn", "ml.learners.classification:AudioClassifier"),
    ("pointcloud", "classification", "pointnet", "ml.learners.classification:PointCloudClassifier"),
    ("image", "detection", "centernet", "ml.learners.detection:CenterNetDetector"),
    ("audio", "audio_regions", "frames", "ml.learners.regions:FrameRegionLearner"),
    ("pointcloud", "point_segmentation", "pointnet", "ml.learners.segmentation:PointNetSegmentationLearner"),
    ("pointcloud", "cuboids", "segment-fit", "ml.learners.cuboids:SegmentFitCuboidLearner"),
]
for _modality, _task, _name, _target in _BUILTIN:
    register(_modality, _task, _name, _target, default=True)
# The linear probe on label-free embeddings (ml.learners.probe): named by a run, or chosen by the built-in
# classification pipeline when it validates better on a small training set; never the default.
for _modality, _cls in (("image", "ImageProbe"), ("audio", "AudioProbe"), ("pointcloud", "PointCloudProbe")):
    register(_modality, "classification", "probe", f"ml.learners.probe:{_cls}")
